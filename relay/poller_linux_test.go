package relay

import (
	"testing"
	"time"

	"github.com/coder/websocket"
)

func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// TestIdleSessionsParked: sessions whose clients send nothing are parked
// (no goroutine); an envelope to a parked session is delivered, a parked
// sender's next frame is read, and a client that leaves while parked is
// noticed at once.
func TestIdleSessionsParked(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.pingInterval = -1 })
	a, b := r.newUser(t), r.newUser(t)
	ca, cb := r.connect(t, a.id, a.alias), r.connect(t, b.id, b.alias)
	p := r.srv.poller
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
			time.Sleep(50 * time.Millisecond) // longer than idleAfter: the session must not park mid-message
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
