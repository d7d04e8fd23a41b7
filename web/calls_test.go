package web_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay/turnserver"
)

// mediaWait bounds how long the call tests wait for media to flow: a
// bound for a loaded machine, not a figure (the checks wait for frames to
// arrive, they do not count what arrives in a fixed window).
const mediaWait = 30 * time.Second

// mediaFrames is how many more video frames a check waits to see decoded
// (and audio to grow) before it passes.
const mediaFrames = 30

// checkVideoSendrecv checks the seed's checklist item: both sides' m=video
// is a=sendrecv (STEP 6.5 / ANSWER STEP 3.5), as the browser negotiated it.
func checkVideoSendrecv(t *testing.T, who string, d jsDiag) {
	t.Helper()
	for side, lines := range map[string][]string{"local": d.MLines.Local, "remote": d.MLines.Remote} {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, "m=video ") {
				found = true
				if !strings.HasSuffix(l, "a=sendrecv") {
					t.Errorf("%s: %s m=video line %q is not a=sendrecv", who, side, l)
				}
			}
		}
		if !found {
			t.Errorf("%s: %s description has no m=video line: %q", who, side, lines)
		}
	}
}

// checkBrowserMedia waits until the browser's inbound media grows (audio
// bytes, and mediaFrames more decoded video frames) and checks that it
// decrypts with no more than a handful of failures, decodes most of what
// arrives (a scrambled clear header would make the decoder drop frames
// and ask for key frames), and sends encrypted VP8 and Opus with the
// seed's sender parameters. It waits for media instead of sampling a
// window, so a busy machine only makes it slower.
func checkBrowserMedia(t *testing.T, tb *tab, video bool) (first, last jsDiag) {
	t.Helper()
	// The first sample once media flows: a second of decoded video. (A
	// Go peer sends from a file and cannot make a key frame on request: when
	// its first key frame is lost at the start, the frames until the next
	// one are dropped; those are not counted.)
	for deadline := time.Now().Add(mediaWait); ; time.Sleep(200 * time.Millisecond) {
		first = tb.stats()
		if first.InAudio != nil && (!video || first.InVideo != nil && first.InVideo.FramesDecoded >= 30) || time.Now().After(deadline) {
			break
		}
	}
	grown := func(d jsDiag) bool {
		if d.InAudio == nil || first.InAudio == nil || d.InAudio.BytesReceived <= first.InAudio.BytesReceived {
			return false
		}
		return !video || d.InVideo != nil && first.InVideo != nil && d.InVideo.FramesDecoded >= first.InVideo.FramesDecoded+mediaFrames
	}
	for deadline := time.Now().Add(mediaWait); ; time.Sleep(200 * time.Millisecond) {
		last = tb.stats()
		if grown(last) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s: %s", tb.name, last)
	if last.InAudio == nil || first.InAudio == nil || last.InAudio.BytesReceived <= first.InAudio.BytesReceived {
		t.Errorf("%s: inbound audio does not grow within %v: %v → %v", tb.name, mediaWait, first.InAudio, last.InAudio)
	}
	if last.Frames == nil || last.Frames.Encrypted.Audio == 0 || last.Frames.Decrypted.Audio == 0 {
		t.Errorf("%s: E2EE worker counters %+v: want audio frames encrypted and decrypted", tb.name, last.Frames)
	} else if last.Frames.DecryptErrors > 5 {
		t.Errorf("%s: %d frames failed to decrypt (last: %s)", tb.name, last.Frames.DecryptErrors, last.Frames.LastError)
	}
	if !video {
		return first, last
	}
	if last.InVideo == nil || first.InVideo == nil {
		t.Fatalf("%s: no inbound video stats: %s", tb.name, last)
	}
	decoded := last.InVideo.FramesDecoded - first.InVideo.FramesDecoded
	if last.InVideo.FramesDecoded < first.InVideo.FramesDecoded+mediaFrames {
		t.Errorf("%s: inbound video framesDecoded %d → %d within %v; want %d more", tb.name, first.InVideo.FramesDecoded, last.InVideo.FramesDecoded, mediaWait, mediaFrames)
	}
	// Frames the decoder drops: a loaded machine drops some, a frame
	// mangled by the encryption (its clear header) makes it drop most.
	if d := last.InVideo.FramesDropped - first.InVideo.FramesDropped; d > decoded {
		t.Errorf("%s: %d inbound video frames dropped while %d decoded", tb.name, d, decoded)
	}
	if last.OutVideo == nil || last.OutVideo.FramesEncoded == 0 || last.Frames.Encrypted.Video == 0 {
		t.Fatalf("%s: the browser sends no encrypted video: %s", tb.name, last)
	}
	if !strings.EqualFold(last.OutVideo.Codec, "video/VP8") || !strings.EqualFold(last.InVideo.Codec, "video/VP8") ||
		!strings.EqualFold(last.OutAudio.Codec, "audio/opus") || !strings.EqualFold(last.InAudio.Codec, "audio/opus") {
		t.Errorf("%s: codecs out %s/%s, in %s/%s; want VP8 and Opus only", tb.name, last.OutVideo.Codec, last.OutAudio.Codec, last.InVideo.Codec, last.InAudio.Codec)
	}
	if vs := last.VideoSender; vs == nil || vs.MaxBitrate != 1_500_000 || vs.Degradation != "maintain-framerate" {
		t.Errorf("%s: video sender parameters %+v; want maxBitrate 1500000 and maintain-framerate", tb.name, vs)
	}
	checkVideoSendrecv(t, tb.name, last)
	return first, last
}

// checkGoMedia waits until the Go side decrypts growing audio (and
// mediaFrames more video frames).
func checkGoMedia(t *testing.T, b *goBot, video bool) {
	t.Helper()
	s1 := b.mod.Stats()
	s2 := s1
	for deadline := time.Now().Add(mediaWait); ; time.Sleep(100 * time.Millisecond) {
		s2 = b.mod.Stats()
		if s2.AudioFramesReceived > s1.AudioFramesReceived && (!video || s2.VideoFramesReceived >= s1.VideoFramesReceived+mediaFrames) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s: received frames a%d/v%d (decrypt errors %d), bytes %d, sent a%d/v%d, pair %s/%s",
		b.name, s2.AudioFramesReceived, s2.VideoFramesReceived, s2.DecryptErrors, s2.BytesReceived,
		s2.AudioFramesSent, s2.VideoFramesSent, s2.LocalCandidate, s2.RemoteCandidate)
	if s2.AudioFramesReceived <= s1.AudioFramesReceived {
		t.Errorf("%s: audio frames received %d → %d within %v: not growing", b.name, s1.AudioFramesReceived, s2.AudioFramesReceived, mediaWait)
	}
	if video && s2.VideoFramesReceived < s1.VideoFramesReceived+mediaFrames {
		t.Errorf("%s: video frames received %d → %d within %v: want %d more", b.name, s1.VideoFramesReceived, s2.VideoFramesReceived, mediaWait, mediaFrames)
	}
	if s2.DecryptErrors > 5 {
		t.Errorf("%s: %d frames failed to decrypt", b.name, s2.DecryptErrors)
	}
}

// checkRecording decodes the Go side's IVF recording of a call with ffprobe.
func checkRecording(t *testing.T, b *goBot, callID string, min int) {
	t.Helper()
	path := b.recording(callID)
	if path == "" {
		t.Fatalf("%s: no recording for call %s", b.name, callID)
	}
	frames, w, h := probeIVF(t, path)
	t.Logf("%s: recording %s: ffprobe decodes %d VP8 frames of %dx%d", b.name, path, frames, w, h)
	if frames < min || w == 0 || h == 0 {
		t.Errorf("%s: recording decodes %d frames of %dx%d; want at least %d", b.name, frames, w, h, min)
	}
}

// jsMedia is what the driver's media() reports.
type jsMedia struct {
	Settings struct {
		Width     int     `json:"width"`
		Height    int     `json:"height"`
		FrameRate float64 `json:"frameRate"`
	} `json:"settings"`
	Constraints map[string]any `json:"constraints"`
	Legacy      struct {
		Local, Remote, LocalTracks, RemoteTracks int
	} `json:"legacy"`
}

// checkCapture checks the camera was asked for the seed's 1280x720 at 30
// fps (ideal) and delivers 1280x720 (Chromium's fake camera runs at its own
// 20 fps), and that the legacy stream callbacks fired with the streams.
func checkCapture(t *testing.T, tb *tab) {
	t.Helper()
	m := drive[jsMedia](tb, 5*time.Second, "media()")
	c := fmt.Sprint(m.Constraints["width"], m.Constraints["height"], m.Constraints["frameRate"])
	if c != "map[ideal:1280] map[ideal:720] map[ideal:30]" && c != "1280 720 30" { // Chromium reports bare ideals
		t.Errorf("%s: camera constraints %v; want ideal 1280x720 at 30 fps", tb.name, m.Constraints)
	}
	if m.Settings.Width != 1280 || m.Settings.Height != 720 || m.Settings.FrameRate < 15 {
		t.Errorf("%s: camera %dx%d at %.0f fps; want 1280x720", tb.name, m.Settings.Width, m.Settings.Height, m.Settings.FrameRate)
	}
	tb.t.Logf("%s: camera %dx%d at %.0f fps (asked: %v)", tb.name, m.Settings.Width, m.Settings.Height, m.Settings.FrameRate, m.Constraints)
	if m.Legacy.Local != 1 || m.Legacy.LocalTracks != 2 || m.Legacy.Remote != 1 || m.Legacy.RemoteTracks < 1 {
		t.Errorf("%s: legacy onLocalStream/onRemoteStream calls %+v; want one each with the streams", tb.name, m.Legacy)
	}
}

// jsGUM is one getUserMedia call the driver recorded (gumLog).
type jsGUM struct {
	Audio bool `json:"audio"`
	Video bool `json:"video"`
}

func TestCallsWithGo(t *testing.T) {
	env := startCallEnv(t)
	ffprobePath(t)

	t.Run("browser calls Go", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		a := alice.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bot.alias)); !r.OK {
			t.Fatalf("call: %s: %s", r.Name, r.Message)
		}
		if isVideo := bot.waitRing(10 * time.Second); !isVideo {
			t.Errorf("the Go side rang for an audio call; the offer had video")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := bot.mod.Answer(ctx); err != nil {
			t.Fatalf("Go Answer: %v", err)
		}
		st := alice.waitState("connected", 15*time.Second)
		bst := bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
		if st.Peer != string(bot.alias) || !st.IsVideo || bst.Peer != a || !bst.Video {
			t.Errorf("status: browser %+v, Go %+v", st, bst)
		}
		checkBrowserMedia(t, alice, true)
		checkGoMedia(t, bot, true)
		checkCapture(t, alice)

		// An ICE restart (what the browser does at its first ICE failure):
		// an ice_restart offer the Go side answers; media goes on.
		if !drive[bool](alice, 5*time.Second, "forceICERestart()") {
			t.Fatal("forceICERestart: no call")
		}
		waitDiag(t, alice, "the ICE restart", func(d jsDiag) bool { return d.Restarts == 1 && d.State == "connected" })
		if _, d := checkBrowserMedia(t, alice, true); d.Restarts != 1 || d.State != "connected" {
			t.Errorf("browser after an ICE restart: %d restarts, state %s", d.Restarts, d.State)
		}
		if gs := bot.mod.Stats(); gs.ICERestarts != 1 {
			t.Errorf("Go side: %d ICE restarts, want 1 (the browser's)", gs.ICERestarts)
		}
		for _, want := range []string{"🔴 [CallModule] STEP 6.5: offer m-lines", "📊 [Diag #1]", "📊 [Diag #2]"} {
			line, ok := alice.log.find(want)
			if !ok {
				t.Errorf("alice's console has no %q line", want)
			} else if strings.Contains(want, "6.5") && !strings.Contains(line, "m=video 9 UDP/TLS/RTP/SAVPF 96 97 a=sendrecv") {
				t.Errorf("STEP 6.5 line %q: want the VP8 (and its RTX) m=video line, a=sendrecv", line)
			}
		}

		if r := drive[jsResult](alice, 10*time.Second, "hangup()"); !r.OK {
			t.Fatalf("hangup: %+v", r)
		}
		end := bot.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
		if end.State != duetcall.StateHangup || end.Reason != duetcall.ReasonUserHangup {
			t.Errorf("Go status after the browser hung up: %+v", end)
		}
		checkRecording(t, bot, st.CallID, 20)
	})

	t.Run("Go calls browser", func(t *testing.T) {
		bob := env.openTab(t, "bob", "")
		b := bob.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := bot.mod.Call(ctx, b, duetcall.Media{Audio: true, Video: true}); err != nil {
			t.Fatalf("Go Call: %v", err)
		}
		in := drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
		if in.From != string(bot.alias) || !in.IsVideo {
			t.Errorf("incoming %+v: want a video call from %s", in, bot.alias)
		}
		if r := drive[jsResult](bob, 20*time.Second, "answer()"); !r.OK {
			t.Fatalf("answer: %s: %s", r.Name, r.Message)
		}
		st := bob.waitState("connected", 15*time.Second)
		bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
		checkBrowserMedia(t, bob, true)
		checkGoMedia(t, bot, true)

		// The browser rotates the media keys (call_rekey, as its worker's
		// rekey-needed would); the Go side answers and both send under
		// epoch 1, still decrypting each other.
		if !drive[bool](bob, 5*time.Second, "forceRekey()") {
			t.Fatal("forceRekey: no call")
		}
		waitDiag(t, bob, "epoch 1 both ways", func(d jsDiag) bool {
			return d.Frames != nil && d.Frames.SendEpoch == 1 && d.Frames.RecvEpoch == 1 && bot.mod.Stats().KeyEpoch == 1
		})
		_, d := checkBrowserMedia(t, bob, true)
		checkGoMedia(t, bot, true)
		if gs := bot.mod.Stats(); gs.KeyEpoch != 1 || d.Frames == nil || d.Frames.SendEpoch != 1 || d.Frames.RecvEpoch != 1 {
			t.Errorf("after the browser's rekey: Go sends under epoch %d, browser E2EE %+v; want epoch 1 everywhere", gs.KeyEpoch, d.Frames)
		}
		if err := bot.mod.Hangup(); err != nil {
			t.Fatalf("Go Hangup: %v", err)
		}
		end := bob.waitState("hangup", 5*time.Second)
		if end.Reason != "user_hangup" {
			t.Errorf("browser status after the Go side hung up: %+v", end)
		}
		checkRecording(t, bot, st.CallID, 20)
	})
}

