package web_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/identity"
)

// secondDevice opens a tab that is another device of tb's identity (same
// mnemonic and alias, its own call module and device id).
func secondDevice(t *testing.T, env *callEnv, tb *tab, alias identity.Alias, name string) *tab {
	t.Helper()
	m := drive[string](tb, 5*time.Second, "identityMnemonic()")
	d := env.openTab(t, name, "")
	if a := drive[string](d, 20*time.Second, fmt.Sprintf("setup({mnemonic: %q, alias: %q})", m, alias)); a != string(alias) {
		t.Fatalf("%s: setup gave alias %s, want %s", name, a, alias)
	}
	return d
}

// noErrors fails when the tab's app got an error.
func noErrors(t *testing.T, tb *tab) {
	t.Helper()
	if st := drive[jsStatus](tb, 5*time.Second, "status()"); len(st.Errors) != 0 {
		t.Errorf("%s: onError got %+v; want no error (history %v)", tb.name, st.Errors, st.History)
	}
}

// TestCallsMultiDevice: the callee's user has two browser devices (tabs of
// one identity); a third browser calls. Every device rings; the first
// answer wins and the other device stops ringing with answered_elsewhere,
// a decline on one device ends the call for the caller (ErrDeclined) and
// the other device's ringing with declined_elsewhere, and a device that
// answers too late ends at once. PROTOCOL §10.4.
func TestCallsMultiDevice(t *testing.T) {
	env := startCallEnv(t)

	ring := func(t *testing.T, caller *tab, callee identity.Alias, devices ...*tab) string {
		t.Helper()
		for _, d := range devices {
			drive[bool](d, 5*time.Second, "reset()")
		}
		drive[bool](caller, 5*time.Second, "reset()")
		if r := drive[jsResult](caller, 20*time.Second, fmt.Sprintf("call(%q, false)", callee)); !r.OK {
			t.Fatalf("call: %s: %s", r.Name, r.Message)
		}
		var id string
		for _, d := range devices {
			in := drive[jsIncoming](d, 15*time.Second, "nextIncoming(10000)")
			if in.CallID == "" || id != "" && in.CallID != id {
				t.Fatalf("%s rang for call %q (other device: %q)", d.name, in.CallID, id)
			}
			id = in.CallID
		}
		return id
	}

	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	bob1 := env.openTab(t, "bob1", "")
	bob := bob1.setup(false)
	bob2 := secondDevice(t, env, bob1, bob, "bob2")
	if d1, d2 := drive[string](bob1, 5*time.Second, "deviceId()"), drive[string](bob2, 5*time.Second, "deviceId()"); d1 == d2 || d1 == "" {
		t.Fatalf("the two devices have ids %q and %q; want two different ids", d1, d2)
	}

	t.Run("answered on one device", func(t *testing.T) {
		id := ring(t, alice, bob, bob1, bob2)
		if r := drive[jsResult](bob1, 20*time.Second, fmt.Sprintf("answer(%q)", id)); !r.OK {
			t.Fatalf("bob1 answer: %+v", r)
		}
		answered := time.Now()
		st := bob2.waitState("hangup", 10*time.Second)
		t.Logf("bob2 stopped ringing %v after bob1's answer was sent", time.Since(answered).Round(time.Millisecond))
		if st.Reason != "answered_elsewhere" || st.CallID != id || slices.Contains(st.History, "connecting") {
			t.Errorf("bob2 after bob1 answered: %+v; want hangup (answered_elsewhere) without connecting", st)
		}
		noErrors(t, bob2)
		alice.waitState("connected", 15*time.Second)
		bob1.waitState("connected", 15*time.Second)
		waitInboundAudio(t, alice)
		waitInboundAudio(t, bob1)
		// The late device cannot answer any more.
		if r := drive[jsResult](bob2, 5*time.Second, fmt.Sprintf("answer(%q)", id)); r.OK || r.Name != "ErrNoIncomingCall" {
			t.Errorf("bob2 answering after bob1 did: %+v, want ErrNoIncomingCall", r)
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
		if st := bob1.waitState("hangup", 10*time.Second); st.Reason != "user_hangup" {
			t.Errorf("bob1 after alice hung up: %+v", st)
		}
		noErrors(t, bob1)
		noErrors(t, alice)
	})

	t.Run("declined on one device", func(t *testing.T) {
		id := ring(t, alice, bob, bob1, bob2)
		if r := drive[jsResult](bob2, 10*time.Second, fmt.Sprintf("reject(%q)", id)); !r.OK {
			t.Fatalf("bob2 reject: %+v", r)
		}
		if st := bob1.waitState("rejected", 10*time.Second); st.Reason != "declined_elsewhere" {
			t.Errorf("bob1 after bob2 declined: %+v; want rejected (declined_elsewhere)", st)
		}
		noErrors(t, bob1)
		st := alice.waitState("rejected", 10*time.Second)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "declined" || e.Name != "ErrDeclined" {
			t.Errorf("alice after bob2 declined: %+v, error %+v; want declined and ErrDeclined", st, e)
		}
	})

	t.Run("answered on both devices", func(t *testing.T) {
		// Both answer at once: the caller takes the first answer it gets;
		// the other device ends at once (answered_elsewhere), never stays
		// in connecting.
		id := ring(t, alice, bob, bob1, bob2)
		var wg sync.WaitGroup
		res := make([]jsResult, 2)
		for i, d := range []*tab{bob1, bob2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = drive[jsResult](d, 20*time.Second, fmt.Sprintf("answer(%q)", id))
			}()
		}
		wg.Wait()
		alice.waitState("connected", 15*time.Second)
		var won, lost *tab
		for deadline := time.Now().Add(15 * time.Second); won == nil || lost == nil; time.Sleep(100 * time.Millisecond) {
			s1 := drive[jsStatus](bob1, 5*time.Second, "status()")
			s2 := drive[jsStatus](bob2, 5*time.Second, "status()")
			switch {
			case s1.State == "connected" && s2.State == "hangup":
				won, lost = bob1, bob2
			case s2.State == "connected" && s1.State == "hangup":
				won, lost = bob2, bob1
			}
			if time.Now().After(deadline) {
				t.Fatalf("after both answered: bob1 %+v, bob2 %+v (answers %+v); want one connected, the other hangup", s1, s2, res)
			}
		}
		if st := drive[jsStatus](lost, 5*time.Second, "status()"); st.Reason != "answered_elsewhere" {
			t.Errorf("%s, whose answer lost: %+v; want answered_elsewhere", lost.name, st)
		}
		noErrors(t, lost)
		waitInboundAudio(t, won)
		drive[jsResult](alice, 10*time.Second, "hangup()")
		won.waitState("hangup", 10*time.Second)
	})

	t.Run("the losing device's checks", func(t *testing.T) {
		// A device checks the caller's candidates only once selected: the
		// caller's browser answers the checks of every device (they all have
		// its ICE credentials), and a device whose answer lost could take
		// its DTLS handshake from the selected one (the call stayed
		// connecting: PROTOCOL §10.4). bob2 answers first but its answer is
		// lost, alice's select too: bob2 must stay silent, and bob1, never
		// told it was selected, connects on alice's checks.
		id := ring(t, alice, bob, bob1, bob2)
		drive[bool](alice, 5*time.Second, `dropSends("call_select", 10)`)
		defer drive[bool](alice, 5*time.Second, `dropSends("call_select", 0)`)
		drive[bool](bob2, 5*time.Second, `dropSends("call_answer", 1)`)
		if r := drive[jsResult](bob2, 20*time.Second, fmt.Sprintf("answer(%q)", id)); !r.OK {
			t.Fatalf("bob2 answer: %+v", r)
		}
		// bob2's checks would have had the time to reach alice's DTLS.
		time.Sleep(time.Second)
		if r := drive[jsResult](bob1, 20*time.Second, fmt.Sprintf("answer(%q)", id)); !r.OK {
			t.Fatalf("bob1 answer: %+v", r)
		}
		alice.waitState("connected", 15*time.Second)
		bob1.waitState("connected", 15*time.Second)
		waitInboundAudio(t, alice)
		waitInboundAudio(t, bob1)
		if st := drive[jsStatus](bob2, 5*time.Second, "status()"); st.State != "connecting" {
			t.Errorf("bob2, told nothing: %+v; want connecting", st)
		}
		drive[jsResult](alice, 10*time.Second, "hangup()")
		bob1.waitState("hangup", 10*time.Second)
		bob2.waitState("hangup", 10*time.Second)
	})
}

