package call

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestReject(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	if in := b.waitIncoming(5 * time.Second); in.isVideo {
		t.Errorf("audio offer seen as video")
	}
	b.waitState(StateRinging, time.Second)
	if err := b.mod.Reject(); err != nil {
		t.Fatal(err)
	}
	if st := b.mod.State().Get(); st.State != StateRejected || st.Reason != ReasonDeclined || !st.Incoming {
		t.Errorf("b after Reject: %+v", st)
	}
	if st := a.waitState(StateRejected, 5*time.Second); st.Reason != ReasonDeclined || st.Peer != b.alias || !errors.Is(st.Err(), ErrDeclined) {
		t.Errorf("a: %+v, want rejected by declined", st)
	}
	if err := b.mod.Reject(); !errors.Is(err, ErrNoIncomingCall) {
		t.Errorf("second Reject: %v, want ErrNoIncomingCall", err)
	}
	if err := b.mod.Answer(ctxT(t)); !errors.Is(err, ErrNoIncomingCall) {
		t.Errorf("Answer after Reject: %v, want ErrNoIncomingCall", err)
	}
}

func TestBusy(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	c := newPeer(t, "c")
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	ringing := b.mod.State().Get()

	// c calls b while b is ringing for a: c is rejected as busy...
	if err := c.mod.Call(ctxT(t), b.alias, Media{Audio: true, Video: true}); err != nil {
		t.Fatal(err)
	}
	if st := c.waitState(StateRejected, 5*time.Second); st.Reason != ReasonBusy || !errors.Is(st.Err(), ErrBusy) {
		t.Errorf("c: %+v (%v), want rejected busy", st, st.Err())
	}
	// ...b's call with a is untouched and can still be answered.
	if st := b.mod.State().Get(); st != ringing {
		t.Errorf("b's state changed to %+v, want %+v", st, ringing)
	}
	select {
	case in := <-b.incoming:
		t.Errorf("b rang for a second call: %+v", in)
	default:
	}
	if err := b.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a.waitState(StateConnected, 10*time.Second)
	b.waitState(StateConnected, 10*time.Second)

	// And while connected, too.
	if err := c.mod.Call(ctxT(t), a.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	if st := c.waitState(StateRejected, 5*time.Second); st.Reason != ReasonBusy {
		t.Errorf("c: %+v, want rejected busy", st)
	}
	if st := a.mod.State().Get(); st.State != StateConnected || st.Peer != b.alias {
		t.Errorf("a disturbed: %+v", st)
	}
	if err := a.mod.Call(ctxT(t), c.alias, Media{Audio: true}); !errors.Is(err, ErrInCall) {
		t.Errorf("Call during a call: %v, want ErrInCall", err)
	}
}

func TestCalleeHangupWhileRinging(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	if err := a.mod.Call(ctxT(t), b.alias, Media{Video: true}); err != nil {
		t.Fatal(err)
	}
	if in := b.waitIncoming(5 * time.Second); !in.isVideo {
		t.Errorf("video offer not seen as video")
	}
	// Hanging up a ringing call declines it (PROTOCOL §10.4): the
	// caller is told so, and so are the callee's other devices.
	if err := b.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := a.waitState(StateRejected, 5*time.Second); st.Reason != ReasonDeclined {
		t.Errorf("a: %+v", st)
	}
	if st := b.mod.State().Get(); st.State != StateRejected || st.Reason != ReasonDeclined || st.Err() != nil {
		t.Errorf("b: %+v (err %v)", st, st.Err())
	}
}

func TestCallerHangupWhileRinging(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	start := time.Now()
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	// The seed: a call_hangup received while ringing ends the call at
	// once; for the callee it is a missed call, not an error.
	if st := b.waitState(StateHangup, 2*time.Second); st.Reason != ReasonMissed || st.Err() != nil {
		t.Errorf("b: %+v", st)
	}
	t.Logf("callee stopped ringing %v after the caller's Hangup", time.Since(start).Round(time.Millisecond))
}

func TestCallerAnswerTimeout(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{answer: 1500 * time.Millisecond})
	a, b := newPair(t)
	start := time.Now()
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	st := a.waitState(StateEnded, 5*time.Second)
	took := time.Since(start)
	if st.Reason != ReasonNoAnswer {
		t.Errorf("a: %+v, want ended no_answer", st)
	}
	// The timer must not fire early; that it fires at all within the
	// bounded wait is what waitState checks (no upper bound on a shared
	// machine).
	if took < 1500*time.Millisecond {
		t.Errorf("ended after %v, before the answer timeout (1.5 s here)", took)
	}
	if err := waitErr(a.errs, ErrNoAnswer, time.Second); err == nil {
		t.Error("OnError did not get ErrNoAnswer")
	}
	// The caller told the callee (call_hangup with no_answer) before
	// cleaning up: the callee stops ringing with a missed call, which is
	// no error there (PROTOCOL §10.3).
	if st := b.waitState(StateHangup, 2*time.Second); st.Reason != ReasonMissed || st.Err() != nil {
		t.Errorf("b: %+v, want hangup missed", st)
	}
	select {
	case err := <-b.errs:
		t.Errorf("b's OnError got %v for a missed call", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(a.sig.sentOf(wire.TypeCallHangup)); n != 1 {
		t.Errorf("a sent %d call_hangup, want 1", n)
	}
	// A late Answer finds nothing to answer (no ghost call).
	if err := b.mod.Answer(ctxT(t)); !errors.Is(err, ErrNoIncomingCall) {
		t.Errorf("late Answer: %v", err)
	}
}

func TestAnswerTwice(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.mod.Answer(ctxT(t))
		}()
	}
	wg.Wait()
	ok, again := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrAlreadyAnswering):
			again++
			if err.Error() != "answer() called while already answering" {
				t.Errorf("error text %q", err)
			}
		default:
			t.Errorf("Answer: %v", err)
		}
	}
	if ok != 1 || again != 2 {
		t.Errorf("%d answers succeeded and %d got ErrAlreadyAnswering; want 1 and 2", ok, again)
	}
	a.waitState(StateConnected, 10*time.Second)
	b.waitState(StateConnected, 10*time.Second)
}

