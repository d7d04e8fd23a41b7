package call

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/wire"
)

// startBusyRelay starts a relay whose node queue budget (relay.Options.
// QueueBudget) holds the small envelopes of a call but not its offer: the
// relay refuses every offer with undeliverable recipient_busy (node_budget),
// as a relay whose queues are full does.
func startBusyRelay(t *testing.T, budget int64) (url string, reg *prometheus.Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg = prometheus.NewRegistry()
	srv, err := relay.New(ctx, relay.Options{DataDir: t.TempDir(), ICE: testEnv.ice, QueueBudget: budget,
		Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		ts.Close()
	})
	if err := waitReady(ctx, ts.URL); err != nil {
		t.Fatal(err)
	}
	return ts.URL, reg
}

// TestOfferRecipientBusy: a relay that refuses the offer with
// recipient_busy (its node budget is spent) does not make the callee look
// offline: the caller sends the offer again with backoff while the answer
// timer runs, and ends unavailable (ErrUnavailable), not offline.
func TestOfferRecipientBusy(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{answer: 6 * time.Second, offerRetry: 100 * time.Millisecond})
	// A video offer sealed is 4-6 KB; candidates, hangups and the relay's
	// own notices are well under 2 KB.
	url, reg := startBusyRelay(t, 2500)
	a, b := newPeer(t, "a", withRelay(url)), newPeer(t, "b", withRelay(url))
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true, Video: true}); err != nil {
		t.Fatal(err)
	}
	offers := a.sig.sentOf(wire.TypeCallOffer)
	if len(offers) == 0 {
		t.Fatal("no offer sent")
	}
	if n, _ := offers[0].Encode(); len(n) <= 2500 {
		t.Fatalf("the offer is %d bytes: not over the relay's budget, the test proves nothing", len(n))
	}
	st := a.waitEnd(10 * time.Second)
	if st.State != StateEnded || st.Reason != ReasonUnavailable || !errors.Is(st.Err(), ErrUnavailable) {
		t.Fatalf("a: %+v (err %v), want ended unavailable", st, st.Err())
	}
	if err := waitErr(a.errs, ErrUnavailable, time.Second); err == nil {
		t.Error("OnError did not get ErrUnavailable")
	}
	// Sent again by the module (the client sends each once more itself).
	// The client sends a refused envelope once more itself (after 1 s);
	// the module's retries come on top.
	if n := len(a.sig.sentOf(wire.TypeCallOffer)); n < 2 {
		t.Errorf("the offer was sent %d times by the call module, want it sent again", n)
	}
	if v := metricValue(t, reg, "duet_relay_drops_total", "reason", "node_budget"); v < 3 {
		t.Errorf("node_budget drops %v, want the offer refused at least 3 times", v)
	}
	select {
	case in := <-b.incoming:
		t.Errorf("b rang (%+v) though every offer was refused", in)
	default:
	}
}

// metricValue is the value of the counter or gauge name{label=value} in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q} in the relay's metrics", name, label, value)
	return 0
}

// startNATSAt starts a nats-server with JetStream on addr ("127.0.0.1:0"
// for any port) storing in dir.
func startNATSAt(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	var ns *server.Server
	var err error
	for i := 0; ; i++ { // the port may linger a moment after the last close
		ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
			StoreDir: dir, NoSigs: true, NoLog: true})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		if ns.ReadyForConnections(10*time.Second) || i == 20 {
			break
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		time.Sleep(100 * time.Millisecond)
	}
	if !ns.ReadyForConnections(time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// TestOfferRelayUnavailable: a relay node that cannot reach its message bus
// refuses the offer with undeliverable unavailable; the caller does not
// take the callee for offline: it sends the offer again with backoff, and
// once the bus is back the callee rings and the call connects.
func TestOfferRelayUnavailable(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{answer: 30 * time.Second, ring: 35 * time.Second, offerRetry: 200 * time.Millisecond})
	dir := t.TempDir()
	ns := startNATSAt(t, server.RANDOM_PORT, dir)
	port := ns.Addr().(*net.TCPAddr).Port
	node := startClusterNode(t, ns.ClientURL(), "127.0.0.1:0")
	a, b := newPeer(t, "a", withRelay(node.url)), newPeer(t, "b", withRelay(node.url))
	// A first call: a holds a signaling session with b, so that its next
	// offer does not wait for the key lookup the directory (on the bus)
	// cannot answer while the bus is down.
	connect(t, a, b, Media{Audio: true})
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitState(StateHangup, 5*time.Second)

	ns.Shutdown()
	ns.WaitForShutdown()
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	// Refused (unavailable) and sent again, more than once.
	deadline := time.Now().Add(20 * time.Second)
	for len(a.sig.sentOf(wire.TypeCallOffer)) < 1+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the offer was sent %d times in the second call, want it sent again while the bus is down", len(a.sig.sentOf(wire.TypeCallOffer))-1)
		}
		if st := a.mod.State().Get(); st.State != StateCalling {
			t.Fatalf("a while the bus is down: %+v, want calling", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	startNATSAt(t, port, dir)
	in := b.waitIncoming(20 * time.Second)
	if in.from != a.alias {
		t.Fatalf("b rang for %+v", in)
	}
	if err := b.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a.waitState(StateConnected, 20*time.Second)
	b.waitState(StateConnected, 20*time.Second)
}
