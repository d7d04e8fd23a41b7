package call

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testnats"
	"github.com/duetcall/duet/relay"
	relayice "github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/relay/turnserver"
)

// clusterNode is a relay node on a shared NATS with its own embedded TURN.
type clusterNode struct {
	url  string
	srv  *relay.Server
	hs   *http.Server
	turn *turnserver.Server
	done chan struct{}
}

// startClusterNode starts a TURN server and a relay node (on natsURL,
// answering ice-config with that TURN) listening on addr.
func startClusterNode(t *testing.T, natsURL, addr string) *clusterNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret := make([]byte, 32)
	rand.Read(secret)
	quiet := slog.New(slog.DiscardHandler)
	turn, err := turnserver.Start(ctx, turnserver.Config{ListenAddr: "127.0.0.1:0", Secret: secret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	res, err := relayice.New(relayice.Options{
		Embedded: &relayice.Embedded{Host: "127.0.0.1", Port: turn.Addr().(*net.UDPAddr).Port, Secret: secret},
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.New(ctx, relay.Options{NATSURL: natsURL, ICE: res, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{url: "http://" + ln.Addr().String(), srv: srv, hs: &http.Server{Handler: srv.Handler()}, turn: turn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		_ = n.hs.Serve(ln)
	}()
	if err := waitReady(ctx, "http://"+ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

// stop ends the node and its TURN server (again is a no-op).
func (n *clusterNode) stop() {
	if n.srv == nil {
		return
	}
	n.turn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	_ = n.hs.Close()
	<-n.done
	n.srv = nil
}

// TestRelayedCallMovesToSurvivingTURN: a call relayed through the embedded
// TURN of one relay node survives that node's death: both clients fail over
// to the other node, and the ICE restart gathers with that node's ICE
// configuration (its TURN), so media flows again over TURN.
func TestRelayedCallMovesToSurvivingTURN(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{disconnected: 30 * time.Second, media: 30 * time.Second, restartWait: 20 * time.Second})
	ns := testnats.Start(t)
	// Node 2 starts only once the call runs over node 1's TURN.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr2 := ln.Addr().String()
	ln.Close()
	node1 := startClusterNode(t, ns.ClientURL(), "127.0.0.1:0")
	relays := withRelay(node1.url + ",http://" + addr2)
	relayOnly := withOptions(func(o *Options) { o.AlwaysRelay = true })
	a := newPeer(t, "a", relays, relayOnly)
	b := newPeer(t, "b", relays, relayOnly)
	connect(t, a, b, Media{Audio: true})
	for _, p := range []*peer{a, b} {
		st := p.waitStats(10*time.Second, "audio over node 1's TURN", func(s Stats) bool { return s.AudioFramesReceived >= 10 })
		if st.LocalCandidate != "relay" || st.RemoteCandidate != "relay" {
			t.Fatalf("%s: selected pair %s/%s, want relay/relay", p.name, st.LocalCandidate, st.RemoteCandidate)
		}
	}

	node2 := startClusterNode(t, ns.ClientURL(), addr2)
	node1.stop() // its TURN server goes with it
	start := time.Now()
	a.waitStats(15*time.Second, "an ICE restart", func(s Stats) bool { return s.ICERestarts >= 1 })
	for _, p := range []*peer{a, b} {
		before := p.mod.Stats().AudioFramesReceived
		st := p.waitStats(20*time.Second, "audio over node 2's TURN", func(s Stats) bool { return s.AudioFramesReceived >= before+50 })
		if st.State != StateConnected || st.LocalCandidate != "relay" || st.RemoteCandidate != "relay" {
			t.Errorf("%s: %+v, want connected over relay/relay", p.name, st)
		}
	}
	t.Logf("media back over node 2's TURN %v after node 1 died", time.Since(start).Round(time.Millisecond))
	if got := a.cl.RelayURL(); got != node2.url {
		t.Errorf("a's client is on %s, want node 2 %s", got, node2.url)
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitState(StateHangup, 5*time.Second)
}
