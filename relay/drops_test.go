package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// dropsTotal sums duet_relay_drops_total over every reason, read from
// /metrics.
func (r *testRelay) dropsTotal(t testing.TB) float64 {
	t.Helper()
	var n float64
	for _, reason := range dropReasons {
		v := r.metric(t, `duet_relay_drops_total{reason="`+string(reason)+`"}`)
		if v < 0 {
			t.Fatalf("/metrics lacks drops of reason %s", reason)
		}
		n += v
	}
	return n
}

// sessionOf returns the session of alias on r once it is registered for
// routing (its handshake done; the client may not have read ready yet).
// There must be exactly one.
func (r *testRelay) sessionOf(t testing.TB, alias identity.Alias) *session {
	t.Helper()
	var s *session
	eventually(t, 10*time.Second, "session of "+string(alias), func() bool {
		rt := r.srv.router
		rt.mu.RLock()
		defer rt.mu.RUnlock()
		if route := rt.routes[alias]; route != nil && len(route.sessions) == 1 {
			s = route.sessions[0]
		}
		return s != nil
	})
	return s
}

// queued returns a copy of the frames waiting in s's send queue, behind
// the one being written.
func (s *session) queued() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var q [][]byte
	first := 0
	if s.inflight {
		first = 1 // the writer has it
	}
	for _, f := range s.queue[min(first, len(s.queue)):] {
		q = append(q, f.data)
	}
	return q
}

// bigEnvelope is an envelope from c to to with the largest payload.
func (c *testClient) bigEnvelope(to identity.Alias) []byte {
	e := c.env(to, "")
	e.Payload = strings.Repeat("A", wire.MaxPayloadSize)
	raw, _ := json.Marshal(e)
	return raw
}

// sendUntil writes frame on c until done holds (checked after every write)
// and returns how many it wrote. It fails after max frames.
func (c *testClient) sendUntil(frame []byte, max int, done func() bool) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for n := 1; ; n++ {
		if n > max {
			c.t.Fatalf("%s: condition not met after %d frames", c.alias, max)
		}
		if err := c.conn.Write(ctx, websocket.MessageText, frame); err != nil {
			c.t.Fatalf("%s: write: %v", c.alias, err)
		}
		if done() {
			return n
		}
	}
}

// readAll reads conn (a client that did not read so far) until it closes
// and returns the frames and the close status.
func readAll(t testing.TB, conn *websocket.Conn) ([][]byte, websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var frames [][]byte
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("connection still open after reading %d frames", len(frames))
			}
			return frames, websocket.CloseStatus(err)
		}
		frames = append(frames, b)
	}
}

// countEnvelopes counts the frames that are envelopes.
func countEnvelopes(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		if _, err := wire.DecodeEnvelope(f); err == nil {
			n++
		}
	}
	return n
}

// TestSlowConsumerDropsCounted: every envelope sent to a session that is
// disconnected as a slow consumer either reached it or is counted, the
// frames still queued when it closed included.
func TestSlowConsumerDropsCounted(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.rateLimit, tu.rateBurst = 1e6, 1e6
		tu.byteRate, tu.byteBurst = 1e12, 1<<40
		tu.stallTimeout = 200 * time.Millisecond // the writer is stuck from the start
		tu.queueLen = 16
		tu.writeTimeout = 60 * time.Second
		tu.closeGrace = 200 * time.Millisecond
	})
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	slow := r.connectOpt(t, b.id, b.alias, true) // reads only at the end
	sent := ca.sendUntil(ca.bigEnvelope(b.alias), 4000, func() bool {
		return r.srv.metrics.drops.Value(DropSlowConsumer) > 0
	})
	eventually(t, 15*time.Second, "slow consumer disconnected", func() bool {
		return r.metric(t, `duet_relay_disconnects_total{reason="slow_consumer"}`) == 1
	})
	frames, _ := readAll(t, slow.conn)
	received := countEnvelopes(frames)
	// Envelopes sent after b's session was gone come back as undeliverable
	// (silent: they have no id).
	eventually(t, 15*time.Second, "every envelope received or counted", func() bool {
		return float64(received)+r.dropsTotal(t)+r.metric(t, `duet_relay_undeliverable_total{notice="silent"}`) == float64(sent)
	})
	if got := r.metric(t, `duet_relay_drops_total{reason="session_closed"}`); got < 16 {
		t.Errorf("session_closed drops = %v, want at least the 16 queued frames", got)
	}
	t.Logf("sent %d, received %d, drops %v", sent, received, r.dropsTotal(t))
	if m := ca.frames; len(m) > 0 {
		t.Errorf("sender got %v", <-m)
	}
}

// writerHold holds the writer of one session before its next batch.
type writerHold struct {
	s       *session
	entered chan struct{} // closed once the writer waits
	release chan struct{}
	once    sync.Once
}

// letGo lets the writer go on.
func (h *writerHold) letGo() { h.once.Do(func() { close(h.release) }) }

