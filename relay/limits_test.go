package relay

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
)

// TestReadingRecipientKeptFairDrop: senders overfilling a recipient whose
// writer still makes progress never get it disconnected; the heaviest
// sender's frames are dropped (recipient_busy, told to it and counted),
// a light sender's get through.
func TestReadingRecipientKeptFairDrop(t *testing.T) {
	r, hold := startRelayHeld(t, Options{}, func(tu *tunables) {
		tu.queueLen = 40            // and the senders' notices always fit theirs
		tu.stallTimeout = time.Hour // the held writer counts as progressing
	})
	a, b, c := r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cc := r.connect(t, a.id, a.alias), r.connect(t, c.id, c.alias)
	cb := r.connect(t, b.id, b.alias)
	h := hold(r.sessionOf(t, b.alias))
	ca.send(ca.env(b.alias, "a0"))
	<-h.entered
	for i := 1; i < 60; i++ { // a, the heavy sender, fills b's queue
		ca.send(ca.env(b.alias, fmt.Sprint("a", i)))
	}
	busy := 0
	for busy < 60-40 {
		m := ca.next(5 * time.Second)
		if m["type"] != "undeliverable" || m["reason"] != "recipient_busy" || m["to"] != string(b.alias) {
			t.Fatalf("a got %v, want undeliverable recipient_busy", m)
		}
		busy++
	}
	// c's frames take the place of a's.
	cc.send(cc.env(b.alias, "c1"))
	cc.send(cc.env(b.alias, "c2"))
	for range 2 {
		if m := ca.next(5 * time.Second); m["reason"] != "recipient_busy" {
			t.Fatalf("a got %v, want recipient_busy for an evicted frame", m)
		}
	}
	cc.none(200 * time.Millisecond)
	h.letGo()
	got := map[string]bool{}
	for range 40 {
		m := cb.next(5 * time.Second)
		got[m["id"].(string)] = true
	}
	if !got["c1"] || !got["c2"] || !got["a0"] {
		t.Errorf("b got %v, want a0, c1 and c2 among them", got)
	}
	if v := r.metric(t, `duet_relay_drops_total{reason="recipient_busy"}`); v != 22 {
		t.Errorf("recipient_busy drops %v, want 22", v)
	}
	if v := r.metric(t, `duet_relay_disconnects_total{reason="slow_consumer"}`); v > 0 {
		t.Errorf("slow_consumer disconnects %v", v)
	}
	cb.send(cb.env(a.alias, "still-open"))
	for {
		if m := ca.next(5 * time.Second); m["id"] == "still-open" {
			break
		}
	}
}

// TestSessionsPerAliasCap: past the cap the newest session is refused with
// 1013 too_many_sessions; a slot freed is taken again.
func TestSessionsPerAliasCap(t *testing.T) {
	r := startRelay(t, Options{MaxSessionsPerAlias: 2}, nil)
	a := r.newUser(t)
	c1 := r.connect(t, a.id, a.alias)
	r.connect(t, a.id, a.alias)
	r.expectRefused(t, a)
	if v := r.metric(t, `duet_relay_sessions_refused_total`); v != 1 {
		t.Errorf("sessions refused %v, want 1", v)
	}
	c1.conn.Close(websocket.StatusNormalClosure, "")
	eventually(t, 10*time.Second, "a slot free again", func() bool {
		return r.metric(t, `duet_relay_sessions`) == 1
	})
	r.connect(t, a.id, a.alias)
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && indexOf(s, sub) >= 0
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestRateLimitSharedByAlias: an alias's sessions share one rate limit, and
// a new session does not refill it.
func TestRateLimitSharedByAlias(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.rateLimit, tu.rateBurst = 0.01, 4 })
	a, b := r.newUser(t), r.newUser(t)
	cb := r.connect(t, b.id, b.alias)
	// Each accepted envelope is awaited at b: frames on different
	// connections are otherwise processed in any order.
	sendOK := func(c *testClient, id string) {
		t.Helper()
		c.send(c.env(b.alias, id))
		if m := cb.next(5 * time.Second); m["id"] != id {
			t.Fatalf("b got %v, want %s", m, id)
		}
	}
	c1 := r.connect(t, a.id, a.alias)
	sendOK(c1, "x0")
	sendOK(c1, "x1")
	c1.conn.Close(websocket.StatusNormalClosure, "")
	c2 := r.connect(t, a.id, a.alias)
	c3 := r.connect(t, a.id, a.alias)
	sendOK(c2, "x2")
	sendOK(c3, "x3")
	c2.send(c2.env(b.alias, "x4"))
	c2.expectError("rate_limited", "x4")
	c3.send(c3.env(b.alias, "x5"))
	c3.expectError("rate_limited", "x5")
}

