package nattest

import (
	"regexp"
	"testing"
	"time"
)

// doctor runs `duet doctor` in a's namespace and returns its exit code and
// output.
func (l *lab) doctor(r relayOpts) (int, string) {
	l.t.Helper()
	p := l.start("doctor", l.a.host, r.env, "doctor", "--relay", r.url, "--home", l.t.TempDir(), "--timeout", "3s")
	code := p.wait(l.t, 90*time.Second)
	return code, p.out.String()
}

func expectLine(t *testing.T, out, verdict, check, detail string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(verdict) + `\s+` + regexp.QuoteMeta(check) + `\s+.*` + regexp.QuoteMeta(detail))
	if !re.MatchString(out) {
		t.Errorf("no %q line for %q with %q in:\n%s", verdict, check, detail, out)
	}
}

// TestDoctor: `duet doctor` behind each kind of network tells what works
// and what does not, with a fix.
func TestDoctor(t *testing.T) {
	t.Run("cone", func(t *testing.T) {
		l := newLab(t, cone, open, cone, open)
		r := l.startRelay(relayOpts{})
		code, out := l.doctor(r)
		t.Logf("\n%s", out)
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
		expectLine(t, out, "ok", "STUN", "behind a NAT")
		expectLine(t, out, "ok", "NAT mapping", "endpoint-independent")
		expectLine(t, out, "ok", "TURN udp", "relayed echo")
		expectLine(t, out, "ok", "TURN tcp", "relayed echo")
		expectLine(t, out, "warn", "TLS", "plain http")
	})
	t.Run("symmetric", func(t *testing.T) {
		l := newLab(t, symmetric, open, cone, open)
		r := l.startRelay(relayOpts{})
		_, out := l.doctor(r)
		t.Logf("\n%s", out)
		expectLine(t, out, "warn", "NAT mapping", "symmetric")
	})
	t.Run("udp-blocked", func(t *testing.T) {
		l := newLab(t, cone, blockUDP, cone, open)
		r := l.startRelay(relayOpts{})
		code, out := l.doctor(r)
		t.Logf("\n%s", out)
		if code != 0 {
			t.Errorf("exit %d, want 0 (TURN over TCP works)", code)
		}
		expectLine(t, out, "warn", "STUN", "no answer")
		expectLine(t, out, "ok", "TURN tcp", "allocated")
	})
	t.Run("only-443-tls", func(t *testing.T) {
		l := newLab(t, cone, only443, cone, open)
		r := l.startRelay443()
		code, out := l.doctor(r)
		t.Logf("\n%s", out)
		if code != 0 {
			t.Errorf("exit %d, want 0 (TURN over TLS works)", code)
		}
		// The test certificate lives a day: valid, but about to expire.
		expectLine(t, out, "warn", "TLS", "valid for "+relayIP)
		expectLine(t, out, "warn", "TURN tcp", "connecting")
		expectLine(t, out, "ok", "TURN tls", "allocated")
	})
	t.Run("no-turn-reachable", func(t *testing.T) {
		l := newLab(t, cone, only443, cone, open)
		r := l.startRelay(relayOpts{args: []string{"--addr", relayIP + ":443"}, url: "http://" + relayIP + ":443"})
		code, out := l.doctor(r)
		t.Logf("\n%s", out)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		expectLine(t, out, "FAIL", "TURN", "no allocation worked")
	})
}