// TestCallsLifecycleWithGo: the seed's lifecycle between the browser and
// the Go SDK: reject both ways, busy both ways, no answer (the browser's
// answer timeout shortened through the internal test hook), hangup while
// ringing, an offline callee, and a relay-only call through the embedded
// TURN server.
func TestCallsLifecycleWithGo(t *testing.T) {
	env := startCallEnv(t)
	ctx := context.Background()

	t.Run("caller's key changed", func(t *testing.T) {
		// The browser pins the bot's keys on a first call; the bot's
		// signing key then registers a new X25519 key (same alias) and
		// calls again: nothing rings, onError gets ErrKeyChanged.
		alice := env.openTab(t, "alice", "")
		a := alice.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		if err := bot.mod.Call(ctx, a, duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		if in := drive[jsIncoming](alice, 10*time.Second, "nextIncoming(10000)"); in.From != string(bot.alias) {
			t.Fatalf("incoming %+v, want a call from %s", in, bot.alias)
		}
		drive[jsResult](alice, 5*time.Second, "reject()")
		bot.waitState(10*time.Second, "rejected", func(s duetcall.Status) bool { return s.State == duetcall.StateRejected })
		drive[bool](alice, 5*time.Second, "reset()")

		agree, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		changed := env.newGoBotWith(t, "gobot2", botOptions{identity: &identity.Identity{SigningKey: bot.id.SigningKey, AgreementKey: agree}})
		if changed.alias != bot.alias {
			t.Fatalf("re-registration gave alias %s, want %s", changed.alias, bot.alias)
		}
		if err := changed.mod.Call(ctx, a, duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		e := drive[struct{ Name, Message string }](alice, 15*time.Second, "waitError(10000)")
		if e.Name != "ErrKeyChanged" || !strings.Contains(e.Message, string(bot.alias)) {
			t.Errorf("onError got %s: %s; want ErrKeyChanged naming %s", e.Name, e.Message, bot.alias)
		}
		if s := drive[jsStatus](alice, 5*time.Second, "status()"); s.State == "ringing" || slices.Contains(s.History, "ringing") {
			t.Errorf("browser after an offer from a changed key: %+v; it must not ring", s)
		}
		if err := changed.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		// Calling the changed key is refused too, before any offer.
		if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias)); r.OK || r.Name != "ErrKeyChanged" {
			t.Errorf("call to a changed key: %+v, want ErrKeyChanged", r)
		}
		select {
		case <-changed.rings:
			t.Error("the changed key rang for a call the browser must refuse")
		case <-time.After(500 * time.Millisecond):
		}
	})

	t.Run("Go rejects", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias))
		if isVideo := bot.waitRing(10 * time.Second); isVideo {
			t.Errorf("the Go side rang for a video call; the offer was audio only")
		}
		if err := bot.mod.Reject(); err != nil {
			t.Fatal(err)
		}
		st := alice.waitState("rejected", 5*time.Second)
		// The callee's refusal is an error for the caller (PROTOCOL §10.3).
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "declined" || e.Name != "ErrDeclined" {
			t.Errorf("browser after the Go side rejected: %+v, error %+v; want declined and ErrDeclined", st, e)
		}
	})

	t.Run("held session, key lookup fails", func(t *testing.T) {
		// The browser holds a session with the bot from a first call; a
		// key lookup that then fails (not a changed key) does not stop its
		// next call: the offer goes out sealed to the pinned keys.
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		ring := func() {
			t.Helper()
			if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias)); !r.OK {
				t.Fatalf("call: %s: %s", r.Name, r.Message)
			}
			bot.waitRing(10 * time.Second)
			if err := bot.mod.Reject(); err != nil {
				t.Fatal(err)
			}
			alice.waitState("rejected", 5*time.Second)
			drive[bool](alice, 5*time.Second, "reset()")
		}
		ring()
		drive[bool](alice, 5*time.Second, "failKeyLookups(true)")
		ring()
	})

	t.Run("browser rejects", func(t *testing.T) {
		bob := env.openTab(t, "bob", "")
		b := bob.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		if err := bot.mod.Call(ctx, b, duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		if in := drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)"); in.IsVideo {
			t.Errorf("incoming %+v: an audio call rang as video", in)
		}
		if r := drive[jsResult](bob, 5*time.Second, "reject()"); !r.OK {
			t.Fatalf("reject: %+v", r)
		}
		st := bot.waitState(5*time.Second, "rejected", func(s duetcall.Status) bool { return s.State.Terminal() })
		if st.State != duetcall.StateRejected || st.Reason != duetcall.ReasonDeclined {
			t.Errorf("Go status after the browser rejected: %+v", st)
		}
	})

	t.Run("busy both ways", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		a := alice.setup(false)
		carol := env.openTab(t, "carol", "")
		carol.setup(false)
		bot1 := env.newGoBot(t, "gobot1", false)
		bot2 := env.newGoBot(t, "gobot2", false)
		// alice and bot1 in a call (audio: cheaper).
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot1.alias))
		bot1.waitRing(10 * time.Second)
		if err := bot1.mod.Answer(ctx); err != nil {
			t.Fatal(err)
		}
		alice.waitState("connected", 15*time.Second)
		// The Go side calls the busy browser.
		if err := bot2.mod.Call(ctx, a, duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		st := bot2.waitState(10*time.Second, "busy", func(s duetcall.Status) bool { return s.State.Terminal() })
		if st.State != duetcall.StateRejected || st.Reason != duetcall.ReasonBusy {
			t.Errorf("Go caller of a busy browser: %+v", st)
		}
		// The browser calls the busy Go side.
		drive[jsResult](carol, 20*time.Second, fmt.Sprintf("call(%q, false)", bot1.alias))
		cst := carol.waitState("rejected", 10*time.Second)
		if cst.Reason != "busy" {
			t.Errorf("browser caller of a busy Go peer: %+v", cst)
		}
		// The call in progress is untouched.
		if s := drive[jsStatus](alice, 5*time.Second, "status()"); s.State != "connected" {
			t.Errorf("alice's call after the busy calls: %+v", s)
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
		bot1.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State == duetcall.StateHangup })
	})

	t.Run("no answer", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		drive[map[string]float64](alice, 5*time.Second, "setTimings({answer: 2500})")
		bot := env.newGoBot(t, "gobot", false)
		start := time.Now()
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bot.alias))
		bot.waitRing(10 * time.Second)
		st := alice.waitState("ended", 10*time.Second)
		took := time.Since(start)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "no_answer" || e.Name != "ErrNoAnswer" {
			t.Errorf("browser after its answer timeout: %+v, error %+v", st, e)
		}
		// The Go callee stops ringing: the browser sent call_hangup (no_answer); a missed call there.
		gst := bot.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
		if gst.State != duetcall.StateHangup || gst.Reason != duetcall.ReasonMissed {
			t.Errorf("Go callee after the caller's answer timeout: %+v", gst)
		}
		if err := bot.mod.Answer(ctx); err == nil {
			t.Error("the Go callee could still answer after the caller gave up")
		}
		t.Logf("no answer: ended after %v (timeout shortened to 2.5 s)", took.Round(10*time.Millisecond))
	})

	t.Run("hangup while ringing", func(t *testing.T) {
		bob := env.openTab(t, "bob", "")
		b := bob.setup(false)
		bot := env.newGoBot(t, "gobot", false)
		if err := bot.mod.Call(ctx, b, duetcall.Media{Audio: true, Video: true}); err != nil {
			t.Fatal(err)
		}
		drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
		start := time.Now()
		if err := bot.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		st := bob.waitState("hangup", 5*time.Second)
		t.Logf("ringing dismissed %v after the caller hung up", time.Since(start).Round(time.Millisecond))
		// A missed call, not an error (PROTOCOL §10.3).
		if st.Reason != "missed" || len(st.Errors) != 0 {
			t.Errorf("browser after the caller hung up while ringing: %+v; want missed, no error", st)
		}
		if r := drive[jsResult](bob, 5*time.Second, "answer()"); r.OK || r.Name != "ErrNoIncomingCall" {
			t.Errorf("answer after the caller hung up: %+v, want ErrNoIncomingCall", r)
		}
		// reject() is a Promise (duet.d.ts); with nothing ringing it
		// resolves, as hangup() does (issue 14), and never throws.
		rj := drive[struct {
			Threw, Promise, OK bool
			Name               string
		}](bob, 5*time.Second, "rejectDirect()")
		if rj.Threw || !rj.Promise || !rj.OK {
			t.Errorf("reject() with nothing ringing: %+v, want a promise that resolves", rj)
		}
	})

	t.Run("offline", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		off := env.newGoBot(t, "offline", false)
		off.mod.Close()
		off.c.Close()
		time.Sleep(200 * time.Millisecond)
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", off.alias))
		st := alice.waitState("ended", 5*time.Second)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "offline" || e.Name != "ErrOffline" {
			t.Errorf("browser calling an offline alias: %+v, error %+v", st, e)
		}
	})

	t.Run("relay only through the embedded TURN", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(true)
		bot := env.newGoBot(t, "gobot", true)
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bot.alias))
		bot.waitRing(10 * time.Second)
		if err := bot.mod.Answer(ctx); err != nil {
			t.Fatal(err)
		}
		alice.waitState("connected", 15*time.Second)
		bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
		_, last := checkBrowserMedia(t, alice, true)
		checkGoMedia(t, bot, true)
		gs := bot.mod.Stats()
		if last.Pair != "relay/relay" || gs.LocalCandidate != "relay" {
			t.Errorf("selected pair: browser %q, Go %s/%s; want relay on both sides (TURN %s)", last.Pair, gs.LocalCandidate, gs.RemoteCandidate, env.turnAddr)
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
	})

	// The Go peer goes silent without hanging up: its TURN server (the only
	// path, both sides relaying) stops and its signaling sends are cut.
	// The browser's connection goes disconnected and the call ends after
	// the disconnected timeout (shortened; the media timeout made long, so
	// only that timer can end it).
	t.Run("disconnected", func(t *testing.T) {
		turn, err := turnserver.Start(ctx, turnserver.Config{
			ListenAddr: "127.0.0.1:0", Secret: env.turnSecret,
			AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			Logger:     slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatalf("turnserver: %v", err)
		}
		closeTURN := sync.OnceFunc(func() { _ = turn.Close() })
		t.Cleanup(closeTURN)
		alice := env.openTab(t, "alice", "")
		alice.setup(true)
		drive[map[string]float64](alice, 5*time.Second, "setTimings({disconnected: 1500, media: 60000})")
		bot := env.newGoBotWith(t, "gobot", botOptions{alwaysRelay: true, turn: turn.Addr().(*net.UDPAddr)})
		callBot(ctx, t, alice, bot, false)
		if d := alice.stats(); d.Pair != "relay/relay" {
			t.Fatalf("selected pair %q; the test needs relay/relay (the Go side's own TURN server is the path it cuts)", d.Pair)
		}

		cut := time.Now()
		bot.sig.cut.Store(true)
		closeTURN()
		st := alice.waitState("ended", 40*time.Second)
		t.Logf("browser ended %v after the Go side went silent: %+v", time.Since(cut).Round(100*time.Millisecond), st)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "disconnected" || e.Name != "ErrDisconnected" {
			t.Errorf("browser after its peer went silent: reason %q, error %+v; want disconnected and ErrDisconnected", st.Reason, e)
		}
		if _, ok := alice.log.waitFor("disconnected; the call ends after 1.5 s", 2*time.Second); !ok {
			t.Error("the browser never logged its disconnected timer starting")
		}
		if took := time.Duration(st.StateAt["ended"]-float64(cut.UnixMilli())) * time.Millisecond; took < 1500*time.Millisecond {
			t.Errorf("the call ended %v after the peer went silent, sooner than the disconnected timeout (1.5 s)", took)
		}
	})

	// The Go peer stops sending media; ICE and DTLS stay up. The browser
	// ends the call after the media timeout (shortened) and tells the Go
	// side why.
	t.Run("media timeout", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		const mediaTimeout = 3 * time.Second
		drive[map[string]float64](alice, 5*time.Second, fmt.Sprintf("setTimings({media: %d})", mediaTimeout.Milliseconds()))
		gate := newMediaGate()
		bot := env.newGoBotWith(t, "gobot", botOptions{media: gate})
		callBot(ctx, t, alice, bot, false)

		stop := time.Now()
		gate.close()
		st := alice.waitState("ended", 20*time.Second)
		t.Logf("browser ended %v after the Go side stopped its media: %+v", time.Since(stop).Round(100*time.Millisecond), st)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "media_timeout" || e.Name != "ErrMediaTimeout" {
			t.Errorf("browser after its peer's media stopped: reason %q, error %+v; want media_timeout and ErrMediaTimeout", st.Reason, e)
		}
		// Not early: the last packets left the Go side at most a frame
		// (20 ms of audio) before the gate closed.
		if took := time.Duration(st.StateAt["ended"]-float64(stop.UnixMilli())) * time.Millisecond; took < mediaTimeout-200*time.Millisecond {
			t.Errorf("the call ended %v after the peer's media stopped, sooner than the media timeout (%v)", took, mediaTimeout)
		}
		gst := bot.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
		if gst.State != duetcall.StateHangup || gst.Reason != duetcall.ReasonMediaTimeout {
			t.Errorf("Go side after the browser's media timeout: %+v; want hangup (media_timeout)", gst)
		}
	})
}