func TestCalleeOffline(t *testing.T) {
	checkLeaks(t)
	a := newPeer(t, "a")
	// Registered but never connected.
	hc := newPeerHTTPClient(t, 0)
	off, _, err := client.Register(ctxT(t), hc, testEnv.relayURL, newIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.mod.Call(ctxT(t), off, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	st := a.waitState(StateEnded, 3*time.Second)
	if st.Reason != ReasonOffline {
		t.Errorf("a: %+v, want ended offline", st)
	}
	t.Logf("offline detected after %v", time.Since(start).Round(time.Millisecond))
	if err := waitErr(a.errs, ErrOffline, time.Second); err == nil {
		t.Error("OnError did not get ErrOffline")
	}
	if n := len(a.sig.sentOf(wire.TypeCallHangup)); n != 0 {
		t.Errorf("a sent %d call_hangup to an offline peer", n)
	}
}

func TestCallValidation(t *testing.T) {
	checkLeaks(t)
	a := newPeer(t, "a")
	ctx := ctxT(t)
	if err := a.mod.Call(ctx, "bob", Media{Audio: true}); !errors.Is(err, identity.ErrInvalidAlias) {
		t.Errorf("bad alias: %v", err)
	}
	if err := a.mod.Call(ctx, "u00000001", Media{}); !errors.Is(err, ErrNoMedia) {
		t.Errorf("no media: %v", err)
	}
	if err := a.mod.Call(ctx, a.alias, Media{Audio: true}); err == nil {
		t.Error("calling yourself: no error")
	}
	if err := a.mod.Answer(ctx); !errors.Is(err, ErrNoIncomingCall) {
		t.Errorf("Answer: %v", err)
	}
	if err := a.mod.Reject(); !errors.Is(err, ErrNoIncomingCall) {
		t.Errorf("Reject: %v", err)
	}
	if err := a.mod.Hangup(); !errors.Is(err, ErrNoCall) {
		t.Errorf("Hangup: %v", err)
	}
	// An unknown alias: the relay has no keys for it.
	if err := a.mod.Call(ctx, "u00000001", Media{Audio: true}); err == nil {
		t.Error("Call to an unregistered alias: no error")
	}
	if st := a.mod.State().Get(); st.State != StateEnded || st.Reason != ReasonError {
		t.Errorf("after a failed Call: %+v", st)
	}
	bare := New(Options{})
	defer bare.Close()
	if err := bare.Call(ctx, "u00000001", Media{Audio: true}); err == nil {
		t.Error("no Signaler: no error")
	}
}
