package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

func (ps pollers) count() int {
	n := 0
	for _, p := range ps {
		n += p.count()
	}
	return n
}

// TestIdleSessionsParked: sessions whose clients send nothing are parked
// (no goroutine); an envelope to a parked session is delivered, a parked
// sender's next frame is read, and a client that leaves while parked is
// noticed at once.
func TestIdleSessionsParked(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.pingInterval = -1 })
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	p := r.srv.pollers
	for i := range 3 {
		eventually(t, 10*time.Second, "both parked", func() bool { return p.count() == 2 })
		e := ca.env(b.alias, "")
		ca.send(e)
		cb.expectEnvelope(e)
		eventually(t, 10*time.Second, "both parked", func() bool { return p.count() == 2 })
		e = cb.env(a.alias, "")
		cb.send(e)
		ca.expectEnvelope(e)
		if i == 1 { // a fragmented message started while parked
			eventually(t, 10*time.Second, "both parked", func() bool { return p.count() == 2 })
			w, err := ca.conn.Writer(t.Context(), websocket.MessageText)
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte(`{"type":"pi`))
			time.Sleep(50 * time.Millisecond) // the session must not park mid-message
			w.Write([]byte(`ng"}`))
			w.Close()
			if m := ca.next(5 * time.Second); m["type"] != "pong" {
				t.Fatalf("got %v, want pong", m)
			}
		}
	}
	eventually(t, 10*time.Second, "both parked", func() bool { return p.count() == 2 })
	cb.conn.CloseNow()
	eventually(t, 10*time.Second, "b's session ended", func() bool { return r.metric(t, "duet_relay_sessions") == 1 })
	if n := p.count(); n != 1 {
		t.Fatalf("%d parked, want 1", n)
	}
}

// TestKeepaliveWakeups: a parked connection woken by a client ping answers
// it and parks again, without reading the socket a second time when the
// first read emptied it (fill's drained) and without its read buffer: each
// ping, and each message, wakes it exactly once (a stale "emptied" would park it on a socket that
// holds bytes, waking it again and again), and a ping with the client's
// end right behind it (one wake-up for both) is answered and the end read.
func TestKeepaliveWakeups(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t)
	ws := newWSConn(server, nil, 64<<10, 10*time.Second)
	if ws.raw == nil {
		t.Fatal("no raw socket: the test needs one")
	}
	var wakes atomic.Int32
	msgs := make(chan []byte, 8)
	end := make(chan error, 1)
	serve := func() {
		for {
			_, m, err := ws.readMessage()
			if err == errWSIdle {
				if ws.park() {
					return
				}
				continue
			}
			if err != nil {
				end <- err
				return
			}
			msgs <- bytes.Clone(m)
		}
	}
	ws.poller, ws.parks = p, true
	ws.resume = serve // after a close
	ws.wake = func() { wakes.Add(1); p.release(ws); go serve() }
	go serve()
	t.Cleanup(func() {
		ws.close()
		select {
		case <-end:
			p.stop()
		case <-time.After(10 * time.Second):
			t.Error("the reader did not end after the connection was closed")
		}
	})

	br := bufio.NewReader(client)
	key := [4]byte{9, 8, 7, 6}
	pong := func(i int) {
		t.Helper()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if op, p := readFrame(t, br); op != opPong || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("ping %d: got op %#x, payload %v; want a pong of byte %d", i, op, p, i)
		}
	}
	parked := func() {
		t.Helper()
		holds := false
		eventually(t, 10*time.Second, "parked", func() bool {
			// Under p.mu: the reader released the buffer before it parked,
			// and the next reader starts after the poller takes the
			// connection out under p.mu.
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.parked[ws.fd] != ws {
				return false
			}
			holds = ws.buf != nil
			return true
		})
		if holds {
			t.Fatal("a parked connection holds its read buffer (4 KiB per idle session)")
		}
	}
	bursts := int32(0)
	for i := range 20 {
		parked()
		if i%5 == 4 {
			if _, err := client.Write(clientFrame(true, opText, []byte("hello"), key)); err != nil {
				t.Fatal(err)
			}
			bursts++
			select {
			case m := <-msgs:
				if string(m) != "hello" {
					t.Fatalf("got %q", m)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("message not read")
			}
			continue
		}
		if _, err := client.Write(clientFrame(true, opPing, []byte{byte(i)}, key)); err != nil {
			t.Fatal(err)
		}
		bursts++
		pong(i)
	}
	parked()
	if n := wakes.Load(); n != bursts {
		t.Fatalf("%d wake-ups for %d client writes, want one each", n, bursts)
	}
	if _, err := client.Write(clientFrame(true, opPing, []byte{99}, key)); err != nil {
		t.Fatal(err)
	}
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	pong(99)
	select {
	case err := <-end:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("reading ended with %v, want EOF", err)
		}
		end <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the end after the ping was not read")
	}
}