// waitInboundAudio waits until the tab receives audio: the call's media
// flows before a test stops it.
func waitInboundAudio(t *testing.T, tb *tab) {
	t.Helper()
	waitStats(t, tb, "audio received", 10*time.Second, func(d jsDiag) bool {
		return d.InAudio != nil && d.InAudio.BytesReceived > 0 && d.Frames != nil && d.Frames.Decrypted.Audio > 0
	})
}

// TestCallsBrowserToBrowser: a video call between two tabs through the
// relay (media both ways, a media rekey, the answer re-entrancy lock), then
// one tab closes mid-call and the other ends by itself; and the
// getUserMedia errors of the seed.
func TestCallsBrowserToBrowser(t *testing.T) {
	env := startCallEnv(t)

	t.Run("video call, rekey, page closed", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		a := alice.setup(false)
		bob := env.openTab(t, "bob", "")
		b := bob.setup(false)
		// bob encrypts through the older createEncodedStreams API, alice
		// through RTCRtpScriptTransform: the two interoperate.
		if mode := drive[string](bob, 5*time.Second, "setE2EEMode('encoded-streams')"); mode != "encoded-streams" {
			t.Fatalf("bob's E2EE mode %q", mode)
		}
		if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", b)); !r.OK {
			t.Fatalf("call: %+v", r)
		}
		in := drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
		if in.From != string(a) || !in.IsVideo {
			t.Errorf("incoming %+v: want a video call from %s", in, a)
		}
		two := drive[struct{ First, Second jsResult }](bob, 20*time.Second, "answerTwice()")
		if !two.First.OK || two.Second.OK || two.Second.Message != "answer() called while already answering" {
			t.Errorf("answer twice: %+v; want the first to succeed and the second to fail with the seed's message", two)
		}
		if e := drive[jsError](bob, 5*time.Second, "waitError(2000)"); e.Message != "answer() called while already answering" {
			t.Errorf("onError after the second answer: %+v", e)
		}
		alice.waitState("connected", 15*time.Second)
		bob.waitState("connected", 15*time.Second)
		checkBrowserMedia(t, alice, true)
		if _, d := checkBrowserMedia(t, bob, true); d.E2EE != "encoded-streams" {
			t.Errorf("bob encrypted with %q, want the createEncodedStreams fallback", d.E2EE)
		}
		checkCapture(t, bob)

		// alice's worker signals rekey-needed (its key budget shrunk through
		// the frame cipher's test hook): she sends call_rekey, bob replies,
		// and media keeps flowing under epoch 1 both ways.
		if !drive[bool](alice, 5*time.Second, "rekeyAfter(20)") {
			t.Fatal("rekeyAfter: no call")
		}
		for _, tb := range []*tab{alice, bob} {
			waitDiag(t, tb, "epoch 1 both ways", func(d jsDiag) bool {
				return d.Frames != nil && d.Frames.SendEpoch == 1 && d.Frames.RecvEpoch == 1
			})
		}
		for _, tb := range []*tab{alice, bob} {
			_, d := checkBrowserMedia(t, tb, true)
			if d.Frames == nil || d.Frames.SendEpoch != 1 || d.Frames.RecvEpoch != 1 {
				t.Errorf("%s after the rekey: E2EE epochs %+v, want send and receive epoch 1", tb.name, d.Frames)
			}
		}

		// bob's page goes away without hanging up.
		start := time.Now()
		bob.close()
		st := alice.waitState("ended", 25*time.Second)
		t.Logf("alice ended %v after bob's page closed: %+v", time.Since(start).Round(100*time.Millisecond), st)
		if st.Reason != "disconnected" && st.Reason != "media_timeout" && st.Reason != "ice_failed" {
			t.Errorf("alice after bob's page closed: %+v", st)
		}
	})

	t.Run("getUserMedia errors", func(t *testing.T) {
		alice := env.openTab(t, "alice", "")
		alice.setup(false)
		bob := env.openTab(t, "bob", "")
		b := bob.setup(false)

		drive[bool](alice, 5*time.Second, "breakMedia('deny')")
		r := drive[jsResult](alice, 10*time.Second, fmt.Sprintf("call(%q, true)", b))
		e := drive[jsError](alice, 5*time.Second, "waitError(2000)")
		st := alice.waitState("ended", 5*time.Second)
		if r.OK || r.Name != "NotAllowedError" || e.Name != "NotAllowedError" || st.Reason != "error" {
			t.Errorf("permission denied: call %+v, onError %+v, status %+v", r, e, st)
		}
		if n := drive[[]jsGUM](alice, 5*time.Second, "gumLog()"); len(n) != 1 {
			t.Errorf("permission denied: getUserMedia calls %+v, want one", n)
		}

		// Only the camera fails (audio alone would work): the seed's 1.0.25
		// rule, an error for the app and no audio-only retry.
		drive[bool](alice, 5*time.Second, "reset()")
		drive[bool](alice, 5*time.Second, "breakMedia('video')")
		r = drive[jsResult](alice, 10*time.Second, fmt.Sprintf("call(%q, true)", b))
		e = drive[jsError](alice, 5*time.Second, "waitError(2000)")
		st = alice.waitState("ended", 5*time.Second)
		if r.OK || r.Name != "NotReadableError" || e.Name != r.Name || e.Message != r.Message || st.Reason != "error" {
			t.Errorf("camera failure: call %+v, onError %+v, status %+v; want call() to reject with the error onError shows", r, e, st)
		}
		if n := drive[[]jsGUM](alice, 5*time.Second, "gumLog()"); len(n) != 1 || !n[0].Audio || !n[0].Video {
			t.Errorf("camera failure: getUserMedia calls %+v, want exactly one, for audio and video (no audio-only retry)", n)
		}
		if s := drive[jsStatus](bob, 5*time.Second, "status()"); s.State != "idle" {
			t.Errorf("bob after alice's camera failed: %+v, want idle (nothing offered)", s)
		}

		drive[bool](alice, 5*time.Second, "reset()")
		drive[map[string]float64](alice, 5*time.Second, "setTimings({gum: 600})")
		drive[bool](alice, 5*time.Second, "breakMedia('hang')")
		r = drive[jsResult](alice, 10*time.Second, fmt.Sprintf("call(%q, true)", b))
		e = drive[jsError](alice, 5*time.Second, "waitError(2000)")
		if r.OK || e.Message != "getUserMedia timeout after 600ms" {
			t.Errorf("getUserMedia that never settles: call %+v, onError %+v; want the seed's timeout error (6000ms, shortened)", r, e)
		}
		// Nothing was offered: bob never rang.
		if s := drive[jsStatus](bob, 5*time.Second, "status()"); s.State != "idle" {
			t.Errorf("bob: %+v, want idle", s)
		}

		// A getUserMedia that resolves after the timeout: its stream is
		// stopped (camera and microphone released), never published.
		drive[bool](alice, 5*time.Second, "reset()")
		drive[bool](alice, 5*time.Second, "breakMedia('late')")
		r = drive[jsResult](alice, 10*time.Second, fmt.Sprintf("call(%q, true)", b))
		if r.OK || r.Name != "TimeoutError" {
			t.Errorf("late getUserMedia: call %+v, want the timeout error", r)
		}
		late := drive[struct {
			Tracks    []string `json:"tracks"`
			Published bool     `json:"published"`
		}](alice, 10*time.Second, "releaseLate()")
		if len(late.Tracks) != 2 || late.Published {
			t.Errorf("the late stream: %+v, want two tracks, not published", late)
		}
		for _, tr := range late.Tracks {
			if !strings.HasSuffix(tr, ":ended") {
				t.Errorf("the stream getUserMedia delivered after its timeout has track %s, want ended (camera and microphone left live)", tr)
			}
		}
	})
}

