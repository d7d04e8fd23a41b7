package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testnats"
	"github.com/duetcall/duet/internal/testproxy"
	"github.com/duetcall/duet/internal/vectors"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

// turnPortBase is the TURN port node i of startNodes names (+i); no TURN
// server runs there.
const turnPortBase = 40100

// startNodes runs n relay nodes on one real nats-server, each behind its
// own HTTP server (SDK and API), and returns their URLs.
func startNodes(t *testing.T, n int) []string {
	t.Helper()
	ns := testnats.Start(t)
	var urls []string
	for i := range n {
		// Each node names its own TURN server (port turnPortBase+i).
		res, err := ice.New(ice.Options{Embedded: &ice.Embedded{Host: "127.0.0.1", Port: turnPortBase + i, Secret: make([]byte, 32)},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		srv, err := relay.New(ctx, relay.Options{NATSURL: ns.ClientURL(), ICE: res, Logger: slog.New(slog.DiscardHandler)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shutdownRelay(t, srv) })
		mux := sdkMux()
		mux.Handle("/api/", srv.Handler())
		urls = append(urls, startServer(t, mux).URL)
	}
	return urls
}

// TestClientFailover: a browser client given two relay nodes (relayUrl as
// a list) moves to the other node when its node dies, and envelopes flow
// both ways again; register() skips a node that is down.
func TestClientFailover(t *testing.T) {
	nodes := startNodes(t, 2)
	proxies := []*testproxy.Proxy{testproxy.New(t, strings.TrimPrefix(nodes[0], "http://")), testproxy.New(t, strings.TrimPrefix(nodes[1], "http://"))}
	urls := []string{proxies[0].URL("http"), proxies[1].URL("http")}

	pages := openPages(t, nodes[1], "alice", "bob")
	alice, bob := pages[0], pages[1]
	a := call[string](alice, fmt.Sprintf("setupNodes(%s, ['http://127.0.0.1:1', %q], [%q, %q])", jsString(vectors.AliceMnemonic), urls[0], urls[0], urls[1]))
	b := call[string](bob, fmt.Sprintf("setupNodes(%s, [%q], [%q])", jsString(vectors.BobMnemonic), nodes[1], nodes[1]))

	first := call[string](alice, "relayUrl()")
	dead := 0
	if first == urls[1] {
		dead = 1
	}
	iceHas := func(port int) bool {
		res := call[iceResult](alice, "ice()")
		for _, srv := range res.Cfg.Servers {
			if strings.Contains(strings.Join(srv.URLs, " "), fmt.Sprintf(":%d", port)) {
				return true
			}
		}
		return false
	}
	if !iceHas(turnPortBase + dead) {
		t.Fatalf("the ICE config before the failover does not name node %d's TURN", dead+1)
	}
	proxies[dead].Kill()
	states := call[string](alice, "connectedCount(2, 15000)")
	now := call[string](alice, "relayUrl()")
	t.Logf("alice failed over from %s to %s in %.0f ms (%s)", first, now, call[float64](alice, "failoverMs()"), states)
	if now == first {
		t.Fatalf("alice reconnected to the dead node %s", first)
	}
	// The ICE config cache is per node: the surviving node's TURN now.
	if !iceHas(turnPortBase + 1 - dead) {
		t.Errorf("the ICE config after the failover does not name the surviving node's TURN")
	}
	if _, ok := alice.log.waitFor("reconnected to the relay", 5*time.Second); !ok {
		t.Error("alice's console does not say that she reconnected")
	}
	call[bool](alice, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'c1', reason: 'user_hangup'}, 'h1')", b))
	if got := call[opened](bob, "next(10000)"); got.Error != "" || got.Message["from"] != a {
		t.Fatalf("bob got %+v after alice's failover", got)
	}
	call[bool](bob, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'c2', reason: 'user_hangup'}, 'h2')", a))
	if got := call[opened](alice, "next(10000)"); got.Error != "" || got.Message["from"] != b {
		t.Fatalf("alice got %+v after her failover", got)
	}
}