// TestPingFloodClosed: WebSocket pings count against the session's frame
// budget; a session flooding them is closed with 1008.
func TestPingFloodClosed(t *testing.T) {
	r := startRelay(t, Options{Now: frozenClock()}, func(tu *tunables) {
		tu.rateLimit, tu.rateBurst = 1, 5 // frame budget: 2/s, burst 10
		tu.frameFlood = 20
	})
	a := r.newUser(t)
	c := r.connect(t, a.id, a.alias)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	for ; n < 100; n++ {
		if err := c.conn.Ping(ctx); err != nil {
			break
		}
	}
	if code := c.closed(10 * time.Second); code != websocket.StatusPolicyViolation {
		t.Fatalf("after %d pings: close %v, want 1008", n, code)
	}
	if n < 28 || n > 30 {
		t.Errorf("closed after %d pings, want about 29 (burst 10 less the auth frame, + 20 over)", n)
	}
	if v := r.metric(t, `duet_relay_ws_frames_over_budget_total`); v < 20 {
		t.Errorf("frames over budget %v, want at least 20", v)
	}
}

// TestNodeBudget: past the node's queued-bytes budget envelopes are dropped
// (node_budget) and their senders told recipient_busy.
func TestNodeBudget(t *testing.T) {
	r, hold := startRelayHeld(t, Options{QueueBudget: 2000}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	r.connect(t, b.id, b.alias)
	h := hold(r.sessionOf(t, b.alias))
	ca.send(ca.env(b.alias, "e0"))
	<-h.entered
	for i := 1; i < 20; i++ {
		ca.send(ca.env(b.alias, fmt.Sprint("e", i)))
	}
	m := ca.next(5 * time.Second)
	if m["type"] != "undeliverable" || m["reason"] != "recipient_busy" {
		t.Fatalf("a got %v, want recipient_busy", m)
	}
	if v := r.metric(t, `duet_relay_drops_total{reason="node_budget"}`); v < 1 {
		t.Errorf("node_budget drops %v", v)
	}
	// b's envelopes stay within the budget (the relay's own notices to a
	// are queued past it).
	h.s.mu.Lock()
	q := h.s.qBytes
	h.s.mu.Unlock()
	if q > 2000 {
		t.Errorf("%d bytes queued for b, over the budget", q)
	}
	h.letGo()
	eventually(t, 10*time.Second, "the budget given back", func() bool { return r.srv.budget.queued.Load() == 0 })
}

// TestInboundFairShare: past a recipient's byte budget, a sender under its
// share of the second still passes; the heavy one does not.
func TestInboundFairShare(t *testing.T) {
	tun := defaultTunables
	tun.recipientRate, tun.recipientBurst = 100<<10, 100<<10
	in := &inbound{}
	now := time.Unix(1000, 0)
	heavy, light := identity.Alias("u11111111"), identity.Alias("u22222222")
	passed := 0
	for range 100 {
		if in.allow(heavy, 4<<10, now, &tun) {
			passed++
		}
	}
	if passed != 25 {
		t.Errorf("heavy passed %d frames of 4 KiB, want the burst's 25", passed)
	}
	if !in.allow(light, 4<<10, now, &tun) {
		t.Error("a light sender was refused")
	}
	if in.allow(heavy, 4<<10, now, &tun) {
		t.Error("the heavy sender passed past the budget")
	}
	if !in.allow(heavy, 4<<10, now.Add(time.Second), &tun) {
		t.Error("the budget did not refill")
	}
}

// TestByteBudgetDelaysNotRefuses: past its byte budget an alias's frames
// are read more slowly, not refused: every envelope arrives, no notice.
func TestByteBudgetDelaysNotRefuses(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.byteRate, tu.byteBurst = 64<<10, 4<<10 })
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	var want []string
	for i := range 20 { // ~20 KiB: five times the burst
		e := ca.env(b.alias, fmt.Sprint("big", i))
		e.Payload = strings.Repeat("A", 1000)
		ca.send(e)
		want = append(want, e.ID)
	}
	for _, id := range want {
		if m := cb.next(10 * time.Second); m["id"] != id {
			t.Fatalf("b got %v, want %s", m, id)
		}
	}
	// A refusal notice would have been written before the envelope was
	// routed: none is there.
	if n := len(ca.frames); n != 0 {
		t.Errorf("a got %d notices: %v", n, <-ca.frames)
	}
}

