package relay

import (
	"context"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testnats"
)

// TestTwoNodes runs two relays on one real nats-server (TCP, JetStream):
// they share the directory and route envelopes between their sessions.
func TestTwoNodes(t *testing.T) {
	ns := testnats.Start(t)
	r1 := startRelay(t, Options{NATSURL: ns.ClientURL()}, nil)
	r2 := startRelay(t, Options{NATSURL: ns.ClientURL()}, nil)
	if r1.srv.Embedded() || r2.srv.Embedded() {
		t.Fatal("relays with NATSURL run an embedded NATS")
	}
	a := r1.newUser(t)
	b := r2.newUser(t)
	// Same key on the other node: same alias.
	if got := r2.register(t, a.id); got != a.alias {
		t.Fatalf("a on node 2: %s, want %s", got, a.alias)
	}
	// A challenge from one node is single-use on the other too.
	ch := r1.challenge(t)
	if code, _ := r2.tryRegister(t, b.id, ch, b.id.priv); code != 200 {
		t.Fatalf("challenge of node 1 on node 2: %d", code)
	}
	if code, res := r1.tryRegister(t, b.id, ch, b.id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Fatalf("replay on node 1: %d %+v", code, res)
	}

	ca := r1.connect(t, a.id, a.alias)
	cb := r2.connect(t, b.id, b.alias)
	// Tokens of one node work on the other.
	var keys keysResponse
	if code := r2.do(t, "GET", "/api/v1/keys/"+string(a.alias), ca.token, nil, &keys); code != 200 || string(keys.Ed25519) != string(a.id.pub) {
		t.Fatalf("node 1 token on node 2: %d %+v", code, keys)
	}
	if code := r1.do(t, "GET", "/api/v1/keys/"+string(b.alias), cb.token, nil, &keys); code != 200 || string(keys.Ed25519) != string(b.id.pub) {
		t.Fatalf("node 2 token on node 1: %d %+v", code, keys)
	}

	e := ca.env(b.alias, "1to2")
	ca.send(e)
	cb.expectEnvelope(e)
	e = cb.env(a.alias, "2to1")
	cb.send(e)
	ca.expectEnvelope(e)

	// b's second device on node 1: both devices get a's envelopes.
	cb2 := r1.connect(t, b.id, b.alias)
	e = ca.env(b.alias, "both")
	ca.send(e)
	cb.expectEnvelope(e)
	cb2.expectEnvelope(e)

	// Offline across nodes: undeliverable from node 2.
	c := r1.newUser(t)
	start := time.Now()
	cb.send(cb.env(c.alias, "nobody"))
	if m := cb.next(time.Second); m["type"] != "undeliverable" || m["id"] != "nobody" {
		t.Fatalf("got %v, want undeliverable", m)
	}
	t.Logf("cross-node undeliverable after %v", time.Since(start))
}

// TestRestart stops a relay and starts a new one on the same data dir.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	r := startRelay(t, Options{DataDir: dir}, nil)
	a, b := r.newUser(t), r.newUser(t)
	token := r.connect(t, a.id, a.alias).token
	r.stop()

	r = startRelay(t, Options{DataDir: dir}, nil)
	var keys keysResponse
	if code := r.do(t, "GET", "/api/v1/keys/"+string(b.alias), token, nil, &keys); code != 200 || string(keys.Ed25519) != string(b.id.pub) || string(keys.X25519) != string(b.id.x) {
		t.Fatalf("after restart, with the old token: %d %+v", code, keys)
	}
	if got := r.register(t, a.id); got != a.alias {
		t.Fatalf("after restart a registers as %s, want %s", got, a.alias)
	}
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	e := ca.env(b.alias, "again")
	ca.send(e)
	cb.expectEnvelope(e)
}

func TestNewErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := New(ctx, Options{}); err == nil {
		t.Error("New without DataDir or NATSURL succeeded")
	}
	if _, err := New(ctx, Options{NATSURL: "nats://127.0.0.1:1", Logger: testLogger(t)}); err == nil {
		t.Error("New with an unreachable NATS succeeded")
	}
}

// TestReadyWithoutNATS: /readyz answers 503 once the external NATS is gone,
// while /healthz (the process is alive) still answers 200.
func TestReadyWithoutNATS(t *testing.T) {
	ns := testnats.Start(t)
	r := startRelay(t, Options{NATSURL: ns.ClientURL()}, nil)
	var st map[string]string
	if code := r.do(t, "GET", "/readyz", "", nil, &st); code != 200 || st["status"] != "ready" {
		t.Fatalf("readyz with NATS: %d %v", code, st)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	var e apiError
	eventually(t, 15*time.Second, "readyz 503 without NATS", func() bool {
		return r.do(t, "GET", "/readyz", "", nil, &e) == 503
	})
	if e.Error != "nats_unavailable" && e.Error != "directory_unavailable" {
		t.Errorf("readyz without NATS: %+v", e)
	}
	if code := r.do(t, "GET", "/healthz", "", nil, &st); code != 200 {
		t.Errorf("healthz without NATS: %d", code)
	}
}
