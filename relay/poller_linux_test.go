package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
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
	ws.resume = func() { wakes.Add(1); serve() }
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
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil || h != [2]byte{0x80 | opPong, 1} {
			t.Fatalf("ping %d: got %x, %v; want a pong of 1 byte", i, h, err)
		}
		if b, err := br.ReadByte(); err != nil || b != byte(i) {
			t.Fatalf("ping %d: pong payload %d, %v", i, b, err)
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
