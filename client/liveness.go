package client

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Liveness of the relay connection (docs/PROTOCOL.md §9.2). A connection
// whose network went away without a close (an address change, a NAT that
// forgot the mapping, a machine that slept) is otherwise noticed only by a
// TCP timeout minutes later, while envelopes written to it are lost.
var (
	// pingInterval and pingTimeout: a WebSocket ping after pingInterval
	// without one; no pong within pingTimeout means the connection is dead,
	// and the client reconnects at once.
	pingInterval = 15 * time.Second
	pingTimeout  = 10 * time.Second
	// watchInterval is how often the local addresses and the clocks are
	// checked for a network change or a wake from sleep.
	watchInterval = 2 * time.Second
	// netCheckTimeout bounds the ping after a network change that left the
	// connection's own address in place.
	netCheckTimeout = 3 * time.Second
	// wakeGap is how far the wall clock may run ahead of the monotonic
	// clock (which stops while the machine sleeps) between two checks
	// before the client takes it for a wake from sleep.
	wakeGap = 5 * time.Second
)

// skewWarn is the clock difference with the relay that the client warns
// about: envelopes more than 60 s off are refused (§4.4).
const skewWarn = 30 * time.Second

// sleptBetween is how long the machine slept between two readings of
// time.Now: Round(0) strips the monotonic reading, and the wall clock goes
// on while the machine sleeps, the monotonic one does not. Tests replace it.
var sleptBetween = func(last, now time.Time) time.Duration {
	return now.Round(0).Sub(last.Round(0)) - now.Sub(last)
}

// interfaceAddrs lists the machine's addresses; tests replace it.
var interfaceAddrs = func() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// watchedAddrs is interfaceAddrs for the watch ticks: one read serves
// every client of the process for half a watchInterval. Each read is a
// netlink dump of the machine's addresses, and a process may hold
// thousands of clients (duet loadtest does), each ticking every
// watchInterval. NetworkChanged reads interfaceAddrs itself: the app just
// said the addresses changed.
func watchedAddrs() ([]netip.Addr, error) {
	addrCache.mu.Lock()
	defer addrCache.mu.Unlock()
	if addrCache.at.IsZero() || time.Since(addrCache.at) >= watchInterval/2 {
		addrCache.addrs, addrCache.err = interfaceAddrs()
		addrCache.at = time.Now()
	}
	return addrCache.addrs, addrCache.err // callers only read the slice
}

// addrCache holds watchedAddrs' last read; the lock also makes clients
// that tick together wait for one read instead of each making its own.
var addrCache struct {
	mu    sync.Mutex
	at    time.Time // zero: read at the next call
	addrs []netip.Addr
	err   error
}

// localAddrTracker records the local address of the last connection the
// WebSocket's HTTP client dialled, so that a network change can tell
// whether the relay connection lost its own address.
type localAddrTracker struct {
	mu   sync.Mutex
	addr netip.Addr
}

func (t *localAddrTracker) set(a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.addr = netip.Addr{}
		return
	}
	t.addr = ap.Addr().Unmap()
}

func (t *localAddrTracker) get() netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// wsHTTPClient returns the HTTP client the WebSocket dials with: hc, with
// its transport cloned to record each connection's local address when it is
// an *http.Transport (otherwise hc itself, and a network change is checked
// with a ping only).
func wsHTTPClient(hc *http.Client, t *localAddrTracker) *http.Client {
	var base *http.Transport
	switch tr := hc.Transport.(type) {
	case nil:
		base, _ = http.DefaultTransport.(*http.Transport)
	case *http.Transport:
		base = tr
	}
	if base == nil {
		return hc
	}
	tr := base.Clone()
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err == nil {
			t.set(conn.LocalAddr())
		}
		return conn, err
	}
	c := *hc
	c.Transport = tr
	return &c
}

