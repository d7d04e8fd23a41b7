package call

import (
	"errors"
	"testing"
	"time"
)

// waitPeerMedia waits until p's PeerMedia is want and returns how long it
// took.
func (p *peer) waitPeerMedia(want MediaState, timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	sub := p.mod.PeerMedia().Subscribe()
	defer sub.Unsubscribe()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last MediaState
	for {
		select {
		case ms, ok := <-sub.C():
			if !ok {
				p.t.Fatalf("%s: PeerMedia closed waiting for %+v", p.name, want)
			}
			last = ms
			if ms == want {
				return time.Since(start)
			}
		case <-deadline.C:
			p.t.Fatalf("%s: PeerMedia %+v not reached within %v; last %+v", p.name, want, timeout, last)
		}
	}
}

// TestMuteSignalled: a muted microphone and a camera turned off reach the
// peer as call_media (PeerMedia); while muted, silence frames keep flowing
// (the peer still receives audio frames that decrypt), while the camera is
// off no video frame is sent, and once back on video resumes.
func TestMuteSignalled(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	if err := a.mod.SetMicrophoneEnabled(false); !errors.Is(err, ErrNoCall) {
		t.Fatalf("SetMicrophoneEnabled without a call: %v, want ErrNoCall", err)
	}
	connect(t, a, b, Media{Audio: true, Video: true})
	// The state goes out once when connected: all on.
	b.waitPeerMedia(MediaState{}, 5*time.Second)

	if err := a.mod.SetMicrophoneEnabled(false); err != nil {
		t.Fatal(err)
	}
	took := b.waitPeerMedia(MediaState{AudioMuted: true}, 10*time.Second)
	t.Logf("b saw a's mute %v after SetMicrophoneEnabled(false)", took)
	if got := a.mod.LocalMedia(); got != (MediaState{AudioMuted: true}) {
		t.Errorf("a.LocalMedia %+v", got)
	}
	// Silence is sent: b keeps receiving (and decrypting) audio frames.
	n := b.mod.Stats().AudioFramesReceived
	b.waitStats(10*time.Second, "audio frames while muted", func(s Stats) bool { return s.AudioFramesReceived >= n+50 })

	if err := a.mod.SetCameraEnabled(false); err != nil {
		t.Fatal(err)
	}
	took = b.waitPeerMedia(MediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
	t.Logf("b saw a's camera off %v after SetCameraEnabled(false)", took)
	// No video frame is sent while the camera is off (a frame already in
	// the send loop may still go out: read the count after it).
	v := a.mod.Stats().VideoFramesSent
	au := a.mod.Stats().AudioFramesSent
	a.waitStats(10*time.Second, "50 audio frames with the camera off", func(s Stats) bool { return s.AudioFramesSent >= au+50 })
	if got := a.mod.Stats().VideoFramesSent; got > v+1 {
		t.Errorf("a sent %d video frames with its camera off", got-v)
	}

	if err := a.mod.SetCameraEnabled(true); err != nil {
		t.Fatal(err)
	}
	if err := a.mod.SetMicrophoneEnabled(true); err != nil {
		t.Fatal(err)
	}
	b.waitPeerMedia(MediaState{}, 10*time.Second)
	// Video resumes (at a key frame) and decrypts.
	vr := b.mod.Stats().VideoFramesReceived
	b.waitStats(20*time.Second, "video frames after camera on", func(s Stats) bool { return s.VideoFramesReceived >= vr+10 })
	if s := b.mod.Stats(); s.DecryptErrors != 0 {
		t.Errorf("b: %d frames did not decrypt", s.DecryptErrors)
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	// The peer's state is the zero one again once the call is over.
	b.waitEnd(10 * time.Second)
	if got := b.mod.PeerMedia().Get(); got != (MediaState{}) {
		t.Errorf("b.PeerMedia after the call: %+v", got)
	}
}

// TestMutedPeerKeepsCall: a peer that muted its microphone and turned its
// camera off still sends (Opus silence), so the media watchdog does not end
// the call (PROTOCOL §10.9): with the media timeout shortened to 1.5 s the
// call survives 4.5 s of mute (three timeouts: the 15 s rule over 45 s);
// TestMediaTimeout shows a peer whose media really stops is still cut off.
func TestMutedPeerKeepsCall(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{media: 1500 * time.Millisecond, mediaCheck: 100 * time.Millisecond})
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true, Video: true})
	for _, p := range []*peer{a, b} {
		if err := p.mod.SetMicrophoneEnabled(false); err != nil {
			t.Fatal(err)
		}
		if err := p.mod.SetCameraEnabled(false); err != nil {
			t.Fatal(err)
		}
	}
	a.waitPeerMedia(MediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
	b.waitPeerMedia(MediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
	// 4.5 s of silence frames (50 a second) each way.
	na, nb := a.mod.Stats().AudioFramesReceived, b.mod.Stats().AudioFramesReceived
	a.waitStats(30*time.Second, "225 silence frames", func(s Stats) bool { return s.AudioFramesReceived >= na+225 })
	b.waitStats(30*time.Second, "225 silence frames", func(s Stats) bool { return s.AudioFramesReceived >= nb+225 })
	for _, p := range []*peer{a, b} {
		if st := p.mod.State().Get(); st.State != StateConnected {
			t.Errorf("%s: %+v after 4.5 s muted, want connected", p.name, st)
		}
	}
}
