package turnserver

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TURN over TCP and TLS: connections that hold no allocation.
//
// pion/turn reads every accepted connection on a goroutine of its own until
// the client closes it, with no deadline: a client could open connections
// and send nothing, or only STUN Binding requests, and hold a goroutine, a
// socket and its buffers each, without limit. The allocation quotas bound
// only connections that allocate. So a connection must hold an allocation
// within tcpAllocateWithin of its accept (ample for the TLS handshake, the
// 401 round and the Allocate) or it is closed; and while they have not
// allocated, at most tcpPendingPerAddr connections of one client address,
// and tcpPendingMax in all, are accepted: past either, a new connection is
// closed at once. A connection that has allocated is bounded by the
// allocation quotas and stays as long as its client keeps it.
var tcpAllocateWithin = 30 * time.Second // var: tests shorten it

const (
	tcpPendingPerAddr = 64
	tcpPendingMax     = 1024
)

// tcpGuard tracks the TCP and TLS connections that have not allocated yet.
type tcpGuard struct {
	within      time.Duration
	refused     *prometheus.CounterVec // reason: address, total
	unallocated prometheus.Counter

	mu      sync.Mutex
	pending map[netip.AddrPort]*guardedConn // by client address
	perAddr map[netip.Addr]int
}

func newTCPGuard() *tcpGuard {
	g := &tcpGuard{
		within:  tcpAllocateWithin,
		pending: make(map[netip.AddrPort]*guardedConn),
		perAddr: make(map[netip.Addr]int),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_turn_tcp_refused_total",
			Help: "TURN TCP and TLS connections closed at accept: too many of the client's address (address) or in all (total) had not allocated yet.",
		}, []string{"reason"}),
		unallocated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_turn_tcp_unallocated_total",
			Help: "TURN TCP and TLS connections closed for holding no allocation 30 s after their accept.",
		}),
	}
	g.refused.WithLabelValues("address")
	g.refused.WithLabelValues("total")
	return g
}

// wrap guards ln's connections.
func (g *tcpGuard) wrap(ln net.Listener) net.Listener { return &guardedListener{ln, g} }

type guardedListener struct {
	net.Listener
	g *tcpGuard
}

// Accept returns the next connection the guard admits; the others are
// closed.
func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc, ok := l.g.admit(c); ok {
			return gc, nil
		}
		c.Close()
	}
}

// guardedConn is an accepted connection; its Close ends its wait.
type guardedConn struct {
	net.Conn
	g     *tcpGuard
	ap    netip.AddrPort
	timer *time.Timer
}

func (c *guardedConn) Close() error {
	c.g.settle(c)
	return c.Conn.Close()
}

// admit counts c as pending (its close timer started), or reports false
// when a limit refuses it. A connection without a TCP address is admitted
// unguarded.
func (g *tcpGuard) admit(c net.Conn) (net.Conn, bool) {
	ap, ok := addrPort(c.RemoteAddr())
	if !ok {
		return c, true
	}
	gc := &guardedConn{Conn: c, g: g, ap: ap}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old := g.pending[ap]; old != nil {
		// The same client address and port again: the earlier connection
		// is gone (two cannot share the address pair).
		g.settleLocked(old)
		old.Conn.Close()
	}
	switch {
	case len(g.pending) >= tcpPendingMax:
		g.refused.WithLabelValues("total").Inc()
		return nil, false
	case g.perAddr[ap.Addr()] >= tcpPendingPerAddr:
		g.refused.WithLabelValues("address").Inc()
		return nil, false
	}
	g.pending[ap] = gc
	g.perAddr[ap.Addr()]++
	gc.timer = time.AfterFunc(g.within, func() {
		if g.settle(gc) {
			g.unallocated.Inc()
			gc.Conn.Close()
		}
	})
	return gc, true
}

// allocated is told that the client at src holds an allocation now: its
// connection, if pending, stays.
func (g *tcpGuard) allocated(src net.Addr) {
	if _, tcp := src.(*net.TCPAddr); !tcp {
		return // a UDP client's
	}
	ap, ok := addrPort(src)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.pending[ap]; c != nil {
		g.settleLocked(c)
	}
}

// settle ends c's wait; false if it was not waiting.
func (g *tcpGuard) settle(c *guardedConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.settleLocked(c)
}

func (g *tcpGuard) settleLocked(c *guardedConn) bool {
	if g.pending[c.ap] != c {
		return false
	}
	c.timer.Stop()
	delete(g.pending, c.ap)
	if n := g.perAddr[c.ap.Addr()]; n > 1 {
		g.perAddr[c.ap.Addr()] = n - 1
	} else {
		delete(g.perAddr, c.ap.Addr())
	}
	return true
}

// close closes the connections still waiting (the server is closing).
func (g *tcpGuard) close() {
	g.mu.Lock()
	cs := make([]*guardedConn, 0, len(g.pending))
	for _, c := range g.pending {
		cs = append(cs, c)
	}
	g.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
