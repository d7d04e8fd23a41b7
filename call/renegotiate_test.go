package call

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/media"
)

// TestUpgradeDowngrade: an audio call becomes a video call by a
// renegotiation within the call (PROTOCOL §10.10), started by the caller
// and then by the callee: the other side's status says video, it receives
// video that decrypts (the callee records it through Options.VideoSink:
// the recording decodes), while the side that did not upgrade sends none;
// a downgrade stops the video; the call stays connected throughout.
func TestUpgradeDowngrade(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	var (
		mu  sync.Mutex
		ivf *media.IVFSink
	)
	a := newPeer(t, "a")
	b := newPeer(t, "b", withOptions(func(o *Options) {
		o.VideoSink = func(st Status) (FrameSink, error) {
			mu.Lock()
			defer mu.Unlock()
			if !st.Video || !st.Incoming {
				t.Errorf("VideoSink called with %+v", st)
			}
			var err error
			ivf, err = media.CreateIVF(filepath.Join(dir, "upgraded.ivf"))
			return ivf, err
		}
	}))
	connect(t, a, b, Media{Audio: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The caller upgrades.
	if err := a.mod.SetVideo(ctx, true); err != nil {
		t.Fatalf("a.SetVideo(true): %v", err)
	}
	if st := a.mod.State().Get(); st.State != StateConnected || !st.Video {
		t.Errorf("a after its upgrade: %+v", st)
	}
	for deadline := time.Now().Add(10 * time.Second); !b.mod.State().Get().Video; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b's status never said video: %+v", b.mod.State().Get())
		}
	}
	b.waitStats(20*time.Second, "upgraded video frames", func(s Stats) bool { return s.VideoFramesReceived >= 45 })
	if s := a.mod.Stats(); s.VideoFramesReceived != 0 {
		t.Errorf("a received %d video frames from b, which did not upgrade", s.VideoFramesReceived)
	}
	if rt := b.mod.RemoteTracks().Get(); rt.Video == nil {
		t.Errorf("b's remote tracks after the upgrade: %+v", rt)
	}

	// The callee upgrades too: both send video.
	if err := b.mod.SetVideo(ctx, true); err != nil {
		t.Fatalf("b.SetVideo(true): %v", err)
	}
	a.waitStats(20*time.Second, "the callee's video", func(s Stats) bool { return s.VideoFramesReceived >= 30 })

	// The caller downgrades: b stops receiving video, a still does.
	if err := a.mod.SetVideo(ctx, false); err != nil {
		t.Fatalf("a.SetVideo(false): %v", err)
	}
	n := b.mod.Stats().VideoFramesReceived
	na := a.mod.Stats().VideoFramesReceived
	a.waitStats(20*time.Second, "the callee's video after the downgrade", func(s Stats) bool { return s.VideoFramesReceived >= na+30 })
	if got := b.mod.Stats().VideoFramesReceived; got > n+2 {
		t.Errorf("b received %d video frames after a's downgrade", got-n)
	}
	for _, p := range []*peer{a, b} {
		if st := p.mod.State().Get(); st.State != StateConnected {
			t.Errorf("%s: %+v, want connected", p.name, st)
		}
		if s := p.mod.Stats(); s.DecryptErrors != 0 {
			t.Errorf("%s: %d frames did not decrypt", p.name, s.DecryptErrors)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(10 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if ivf == nil {
		t.Fatal("b's VideoSink was never called")
	}
	if got := ffprobeCount(t, filepath.Join(dir, "upgraded.ivf"), true); got < 30 {
		t.Errorf("b's recording of the upgraded call decodes to %d frames", got)
	}
}

// TestUpgradeGlare: both sides upgrade at the same moment (PROTOCOL
// §10.10): whether or not the offers cross, the caller's upgrade
// completes; the callee's either completes too or fails (it gave way: the
// callee is polite; the Go SDK's offer, never set locally before its
// answer, needs no rollback) and completes when tried again; then both
// send and receive video that decrypts and the call is still connected.
func TestUpgradeGlare(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 1)
	go func() { errs <- a.mod.SetVideo(ctx, true) }()
	bErr := b.mod.SetVideo(ctx, true)
	aErr := <-errs
	t.Logf("crossing upgrades: caller %v, callee %v", aErr, bErr)
	if aErr != nil {
		t.Fatalf("the caller's upgrade failed: %v", aErr)
	}
	if bErr != nil {
		if !errors.Is(bErr, ErrRenegotiationFailed) && !errors.Is(bErr, ErrRenegotiating) {
			t.Fatalf("the callee's upgrade: %v", bErr)
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if bErr = b.mod.SetVideo(ctx, true); bErr == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the callee's upgrade, tried again: %v", bErr)
			}
		}
	}
	for _, p := range []*peer{a, b} {
		p.waitStats(20*time.Second, "video both ways", func(s Stats) bool { return s.VideoFramesReceived >= 30 && s.VideoFramesSent >= 30 })
		if st := p.mod.State().Get(); st.State != StateConnected || !st.Video {
			t.Errorf("%s: %+v", p.name, st)
		}
		if s := p.mod.Stats(); s.DecryptErrors != 0 {
			t.Errorf("%s: %d frames did not decrypt", p.name, s.DecryptErrors)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(10 * time.Second)
}