// TestCallsGlareBrowsers: two browsers call each other at once (PROTOCOL
// §10.5), in both orderings of their call ids: exactly one call connects
// (the one with the lesser id when both offers were out), and neither side
// sees busy or an error.
func TestCallsGlareBrowsers(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	a := alice.setup(false)
	bob := env.openTab(t, "bob", "")
	b := bob.setup(false)
	for _, o := range []struct{ name, aliceID, bobID string }{
		{"alice's call id is the lesser", "glare1-A-0000000001", "glare1-B-0000000002"},
		{"bob's call id is the lesser", "glare2-B-0000000002", "glare2-A-0000000001"},
	} {
		t.Run(o.name, func(t *testing.T) {
			for _, tb := range []*tab{alice, bob} {
				drive[bool](tb, 5*time.Second, "reset()")
			}
			drive[bool](alice, 5*time.Second, fmt.Sprintf("nextCallID(%q)", o.aliceID))
			drive[bool](bob, 5*time.Second, fmt.Sprintf("nextCallID(%q)", o.bobID))
			var wg sync.WaitGroup
			res := make([]jsResult, 2)
			for i, c := range []struct {
				tb   *tab
				peer identity.Alias
			}{{alice, b}, {bob, a}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = drive[jsResult](c.tb, 20*time.Second, fmt.Sprintf("call(%q, false)", c.peer))
				}()
			}
			wg.Wait()
			for i, r := range res {
				if !r.OK {
					t.Errorf("call %d: %+v; want both call() to resolve", i, r)
				}
			}
			sa := alice.waitState("connected", 15*time.Second)
			sb := bob.waitState("connected", 15*time.Second)
			if sa.CallID != sb.CallID || (sa.CallID != o.aliceID && sa.CallID != o.bobID) {
				t.Errorf("alice connected in call %q, bob in %q; want one call of the two", sa.CallID, sb.CallID)
			}
			t.Logf("the call that connected: %s (alice %v, bob %v)", sa.CallID, sa.History, sb.History)
			for _, tb := range []*tab{alice, bob} {
				st := drive[struct {
					jsStatus
					Drops map[string]int `json:"drops"`
				}](tb, 5*time.Second, "status()")
				t.Logf("%s: drops %v", tb.name, st.Drops)
				if slices.Contains(st.History, "rejected") || slices.Contains(st.History, "ended") || len(st.Errors) != 0 {
					t.Errorf("%s: history %v, errors %+v; want no rejection, ending or error", tb.name, st.History, st.Errors)
				}
			}
			waitInboundAudio(t, alice)
			waitInboundAudio(t, bob)
			drive[jsResult](alice, 10*time.Second, "hangup()")
			bob.waitState("hangup", 10*time.Second)
		})
	}
}