// TestBulkFramesPaced: frames larger than bulkFrame wait for the node's
// bulk pace, small frames do not. The clock is frozen, so the pace's bucket
// (one largest frame) never refills: a's second 40 KiB envelope waits (up
// to maxThrottle) while c's small one, sent after it, is delivered.
func TestBulkFramesPaced(t *testing.T) {
	r := startRelay(t, Options{Now: frozenClock()}, func(tu *tunables) { tu.bulkRate = 1 })
	a, b, c := r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cb, cc := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias), r.connect(t, c.id, c.alias)
	for _, id := range []string{"big1", "big2"} {
		e := ca.env(b.alias, id)
		e.Payload = strings.Repeat("A", 40<<10)
		ca.send(e)
	}
	if m := cb.next(10 * time.Second); m["id"] != "big1" {
		t.Fatalf("b got %v first, want big1", m["id"])
	}
	cc.send(cc.env(b.alias, "small"))
	if m := cb.next(5 * time.Second); m["id"] != "small" {
		t.Fatalf("b got %v, want small (big2 waits for the bulk pace)", m["id"])
	}
}

// TestBulkBacklogBounded: frames that would wait longer than maxThrottle
// for the bulk pace go after maxThrottle without adding to its backlog, so
// a frame sent after them waits for the pace as it stands, not for every
// capped frame before it (with the clock frozen and the pace at 1 byte/s,
// no backlog ever drains: any capped frame left in it would show).
func TestBulkBacklogBounded(t *testing.T) {
	now := frozenClock()
	r := startRelay(t, Options{Now: now}, func(tu *tunables) { tu.bulkRate, tu.maxThrottle = 1, 100*time.Millisecond })
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	ids := []string{"big1", "big2", "big3", "big4"}
	for _, id := range ids {
		e := ca.env(b.alias, id)
		e.Payload = strings.Repeat("A", 40<<10)
		ca.send(e)
	}
	for _, id := range ids { // big2-big4 each after maxThrottle
		if m := cb.next(10 * time.Second); m["id"] != id {
			t.Fatalf("b got %v, want %s", m["id"], id)
		}
	}
	// big1 took its turn from the full bucket; the others gave theirs back.
	if tokens := r.srv.bulk().TokensAt(now()); tokens < 0 {
		t.Fatalf("the bulk pace's backlog is %.0f bytes after the capped frames went, want none", -tokens)
	}
}

// TestLargeOfferNotPacedBehindBulk: a call offer larger than bulkFrame (a
// sealed SDP can be) from an alias within its budgets is not paced behind
// another alias's bulk frames (BulkAllowance); the alias's large frames
// past its allowance are.
func TestLargeOfferNotPacedBehindBulk(t *testing.T) {
	r := startRelay(t, Options{Now: frozenClock()}, func(tu *tunables) { tu.bulkRate = 1 })
	a, b, c, d := r.newUser(t), r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cb, cc, cd := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias), r.connect(t, c.id, c.alias), r.connect(t, d.id, d.alias)
	// a's bulk frames leave the pace (one largest frame, at 1 byte/s on a
	// frozen clock: it never refills) with less than an offer: big1 and
	// big3 take their turns at once, big2 is within a's allowance.
	for _, f := range []struct {
		id   string
		size int
	}{{"big1", 40 << 10}, {"big2", 20 << 10}, {"big3", 20 << 10}} {
		e := ca.env(b.alias, f.id)
		e.Payload = strings.Repeat("A", f.size)
		ca.send(e)
		if m := cb.next(10 * time.Second); m["id"] != f.id {
			t.Fatalf("b got %v, want %s", m["id"], f.id)
		}
	}
	offer := func(id string) {
		e := cc.env(b.alias, id)
		e.Payload = strings.Repeat("A", 8<<10)
		cc.send(e)
	}
	// The pace has no room for an offer; c's offers do not wait for it, up
	// to c's allowance (32 KiB: three 8 KiB offers).
	for _, id := range []string{"offer1", "offer2", "offer3"} {
		offer(id)
		if m := cb.next(5 * time.Second); m["id"] != id {
			t.Fatalf("b got %v, want %s (not paced behind big2)", m["id"], id)
		}
	}
	offer("offer4") // past c's allowance: paced
	cd.send(cd.env(b.alias, "small"))
	if m := cb.next(5 * time.Second); m["id"] != "small" {
		t.Fatalf("b got %v, want small (offer4 waits for the bulk pace)", m["id"])
	}
}
