package client

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testproxy"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/wire"
)

// shortLiveness shortens the liveness timers for one test.
func shortLiveness(t *testing.T) {
	pi, pt, wi, nt := pingInterval, pingTimeout, watchInterval, netCheckTimeout
	pingInterval, pingTimeout, watchInterval, netCheckTimeout = 200*time.Millisecond, 400*time.Millisecond, 50*time.Millisecond, 400*time.Millisecond
	t.Cleanup(func() { pingInterval, pingTimeout, watchInterval, netCheckTimeout = pi, pt, wi, nt })
}

// fakeInterfaceAddrs makes the machine's interface addresses addrs for
// the test; set replaces them.
func fakeInterfaceAddrs(t *testing.T, addrs ...string) (set func(addrs ...string)) {
	var mu sync.Mutex
	var cur []netip.Addr
	set = func(addrs ...string) {
		mu.Lock()
		defer mu.Unlock()
		cur = cur[:0:0]
		for _, a := range addrs {
			cur = append(cur, netip.MustParseAddr(a))
		}
	}
	set(addrs...)
	orig := interfaceAddrs
	interfaceAddrs = func() ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(cur), nil
	}
	forgetWatchedAddrs()
	t.Cleanup(func() { interfaceAddrs = orig; forgetWatchedAddrs() })
	return set
}

// forgetWatchedAddrs makes watchedAddrs' next call read interfaceAddrs.
func forgetWatchedAddrs() {
	addrCache.mu.Lock()
	defer addrCache.mu.Unlock()
	addrCache.at = time.Time{}
}

// The watch ticks of a process's clients share one read of the machine's
// addresses per half watchInterval, and a change shows within that.
func TestWatchedAddrsShared(t *testing.T) {
	wi := watchInterval
	watchInterval = time.Hour
	t.Cleanup(func() { watchInterval = wi })
	var reads atomic.Int32
	orig := interfaceAddrs
	cur := netip.MustParseAddr("10.0.0.1")
	var mu sync.Mutex
	interfaceAddrs = func() ([]netip.Addr, error) {
		reads.Add(1)
		mu.Lock()
		defer mu.Unlock()
		return []netip.Addr{cur}, nil
	}
	forgetWatchedAddrs()
	t.Cleanup(func() { interfaceAddrs = orig; forgetWatchedAddrs() })

	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if got, err := watchedAddrs(); err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("10.0.0.1") {
				t.Errorf("watchedAddrs = %v, %v", got, err)
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Fatalf("100 clients' ticks read the addresses %d times, want 1", n)
	}
	// Half a watchInterval later the next tick reads them again.
	mu.Lock()
	cur = netip.MustParseAddr("10.0.0.2")
	mu.Unlock()
	watchInterval = 20 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := watchedAddrs()
		if got[0] == netip.MustParseAddr("10.0.0.2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the address change never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads after the change, want 2", n)
	}
}

// connectVia connects id to the relay through url (a proxy of r).
func connectVia(t *testing.T, r *testRelay, url string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := newIdentity(t)
	alias, _, err := Register(ctx, nil, r.url(), id)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{id: id, envs: make(chan *wire.Envelope, 16), undeliv: make(chan Undeliverable, 16)}
	p.c, err = Connect(ctx, Options{
		RelayURL: url, Identity: id, Alias: alias,
		OnEnvelope: func(e *wire.Envelope) { p.envs <- e },
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.c.Close() })
	return p
}

// waitReconnect waits for c to leave connected and come back.
func waitReconnect(t *testing.T, c *Client, within time.Duration) {
	t.Helper()
	sub := c.State().Subscribe()
	defer sub.Unsubscribe()
	waitReconnectSub(t, sub, within)
}

func TestDeadConnectionFoundByPing(t *testing.T) {
	shortLiveness(t)
	r := startRelay(t)
	proxy := testproxy.New(t, r.addr)
	a := connectVia(t, r, proxy.URL("http"))
	b := connect(t, r, newIdentity(t), nil)
	proxy.Freeze() // a's connection is now a black hole both ways
	waitReconnect(t, a.c, 10*time.Second)
	if err := b.c.Send(context.Background(), envelope(a.c.Alias(), "after")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a.envs, "envelope after the reconnect"); got.From != b.c.Alias() {
		t.Fatalf("got %+v", got)
	}
}