// jsRekey is the driver's rekeyState(): the call's agreed epoch and the
// one its worker sends under, whether a call_rekey of its own awaits its
// reply, the call_rekey it sent and the rekey-needed signals it ignored.
type jsRekey struct {
	Epoch      int  `json:"epoch"`
	SendEpoch  int  `json:"sendEpoch"`
	Requesting bool `json:"requesting"`
	Requests   int  `json:"requests"`
	Replies    int  `json:"replies"`
	Ignored    int  `json:"ignored"`
}

// rekeySide is one tab's view of a rekey: its E2EE worker's counters and
// video stats (a Diag sample) and its call module's rekey state.
type rekeySide struct {
	d jsDiag
	r jsRekey
}

func (s rekeySide) String() string {
	return fmt.Sprintf("rekey %+v, diag %s", s.r, s.d)
}

// settledOn reports whether the side agreed on epoch and sends and
// receives under it, with no call_rekey of its own outstanding.
func (s rekeySide) settledOn(epoch int) bool {
	return s.r.Epoch == epoch && s.r.SendEpoch == epoch && !s.r.Requesting && s.d.Frames != nil &&
		s.d.Frames.SendEpoch == epoch && s.d.Frames.RecvEpoch == epoch
}

func (s rekeySide) decoded() uint64 {
	if s.d.InVideo == nil {
		return 0
	}
	return s.d.InVideo.FramesDecoded
}

