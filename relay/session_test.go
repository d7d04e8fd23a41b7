package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/wire"
)

func TestExchange(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)

	for _, typ := range wire.CallTypes {
		e := ca.env(b.alias, "m1")
		e.Type = typ
		ca.send(e)
		cb.expectEnvelope(e)
		back := cb.env(a.alias, "")
		back.Type = typ
		cb.send(back)
		ca.expectEnvelope(back)
	}
	// Whitespace and field order are not forwarded: the relay re-encodes.
	e := ca.env(b.alias, "m2")
	raw, _ := json.Marshal(e)
	ca.send([]byte("  " + string(raw) + "\n"))
	cb.expectEnvelope(e)
	ca.none(100 * time.Millisecond)

	if got := r.metric(t, `duet_relay_envelopes_in_total{type="call_offer"}`); got != 3 {
		t.Errorf("envelopes in call_offer = %v, want 3", got)
	}
	if got := r.metric(t, `duet_relay_envelopes_out_total{type="call_hangup"}`); got != 2 {
		t.Errorf("envelopes out call_hangup = %v, want 2", got)
	}
	if got := r.metric(t, "duet_relay_sessions"); got != 2 {
		t.Errorf("sessions = %v, want 2", got)
	}
}

// TestLocalDeliveryWithoutNATS: on the embedded NATS, envelopes between
// sessions of one node are delivered directly, none published; an envelope
// for an alias with no session still goes to NATS, whose no-responders
// answer makes the undeliverable notice.
func TestLocalDeliveryWithoutNATS(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	if !r.srv.Embedded() {
		t.Fatal("the relay does not run the embedded NATS")
	}
	a, b, c := r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	before := r.srv.nats.nc.Stats().OutMsgs
	for i := range 20 {
		e := ca.env(b.alias, fmt.Sprintf("m%d", i))
		ca.send(e)
		cb.expectEnvelope(e)
	}
	if n := r.srv.nats.nc.Stats().OutMsgs - before; n != 0 {
		t.Errorf("%d messages published for 20 envelopes between sessions of the node, want 0", n)
	}
	ca.send(ca.env(c.alias, "off"))
	if m := ca.next(5 * time.Second); m["type"] != "undeliverable" || m["id"] != "off" || m["reason"] != "offline" {
		t.Fatalf("got %v, want undeliverable offline", m)
	}
	if n := r.srv.nats.nc.Stats().OutMsgs - before; n != 1 {
		t.Errorf("%d messages published for one envelope to an alias without a session, want 1", n)
	}
}

func TestFanOutToEveryDevice(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	b1, b2, b3 := r.connect(t, b.id, b.alias), r.connect(t, b.id, b.alias), r.connect(t, b.id, b.alias)
	e := ca.env(b.alias, "x")
	ca.send(e)
	for _, c := range []*testClient{b1, b2, b3} {
		c.expectEnvelope(e)
	}
	// A device leaving does not unsubscribe the others.
	b1.conn.Close(websocket.StatusNormalClosure, "bye")
	b1.closed(5 * time.Second)
	eventually(t, 5*time.Second, "b1 gone", func() bool { return r.metric(t, "duet_relay_sessions") == 3 })
	e = ca.env(b.alias, "y")
	ca.send(e)
	b2.expectEnvelope(e)
	b3.expectEnvelope(e)
	// A device of the sender receives envelopes for the sender's alias only.
	ca.none(100 * time.Millisecond)
}

func TestUndeliverable(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)

	start := time.Now()
	ca.send(ca.env(b.alias, "offer-1"))
	m := ca.next(time.Second)
	if m["type"] != "undeliverable" || m["id"] != "offer-1" || m["to"] != string(b.alias) || m["reason"] != "offline" || len(m) != 4 {
		t.Fatalf("got %v, want undeliverable offer-1", m)
	}
	t.Logf("undeliverable after %v", time.Since(start))

	// Without an id: counted, no notice.
	ca.send(ca.env(b.alias, ""))
	ca.none(300 * time.Millisecond)
	eventually(t, 2*time.Second, "silent undeliverable counted", func() bool {
		return r.metric(t, `duet_relay_undeliverable_total{notice="silent"}`) == 1
	})
	if got := r.metric(t, `duet_relay_undeliverable_total{notice="sent"}`); got != 1 {
		t.Errorf("undeliverable sent = %v, want 1", got)
	}

	// Once b connects and leaves again, the subscription is gone too.
	cb := r.connect(t, b.id, b.alias)
	e := ca.env(b.alias, "offer-2")
	ca.send(e)
	cb.expectEnvelope(e)
	cb.conn.Close(websocket.StatusNormalClosure, "")
	cb.closed(5 * time.Second)
	eventually(t, 5*time.Second, "b gone", func() bool { return r.metric(t, "duet_relay_sessions") == 1 })
	ca.send(ca.env(b.alias, "offer-3"))
	if m := ca.next(time.Second); m["type"] != "undeliverable" || m["id"] != "offer-3" {
		t.Fatalf("got %v, want undeliverable offer-3", m)
	}
}

