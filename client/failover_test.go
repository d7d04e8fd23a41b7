package client

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/internal/testnats"
	"github.com/duetcall/duet/internal/testproxy"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/wire"
)

// startNodes runs n relay nodes on one real nats-server (JetStream) and
// returns their URLs.
func startNodes(t *testing.T, n int) []string {
	t.Helper()
	ns := testnats.Start(t)
	var urls []string
	for range n {
		urls = append(urls, serveRelay(t, relay.Options{NATSURL: ns.ClientURL()}))
	}
	return urls
}

// serveRelay runs a relay node with opts (and a silent logger) on a
// loopback HTTP server until the test ends, and returns its URL.
func serveRelay(t *testing.T, opts relay.Options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := relay.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// TestFailover: a client given two relay nodes connects to one; when that
// node dies (its TCP connections reset, like a killed process), the client
// is on the other node within moments (logged at info), and envelopes flow
// both ways again.
func TestFailover(t *testing.T) {
	nodes := startNodes(t, 2)
	proxies := []*testproxy.Proxy{testproxy.New(t, strings.TrimPrefix(nodes[0], "http://")), testproxy.New(t, strings.TrimPrefix(nodes[1], "http://"))}
	urls := []string{proxies[0].URL("http"), proxies[1].URL("http")}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Registration skips a node that does not answer.
	id := newIdentity(t)
	alias, _, err := Register(ctx, nil, "http://127.0.0.1:1,"+urls[0], id)
	if err != nil {
		t.Fatalf("Register with the first node down: %v", err)
	}
	var logs syncbuf.Buffer
	a := &peer{id: id, envs: make(chan *wire.Envelope, 16), undeliv: make(chan Undeliverable, 16)}
	a.c, err = Connect(ctx, Options{
		RelayURL: urls[0], RelayURLs: urls[1:], Identity: id, Alias: alias,
		OnEnvelope:      func(e *wire.Envelope) { a.envs <- e },
		OnUndeliverable: func(u Undeliverable) { a.undeliv <- u },
		Logger:          slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.c.Close()
	b := connectVia(t, &testRelay{addr: strings.TrimPrefix(nodes[1], "http://")}, nodes[1])

	first := a.c.relayBase()
	dead := 0
	if first == urls[1] {
		dead = 1
	}
	sub := a.c.State().Subscribe()
	defer sub.Unsubscribe()
	<-sub.C() // the current state
	start := time.Now()
	proxies[dead].Kill()
	waitReconnectSub(t, sub, 10*time.Second)
	t.Logf("failed over from %s to %s in %v", first, a.c.relayBase(), time.Since(start))
	if a.c.relayBase() == first {
		t.Fatalf("reconnected to the dead node %s", first)
	}
	if err := a.c.Send(ctx, envelope(b.c.Alias(), "after")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b.envs, "envelope after failover"); got.From != alias {
		t.Fatalf("got %+v", got)
	}
	if err := b.c.Send(ctx, envelope(alias, "back")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a.envs, "envelope to the failed-over client"); got.From != b.c.Alias() {
		t.Fatalf("got %+v", got)
	}
	if _, err := a.c.PeerKeys(ctx, b.c.Alias()); err != nil {
		t.Fatalf("key lookup after failover: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"level=INFO msg=\"connected to the relay\"", "level=INFO msg=\"relay connection lost; reconnecting\"", "level=INFO msg=\"relay reconnected\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// waitReconnectSub waits on sub for a state other than connected, then
// connected.
func waitReconnectSub(t *testing.T, sub interface{ C() <-chan ConnState }, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	left := false
	for {
		select {
		case s := <-sub.C():
			if s != StateConnected {
				left = true
			} else if left {
				return
			}
		case <-deadline:
			t.Fatalf("no reconnect within %v", within)
		}
	}
}

func TestRelayList(t *testing.T) {
	got, err := relayList(" http://a:1/, ws://b:2,http://a:1", []string{"https://c"})
	if err != nil || strings.Join(got, " ") != "http://a:1 http://b:2 https://c" {
		t.Errorf("relayList = %q, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "http://a:1,ftp://b"} {
		if _, err := relayList(bad, nil); err == nil {
			t.Errorf("relayList(%q) succeeded", bad)
		}
	}
}