// TestWakeServesInline: a parked session's envelopes, WebSocket pings and
// {"type":"ping"} are served on the poller's goroutine (session.wake),
// without handing the session to a goroutine of its own; a bulk envelope
// is handed to one, and delivered.
func TestWakeServesInline(t *testing.T) {
	var handOffs atomic.Int32
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval = -1
		tu.onHandOff = func() { handOffs.Add(1) }
	})
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	eventually(t, 10*time.Second, "both parked", func() bool { return r.srv.pollers.count() == 2 })
	for i := range 20 {
		e := ca.env(b.alias, fmt.Sprint("e", i))
		ca.send(e)
		cb.expectEnvelope(e)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := cb.conn.Ping(ctx) // answered by the relay's pong
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		ca.send(map[string]string{"type": "ping"})
		if m := ca.next(10 * time.Second); m["type"] != "pong" {
			t.Fatalf("got %v, want pong", m)
		}
	}
	if n := handOffs.Load(); n != 0 {
		t.Fatalf("%d wake-ups handed to a goroutine, want 0", n)
	}
	eventually(t, 10*time.Second, "both parked", func() bool { return r.srv.pollers.count() == 2 })
	e := ca.env(b.alias, "bulk") // larger than bulkFrame, and than the read buffer
	e.Payload = strings.Repeat("A", 6<<10)
	ca.send(e)
	cb.expectEnvelope(e)
	if n := handOffs.Load(); n != 1 {
		t.Fatalf("%d wake-ups handed to a goroutine for a bulk envelope, want 1", n)
	}
}

// TestWakeHoldLeavesPoller: a frame that waits for its alias's byte budget
// waits on a goroutine of the session's own, not on the poller's: while
// a's envelopes are held (seconds at 1 KiB/s), c's envelope to d, sent
// after them, is delivered, and a's arrive later, all of them, in order.
// The node has one poller, so that the sessions share it on any machine.
func TestWakeHoldLeavesPoller(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.byteRate, tu.byteBurst = 1<<10, 2<<10
		tu.pollers = 1
	})
	a, b, c, d := r.newUser(t), r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	cc, cd := r.connect(t, c.id, c.alias), r.connect(t, d.id, d.alias)
	eventually(t, 10*time.Second, "all parked", func() bool { return r.srv.pollers.count() == 4 })
	var want []string
	for i := range 6 { // ~6 KiB: 4 KiB past the burst, 4 s at 1 KiB/s
		e := ca.env(b.alias, fmt.Sprint("big", i))
		e.Payload = strings.Repeat("A", 1000)
		ca.send(e)
		want = append(want, e.ID)
	}
	e := cc.env(d.alias, "small")
	cc.send(e)
	cd.expectEnvelope(e)
	// Each of a's envelopes past the burst is held for over a second; b
	// may have got the first two when d gets c's (a reader on the poller
	// would have held c's behind all of them).
	if n := len(cb.frames); n > len(want)-2 {
		t.Fatalf("b got %d of a's %d envelopes before d got c's, sent after them", n, len(want))
	}
	for _, id := range want {
		if m := cb.next(10 * time.Second); m["id"] != id {
			t.Fatalf("b got %v, want %s", m, id)
		}
	}
}

// TestWakeBoundsFrames: a read full of small frames (40 pings in one
// write) is served on the poller's goroutine for maxInline frames only,
// the rest on the session's own; every ping is answered.
func TestWakeBoundsFrames(t *testing.T) {
	var handOffs atomic.Int32
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval = -1
		tu.onHandOff = func() { handOffs.Add(1) }
	})
	c, err := dialRaw(r, r.newUser(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	conn, br, key := c.conn, c.br, c.key
	eventually(t, 10*time.Second, "parked", func() bool { return r.srv.pollers.count() == 1 })
	var pings []byte
	for i := range 40 {
		pings = append(pings, clientFrame(true, opPing, []byte{byte(i)}, key)...)
	}
	if _, err := conn.Write(pings); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if op, p := readFrame(t, br); op != opPong || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("pong %d: op %#x, payload %v", i, op, p)
		}
	}
	if n := handOffs.Load(); n == 0 {
		t.Fatal("40 frames of one read all served on the poller's goroutine, want at most maxInline")
	}
}

// TestWakeCloseWhileServing: a session closed by another goroutine (a
// sender dropping a slow consumer, the ping timer, a shutdown) while the
// poller's wake serves it is not parked again: its socket's number may
// already be another connection's, and a closed session left parked would
// never read its end and finish. It ends, and the other session stays.
func TestWakeCloseWhileServing(t *testing.T) {
	var closed atomic.Bool
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval = -1
		tu.beforeRepark = func(s *session) {
			if s.alias == "" || closed.Swap(true) {
				return
			}
			s.ws.close()
		}
	})
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	eventually(t, 10*time.Second, "both parked", func() bool { return r.srv.pollers.count() == 2 })
	e := ca.env(b.alias, "e1")
	ca.send(e)
	cb.expectEnvelope(e)
	// The envelope is written before a's session parks again: the hook
	// may run a moment after b has it.
	eventually(t, 10*time.Second, "the hook ran", closed.Load)
	ca.closed(10 * time.Second)
	eventually(t, 10*time.Second, "a's session ended, b's parked", func() bool {
		return r.metric(t, "duet_relay_sessions") == 1 && r.srv.pollers.count() == 1
	})
	e = cb.env(a.alias, "e2")
	cb.send(e)
	if m := cb.next(10 * time.Second); m["type"] != "undeliverable" || m["reason"] != "offline" {
		t.Fatalf("b got %v, want undeliverable, offline: a has no session", m)
	}
}
