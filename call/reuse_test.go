package call

import (
	"testing"
	"time"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/wire"
)

// TestOfferReusingEndedCallID: a peer's new offer under the call id of a
// call this module is still tearing down rings as a new call, and the old
// call's teardown leaves the new one alone. It used to remove the new
// call's session when it finished, so that answering the new call failed
// and the call's next messages reached no session.
func TestOfferReusingEndedCallID(t *testing.T) {
	checkLeaks(t)
	const id = "reused-call-id"
	held, release := make(chan struct{}), make(chan struct{})
	a := newPeer(t, "a", withCallIDs(func() string { return id }))
	b := newPeer(t, "b", withDrop(func(env *wire.Envelope) bool {
		// b's decline of the first call: its teardown waits for this send,
		// which is then swallowed (it would end a's second call of the same
		// id: a late message of a call is not told from the next one of its
		// id, which is why ids are random).
		if env.Type == wire.TypeCallReject && env.CallID == id {
			select {
			case <-held:
				return false
			default:
			}
			close(held)
			select {
			case <-release:
			case <-time.After(15 * time.Second):
			}
			return true
		}
		return false
	}))

	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	rejected := make(chan error, 1)
	go func() { rejected <- b.mod.Reject() }() // returns once the teardown is done
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("b's call_reject was not sent")
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}

	// The same id again, while b's first call is still tearing down.
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	close(release)
	select {
	case err := <-rejected:
		if err != nil {
			t.Fatalf("b's reject of the first call: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b's first call did not finish its teardown")
	}
	if err := b.mod.Answer(ctxT(t)); err != nil {
		t.Fatalf("answering the second call: %v", err)
	}
	a.waitState(StateConnected, 10*time.Second)
	b.waitState(StateConnected, 10*time.Second)
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := b.waitEnd(5 * time.Second); st.Reason != ReasonUserHangup {
		t.Errorf("b: %+v, want the second call ended by user_hangup", st)
	}
}

// TestActionWithoutSession: an action of the machine for a call that has no
// session in the driver is skipped, not a nil dereference on the worker
// (or in the work it leaves for after the lock).
func TestActionWithoutSession(t *testing.T) {
	m := New(Options{})
	defer m.Close()
	for _, k := range []fsm.ActionKind{fsm.ActApplyAnswer, fsm.ActAddICE, fsm.ActSelected, fsm.ActRestartICE,
		fsm.ActApplyRestart, fsm.ActApplyRestartAnswer, fsm.ActStartMedia, fsm.ActRekey,
		fsm.ActApplyRenegotiation, fsm.ActApplyRenegotiationAnswer} {
		perform := func() (panicked any) {
			defer func() { panicked = recover() }()
			m.mu.Lock()
			fx := func() effects {
				defer m.mu.Unlock()
				return m.performLocked([]fsm.Action{{Kind: k, CallID: "no-such-call"}}, input{})
			}()
			for _, f := range fx.after {
				f()
			}
			return nil
		}
		if p := perform(); p != nil {
			t.Errorf("%s without a session: panic %v", k, p)
		}
	}
}
