package web_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
)

// jsMediaState is a MediaState in the page.
type jsMediaState struct {
	AudioMuted bool `json:"audioMuted"`
	VideoOff   bool `json:"videoOff"`
	Screen     bool `json:"screen"`
}

// jsRates is sendRates(): what the page's senders put on the wire, per second.
type jsRates struct {
	AudioPackets   int `json:"audioPackets"`
	AudioBytes     int `json:"audioBytes"`
	VideoPackets   int `json:"videoPackets"`
	VideoBytes     int `json:"videoBytes"`
	VideoFrames    int `json:"videoFrames"`
	EncryptedAudio int `json:"encryptedAudio"`
	EncryptedVideo int `json:"encryptedVideo"`
}

// waitPeerMedia waits until tb's peer media state is want and returns
// when the page got it (Unix ms; the pages share the machine's clock).
func (tb *tab) waitPeerMedia(want jsMediaState, timeout time.Duration) float64 {
	tb.t.Helper()
	return drive[float64](tb, timeout+5*time.Second, fmt.Sprintf("waitPeerMedia({audioMuted: %v, videoOff: %v, screen: %v}, %d)",
		want.AudioMuted, want.VideoOff, want.Screen, timeout.Milliseconds()))
}

// waitInboundAudioGrowth waits until tb has decrypted n more audio frames
// (20 ms each) than now (the peer keeps sending), and returns the stats
// then.
func waitInboundAudioGrowth(t *testing.T, tb *tab, n uint64, timeout time.Duration) jsDiag {
	t.Helper()
	before := tb.stats()
	if before.Frames == nil {
		t.Fatalf("%s: no frame counts: %s", tb.name, before)
	}
	return waitStats(t, tb, fmt.Sprintf("%d more audio frames", n), timeout, func(d jsDiag) bool {
		return d.Frames != nil && d.Frames.Decrypted.Audio >= before.Frames.Decrypted.Audio+n
	})
}

