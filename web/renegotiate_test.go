package web_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
)

type jsEmissions struct {
	Remote       int `json:"remote"`
	RemoteTracks int `json:"remoteTracks"`
}

type jsStreams struct {
	Local  []string `json:"local"`
	Remote []string `json:"remote"`
}

// waitVideoDecoded waits until tb has decoded n more video frames than at
// from, all decrypted.
func waitVideoDecoded(t *testing.T, tb *tab, from uint64, n uint64, timeout time.Duration) jsDiag {
	t.Helper()
	return waitStats(t, tb, fmt.Sprintf("%d video frames decoded", n), timeout, func(d jsDiag) bool {
		return d.InVideo != nil && d.InVideo.FramesDecoded >= from+n && d.Frames != nil && d.Frames.Decrypted.Video > 0
	})
}

// TestCallsUpgrade: audio calls become video calls by a renegotiation
// within the call (PROTOCOL §10.10), started by either side, between a
// browser and a Go peer and between two browsers: the receiving browser's
// remote stream is emitted again with a video track that decodes (every
// frame through the E2EE worker), the Go peer's recording gains a video
// stream that decodes; the side that did not upgrade sends no video; a
// downgrade stops the video; the calls stay connected.
func TestCallsUpgrade(t *testing.T) {
	env := startCallEnv(t)

	t.Run("Go upgrades, browser receives, Go downgrades", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		tb := env.openTab(t, "carol", "")
		alias := tb.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		if err := bot.mod.Call(ctx, alias, duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		in := drive[jsIncoming](tb, 15*time.Second, "nextIncoming(10000)")
		drive[jsResult](tb, 20*time.Second, fmt.Sprintf("answer(%q)", in.CallID))
		tb.waitState("connected", 15*time.Second)
		waitInboundAudio(t, tb)
		before := drive[jsEmissions](tb, 5*time.Second, "remoteStreamCount()")

		if err := bot.mod.SetVideo(ctx, true); err != nil {
			t.Fatalf("Go SetVideo(true): %v", err)
		}
		d := waitVideoDecoded(t, tb, 0, 30, 20*time.Second)
		em := drive[jsEmissions](tb, 5*time.Second, "remoteStreamCount()")
		st := drive[jsStreams](tb, 5*time.Second, "streams()")
		t.Logf("browser after the Go upgrade: remote stream emitted %d -> %d times, tracks %v; video %dx%d, %d decoded, decrypted %d, decrypt errors %d",
			before.Remote, em.Remote, st.Remote, d.InVideo.FrameWidth, d.InVideo.FrameHeight, d.InVideo.FramesDecoded, d.Frames.Decrypted.Video, d.Frames.DecryptErrors)
		if em.Remote <= before.Remote || !slices.Contains(st.Remote, "video:live") {
			t.Errorf("the browser's remote stream was not emitted again with a video track: %+v -> %+v, %v", before, em, st.Remote)
		}
		if d.OutVideo != nil && d.OutVideo.FramesEncoded > 0 {
			t.Errorf("the browser sent video it was never asked for: %s", d)
		}
		if s := drive[jsStatus](tb, 5*time.Second, "status()"); s.State != "connected" || !s.IsVideo || len(s.Errors) != 0 {
			t.Errorf("browser status after the upgrade: %+v", s)
		}
		if d.Frames.DecryptErrors > 2 {
			t.Errorf("the browser failed to decrypt %d frames", d.Frames.DecryptErrors)
		}

		if err := bot.mod.SetVideo(ctx, false); err != nil {
			t.Fatalf("Go SetVideo(false): %v", err)
		}
		decoded := func() uint64 {
			if d := tb.stats(); d.InVideo != nil {
				return d.InVideo.FramesDecoded
			}
			return 0 // the receiver is gone with the m-line's direction
		}
		v1 := decoded()
		waitInboundAudioGrowth(t, tb, 100, 20*time.Second)
		if v2 := decoded(); v2 > v1+3 {
			t.Errorf("the browser decoded %d video frames after the Go downgrade", v2-v1)
		}
		if s := drive[jsStatus](tb, 5*time.Second, "status()"); s.State != "connected" || s.IsVideo {
			t.Errorf("browser status after the downgrade: %+v", s)
		}
		if err := bot.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		tb.waitState("hangup", 10*time.Second)
	})

	t.Run("browser upgrades, Go records, browser downgrades", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		tb := env.openTab(t, "dave", "")
		tb.setup(false)
		bot := env.newGoBot(t, "gobot2", false)
		st := callBot(ctx, t, tb, bot, false)
		if r := drive[jsResult](tb, 20*time.Second, "setVideo(true)"); !r.OK {
			t.Fatalf("setVideo(true): %+v", r)
		}
		bot.waitState(10*time.Second, "video", func(s duetcall.Status) bool { return s.Video })
		bot.waitStats("60 video frames after the browser's upgrade", 20*time.Second, func(s duetcall.Stats) bool { return s.VideoFramesReceived >= 60 })
		if s := bot.mod.Stats(); s.VideoFramesSent != 0 || s.DecryptErrors > 2 {
			t.Errorf("the Go peer after the browser's upgrade: sent %d video frames (want none), %d decrypt errors", s.VideoFramesSent, s.DecryptErrors)
		}
		if r := drive[jsResult](tb, 20*time.Second, "setVideo(false)"); !r.OK {
			t.Fatalf("setVideo(false): %+v", r)
		}
		n := bot.mod.Stats().VideoFramesReceived
		na := bot.mod.Stats().AudioFramesReceived
		bot.waitStats("100 audio frames after the downgrade", 20*time.Second, func(s duetcall.Stats) bool { return s.AudioFramesReceived >= na+100 })
		if got := bot.mod.Stats().VideoFramesReceived; got > n+3 {
			t.Errorf("the Go peer received %d video frames after the browser's downgrade", got-n)
		}
		if s := bot.mod.State().Get(); s.State != duetcall.StateConnected || s.Video {
			t.Errorf("the Go peer after the downgrade: %+v", s)
		}
		if err := bot.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		tb.waitState("hangup", 10*time.Second)
		frames, w, h := probeIVF(t, bot.recording(st.CallID))
		t.Logf("the Go peer's recording of the upgraded call decodes to %d frames of %dx%d", frames, w, h)
		if frames < 30 {
			t.Errorf("the Go recording decodes to %d video frames", frames)
		}
	})

	t.Run("browser to browser, both upgrade", func(t *testing.T) {
		alice, bob := env.browserCall(t, false, nil)
		if r := drive[jsResult](alice, 20*time.Second, "setVideo(true)"); !r.OK {
			t.Fatalf("alice setVideo(true): %+v", r)
		}
		waitVideoDecoded(t, bob, 0, 30, 20*time.Second)
		if r := drive[jsResult](bob, 20*time.Second, "setVideo(true)"); !r.OK {
			t.Fatalf("bob setVideo(true): %+v", r)
		}
		d := waitVideoDecoded(t, alice, 0, 30, 20*time.Second)
		t.Logf("alice receives bob's upgrade: %dx%d, %d decoded, decrypt errors %d", d.InVideo.FrameWidth, d.InVideo.FrameHeight, d.InVideo.FramesDecoded, d.Frames.DecryptErrors)
		for _, tb := range []*tab{alice, bob} {
			if s := drive[jsStatus](tb, 5*time.Second, "status()"); s.State != "connected" || !s.IsVideo || len(s.Errors) != 0 {
				t.Errorf("%s after both upgrades: %+v", tb.name, s)
			}
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
		bob.waitState("hangup", 10*time.Second)
	})
}