func TestNetworkChangeReconnectsAtOnce(t *testing.T) {
	shortLiveness(t)
	pingInterval = time.Hour // only the network change may trigger it
	setAddrs := fakeInterfaceAddrs(t, "10.9.9.9", "127.0.0.1")
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	if got := a.c.wsLocal.get(); got != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("recorded local address %v", got)
	}
	// Another address changes: the connection's own is still there, a
	// quick ping finds it alive, no reconnect.
	setAddrs("127.0.0.1")
	sub := a.c.State().Subscribe()
	defer sub.Unsubscribe()
	<-sub.C()
	select {
	case s := <-sub.C():
		t.Fatalf("state %s after an unrelated address change", s)
	case <-time.After(10 * watchInterval):
	}
	// The connection's own address goes away: reconnect at once.
	setAddrs("10.9.9.10")
	waitReconnect(t, a.c, 10*time.Second)
}

func TestWakeReconnects(t *testing.T) {
	shortLiveness(t)
	pingInterval = time.Hour
	var woke atomic.Bool
	orig := sleptBetween
	sleptBetween = func(last, now time.Time) time.Duration {
		if woke.Swap(false) {
			return time.Minute
		}
		return 0
	}
	t.Cleanup(func() { sleptBetween = orig })
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	woke.Store(true)
	waitReconnect(t, a.c, 10*time.Second)
}

func TestClockSkew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := serveRelay(t, relay.Options{DataDir: t.TempDir(), Now: func() time.Time { return time.Now().Add(90 * time.Second) }})
	id := newIdentity(t)
	alias, _, err := Register(ctx, nil, url, id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(ctx, Options{RelayURL: url, Identity: id, Alias: alias, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s := c.ClockSkew(); s < 85*time.Second || s > 95*time.Second {
		t.Fatalf("ClockSkew = %v, want about 90s", s)
	}
}

func TestNetworkChanged(t *testing.T) {
	shortLiveness(t)
	pingInterval, watchInterval = time.Hour, time.Hour // only NetworkChanged acts
	setAddrs := fakeInterfaceAddrs(t, "127.0.0.1")
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.c.mu.Lock()
	first := a.c.conn
	a.c.mu.Unlock()
	// Nothing changed for the connection: a ping, the same connection.
	if err := a.c.NetworkChanged(ctx); err != nil {
		t.Fatal(err)
	}
	a.c.mu.Lock()
	same := a.c.conn == first
	a.c.mu.Unlock()
	if !same {
		t.Fatal("NetworkChanged replaced a working connection")
	}
	// The connection's address is gone: it returns with a new connection.
	setAddrs("10.9.9.9")
	if err := a.c.NetworkChanged(ctx); err != nil {
		t.Fatal(err)
	}
	a.c.mu.Lock()
	cur := a.c.conn
	a.c.mu.Unlock()
	if cur == nil || cur == first {
		t.Fatal("NetworkChanged returned without a new connection")
	}
}

// A relay connection that takes no frame for writeTimeout (the relay, or
// something on the way, stopped reading) is dropped and dialled again,
// pings or not, and the stuck Send returns an error.
func TestStuckWriteReconnects(t *testing.T) {
	shortLiveness(t)
	pingInterval = time.Hour // only the write watch may act
	wt := writeTimeout
	writeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { writeTimeout = wt })
	r := startRelay(t)
	proxy := testproxy.New(t, r.addr)
	a := connectVia(t, r, proxy.URL("http"))
	b := connect(t, r, newIdentity(t), nil)
	proxy.Stall()
	sendErr := make(chan error, 1)
	go func() {
		env := envelope(b.c.Alias(), "")
		env.Payload = strings.Repeat("A", 40000)
		for {
			if err := a.c.Send(context.Background(), env); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	waitReconnect(t, a.c, 10*time.Second)
	if err := recv(t, sendErr, "the stuck Send's error"); err == nil {
		t.Fatal("no error")
	}
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "after")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b.envs, "envelope after the reconnect"); got.ID != "after" {
		t.Fatalf("got %+v", got)
	}
}
