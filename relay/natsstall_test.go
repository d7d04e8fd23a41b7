package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/internal/testproxy"
)

// TestNATSStallBounded: with an external NATS every envelope is published
// to it, a small one on the poller's goroutine. When the NATS connection
// stops taking bytes (a stalled server, a path that stopped forwarding
// without a reset), a publish blocks once the socket's buffers are full,
// and with it every session the poller serves. The write timeout on the
// NATS connection (natsWriteTimeout) bounds that: the relay drops the
// connection and connects again, and the other sessions' pings are
// answered again well inside the SDKs' 10 s pong timeout, so their
// clients do not reconnect. a floods an absent alias through the stalled
// path, c sends it an envelope now and then, and w, on the same poller as
// c, pings.
func TestNATSStallBounded(t *testing.T) {
	c := startCluster(t, 1)
	proxy := testproxy.New(t, strings.TrimPrefix(c.url(0), "nats://"))
	r := startRelay(t, Options{NATSURL: proxy.URL("nats")}, func(tu *tunables) {
		tu.pollers = 1
		tu.pingInterval = -1
		tu.rateLimit, tu.rateBurst, tu.byteRate, tu.byteBurst = 1e9, 1e9, 1e12, 1<<40
		tu.recipientRate, tu.recipientBurst = 1e12, 1<<40
	})
	a, c1, w, x := r.newUser(t), r.newUser(t), r.newUser(t), r.newUser(t)
	ca, cc, cw := r.connect(t, a.id, a.alias), r.connect(t, c1.id, c1.alias), r.connect(t, w.id, w.alias)
	e := ca.env(w.alias, "before")
	ca.send(e)
	cw.expectEnvelope(e)

	proxy.Stall()
	ctx, cancel := context.WithCancel(t.Context())
	var flood sync.WaitGroup
	defer flood.Wait()
	defer cancel()
	frame, _ := json.Marshal(ca.env(x.alias, "flood"))
	flood.Go(func() {
		for ctx.Err() == nil && ca.conn.Write(ctx, websocket.MessageText, frame) == nil {
		}
	})

	// The stall takes hold (a ping waits over a second), then lets go.
	const bound = 10 * time.Second // the SDKs' pong timeout
	var slowest time.Duration
	for i, deadline := 0, time.Now().Add(60*time.Second); ; i++ {
		// c's envelope is published on the poller's goroutine (a's flood
		// goes on a's own once it fills a read).
		cc.send(cc.env(x.alias, fmt.Sprint("c", i)))
		start := time.Now()
		pctx, pcancel := context.WithTimeout(ctx, 2*bound)
		err := cw.conn.Ping(pctx)
		pcancel()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("w's ping: no pong after %v: %v", took.Round(time.Millisecond), err)
		}
		slowest = max(slowest, took)
		if slowest > time.Second && took < 100*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stall never held up w's pings (slowest %v): the test tests nothing", slowest)
		}
		time.Sleep(20 * time.Millisecond) // the pings' pace
	}
	t.Logf("w's slowest pong while NATS stalled: %v", slowest.Round(time.Millisecond))
	if slowest > bound {
		t.Fatalf("w's pong took %v while NATS stalled, over the SDKs' %v pong timeout: its client would reconnect", slowest, bound)
	}
	cancel()
	flood.Wait()
	// The relay is back on NATS: a new user registers, connects and gets
	// an envelope.
	eventually(t, 20*time.Second, "NATS connected again", func() bool { return r.srv.nats.nc.IsConnected() })
	d := r.newUser(t)
	cd := r.connect(t, d.id, d.alias)
	e = cw.env(d.alias, "after")
	cw.send(e)
	cd.expectEnvelope(e)
}
