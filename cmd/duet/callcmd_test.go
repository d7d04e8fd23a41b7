package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/wire"
)

func newCLIIdentity(t *testing.T, relayURL string) (home, alias string) {
	t.Helper()
	home = t.TempDir()
	code, out, errOut := runCLI(t, "", "id", "new", "--relay", relayURL, "--home", home)
	a := aliasRE.FindStringSubmatch(out)
	if code != 0 || a == nil {
		t.Fatalf("id new = %d: %s%s", code, out, errOut)
	}
	return home, a[1]
}

// TestCallAndAnswerCLI places a video call between `duet call` and
// `duet answer --auto --once` through a real relay, and checks the
// recording decodes with ffprobe.
func TestCallAndAnswerCLI(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("this test needs ffprobe: apt-get install -y ffmpeg")
	}
	relayURL := startTestRelay(t)
	callerHome, _ := newCLIIdentity(t, relayURL)
	calleeHome, callee := newCLIIdentity(t, relayURL)
	rec := t.TempDir()

	var ansOut, ansErr syncbuf.Buffer
	answered := make(chan int, 1)
	go func() {
		answered <- run([]string{"answer", "--auto", "--once", "--record", rec, "--relay", relayURL, "--home", calleeHome}, strings.NewReader(""), &ansOut, &ansErr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ansOut.String(), "waiting for calls") {
		if time.Now().After(deadline) {
			t.Fatalf("duet answer did not start: %s%s", ansOut.String(), ansErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, out, errOut := runCLI(t, "", "call", callee, "--video", "--duration", "2s", "--relay", relayURL, "--home", callerHome)
	if code != 0 {
		t.Fatalf("duet call = %d:\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"state: calling", "state: connecting", "state: connected", "state: hangup (user_hangup)"} {
		if !strings.Contains(out, want) {
			t.Errorf("duet call output lacks %q:\n%s", want, out)
		}
	}
	select {
	case code := <-answered:
		if code != 0 || !strings.Contains(ansOut.String(), "incoming video call from") {
			t.Fatalf("duet answer = %d:\n%s\n%s", code, ansOut.String(), ansErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("duet answer --once did not exit after the call")
	}

	ivfs, _ := filepath.Glob(filepath.Join(rec, "*-video.ivf"))
	oggs, _ := filepath.Glob(filepath.Join(rec, "*-audio.ogg"))
	if len(ivfs) != 1 || len(oggs) != 1 {
		t.Fatalf("recordings: %v %v", ivfs, oggs)
	}
	probe, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "default=nw=1:nk=1", ivfs[0]).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(probe)))
	if err != nil || n < 30 { // 2 s at 30 fps, less the first frames before the key frame
		t.Fatalf("the recording decodes to %q frames, want at least 30", probe)
	}
	if st, err := os.Stat(oggs[0]); err != nil || st.Size() < 1000 {
		t.Fatalf("audio recording: %v", err)
	}
}

func TestCallOfflineFails(t *testing.T) {
	relayURL := startTestRelay(t)
	home, _ := newCLIIdentity(t, relayURL)
	_, offline := newCLIIdentity(t, relayURL)
	code, out, errOut := runCLI(t, "", "call", offline, "--relay", relayURL, "--home", home)
	if code != 1 || !strings.Contains(errOut, "offline") {
		t.Fatalf("call to an offline alias = %d:\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "", "call", "bogus", "--home", home); code != 2 {
		t.Fatalf("call with a bad alias = %d, want 2", code)
	}
}

// TestRelayNoticesReachTheModule: the CLI's relay client hands the relay's
// refused-frame notices to the call module (which resends rate-limited
// frames). Frames sent faster than the relay's rate limit on the CLI's own
// connection get rate_limited notices, which the module must count.
func TestRelayNoticesReachTheModule(t *testing.T) {
	relayURL := startTestRelay(t)
	home, _ := newCLIIdentity(t, relayURL)
	_, offline := newCLIIdentity(t, relayURL)
	f := &callFlags{clientFlags: clientFlags{relay: relayURL, home: home}}
	s, err := f.start(ctxT(t), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for i := range relay.RateBurst + 20 {
		env := &wire.Envelope{Type: wire.TypeCallHangup, To: identity.Alias(offline), CallID: "c", CryptoV: wire.CryptoV2, Payload: "AA==", ID: fmt.Sprintf("f%d", i)}
		if err := s.client.Send(ctxT(t), env); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.mod.Stats().RelayErrors["rate_limited"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the module counted no rate_limited notice; relay errors %v", s.mod.Stats().RelayErrors)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAnswerPrintsPeerMedia: `duet answer` prints the caller's media state
// changes (call_media, PROTOCOL §10.9) as they arrive.
func TestAnswerPrintsPeerMedia(t *testing.T) {
	relayURL := startTestRelay(t)
	callerHome, _ := newCLIIdentity(t, relayURL)
	calleeHome, callee := newCLIIdentity(t, relayURL)

	var ansOut, ansErr syncbuf.Buffer
	answered := make(chan int, 1)
	go func() {
		answered <- run([]string{"answer", "--auto", "--once", "--relay", relayURL, "--home", calleeHome}, strings.NewReader(""), &ansOut, &ansErr)
	}()
	waitOutput := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(ansOut.String(), want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("duet answer did not print %q: %s%s", want, ansOut.String(), ansErr.String())
			}
		}
	}
	waitOutput("waiting for calls")

	f := &callFlags{clientFlags: clientFlags{relay: relayURL, home: callerHome}}
	s, err := f.start(ctxT(t), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.mod.Call(ctxT(t), identity.Alias(callee), call.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	waitOutput("state: connected")
	if err := s.mod.SetMicrophoneEnabled(false); err != nil {
		t.Fatal(err)
	}
	waitOutput("peer media: microphone muted, camera on")
	if err := s.mod.SetMicrophoneEnabled(true); err != nil {
		t.Fatal(err)
	}
	waitOutput("peer media: microphone on, camera on")
	if err := s.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-answered:
		if code != 0 {
			t.Fatalf("duet answer = %d:\n%s\n%s", code, ansOut.String(), ansErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("duet answer --once did not exit after the call")
	}
}

// TestCallUpgradeAfterCLI: `duet call --upgrade-after` turns an audio call
// into a video call (PROTOCOL §10.10); `duet answer` says so and its
// recording gains a video stream that decodes.
func TestCallUpgradeAfterCLI(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("this test needs ffprobe: apt-get install -y ffmpeg")
	}
	relayURL := startTestRelay(t)
	callerHome, _ := newCLIIdentity(t, relayURL)
	calleeHome, callee := newCLIIdentity(t, relayURL)
	rec := t.TempDir()
	var ansOut, ansErr syncbuf.Buffer
	answered := make(chan int, 1)
	go func() {
		answered <- run([]string{"answer", "--auto", "--once", "--record", rec, "--relay", relayURL, "--home", calleeHome}, strings.NewReader(""), &ansOut, &ansErr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(ansOut.String(), "waiting for calls"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("duet answer did not start: %s%s", ansOut.String(), ansErr.String())
		}
	}
	code, out, errOut := runCLI(t, "", "call", callee, "--upgrade-after", "500ms", "--duration", "3s", "--relay", relayURL, "--home", callerHome)
	if code != 0 || !strings.Contains(out, "upgraded to video: sending video") {
		t.Fatalf("duet call = %d:\n%s\n%s", code, out, errOut)
	}
	select {
	case code := <-answered:
		if code != 0 || !strings.Contains(ansOut.String(), "incoming audio call from") || !strings.Contains(ansOut.String(), "video: the call is now a video call") {
			t.Fatalf("duet answer = %d:\n%s\n%s", code, ansOut.String(), ansErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("duet answer --once did not exit after the call")
	}
	ivfs, _ := filepath.Glob(filepath.Join(rec, "*-video.ivf"))
	if len(ivfs) != 1 {
		t.Fatalf("the upgraded call's video recording: %v", ivfs)
	}
	probe, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "default=nw=1:nk=1", ivfs[0]).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(probe))); err != nil || n < 30 {
		t.Fatalf("the upgraded recording decodes to %q frames, want at least 30 (2.5 s at 30 fps, less those before the key frame)", probe)
	}
}