// startRelayHeld is startRelay with opts, without rate limits, tuned by
// more (if not nil), and with a hold function that makes the writer of a
// session wait before its next batch until letGo (or the end of the test).
func startRelayHeld(t testing.TB, opts Options, more func(*tunables)) (*testRelay, func(*session) *writerHold) {
	var cur atomic.Pointer[writerHold]
	r := startRelay(t, opts, func(tu *tunables) {
		tu.rateLimit, tu.rateBurst = 1e6, 1e6
		tu.byteRate, tu.byteBurst = 1e12, 1<<40
		tu.beforeBatch = func(s *session) {
			if h := cur.Load(); h != nil && h.s == s {
				select {
				case <-h.entered:
				default:
					close(h.entered)
				}
				<-h.release
			}
		}
		if more != nil {
			more(tu)
		}
	})
	hold := func(s *session) *writerHold {
		h := &writerHold{s: s, entered: make(chan struct{}), release: make(chan struct{})}
		t.Cleanup(h.letGo) // before the relay's cleanup stops it
		cur.Store(h)
		return h
	}
	return r, hold
}

// queueBehind sends envs from ca to the session of h, whose writer is held
// in the batch of the first: the others stay queued.
func queueBehind(t testing.TB, ca *testClient, h *writerHold, envs []*wire.Envelope) {
	t.Helper()
	ca.send(envs[0])
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not take the first envelope")
	}
	for _, e := range envs[1:] {
		ca.send(e)
	}
	eventually(t, 10*time.Second, "envelopes queued", func() bool { return len(h.s.queued()) == len(envs)-1 })
}

// TestShutdownFlushesQueues: envelopes queued for a session when the node
// shuts down are written before the reconnect notice.
func TestShutdownFlushesQueues(t *testing.T) {
	r, hold := startRelayHeld(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	cb := r.connectOpt(t, b.id, b.alias, true) // reads once the shutdown started
	sb := r.sessionOf(t, b.alias)
	h := hold(sb)
	var envs []*wire.Envelope
	for i := range 5 {
		envs = append(envs, ca.env(b.alias, fmt.Sprint("e", i)))
	}
	queueBehind(t, ca, h, envs)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- r.srv.Shutdown(ctx)
	}()
	eventually(t, 10*time.Second, "b's session draining", func() bool {
		sb.mu.Lock()
		defer sb.mu.Unlock()
		return sb.draining
	})
	h.letGo()
	frames, code := readAll(t, cb.conn)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(frames) != len(envs)+1 || string(frames[len(envs)]) != `{"type":"reconnect"}` || code != websocket.StatusServiceRestart {
		t.Fatalf("b got %q and close %v, want %d envelopes, reconnect, 1012", frames, code, len(envs))
	}
	for i, want := range envs {
		if got, err := wire.DecodeEnvelope(frames[i]); err != nil || *got != *want {
			t.Errorf("frame %d: %q, want envelope %s", i, frames[i], want.ID)
		}
	}
	if got := r.dropsTotal(t); got != 0 {
		t.Errorf("%v drops, want none", got)
	}
	if m := ca.next(5 * time.Second); m["type"] != "reconnect" {
		t.Errorf("a got %v, want reconnect", m)
	}
}

// TestShutdownDeadlineDropsCounted: when the shutdown deadline ends before
// a session's queue is written, the frames not written are counted.
func TestShutdownDeadlineDropsCounted(t *testing.T) {
	r, hold := startRelayHeld(t, Options{}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	cb := r.connectOpt(t, b.id, b.alias, true)
	h := hold(r.sessionOf(t, b.alias))
	var envs []*wire.Envelope
	for i := range 5 {
		envs = append(envs, ca.env(b.alias, fmt.Sprint("e", i)))
	}
	queueBehind(t, ca, h, envs)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.srv.Shutdown(ctx) }()
	// The writer is held past the deadline: the relay drops the connection.
	frames, _ := readAll(t, cb.conn)
	h.letGo()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	if n := countEnvelopes(frames); n != 0 {
		t.Errorf("b received %d envelopes", n)
	}
	if got := r.metric(t, `duet_relay_drops_total{reason="shutdown"}`); got != float64(len(envs)) {
		t.Errorf("shutdown drops = %v, want %d (the held batch and the queue)", got, len(envs))
	}
	if got := r.dropsTotal(t); got != float64(len(envs)) {
		t.Errorf("%v drops in all, want %d", got, len(envs))
	}
}

// TestShutdownLeavesStuckSession: a session that does not end once the
// deadline dropped its connection (its writer stuck) does not hold the
// shutdown: Shutdown returns a close's grace later, naming the deadline and
// the session it left, and the session still ends once its writer goes on.
func TestShutdownLeavesStuckSession(t *testing.T) {
	r, hold := startRelayHeld(t, Options{}, func(tu *tunables) { tu.closeGrace = 300 * time.Millisecond })
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	cb := r.connectOpt(t, b.id, b.alias, true)
	h := hold(r.sessionOf(t, b.alias))
	queueBehind(t, ca, h, []*wire.Envelope{ca.env(b.alias, "e0"), ca.env(b.alias, "e1")})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.srv.Shutdown(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		h.letGo()
		t.Fatal("Shutdown waited for a session whose writer is stuck")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sessions not ended 300ms after their connections were closed: 1:") {
		t.Errorf("Shutdown: %v, want the deadline and 1 session left", err)
	}
	readAll(t, cb.conn) // its connection was dropped all the same
	h.letGo()
	eventually(t, 10*time.Second, "the stuck session ended", func() bool {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		return len(r.srv.conns) == 0
	})
}
