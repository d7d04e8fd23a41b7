package nattest

import (
	"strings"
	"testing"
	"time"
)

// twoUsers makes the caller (in a) and the callee (in b, answering).
func twoUsers(l *lab, r relayOpts) (homeA, aliasB string) {
	homeA, _ = l.newUser(l.a, r)
	homeB, aliasB := l.newUser(l.b, r)
	l.answer(homeB, r)
	return homeA, aliasB
}

func direct(c string) bool { return c == "host" || c == "srflx" || c == "prflx" }

func expectConnected(t *testing.T, res callResult, relayed bool) {
	t.Helper()
	if res.code != 0 || !strings.Contains(res.out, "state: connected") {
		t.Fatalf("call failed (exit %d):\n%s", res.code, res.out)
	}
	if relayed && res.local != "relay" && res.remote != "relay" {
		t.Fatalf("candidates %s/%s, want a relayed pair", res.local, res.remote)
	}
	if !relayed && (!direct(res.local) || !direct(res.remote)) {
		t.Fatalf("candidates %s/%s, want a direct pair", res.local, res.remote)
	}
	t.Logf("setup (calling -> connected as seen in the CLI's output) %v, candidates %s/%s", res.setup.Round(time.Millisecond), res.local, res.remote)
}

func TestConeConeDirect(t *testing.T) {
	l := newLab(t, cone, open, cone, open)
	r := l.startRelay(relayOpts{})
	home, peer := twoUsers(l, r)
	expectConnected(t, l.placeCall(home, peer, r, 2*time.Second, 60*time.Second), false)
}

func TestSymmetricFallsBackToTURN(t *testing.T) {
	l := newLab(t, symmetric, open, symmetric, open)
	r := l.startRelay(relayOpts{})
	home, peer := twoUsers(l, r)
	expectConnected(t, l.placeCall(home, peer, r, 2*time.Second, 60*time.Second), true)
}

// TestUDPBlockedUsesTURNOverTCP: both routers drop all UDP; the embedded
// TURN's TCP listener (on by default) carries the call.
func TestUDPBlockedUsesTURNOverTCP(t *testing.T) {
	l := newLab(t, cone, blockUDP, cone, blockUDP)
	r := l.startRelay(relayOpts{})
	home, peer := twoUsers(l, r)
	expectConnected(t, l.placeCall(home, peer, r, 2*time.Second, 60*time.Second), true)
}

// TestOnly443UsesTURNOverTLS: the routers let only TCP 443 out; the relay
// serves HTTPS, WSS and TURN over TLS on 443 (one port, tlsmux) with a
// certificate from a CA made here, which the clients trust.
func TestOnly443UsesTURNOverTLS(t *testing.T) {
	l := newLab(t, cone, only443, cone, only443)
	r := l.startRelay443()
	home, peer := twoUsers(l, r)
	expectConnected(t, l.placeCall(home, peer, r, 2*time.Second, 60*time.Second), true)
}

// TestNoTURNSymmetricFailsFast: no TURN anywhere and symmetric NATs on
// both sides: no pair can work. The call must end with ice_failed and say
// why, quickly (the figure is logged; the target is 15 s).
func TestNoTURNSymmetricFailsFast(t *testing.T) {
	l := newLab(t, symmetric, open, symmetric, open)
	r := l.startRelay(relayOpts{args: []string{"--no-turn"}})
	home, peer := twoUsers(l, r)
	start := time.Now()
	res := l.placeCall(home, peer, r, 2*time.Second, 120*time.Second)
	if res.code == 0 || !strings.Contains(res.out, "ice_failed") {
		t.Fatalf("want the call to end with ice_failed (exit %d):\n%s", res.code, res.out)
	}
	if !strings.Contains(res.out, "no TURN server to fall back to") {
		t.Fatalf("the failure does not say why (no TURN, symmetric NATs):\n%s", res.out)
	}
	t.Logf("ice_failed after %v; caller's output:\n%s", time.Since(start).Round(100*time.Millisecond), res.out)
}

// TestAddressChangeWhileIdle: the callee's address changes while `duet
// answer` waits (a DHCP renew, another Wi-Fi): its relay connection is
// dead, it reconnects at once, and the next call rings. The relay drops
// the dead session by its liveness ping: nothing answers on the old
// address (a short ping interval and timeout here, 20 s and 10 s by
// default).
func TestAddressChangeWhileIdle(t *testing.T) {
	l := newLab(t, cone, open, cone, open)
	r := l.startRelay(relayOpts{args: []string{"--ws-ping-interval", "2s", "--ws-ping-timeout", "2s"}})
	homeA, _ := l.newUser(l.a, r)
	homeB, aliasB := l.newUser(l.b, r)
	ans := l.answer(homeB, r)
	ans.waitFor(t, `msg="connected to the relay"`, 30*time.Second)
	l.changeAddress(&l.b, "10.0.3.3")
	r.proc.waitFor(t, `msg="relay: session closed" alias=`+aliasB+` reason=ping_timeout`, 30*time.Second)
	ans.waitFor(t, `relay connection is dead`, 30*time.Second)
	// Connected a second time (the client logs each connection).
	ans.waitFor(t, `(?s)msg="connected to the relay".*msg="connected to the relay"`, 30*time.Second)
	res := l.placeCall(homeA, aliasB, r, 2*time.Second, 60*time.Second)
	if res.code != 0 || !strings.Contains(res.out, "state: connected") {
		t.Fatalf("call after the callee's address change failed (exit %d):\n%s", res.code, res.out)
	}
	if !strings.Contains(ans.out.String(), "incoming audio call") {
		t.Fatalf("the callee never rang:\n%s", ans.out.String())
	}
}