// keepAlive watches conn until ctx ends: it pings the relay after every
// pingInterval, and checks every watchInterval for a wake from sleep, for
// writes stuck longer than writeTimeout and for a change of the machine's
// addresses. A failed ping, a wake, stuck writes, or a change that removed
// the connection's own local address closes conn, and the run loop
// reconnects at once; any other address change is checked with a quick
// ping.
func (c *Client) keepAlive(ctx context.Context, conn *websocket.Conn) {
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	addrs, _ := watchedAddrs()
	last := time.Now()
	// The first ping after a random half to whole interval: clients that
	// reconnected together (a relay restart) do not ping together.
	lastPing := last.Add(-rand.N(pingInterval / 2))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		slept := sleptBetween(last, now)
		last = now
		if slept > wakeGap {
			c.reconnectNow(conn, "woke from sleep", "slept", slept.Round(time.Second))
			return
		}
		if stalled := c.writes.stalled(); stalled > writeTimeout {
			c.reconnectNow(conn, "the relay took no frame for longer than the write timeout", "stalled", stalled.Round(time.Millisecond))
			return
		}
		timeout := time.Duration(0)
		if now.Sub(lastPing) >= pingInterval {
			timeout = pingTimeout
		}
		if cur, err := watchedAddrs(); err == nil && !slices.Equal(cur, addrs) {
			addrs = cur
			if local := c.wsLocal.get(); local.IsValid() && !slices.Contains(cur, local) {
				c.reconnectNow(conn, "the network changed: the connection's address is gone", "addr", local)
				return
			}
			timeout = netCheckTimeout
		}
		if timeout == 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := conn.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.reconnectNow(conn, "the relay did not answer a ping", "err", err)
			return
		}
		lastPing = time.Now()
	}
}

// reconnectNow drops conn and has the run loop dial again without a
// backoff wait.
func (c *Client) reconnectNow(conn *websocket.Conn, why string, args ...any) {
	c.log.Info("relay connection is dead: "+why+"; reconnecting", args...)
	c.immediate.Store(true)
	conn.CloseNow()
}

// ClockSkew is the relay's clock minus this machine's, measured when the
// connection was last authenticated (0 before that, or from a relay that
// does not say its time). Signaling refuses envelopes whose timestamp is
// more than 60 s off, so a skew near that breaks calls: fix the clock.
func (c *Client) ClockSkew() time.Duration {
	return time.Duration(c.skew.Load())
}

// noteSkew records the skew from the ready frame's relay time (Unix ms),
// taken as measured halfway between sending auth and receiving ready.
func (c *Client) noteSkew(relayMs int64, sent, received time.Time) {
	if relayMs <= 0 {
		return
	}
	mid := sent.Add(received.Sub(sent) / 2)
	skew := time.UnixMilli(relayMs).Sub(mid.Round(0))
	c.skew.Store(int64(skew))
	if skew > skewWarn || skew < -skewWarn {
		c.log.Warn("this machine's clock differs from the relay's: signaling refuses envelopes more than 60 s off; set the clock (NTP)",
			"skew (relay minus local)", skew.Round(time.Second).String(), "relay", c.relayBase())
	}
}

// NetworkChanged tells the client that the machine's network changed (an
// address came or went). It checks the relay connection at once instead of
// at the next watch tick: when the connection's own local address is gone
// it reconnects, otherwise it pings the relay (3 s) and reconnects if the
// ping fails. It returns nil once the connection is known to work (the old
// one, or a new one), or ctx's error. The call module calls it before an
// ICE restart's offer goes out, which a dead connection would swallow.
func (c *Client) NetworkChanged(ctx context.Context) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		addrs, err := interfaceAddrs()
		if local := c.wsLocal.get(); err == nil && local.IsValid() && !slices.Contains(addrs, local) {
			c.reconnectNow(conn, "the network changed: the connection's address is gone", "addr", local)
		} else {
			pctx, cancel := context.WithTimeout(ctx, netCheckTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.reconnectNow(conn, "the relay did not answer a ping after a network change", "err", err)
		}
	}
	sub := c.state.Subscribe()
	defer sub.Unsubscribe()
	for {
		c.mu.Lock()
		cur := c.conn
		c.mu.Unlock()
		if cur != nil && cur != conn {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-sub.C():
			if !ok {
				return ErrClosed
			}
		}
	}
}
