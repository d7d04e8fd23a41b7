// Package testproxy is a TCP proxy for tests that makes a connection's path
// die the two ways a real one does: Freeze turns the connections open at
// that moment into black holes (bytes swallowed both ways, no close, like a
// NAT that forgot its mapping), Kill closes the listener and every
// connection at once (like a killed process). It forwards anything over
// TCP: HTTP and WebSocket to a relay, NATS to a nats-server.
package testproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards each TCP connection it accepts to one target address.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*link
	closed bool
	wg     sync.WaitGroup
	killed chan struct{} // closed by Kill
	kill   sync.Once
}

// link is one proxied connection: the accepted side and the dialled one.
type link struct {
	down, up net.Conn
	frozen   atomic.Bool
	stalled  atomic.Bool
}

// New starts a proxy on a loopback port forwarding to target (host:port);
// the test's cleanup closes it and waits for its goroutines.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testproxy: listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, killed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.Kill()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's address (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is scheme://Addr(), e.g. URL("http") for a relay behind the proxy.
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.Addr() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		l := &link{down: down, up: up}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, l)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(l, up, down)
		go p.pipe(l, down, up)
	}
}

// pipe copies src to dst, dropping what it reads while l is frozen. When
// src ends it closes dst, unless l is frozen: a frozen path passes no
// close either.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		if l.stalled.Load() {
			<-p.killed
			return
		}
		n, err := src.Read(buf)
		if n > 0 && !l.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if !l.frozen.Load() {
				dst.Close()
			}
			return
		}
	}
}

// Freeze makes every connection open now swallow what either side sends,
// without closing it. Connections accepted later forward normally.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.conns {
		l.frozen.Store(true)
	}
}

// Stall makes every connection open now stop reading either side (after
// the read under way), without closing it: what a side writes fills the
// socket buffers, and then its writes block, as with a peer that stopped
// reading. Connections accepted later forward normally.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.conns {
		l.stalled.Store(true)
	}
}

// Kill closes the listener and every connection at once: new connections
// are refused, open ones reset.
func (p *Proxy) Kill() {
	p.kill.Do(func() { close(p.killed) })
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.conns {
		l.down.Close()
		l.up.Close()
	}
}
