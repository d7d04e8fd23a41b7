package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/web"
)

func appHandler() http.Handler { return http.FileServerFS(web.App) }

// mediaWindow is how long the call tests watch media flow.
const mediaWindow = 3 * time.Second

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

// checkBrowserMedia samples the browser's stats twice, mediaWindow apart, and
// checks that video frames decode and audio arrives (growing), with no
// decryption failures beyond a handful, and that it sends encrypted video
// and audio.
func checkBrowserMedia(t *testing.T, tb *tab, video bool) (first, last jsDiag) {
	t.Helper()
	first = tb.stats()
	time.Sleep(mediaWindow)
	last = tb.stats()
	t.Logf("%s: %s", tb.name, last)
	if last.InAudio == nil || first.InAudio == nil || last.InAudio.BytesReceived <= first.InAudio.BytesReceived {
		t.Errorf("%s: inbound audio does not grow: %v → %v", tb.name, first.InAudio, last.InAudio)
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
	grew := last.InVideo.FramesDecoded - first.InVideo.FramesDecoded
	if last.InVideo.FramesDecoded < first.InVideo.FramesDecoded || grew < uint64(mediaWindow.Seconds()*5) {
		t.Errorf("%s: inbound video framesDecoded %d → %d in %v; want it to keep growing", tb.name, first.InVideo.FramesDecoded, last.InVideo.FramesDecoded, mediaWindow)
	}
	if last.InVideo.FramesDropped > 5 {
		t.Errorf("%s: %d inbound video frames dropped", tb.name, last.InVideo.FramesDropped)
	}
	if last.OutVideo == nil || last.OutVideo.FramesEncoded == 0 || last.Frames.Encrypted.Video == 0 {
		t.Errorf("%s: the browser sends no encrypted video: %s", tb.name, last)
	}
	checkVideoSendrecv(t, tb.name, last)
	return first, last
}

// checkGoMedia checks the Go side decrypts growing video and audio.
func checkGoMedia(t *testing.T, b *goBot, video bool) {
	t.Helper()
	s1 := b.mod.Stats()
	time.Sleep(mediaWindow)
	s2 := b.mod.Stats()
	t.Logf("%s: received frames a%d/v%d (decrypt errors %d), bytes %d, sent a%d/v%d, pair %s/%s",
		b.name, s2.AudioFramesReceived, s2.VideoFramesReceived, s2.DecryptErrors, s2.BytesReceived,
		s2.AudioFramesSent, s2.VideoFramesSent, s2.LocalCandidate, s2.RemoteCandidate)
	if s2.AudioFramesReceived <= s1.AudioFramesReceived {
		t.Errorf("%s: audio frames received %d → %d: not growing", b.name, s1.AudioFramesReceived, s2.AudioFramesReceived)
	}
	if video && s2.VideoFramesReceived < s1.VideoFramesReceived+uint64(mediaWindow.Seconds()*5) {
		t.Errorf("%s: video frames received %d → %d in %v: not growing", b.name, s1.VideoFramesReceived, s2.VideoFramesReceived, mediaWindow)
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
