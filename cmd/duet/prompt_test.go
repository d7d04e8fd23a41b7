package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
)

// goCaller is a Go call module for a fresh CLI identity, to call the CLI
// under test.
func goCaller(t *testing.T, relayURL string) (*call.Module, identity.Alias) {
	t.Helper()
	home, alias := newCLIIdentity(t, relayURL)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	s := &session{incoming: make(chan incomingCall, 1)}
	copts := s.relayCallbacks()
	copts.RelayURL, copts.Identity, copts.Alias = relayURL, loadCLIIdentity(t, home), identity.Alias(alias)
	copts.HTTPClient, copts.Logger = hc, slog.New(slog.DiscardHandler)
	var err error
	s.client, err = client.Connect(ctxT(t), copts)
	if err != nil {
		t.Fatal(err)
	}
	mod := call.New(call.Options{Signaler: s.client, Logger: copts.Logger})
	s.modMu.Lock()
	s.mod = mod
	s.modMu.Unlock()
	t.Cleanup(s.close)
	return mod, identity.Alias(alias)
}

// waitOutput waits until out holds want after from.
func waitOutput(t *testing.T, out *syncbuf.Buffer, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := out.String()
		if i := strings.Index(s[from:], want); i >= 0 {
			return from + i + len(want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", want, s[from:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAnswerPromptBelongsToItsCall: a call that ends while `duet answer`
// asks cancels that prompt, and the y typed at the next prompt answers the
// call that prompt shows, not the ended one (the prompt used to go stale
// and every later prompt answered the call before). Typed on a real
// pseudo-terminal.
func TestAnswerPromptBelongsToItsCall(t *testing.T) {
	relayURL := startTestRelay(t)
	master, tty := openPTY(t)
	callee := newCLIUser(t, relayURL)
	caller1, _ := goCaller(t, relayURL)
	caller2, alias2 := goCaller(t, relayURL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runAnswer(ctx, []string{"--relay", relayURL, "--home", callee.home}, tty, &out, &errOut)
	}()
	pos := waitOutput(t, &out, 0, "waiting for calls")

	if err := caller1.Call(ctxT(t), callee.alias, call.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	pos = waitOutput(t, &out, pos, "Answer? [y/N]")
	if err := caller1.Hangup(); err != nil {
		t.Fatal(err)
	}
	pos = waitOutput(t, &out, pos, "ended before you answered (hangup (missed)); prompt cancelled")

	if err := caller2.Call(ctxT(t), callee.alias, call.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	pos = waitOutput(t, &out, pos, "incoming audio call from "+string(alias2))
	waitOutput(t, &out, pos, "Answer? [y/N]")
	if _, err := master.WriteString("y\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); caller2.State().Get().State != call.StateConnected; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the second caller's call is %+v; output:\n%s", caller2.State().Get(), out.String())
		}
	}
	if st := caller1.State().Get(); st.State != call.StateHangup {
		t.Errorf("the first caller's call: %+v", st)
	}
	if err := caller2.Hangup(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out, pos, "call ended: hangup (user_hangup)")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("duet answer did not stop")
	}
}

// TestAnswerOnceAfterReject: --once exits after the first call it rang
// for, also when that call was rejected.
func TestAnswerOnceAfterReject(t *testing.T) {
	relayURL := startTestRelay(t)
	master, tty := openPTY(t)
	callee := newCLIUser(t, relayURL)
	caller, _ := goCaller(t, relayURL)
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runAnswer(context.Background(), []string{"--once", "--relay", relayURL, "--home", callee.home}, tty, &out, &errOut)
	}()
	waitOutput(t, &out, 0, "waiting for calls")
	if err := caller.Call(ctxT(t), callee.alias, call.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out, 0, "Answer? [y/N]")
	if _, err := master.WriteString("n\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out.String(), "rejected") {
			t.Errorf("duet answer --once = %d after a reject:\n%s%s", code, out.String(), errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("duet answer --once did not exit after rejecting:\n%s", out.String())
	}
	for deadline := time.Now().Add(10 * time.Second); caller.State().Get().State != call.StateRejected; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the caller's call: %+v", caller.State().Get())
		}
	}
}

// cliUser is a CLI identity: its home directory and alias.
type cliUser struct {
	home  string
	alias identity.Alias
}

func newCLIUser(t *testing.T, relayURL string) cliUser {
	t.Helper()
	home, alias := newCLIIdentity(t, relayURL)
	return cliUser{home: home, alias: identity.Alias(alias)}
}