func sampleRekey(tb *tab) rekeySide {
	tb.t.Helper()
	d := tb.stats()
	r := drive[*jsRekey](tb, 5*time.Second, "rekeyState()")
	if r == nil {
		st := drive[jsStatus](tb, 5*time.Second, "status()")
		tb.t.Fatalf("%s: the call is over: %s (%s), errors %+v, history %v", tb.name, st.State, st.Reason, st.Errors, st.History)
	}
	return rekeySide{d: d, r: *r}
}

// waitRekey samples the tabs until ok holds for every one, and returns
// the last samples; it fails the test after timeout.
func waitRekey(t *testing.T, tabs []*tab, timeout time.Duration, what string, ok func(i int, s rekeySide) bool) []rekeySide {
	t.Helper()
	out := make([]rekeySide, len(tabs))
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		all := true
		for i, tb := range tabs {
			out[i] = sampleRekey(tb)
			all = ok(i, out[i]) && all
		}
		if all {
			return out
		}
		if time.Now().After(deadline) {
			for i, tb := range tabs {
				t.Logf("%s: %s", tb.name, out[i])
			}
			t.Fatalf("no %s within %v", what, timeout)
		}
	}
}

// checkRekeyed waits until both tabs settled on epoch, then until each
// decoded 30 more video frames under it, and checks that no frame failed
// to decrypt meanwhile, that both still send and receive under epoch and
// that the call is connected. It returns the call_rekey sent, both sides.
func checkRekeyed(t *testing.T, tabs []*tab, epoch int) int {
	t.Helper()
	settled := waitRekey(t, tabs, 10*time.Second, fmt.Sprintf("switch to epoch %d on both sides", epoch),
		func(_ int, s rekeySide) bool { return s.settledOn(epoch) })
	last := waitRekey(t, tabs, 10*time.Second, fmt.Sprintf("video decoding under epoch %d", epoch),
		func(i int, s rekeySide) bool { return s.decoded() >= settled[i].decoded()+30 })
	sent := 0
	for i, tb := range tabs {
		s := last[i]
		t.Logf("%s after the switch to epoch %d: %s", tb.name, epoch, s)
		sent += s.r.Requests + s.r.Replies
		if st := drive[jsStatus](tb, 5*time.Second, "status()"); st.State != "connected" || s.d.State != "connected" {
			t.Errorf("%s: state %s (history %v, errors %+v); want the call still connected", tb.name, st.State, st.History, st.Errors)
		}
		if !s.settledOn(epoch) {
			t.Errorf("%s: %s; want send and receive epoch %d", tb.name, s, epoch)
		}
		if n, was := s.d.Frames.DecryptErrors, settled[i].d.Frames.DecryptErrors; n != was {
			t.Errorf("%s: %d frames failed to decrypt after the switch to epoch %d (%d before; last: %s)", tb.name, n-was, epoch, was, s.d.Frames.LastError)
		}
	}
	return sent
}