func TestAuthFailures(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.authTimeout = 300 * time.Millisecond })
	a := r.newUser(t)

	expectClose := func(name string, conn *websocket.Conn, want websocket.StatusCode) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				if got := websocket.CloseStatus(err); got != want {
					t.Errorf("%s: closed with %v (%v), want %v", name, got, err, want)
				}
				// One reason for every cause: the close must not tell
				// whether the alias exists.
				var ce websocket.CloseError
				if errors.As(err, &ce) && ce.Reason != "unauthorized" {
					t.Errorf("%s: close reason %q, want unauthorized", name, ce.Reason)
				}
				return
			}
			t.Errorf("%s: unexpected frame %s", name, b)
		}
	}
	cases := []struct {
		name  string
		frame func(ch map[string]any) any
	}{
		{"envelope before auth", func(map[string]any) any {
			return &wire.Envelope{Type: wire.TypeCallOffer, To: a.alias, From: a.alias, CallID: "c", CryptoV: 2, Payload: "AA=="}
		}},
		{"not json", func(map[string]any) any { return []byte("hello") }},
		{"bad signature", func(ch map[string]any) any { return authFrameFor(t, ch, a.alias, newID(t).priv) }},
		{"unknown alias", func(ch map[string]any) any { return authFrameFor(t, ch, "u00000001", a.id.priv) }},
		{"extra field", func(ch map[string]any) any {
			f := authFrameFor(t, ch, a.alias, a.id.priv)
			f["x"] = "y"
			return f
		}},
		{"signature of another challenge", func(map[string]any) any {
			return authFrameFor(t, map[string]any{"type": "challenge", "challenge": b64.EncodeToString(make([]byte, 32))}, a.alias, a.id.priv)
		}},
	}
	for _, tc := range cases {
		conn := r.dial(t)
		writeJSONFrame(t, conn, tc.frame(readJSON(t, conn)))
		expectClose(tc.name, conn, StatusUnauthorized)
	}
	// A binary frame is refused before authentication (§9.2), even one
	// holding a valid auth frame.
	conn := r.dial(t)
	auth, _ := json.Marshal(authFrameFor(t, readJSON(t, conn), a.alias, a.id.priv))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageBinary, auth); err != nil {
		t.Fatal(err)
	}
	expectClose("binary auth frame", conn, StatusUnauthorized)
	// Silence: closed after the auth timeout.
	conn = r.dial(t)
	readJSON(t, conn)
	start := time.Now()
	expectClose("timeout", conn, StatusUnauthorized)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("auth timeout took %v", d)
	}
	for reason, want := range map[string]float64{"ws_unauthenticated_frame": 4, "ws_bad_signature": 2, "ws_unknown_alias": 1, "ws_timeout": 1} {
		if got := r.metric(t, `duet_relay_auth_failures_total{reason="`+reason+`"}`); got != want {
			t.Errorf("auth failures %s = %v, want %v", reason, got, want)
		}
	}
	// The relay still serves the legitimate user.
	r.connect(t, a.id, a.alias)
}

