package web_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/identity"
)

// TestCallsMultiDeviceMixed: one user on three devices, a browser and two
// Go peers, is called by a fourth party (a browser). Every device rings;
// one Go device answers; the browser and the other Go device stop ringing
// with answered_elsewhere, never connecting and with no error; only the
// answering device records the call, and its recording decodes
// (PROTOCOL §10.4).
func TestCallsMultiDeviceMixed(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	bobTab := env.openTab(t, "bob-browser", "")
	bob := bobTab.setup(false)
	id, err := identity.FromMnemonic(drive[string](bobTab, 5*time.Second, "identityMnemonic()"))
	if err != nil {
		t.Fatal(err)
	}
	go1 := env.newGoBotWith(t, "bob-go1", botOptions{identity: id})
	go2 := env.newGoBotWith(t, "bob-go2", botOptions{identity: id})
	if go1.alias != bob || go2.alias != bob {
		t.Fatalf("the Go devices registered as %s and %s, want %s", go1.alias, go2.alias, bob)
	}

	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bob)); !r.OK {
		t.Fatalf("call: %s: %s", r.Name, r.Message)
	}
	in := drive[jsIncoming](bobTab, 15*time.Second, "nextIncoming(10000)")
	if !go1.waitRing(10*time.Second) || !go2.waitRing(10*time.Second) || !in.IsVideo {
		t.Fatal("a device rang for an audio call; want video")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := go1.mod.AnswerCall(ctx, in.CallID); err != nil {
		t.Fatalf("bob-go1 answer: %v", err)
	}
	answered := time.Now()

	st := bobTab.waitState("hangup", 10*time.Second)
	tookBrowser := time.Since(answered)
	gst := go2.waitState(10*time.Second, "the end of the ringing", func(s duetcall.Status) bool { return s.State.Terminal() })
	tookGo := time.Since(answered)
	t.Logf("after bob-go1 answered: the browser stopped ringing within %v, bob-go2 within %v", tookBrowser.Round(time.Millisecond), tookGo.Round(time.Millisecond))
	if st.Reason != "answered_elsewhere" || st.CallID != in.CallID || slices.Contains(st.History, "connecting") {
		t.Errorf("bob's browser: %+v; want hangup (answered_elsewhere) without connecting", st)
	}
	if gst.State != duetcall.StateHangup || gst.Reason != duetcall.ReasonAnsweredElsewhere || gst.Err() != nil {
		t.Errorf("bob-go2: %+v; want hangup (answered_elsewhere)", gst)
	}
	alice.waitState("connected", 15*time.Second)
	go1.waitState(15*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	waitInboundAudio(t, alice)
	for deadline := time.Now().Add(15 * time.Second); go1.mod.Stats().VideoFramesReceived < 30; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("bob-go1 received %d video frames", go1.mod.Stats().VideoFramesReceived)
		}
	}
	drive[jsResult](alice, 10*time.Second, "hangup()")
	go1.waitState(10*time.Second, "the end", func(s duetcall.Status) bool { return s.State.Terminal() })

	if frames, _, _ := probeIVF(t, go1.recording(in.CallID)); frames < 30 {
		t.Errorf("bob-go1's recording decodes to %d frames, want 30 or more", frames)
	}
	if p := go2.recording(in.CallID); p != "" {
		t.Errorf("bob-go2 recorded the call it did not answer: %s", p)
	}
	noErrors(t, bobTab)
	noErrors(t, alice)
	select {
	case err := <-go2.errs:
		t.Errorf("bob-go2's OnError: %v", err)
	default:
	}
}
