package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
)

// seedDisconnectedTimeout is the seed's "connectionState disconnected
// persists 8 seconds → ended" (package call's disconnectedTimeout, which a
// separate process cannot shorten).
const seedDisconnectedTimeout = 8 * time.Second

// TestPeerProcessKilled: the callee is `duet answer --auto --once` in a
// process of its own (this test binary re-executed, see TestMain); once the
// call is connected and audio flows, that process is SIGKILLed: no
// call_hangup, no DTLS close, its sockets just vanish. The caller (the Go
// SDK wired as the CLI wires it) must end the call itself with
// disconnected, not wait forever and not call it a hangup or a media
// timeout, and tell OnError. The real constants run here, so it takes
// about 15 s.
func TestPeerProcessKilled(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	// Registered first, so it runs after every other cleanup (the relay's
	// shutdown, the caller's close, the child's reaping).
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	relayURL := startTestRelay(t)
	callerHome, callerAlias := newCLIIdentity(t, relayURL)
	calleeHome, calleeAlias := newCLIIdentity(t, relayURL)

	// The callee: a child process running duet answer.
	args, err := json.Marshal([]string{"answer", "--auto", "--once", "--relay", relayURL, "--home", calleeHome})
	if err != nil {
		t.Fatal(err)
	}
	var childOut, childErr syncbuf.Buffer
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), cliArgsEnv+"="+string(args))
	child.Stdout, child.Stderr = &childOut, &childErr
	if err := child.Start(); err != nil {
		t.Fatalf("starting the duet answer process: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = child.Wait() // the exit status is read from child.ProcessState
		close(exited)
	}()
	t.Cleanup(func() {
		_ = child.Process.Kill() // an error: it has exited already
		<-exited
		if t.Failed() {
			t.Logf("duet answer (pid %d, %v):\n%s%s", child.Process.Pid, child.ProcessState, childOut.String(), childErr.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(childOut.String(), "waiting for calls"); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("duet answer exited before waiting for calls: %v", child.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("duet answer did not start waiting for calls")
		}
	}

	// The caller: a relay client and a call module wired as duet call
	// wires them, with an OnError of its own.
	var callerLog syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&callerLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caller log:\n%s", callerLog.String())
		}
	})
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	s := &session{incoming: make(chan incomingCall, 1)}
	copts := s.relayCallbacks()
	copts.RelayURL, copts.Identity, copts.Alias = relayURL, loadCLIIdentity(t, callerHome), identity.Alias(callerAlias)
	copts.HTTPClient, copts.Logger = hc, logger
	s.client, err = client.Connect(ctxT(t), copts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	mod := call.New(call.Options{
		Signaler: s.client,
		Logger:   logger,
		OnError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	s.modMu.Lock()
	s.mod = mod
	s.modMu.Unlock()
	t.Cleanup(s.close)

	if err := mod.Call(ctxT(t), identity.Alias(calleeAlias), call.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := mod.State().Get()
		if st.State.Terminal() {
			t.Fatalf("the call ended before the kill: %+v", st)
		}
		// Half a second of the callee's audio has arrived.
		if st.State == call.StateConnected && mod.Stats().AudioFramesReceived >= 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the call did not connect with audio flowing: %+v, %d audio frames received", st, mod.Stats().AudioFramesReceived)
		}
	}
	if out := childOut.String(); !strings.Contains(out, "incoming audio call from "+callerAlias) {
		t.Fatalf("duet answer did not report the call:\n%s", out)
	}

	select {
	case <-exited:
		t.Fatalf("duet answer exited during the call: %v", child.ProcessState)
	default:
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-exited
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("duet answer ended with %v, not by the SIGKILL", child.ProcessState)
	}

	// Generous: the call may take ICE's disconnected detection (5-7 s in
	// pion) plus the 8 s timeout; only a call that never ends fails here.
	sub := mod.State().Subscribe()
	defer sub.Unsubscribe()
	timeout := time.NewTimer(time.Until(killed.Add(40 * time.Second)))
	defer timeout.Stop()
	st := mod.State().Get()
	for !st.State.Terminal() {
		var ok bool
		select {
		case st, ok = <-sub.C():
			if !ok {
				t.Fatalf("the call's state closed before the call ended: %+v", mod.State().Get())
			}
		case <-timeout.C:
			t.Fatalf("the call did not end within 40 s of the peer's kill: %+v", mod.State().Get())
		}
	}
	took := time.Since(killed)
	if st.State != call.StateEnded || st.Reason != call.ReasonDisconnected {
		t.Errorf("the call ended %+v after the peer was killed, want ended (%s)", st, call.ReasonDisconnected)
	}
	// The call cannot end before the disconnected timeout has run out.
	if took < seedDisconnectedTimeout {
		t.Errorf("the call ended %v after the kill, before the %v disconnected timeout could run out", took, seedDisconnectedTimeout)
	}
	var got []error
	for wait := time.After(5 * time.Second); ; {
		select {
		case err := <-errs:
			if errors.Is(err, call.ErrDisconnected) {
				t.Logf("the call ended %v after the peer process was killed: %+v; OnError: %v", took.Round(time.Millisecond), st, err)
				return
			}
			got = append(got, err)
		case <-wait:
			t.Fatalf("OnError got %v, want an error wrapping call.ErrDisconnected", got)
		}
	}
}