func TestRefusedFrames(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)

	spoofed := ca.env(b.alias, "s1")
	spoofed.From = b.alias
	ca.send(spoofed)
	ca.expectError("spoofed_from", "s1")

	ca.send([]byte(`{"type":"call_offer",`))
	ca.expectError("malformed", "")
	ca.send([]byte(`[1,2]`))
	ca.expectError("malformed", "")
	ca.send([]byte(`{"type":5}`))
	ca.expectError("malformed", "")
	bad := ca.env(b.alias, "m1")
	bad.CallID = "has space"
	ca.send(bad)
	ca.expectError("malformed", "m1")
	ca.send(map[string]any{"type": "call_offer", "to": b.alias, "from": a.alias, "call_id": "c", "crypto_v": 2, "payload": "AA==", "id": "m2", "sdp": "v=0"})
	ca.expectError("malformed", "m2")

	ca.send(map[string]any{"type": "chat_message", "to": b.alias, "from": a.alias, "id": "u1", "text": "hi"})
	ca.expectError("unknown_type", "u1")
	ca.send(map[string]any{"type": "auth", "alias": a.alias, "signature": "AA=="})
	ca.expectError("unknown_type", "")

	v1 := ca.env(b.alias, "v1")
	v1.CryptoV = 1
	raw, _ := json.Marshal(v1)
	ca.send(raw)
	ca.expectError("crypto_version", "v1")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca.conn.Write(ctx, websocket.MessageBinary, []byte("{}"))
	ca.expectError("malformed", "")

	// None of it reached b, and the session is still fine.
	cb.none(100 * time.Millisecond)
	e := ca.env(b.alias, "ok")
	ca.send(e)
	cb.expectEnvelope(e)
	if got := r.metric(t, `duet_relay_frames_refused_total{code="malformed"}`); got != 6 {
		t.Errorf("refused malformed = %v, want 6", got)
	}
}

func TestOversizedFrame(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	// The largest valid envelope passes.
	e := ca.env(b.alias, "big")
	e.Payload = strings.Repeat("A", wire.MaxPayloadSize)
	ca.send(e)
	cb.expectEnvelope(e)
	// A frame over 64 KiB closes with 1009.
	ca.send([]byte(`{"type":"call_offer","payload":"` + strings.Repeat("A", 64<<10) + `"}`))
	if got := ca.closed(5 * time.Second); got != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %v, want 1009", got)
	}
	e = cb.env(b.alias, "")
	cb.send(e)
	cb.expectEnvelope(e)
}

func TestFlood(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	e := ca.env(b.alias, "f")
	raw, _ := json.Marshal(e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent, start := 0, time.Now()
	for sent < 2000 {
		if err := ca.conn.Write(ctx, websocket.MessageText, raw); err != nil {
			break
		}
		sent++
	}
	if got := ca.closed(10 * time.Second); got != websocket.StatusPolicyViolation {
		t.Fatalf("flooder closed with %v, want 1008", got)
	}
	limited := 0
	for len(ca.frames) > 0 {
		if m := <-ca.frames; m["type"] == "error" && m["code"] == "rate_limited" && m["id"] == "f" {
			limited++
		}
	}
	if limited < 100 {
		t.Errorf("%d rate_limited notices, want many", limited)
	}
	// Every envelope the relay took from the flooder is queued to b before
	// its close: b's own envelope to itself, sent now, comes after them.
	cb.send(cb.env(b.alias, "marker"))
	delivered := 0
	for cb.next(10 * time.Second)["id"] != "marker" {
		delivered++
	}
	if delivered < 100 {
		t.Errorf("%d envelopes delivered to b, want at least the burst of 100", delivered)
	}
	elapsed := time.Since(start).Seconds()
	t.Logf("sent %d in %.1fs, %d delivered, %d rate_limited notices read", sent, elapsed, delivered, limited)
	if max := 100 + 50*elapsed + 10; float64(delivered) > max {
		t.Errorf("%d envelopes delivered to b, want at most %v (burst 100 + 50/s)", delivered, max)
	}
}

func TestSlowConsumer(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.rateLimit, tu.rateBurst = 1e6, 1e6
		tu.byteRate, tu.byteBurst = 1e12, 1<<40
		tu.stallTimeout = 200 * time.Millisecond // the writer is stuck from the start
		tu.queueLen = 16                         // fewer frames to send
		tu.writeTimeout = 60 * time.Second       // the queue fills before a write times out
	})
	a, b, c := r.newUser(t), r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	slow := r.connectOpt(t, b.id, b.alias, true) // never reads
	cc := r.connect(t, c.id, c.alias)
	big := ca.env(b.alias, "")
	big.Payload = strings.Repeat("A", wire.MaxPayloadSize)
	raw, _ := json.Marshal(big)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Socket buffers absorb some megabytes; then the queue (256) fills.
	for i := 0; i < 2000 && (i%20 != 0 || r.metric(t, `duet_relay_drops_total{reason="slow_consumer"}`) < 1); i++ {
		if err := ca.conn.Write(ctx, websocket.MessageText, raw); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 15*time.Second, "slow consumer disconnected", func() bool {
		return r.metric(t, `duet_relay_disconnects_total{reason="slow_consumer"}`) == 1
	})
	_ = slow
	// Other sessions are unaffected.
	e := ca.env(c.alias, "after")
	ca.send(e)
	cc.expectEnvelope(e)
	e = cc.env(a.alias, "back")
	cc.send(e)
	for {
		m := ca.next(5 * time.Second)
		if m["type"] == "undeliverable" {
			continue // envelopes sent to b after it was gone
		}
		if m["id"] != "back" {
			t.Fatalf("a got %v", m)
		}
		break
	}
}