// TestCallsMediaState: mute and camera-off are signalled (call_media,
// PROTOCOL §10.9) between two browsers and between a browser and a Go
// peer, each way; the peer sees the change; muted peers keep sending
// (Chromium's disabled tracks are measured and logged), so a call whose
// both sides are muted with the camera off outlives the media timeout
// (shortened to 2 s in the pages).
func TestCallsMediaState(t *testing.T) {
	env := startCallEnv(t)

	t.Run("browser to browser", func(t *testing.T) {
		alice, bob := env.browserCall(t, true, func(tb *tab) {
			drive[map[string]any](tb, 5*time.Second, "setTimings({media: 2000, mediaCheck: 250})")
		})
		bob.waitPeerMedia(jsMediaState{}, 5*time.Second)

		on := drive[jsRates](alice, 10*time.Second, "sendRates(3000)")
		if !drive[bool](alice, 5*time.Second, "setMicrophone(false)") || !drive[bool](alice, 5*time.Second, "setCamera(false)") {
			t.Fatal("setMicrophoneEnabled / setCameraEnabled returned false during a call")
		}
		at := bob.waitPeerMedia(jsMediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
		t.Logf("bob saw alice's camera off %.0f ms after alice's setCameraEnabled(false)", at-drive[float64](alice, 5*time.Second, "lastMediaSetAt()"))
		off := drive[jsRates](alice, 10*time.Second, "sendRates(3000)")
		// The measurement PROTOCOL §10.9's rule rests on.
		t.Logf("Chromium sender, tracks enabled:  audio %d pkt/s %d B/s, video %d pkt/s %d B/s %d frames/s (encrypted a%d v%d /s)",
			on.AudioPackets, on.AudioBytes, on.VideoPackets, on.VideoBytes, on.VideoFrames, on.EncryptedAudio, on.EncryptedVideo)
		t.Logf("Chromium sender, tracks disabled: audio %d pkt/s %d B/s, video %d pkt/s %d B/s %d frames/s (encrypted a%d v%d /s)",
			off.AudioPackets, off.AudioBytes, off.VideoPackets, off.VideoBytes, off.VideoFrames, off.EncryptedAudio, off.EncryptedVideo)
		if off.AudioPackets < 10 {
			t.Errorf("a muted Chromium audio track sends %d packets/s; PROTOCOL §10.9 relies on it sending silence", off.AudioPackets)
		}

		// bob mutes too: with both muted and cameras off, the call outlives
		// the 2 s media timeout three times over (6 s of silence packets).
		drive[bool](bob, 5*time.Second, "setMicrophone(false)")
		drive[bool](bob, 5*time.Second, "setCamera(false)")
		alice.waitPeerMedia(jsMediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
		waitInboundAudioGrowth(t, alice, 300, 30*time.Second)
		waitInboundAudioGrowth(t, bob, 50, 30*time.Second)
		for _, tb := range []*tab{alice, bob} {
			if st := drive[jsStatus](tb, 5*time.Second, "status()"); st.State != "connected" || len(st.Errors) != 0 {
				t.Fatalf("%s muted: %+v; want still connected, no error", tb.name, st)
			}
		}
		drive[bool](alice, 5*time.Second, "setMicrophone(true)")
		drive[bool](alice, 5*time.Second, "setCamera(true)")
		bob.waitPeerMedia(jsMediaState{}, 10*time.Second)
		drive[jsResult](alice, 10*time.Second, "hangup()")
		bob.waitState("hangup", 10*time.Second)
		if m := drive[struct{ Peer jsMediaState }](bob, 5*time.Second, "mediaState()"); m.Peer != (jsMediaState{}) {
			t.Errorf("bob's peer media after the call: %+v", m.Peer)
		}
	})

	t.Run("browser and Go", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		tb := env.openTab(t, "carol", "")
		tb.setup(false)
		drive[map[string]any](tb, 5*time.Second, "setTimings({media: 2000, mediaCheck: 250})")
		bot := env.newGoBot(t, "gobot", false)
		callBot(ctx, t, tb, bot, true)

		// Go → browser.
		if err := bot.mod.SetMicrophoneEnabled(false); err != nil {
			t.Fatal(err)
		}
		if err := bot.mod.SetCameraEnabled(false); err != nil {
			t.Fatal(err)
		}
		set := time.Now()
		if err := bot.mod.SetCameraEnabled(true); err != nil {
			t.Fatal(err)
		}
		at := tb.waitPeerMedia(jsMediaState{AudioMuted: true}, 10*time.Second)
		t.Logf("the browser saw the Go peer's camera on %.0f ms after SetCameraEnabled(true)", at-float64(set.UnixMilli()))
		if err := bot.mod.SetCameraEnabled(false); err != nil {
			t.Fatal(err)
		}
		tb.waitPeerMedia(jsMediaState{AudioMuted: true, VideoOff: true}, 10*time.Second)
		// The Go peer's Opus silence is media to Chromium: 6 s of it with
		// a 2 s media timeout.
		d := waitInboundAudioGrowth(t, tb, 300, 30*time.Second)
		if st := drive[jsStatus](tb, 5*time.Second, "status()"); st.State != "connected" || len(st.Errors) != 0 {
			t.Fatalf("the browser with a muted Go peer: %+v; want still connected", st)
		}
		if d.Frames == nil || d.Frames.DecryptErrors > 5 {
			t.Errorf("the browser's frames with a muted Go peer: %s", d)
		}

		// Browser → Go.
		drive[bool](tb, 5*time.Second, "setMicrophone(false)")
		start := time.Now()
		bot.waitPeerMedia(duetcall.MediaState{AudioMuted: true}, 10*time.Second)
		t.Logf("the Go peer saw the browser's mute %v after setMicrophoneEnabled(false) returned", time.Since(start))
		// Chromium's muted track still arrives as audio frames that decrypt.
		n := bot.mod.Stats().AudioFramesReceived
		bot.waitStats("100 audio frames while the browser is muted", 15*time.Second, func(s duetcall.Stats) bool { return s.AudioFramesReceived >= n+100 })
		drive[bool](tb, 5*time.Second, "setMicrophone(true)")
		bot.waitPeerMedia(duetcall.MediaState{}, 10*time.Second)
		if err := bot.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		tb.waitState("hangup", 10*time.Second)
	})
}

// waitPeerMedia waits until the bot's PeerMedia is want.
func (b *goBot) waitPeerMedia(want duetcall.MediaState, timeout time.Duration) {
	b.t.Helper()
	sub := b.mod.PeerMedia().Subscribe()
	defer sub.Unsubscribe()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last duetcall.MediaState
	for {
		select {
		case ms := <-sub.C():
			last = ms
			if ms == want {
				return
			}
		case <-deadline.C:
			b.t.Fatalf("%s: PeerMedia %+v not reached within %v; last %+v", b.name, want, timeout, last)
		}
	}
}

// probeFrameSizes decodes an IVF recording with ffprobe and counts its
// decoded frames by size ("800x600").
func probeFrameSizes(t *testing.T, path string) map[string]int {
	t.Helper()
	out, err := exec.Command(ffprobePath(t), "-v", "error", "-select_streams", "v:0",
		"-show_entries", "frame=width,height", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	sizes := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if w, h, ok := strings.Cut(strings.TrimSpace(line), ","); ok {
			sizes[w+"x"+h]++
		}
	}
	return sizes
}

// waitInboundVideo waits until tb decodes video whose size ok accepts.
func waitInboundVideo(t *testing.T, tb *tab, what string, ok func(w, h int) bool, timeout time.Duration) jsDiag {
	t.Helper()
	return waitStats(t, tb, what+" video decoding", timeout, func(d jsDiag) bool {
		return d.InVideo != nil && d.InVideo.FramesDecoded > 0 && ok(d.InVideo.FrameWidth, d.InVideo.FrameHeight)
	})
}

// camera and screen tell Chromium's fake camera (16:9, up to 1280x720,
// scaled down under bandwidth limits) from its fake screen (800 wide, at
// most 600 high; Chromium 156 sends it 800x450).
func camera(w, h int) bool { return w*9 == h*16 && w > 800 || w < 800 }
func screen(w, h int) bool { return w == 800 && h <= 600 }

// TestCallsScreenShare: a browser shares its screen (getDisplayMedia, the
// fake 800x600 screen of Chromium's fake capture UI) in a video call: the
// captured track replaces the camera's in the encrypted video sender with
// degradationPreference maintain-resolution; the peer is told
// (call_media screen) and decodes the 800x600 picture (a browser), or
// records it (a Go peer: its recording decodes at 800x600); stopping the
// share sends the camera (1280x720) again.
func TestCallsScreenShare(t *testing.T) {
	env := startCallEnv(t)

	t.Run("browser to browser", func(t *testing.T) {
		alice, bob := env.browserCall(t, true, nil)
		waitInboundVideo(t, bob, "camera", camera, 20*time.Second)

		if r := drive[jsResult](alice, 15*time.Second, "shareScreen()"); !r.OK {
			t.Fatalf("shareScreen: %+v", r)
		}
		bob.waitPeerMedia(jsMediaState{Screen: true}, 10*time.Second)
		d := waitInboundVideo(t, bob, "800-wide screen", screen, 20*time.Second)
		a := alice.stats()
		t.Logf("alice shares: sender %+v, encrypted video frames %d of %d encoded; bob decodes %dx%d, %d frames, decrypt errors %d",
			a.VideoSender, a.Frames.Encrypted.Video, a.OutVideo.FramesEncoded, d.InVideo.FrameWidth, d.InVideo.FrameHeight, d.InVideo.FramesDecoded, d.Frames.DecryptErrors)
		if a.VideoSender == nil || a.VideoSender.Degradation != "maintain-resolution" {
			t.Errorf("alice's video sender while sharing: %+v; want degradationPreference maintain-resolution", a.VideoSender)
		}
		// Every encoded frame went through the E2EE transform.
		if a.Frames.Encrypted.Video+5 < a.OutVideo.FramesEncoded {
			t.Errorf("alice encoded %d video frames but encrypted %d", a.OutVideo.FramesEncoded, a.Frames.Encrypted.Video)
		}
		if st := drive[jsStatus](bob, 5*time.Second, "status()"); st.State != "connected" || len(st.Errors) != 0 {
			t.Errorf("bob while alice shares: %+v", st)
		}
		if !drive[bool](alice, 10*time.Second, "stopScreenShare()") {
			t.Error("stopScreenShare returned false while sharing")
		}
		bob.waitPeerMedia(jsMediaState{}, 10*time.Second)
		waitInboundVideo(t, bob, "camera", camera, 20*time.Second)
		if a := alice.stats(); a.VideoSender == nil || a.VideoSender.Degradation != "maintain-framerate" {
			t.Errorf("alice's video sender after the share: %+v; want maintain-framerate again", a.VideoSender)
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
		bob.waitState("hangup", 10*time.Second)
	})

	t.Run("browser to Go", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		tb := env.openTab(t, "carol", "")
		tb.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		st := callBot(ctx, t, tb, bot, true)
		// The camera first: 30 frames of it.
		bot.waitStats("30 camera frames", 20*time.Second, func(s duetcall.Stats) bool { return s.VideoFramesReceived >= 30 })
		if r := drive[jsResult](tb, 15*time.Second, "shareScreen()"); !r.OK {
			t.Fatalf("shareScreen: %+v", r)
		}
		bot.waitPeerMedia(duetcall.MediaState{Screen: true}, 10*time.Second)
		// Two seconds of screen at least (the share's frames are counted
		// from the recording below).
		n := bot.mod.Stats().VideoFramesReceived
		bot.waitStats("40 video frames of the screen share", 20*time.Second, func(s duetcall.Stats) bool { return s.VideoFramesReceived >= n+40 })
		shared := tb.stats()
		if err := bot.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		tb.waitState("hangup", 10*time.Second)
		if shared.OutVideo == nil || !screen(shared.OutVideo.FrameWidth, shared.OutVideo.FrameHeight) {
			t.Fatalf("the browser's video sender while sharing: %s", shared)
		}
		if s := bot.mod.Stats(); s.DecryptErrors > 5 {
			t.Errorf("the Go peer: %d video frames did not decrypt", s.DecryptErrors)
		}
		sizes := probeFrameSizes(t, bot.recording(st.CallID))
		t.Logf("the Go peer's recording decodes to frames of sizes %v", sizes)
		size := fmt.Sprintf("%dx%d", shared.OutVideo.FrameWidth, shared.OutVideo.FrameHeight)
		if sizes[size] < 20 {
			t.Errorf("the Go recording has %d frames at the shared screen's %s (sizes %v)", sizes[size], size, sizes)
		}
		cam := 0
		for sz, n := range sizes {
			var w, h int
			fmt.Sscanf(sz, "%dx%d", &w, &h)
			if camera(w, h) {
				cam += n
			}
		}
		if cam < 20 {
			t.Errorf("the Go recording has %d camera frames before the share (sizes %v)", cam, sizes)
		}
	})
}