// TestCallsMissedCall: a browser caller gives up on a ringing browser, by
// hanging up and by its answer timeout: the callee has a missed call, not
// an error; the caller who timed out gets ErrNoAnswer.
func TestCallsMissedCall(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	bob := env.openTab(t, "bob", "")
	b := bob.setup(false)

	t.Run("caller hangs up", func(t *testing.T) {
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", b))
		drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
		drive[jsResult](alice, 10*time.Second, "hangup()")
		if st := bob.waitState("hangup", 10*time.Second); st.Reason != "missed" {
			t.Errorf("bob after alice gave up: %+v; want hangup (missed)", st)
		}
		noErrors(t, bob)
		noErrors(t, alice)
	})

	t.Run("answer timeout", func(t *testing.T) {
		for _, tb := range []*tab{alice, bob} {
			drive[bool](tb, 5*time.Second, "reset()")
		}
		drive[map[string]float64](alice, 5*time.Second, "setTimings({answer: 2000})")
		drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", b))
		drive[jsIncoming](bob, 15*time.Second, "nextIncoming(10000)")
		st := alice.waitState("ended", 15*time.Second)
		if e := drive[jsError](alice, 5*time.Second, "waitError(2000)"); st.Reason != "no_answer" || e.Name != "ErrNoAnswer" {
			t.Errorf("alice after her answer timeout: %+v, error %+v; want no_answer and ErrNoAnswer", st, e)
		}
		if st := bob.waitState("hangup", 10*time.Second); st.Reason != "missed" {
			t.Errorf("bob after alice's answer timeout: %+v; want hangup (missed)", st)
		}
		noErrors(t, bob)
	})
}