// TestCallsRekeyBothKeysRunOut: both pages' E2EE workers signal
// rekey-needed at about the same time (the same small one-shot budget,
// given to both at once through the worker's test hook), so each side's
// call_rekey may cross the other's, or arrive while the other handles its
// own signal; three times, the budgets a few frames apart or not. Each
// time the call agrees on one key pair for the next epoch: one exchange
// (two call_rekey), both sides send and receive under that epoch, and video
// keeps decoding with no decrypt error after the switch. Then a late
// rekey-needed of a replaced key starts no call_rekey (deterministic), and
// one of the current key rekeys.
func TestCallsRekeyBothKeysRunOut(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	bob := env.openTab(t, "bob", "")
	b := bob.setup(false)
	tabs := []*tab{alice, bob}
	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", b)); !r.OK {
		t.Fatalf("call: %+v", r)
	}
	drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
	if r := drive[jsResult](bob, 20*time.Second, "answer()"); !r.OK {
		t.Fatalf("answer: %+v", r)
	}
	for _, tb := range tabs {
		tb.waitState("connected", 15*time.Second)
	}
	waitRekey(t, tabs, 10*time.Second, "video decoding under epoch 0", func(_ int, s rekeySide) bool {
		return s.decoded() >= 30 && s.settledOn(0)
	})

	// Both workers' keys run out at about the same time, a few frames
	// (about 14 ms each: audio and video share the counter) apart or not at
	// all: the requests cross, or one arrives just before, while or just
	// after the other side's own key signals.
	sent := 0
	for i, budget := range [][2]int{{20, 20}, {20, 23}, {26, 20}} {
		epoch := i + 1
		var wg sync.WaitGroup
		errs := make([]error, len(tabs))
		for j, tb := range tabs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := evalJS[bool](tb.ctx, 5*time.Second, fmt.Sprintf(`import('/sdktest/calls.js').then(m => m.rekeyAfter(%d))`, budget[j]))
				if err == nil && !ok {
					err = fmt.Errorf("no call")
				}
				errs[j] = err
			}()
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				t.Fatalf("%s: rekeyAfter(%d): %v", tabs[j].name, budget[j], err)
			}
		}
		n := checkRekeyed(t, tabs, epoch)
		if n-sent != 2 {
			t.Errorf("budgets %v: %d call_rekey sent for epoch %d, want 2 (one exchange)", budget, n-sent, epoch)
		}
		sent = n
	}

	// bob's epoch-2 key signals late (as when it runs out while alice's
	// call_rekey is answered): no call_rekey. His epoch-3 key's signal
	// rekeys.
	before := drive[jsRekey](bob, 5*time.Second, "rekeyState()")
	if drive[bool](bob, 5*time.Second, "rekeyNeeded(2)") {
		t.Error("a rekey-needed of the replaced epoch-2 key started a call_rekey")
	}
	if r := drive[jsRekey](bob, 5*time.Second, "rekeyState()"); r.Requests != before.Requests || r.Ignored != before.Ignored+1 || r.Epoch != 3 {
		t.Errorf("bob after a rekey-needed of the replaced key: %+v (before %+v); want it ignored, still epoch 3", r, before)
	}
	if !drive[bool](bob, 5*time.Second, "rekeyNeeded(3)") {
		t.Fatal("a rekey-needed of the current epoch-3 key started no call_rekey")
	}
	if n := checkRekeyed(t, tabs, 4); n-sent != 2 {
		t.Errorf("%d call_rekey sent for epoch 4, want 2 (one exchange)", n-sent)
	}

	// bob's reply to alice's call_rekey for epoch 5 is lost: bob keeps
	// sending under epoch 4 past his switch wait, while alice's frames still
	// come under it, until her retry gets his reply again; alice never gets
	// a frame she cannot decrypt (PROTOCOL §5.4: the responder switches
	// only after the switch wait passes with no frame of the old epoch).
	// The switch wait is the protocol's 2 s, not shortened: a page starved
	// for a shortened wait (500 ms once) let bob switch while alice's frames
	// were merely late, which §5.4 does not promise against. Only the retry
	// is shortened, to 5 s: past two switch waits, so bob defers at least
	// once before it comes.
	for _, tb := range tabs {
		drive[map[string]float64](tb, 5*time.Second, "setTimings({rekeyRetry: 5000})")
	}
	drive[bool](bob, 5*time.Second, "dropSends('call_rekey', 1)")
	before5 := []rekeySide{sampleRekey(alice), sampleRekey(bob)}
	if !drive[bool](alice, 5*time.Second, "rekeyAfter(20)") {
		t.Fatal("rekeyAfter: no call")
	}
	waitRekey(t, tabs, 15*time.Second, "switch to epoch 5 after the lost reply", func(_ int, s rekeySide) bool { return s.settledOn(5) })
	after5 := []rekeySide{sampleRekey(alice), sampleRekey(bob)}
	if n, was := after5[0].d.Frames.DecryptErrors, before5[0].d.Frames.DecryptErrors; n != was {
		t.Errorf("alice: %d frames failed to decrypt while bob's reply was lost (last: %s): bob switched before she had the key", n-was, after5[0].d.Frames.LastError)
	}
	if a, b := after5[0].r.Requests-before5[0].r.Requests, after5[1].r.Replies-before5[1].r.Replies; a != 2 || b != 2 {
		t.Errorf("epoch 5: alice sent %d call_rekey, bob replied %d times; want 2 each (the request and its retry, the lost reply and its resend)", a, b)
	}
	if _, ok := bob.log.waitFor("the peer still sends under the old key", 5*time.Second); !ok {
		t.Error("bob never deferred his switch to epoch 5 while alice's frames came under epoch 4 (send-deferred): the lost reply was not what kept him on the old key")
	}
	drive[jsResult](alice, 10*time.Second, "hangup()")
	bob.waitState("hangup", 5*time.Second)
}

// waitDiag waits until the tab's Diag sample satisfies ok (within
// mediaWait) and fails the test otherwise.
func waitDiag(t *testing.T, tb *tab, what string, ok func(jsDiag) bool) jsDiag {
	t.Helper()
	return waitStats(t, tb, what, mediaWait, ok)
}