func TestShutdownSendsReconnect(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a := r.newUser(t)
	c1, c2 := r.connect(t, a.id, a.alias), r.connect(t, a.id, a.alias)
	pending := r.dial(t) // not yet authenticated
	readJSON(t, pending)
	type result struct {
		frames []string
		code   websocket.StatusCode
	}
	pendingGot := make(chan result, 1)
	go func() {
		var res result
		for {
			_, b, err := pending.Read(context.Background())
			if err != nil {
				res.code = websocket.CloseStatus(err)
				pendingGot <- res
				return
			}
			res.frames = append(res.frames, string(b))
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{c1, c2} {
		if m := c.next(5 * time.Second); m["type"] != "reconnect" || len(m) != 1 {
			t.Fatalf("got %v, want reconnect", m)
		}
		if got := c.closed(5 * time.Second); got != websocket.StatusServiceRestart {
			t.Fatalf("closed with %v, want 1012", got)
		}
	}
	if got := <-pendingGot; len(got.frames) != 1 || got.frames[0] != `{"type":"reconnect"}` || got.code != websocket.StatusServiceRestart {
		t.Errorf("pending connection got %q and close %v, want reconnect and 1012", got.frames, got.code)
	}
	var e apiError
	if code := r.do(t, "GET", "/readyz", "", nil, &e); code != 503 {
		t.Errorf("readyz after shutdown: %d", code)
	}
	if err := r.srv.Shutdown(ctx); err != ErrClosed {
		t.Errorf("second Shutdown: %v, want ErrClosed", err)
	}
	// New sessions are refused.
	wsURL := strings.Replace(r.ts.URL, "http", "ws", 1) + "/api/v1/ws"
	if _, resp, err := websocket.Dial(ctx, wsURL, nil); err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("dial after shutdown: %v", err)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	var st map[string]string
	if code := r.do(t, "GET", "/healthz", "", nil, &st); code != 200 || st["status"] != "ok" {
		t.Errorf("healthz: %d %v", code, st)
	}
	if code := r.do(t, "GET", "/readyz", "", nil, &st); code != 200 || st["status"] != "ready" {
		t.Errorf("readyz: %d %v", code, st)
	}
	var e apiError
	if code := r.do(t, "GET", "/api/v1/nope", "", nil, &e); code != 404 || e.Error != "not_found" {
		t.Errorf("unknown endpoint: %d %+v", code, e)
	}
	for _, name := range []string{
		"duet_relay_sessions",
		`duet_relay_envelopes_in_total{type="call_offer"}`,
		`duet_relay_envelopes_out_total{type="call_ice"}`,
		`duet_relay_drops_total{reason="slow_consumer"}`,
		`duet_relay_drops_total{reason="route_backlog"}`,
		`duet_relay_drops_total{reason="session_closed"}`,
		`duet_relay_drops_total{reason="shutdown"}`,
		`duet_relay_undeliverable_total{notice="sent"}`,
		`duet_relay_frames_refused_total{code="rate_limited"}`,
	} {
		if got := r.metric(t, name); got != 0 {
			t.Errorf("%s = %v, want 0 on a fresh relay", name, got)
		}
	}
}

// fakeICE is an ICEProvider.
type fakeICE struct {
	fail atomic.Bool
	user chan identity.Alias
}

func (f *fakeICE) Get(ctx context.Context, user identity.Alias) (ice.Config, error) {
	f.user <- user
	var c ice.Config
	if f.fail.Load() {
		return c, errTest
	}
	c.TTL, c.ICETransportPolicy = 600, "all"
	c.ICEServers = append(c.ICEServers, ice.Server{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1:" + string(user), Credential: "c"})
	return c, nil
}

func TestICEConfig(t *testing.T) {
	fake := &fakeICE{user: make(chan identity.Alias, 10)}
	r := startRelay(t, Options{ICE: fake}, nil)
	a := r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	var e apiError
	if code := r.do(t, "GET", "/api/v1/calls/ice-config", "", nil, &e); code != 401 || e.Error != "unauthorized" {
		t.Errorf("no token: %d %+v", code, e)
	}
	var cfg map[string]any
	if code := r.do(t, "GET", "/api/v1/calls/ice-config", ca.token, nil, &cfg); code != 200 {
		t.Fatalf("ice-config: %d %v", code, cfg)
	}
	if u := <-fake.user; u != a.alias {
		t.Errorf("provider asked for %s, want %s", u, a.alias)
	}
	want := `{"ice_servers":[{"credential":"c","urls":["turn:127.0.0.1:3478?transport=udp"],"username":"1:` + string(a.alias) + `"}],"ice_transport_policy":"all","ttl":600}`
	if got, _ := json.Marshal(cfg); string(got) != want {
		t.Errorf("ice-config %s, want %s", got, want)
	}
	fake.fail.Store(true)
	if code := r.do(t, "GET", "/api/v1/calls/ice-config", ca.token, nil, &e); code != 503 || e.Error != "ice_unavailable" || strings.Contains(e.Message, "provider down") {
		t.Errorf("provider failure: %d %+v", code, e)
	}

	r2 := startRelay(t, Options{}, nil)
	b := r2.newUser(t)
	cb := r2.connect(t, b.id, b.alias)
	if code := r2.do(t, "GET", "/api/v1/calls/ice-config", cb.token, nil, &e); code != 503 {
		t.Errorf("no provider: %d %+v", code, e)
	}
}

// TestReadyComesFirst connects devices of an alias while envelopes for it
// stream in: every new session sees "ready" before any envelope.
func TestReadyComesFirst(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.rateLimit, tu.rateBurst, tu.byteRate, tu.byteBurst = 1e6, 1e6, 1e12, 1<<40 })
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	r.connect(t, b.id, b.alias) // keeps b's subscription up
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, _ := json.Marshal(ca.env(b.alias, ""))
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := ca.conn.Write(ctx, websocket.MessageText, raw)
			cancel()
			if err != nil {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for range 20 {
		c := r.connect(t, b.id, b.alias) // fails unless ready is the first frame after the challenge
		c.conn.Close(websocket.StatusNormalClosure, "")
	}
	close(stop)
	<-done
}

// TestPayloadNeverLogged sends envelopes whose payload holds a marker
// through every path (delivered, undeliverable, refused, before auth,
// oversized) with the relay logging at debug level: the marker is nowhere
// in the logs.
func TestPayloadNeverLogged(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := startRelay(t, Options{Logger: log}, nil)
	const marker = "U0VDUkVUUEFZTE9BRE1BUktFUg" // base64 of SECRETPAYLOADMARKER
	payload := marker + "=="
	a, b, offline := r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)

	e := ca.env(b.alias, "m1")
	e.Payload = payload
	ca.send(e)
	cb.expectEnvelope(e)
	e = ca.env(offline.alias, "m2")
	e.Payload = payload
	ca.send(e)
	if m := ca.next(5 * time.Second); m["type"] != "undeliverable" {
		t.Fatalf("got %v, want undeliverable", m)
	}
	e = ca.env(b.alias, "m3")
	e.Payload, e.From = payload, b.alias
	ca.send(e)
	ca.expectError("spoofed_from", "m3")
	ca.send(map[string]any{"type": "call_offer", "to": b.alias, "from": a.alias, "call_id": "bad id", "crypto_v": 2, "payload": payload})
	ca.expectError("malformed", "")
	ca.send([]byte(`{"type":"call_offer","payload":"` + payload + `"`))
	ca.expectError("malformed", "")

	pre := r.dial(t)
	readJSON(t, pre)
	writeJSONFrame(t, pre, map[string]any{"type": "call_offer", "to": b.alias, "from": a.alias, "call_id": "c", "crypto_v": 2, "payload": payload})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := pre.Read(ctx); websocket.CloseStatus(err) != StatusUnauthorized {
		t.Errorf("envelope before auth: %v, want 4001", err)
	}
	ca.send([]byte(`{"type":"call_offer","payload":"` + payload + strings.Repeat("A", 64<<10) + `"}`))
	if got := ca.closed(5 * time.Second); got != websocket.StatusMessageTooBig {
		t.Errorf("oversized: closed with %v, want 1009", got)
	}
	r.stop() // every log line is written

	out := logs.String()
	if !strings.Contains(out, "relay: session ready") || !strings.Contains(out, "relay: shutting down") {
		t.Fatalf("the logger did not capture the relay's debug logs:\n%s", out)
	}
	if strings.Contains(out, marker) {
		t.Errorf("the logs contain the payload:\n%s", out)
	}
}

func TestDeadSessionDropped(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval, tu.pingTimeout = 100*time.Millisecond, 300*time.Millisecond
	})
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	// b never reads, so it never answers a ping: like a client whose
	// network went away without closing the connection.
	r.connectOpt(t, b.id, b.alias, true)
	eventually(t, 10*time.Second, "b dropped", func() bool {
		return r.metric(t, `duet_relay_disconnects_total{reason="ping_timeout"}`) == 1
	})
	ca.send(ca.env(b.alias, "offer-dead"))
	if m := ca.next(5 * time.Second); m["type"] != "undeliverable" || m["id"] != "offer-dead" || m["reason"] != "offline" {
		t.Fatalf("got %v, want undeliverable offline", m)
	}
	// a answers pings (its reader runs): still there after many rounds.
	ca.send(map[string]string{"type": "ping"})
	if m := ca.next(5 * time.Second); m["type"] != "pong" || len(m) != 1 {
		t.Fatalf("got %v, want pong", m)
	}
	if got := r.metric(t, "duet_relay_sessions"); got != 1 {
		t.Fatalf("sessions = %v, want 1 (a alive)", got)
	}
}