// TestCallsGlareWithGo: a browser and a Go peer call each other at once
// (PROTOCOL §10.5), their offers crossing (the browser holds what it
// receives until its own offer is out), the browser's call id the least or
// the greatest possible, so that each side's call wins once: the call with
// the lesser id connects, on both sides, and the browser sees neither a
// rejection nor an error.
func TestCallsGlareWithGo(t *testing.T) {
	env := startCallEnv(t)
	ctx := context.Background()
	for _, o := range []struct {
		name, id    string
		browserWins bool
	}{
		{"the browser's call id is the lesser", "----------------------", true},
		{"the Go call id is the lesser", "zzzzzzzzzzzzzzzzzzzzzz", false},
	} {
		t.Run(o.name, func(t *testing.T) {
			alice := env.openTab(t, "alice", "")
			a := alice.setup(false)
			bot := env.newGoBot(t, "gobot", false)
			drive[bool](alice, 5*time.Second, fmt.Sprintf("nextCallID(%q)", o.id))
			drive[bool](alice, 5*time.Second, "holdInbound(3000)")
			var wg sync.WaitGroup
			var r jsResult
			var goErr error
			wg.Add(2)
			go func() {
				defer wg.Done()
				r = drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias))
			}()
			go func() {
				defer wg.Done()
				goErr = bot.mod.Call(ctx, a, duetcall.Media{Audio: true})
			}()
			wg.Wait()
			if !r.OK || goErr != nil {
				t.Fatalf("browser call: %+v, Go call: %v; want both to start", r, goErr)
			}
			st := alice.waitState("connected", 15*time.Second)
			gst := bot.waitState(15*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
			t.Logf("the call that connected: browser %s, Go %s (browser history %v)", st.CallID, gst.CallID, st.History)
			if st.CallID != gst.CallID {
				t.Errorf("the browser connected in call %q, the Go peer in %q; want one call", st.CallID, gst.CallID)
			}
			if won := st.CallID == o.id; won != o.browserWins {
				t.Errorf("call %q connected; want the one with the lesser id (the browser's is %q)", st.CallID, o.id)
			}
			if s := drive[jsStatus](alice, 5*time.Second, "status()"); slices.Contains(s.History, "rejected") || slices.Contains(s.History, "ended") || len(s.Errors) != 0 {
				t.Errorf("browser: history %v, errors %+v; want no rejection, ending or error", s.History, s.Errors)
			}
			waitInboundAudio(t, alice)
			drive[jsResult](alice, 10*time.Second, "hangup()")
			bot.waitState(10*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
		})
	}
}

// TestCallsNetworkChange: the caller's browser reports a network change
// (the online event) mid-call: its relay connection reconnects and the call
// restarts ICE at once (PROTOCOL §10.6) over it, and goes on connected with
// media both ways, no error on either side.
func TestCallsNetworkChange(t *testing.T) {
	env := startCallEnv(t)
	alice, bob := env.browserCall(t, false, nil)

	drive[bool](alice, 5*time.Second, "online()")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		d := alice.stats()
		if d.Restarts == 1 && d.State == "connected" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice after the online event: %s; want one ICE restart and the call connected", d)
		}
	}
	before := bob.stats()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		d := bob.stats()
		if d.Restarts == 1 && d.InAudio != nil && before.InAudio != nil && d.InAudio.BytesReceived > before.InAudio.BytesReceived+1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob after alice's restart: %s; want the restart answered and audio still arriving", d)
		}
	}
	for _, tb := range []*tab{alice, bob} {
		if st := drive[jsStatus](tb, 5*time.Second, "status()"); st.State != "connected" || len(st.Errors) != 0 {
			t.Errorf("%s after the network change: %+v; want still connected, no error", tb.name, st)
		}
	}
	drive[jsResult](alice, 10*time.Second, "hangup()")
	bob.waitState("hangup", 10*time.Second)
}

// TestCallsThreeDevices: one user with three devices, two Go (the same
// identity, re-registered: the same alias) and one browser, is called by a
// browser (PROTOCOL §10.4). All three ring; one Go device answers; the
// other Go device and the browser stop ringing with answered_elsewhere
// (how long after the answer is logged), neither with an error; the
// answering device's recording decodes, the other Go device records
// nothing.
func TestCallsThreeDevices(t *testing.T) {
	env := startCallEnv(t)
	ctx := context.Background()
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	web := env.openTab(t, "bob-web", "")
	bob := web.setup(false)
	id, err := identity.FromMnemonic(drive[string](web, 5*time.Second, "identityMnemonic()"))
	if err != nil {
		t.Fatal(err)
	}
	bots := []*goBot{env.newGoBotWith(t, "bob-go1", botOptions{identity: id}), env.newGoBotWith(t, "bob-go2", botOptions{identity: id})}
	for _, b := range bots {
		if b.alias != bob {
			t.Fatalf("%s registered as %s, want the browser's alias %s", b.name, b.alias, bob)
		}
	}

	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bob)); !r.OK {
		t.Fatalf("call: %+v", r)
	}
	in := drive[jsIncoming](web, 15*time.Second, "nextIncoming(10000)")
	for _, b := range bots {
		b.waitRing(10 * time.Second)
	}
	if err := bots[0].mod.Answer(ctx); err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	wst := web.waitState("hangup", 10*time.Second)
	t.Logf("the browser device stopped ringing %v after the Go device answered", time.Since(answered).Round(time.Millisecond))
	if wst.Reason != "answered_elsewhere" || wst.CallID != in.CallID || len(wst.Errors) != 0 || slices.Contains(wst.History, "connecting") {
		t.Errorf("the browser device after a Go device answered: %+v; want hangup (answered_elsewhere), no error", wst)
	}
	gst := bots[1].waitState(10*time.Second, "answered elsewhere", func(s duetcall.Status) bool { return s.State.Terminal() })
	t.Logf("the other Go device stopped ringing %v after the answer: %+v", time.Since(answered).Round(time.Millisecond), gst)
	if gst.Reason != duetcall.ReasonAnsweredElsewhere {
		t.Errorf("the other Go device: %+v; want answered_elsewhere", gst)
	}
	select {
	case err := <-bots[1].errs:
		t.Errorf("the other Go device got an error: %v", err)
	default:
	}

	st := alice.waitState("connected", 15*time.Second)
	bots[0].waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	checkGoMedia(t, bots[0], true)
	drive[jsResult](alice, 10*time.Second, "hangup()")
	bots[0].waitState(10*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
	checkRecording(t, bots[0], st.CallID, 20)
	if p := bots[1].recording(st.CallID); p != "" {
		t.Errorf("the Go device that did not answer recorded the call: %s", p)
	}
}