func TestReadyCarriesTime(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a := r.newUser(t)
	conn := r.dial(t)
	writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), a.alias, a.id.priv))
	before := time.Now().UnixMilli()
	ready := readJSON(t, conn)
	ts, _ := ready["time"].(float64)
	if d := int64(ts) - before; d < -5000 || d > 5000 {
		t.Fatalf("ready time %v, local %d", ready["time"], before)
	}
}

// pingCountingClient is u's authenticated session on a raw client that
// counts the relay's WebSocket pings and answers them (its reader runs
// until the connection closes, at the test's end).
func pingCountingClient(t *testing.T, r *testRelay, u user) (*websocket.Conn, *atomic.Int32) {
	t.Helper()
	pings := new(atomic.Int32)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(r.ts.URL, "http", "ws", 1)+"/api/v1/ws", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), u.alias, u.id.priv))
	if m := readJSON(t, conn); m["type"] != "ready" {
		t.Fatalf("got %v", m)
	}
	go func() {
		for {
			if _, _, err := conn.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return conn, pings
}

// TestRelayPingsNotCharged: the pongs answering the relay's own liveness
// pings are not charged to the session's frame budget (a tiny budget and a
// frozen clock: 40 charged pongs would close it).
func TestRelayPingsNotCharged(t *testing.T) {
	r := startRelay(t, Options{Now: frozenClock()}, func(tu *tunables) {
		tu.rateLimit, tu.rateBurst = 1, 5 // frame budget: 2/s, burst 10
		tu.frameFlood = 20
		tu.pingInterval, tu.pingTimeout = 5*time.Millisecond, 5*time.Second
	})
	a := r.newUser(t)
	_, pings := pingCountingClient(t, r, a)
	eventually(t, 10*time.Second, "40 relay pings answered", func() bool { return pings.Load() >= 40 })
	if v := r.metric(t, `duet_relay_ws_frames_over_budget_total`); v != 0 {
		t.Errorf("frames over budget %v after %d pongs, want 0", v, pings.Load())
	}
	if v := r.metric(t, "duet_relay_sessions"); v != 1 {
		t.Errorf("sessions %v, want 1 (still open)", v)
	}
}

// TestRelayPingsOnlySilentClients: a client that checks the connection
// itself (WebSocket pings like the Go SDK, {"type":"ping"} like the
// browser SDK) more often than the relay's interval is never pinged by
// the relay; once it falls silent, the relay pings it.
func TestRelayPingsOnlySilentClients(t *testing.T) {
	const interval = 2 * time.Second
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval, tu.pingTimeout = interval, 10*time.Second
	})
	a := r.newUser(t)
	conn, pings := pingCountingClient(t, r, a)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// An interval of each kind of client check, one every twentieth of
	// an interval: the relay has nothing to check (without the client's
	// checks it would ping within the first interval and every interval).
	for range 20 {
		if err := conn.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval / 20)
	}
	for range 20 {
		writeJSONFrame(t, conn, map[string]string{"type": "ping"})
		time.Sleep(interval / 20)
	}
	if n := pings.Load(); n != 0 {
		t.Fatalf("the relay pinged a client that pinged it every %v: %d pings", interval/20, n)
	}
	eventually(t, 10*time.Second, "a silent client pinged", func() bool { return pings.Load() >= 1 })
	if v := r.metric(t, "duet_relay_sessions"); v != 1 {
		t.Errorf("sessions %v, want 1 (it answers the pings)", v)
	}
}
