// Package tlsmux shares one TLS port between HTTPS and TURN over TLS: it
// terminates TLS on every connection, looks at the first byte the client
// sends and hands the connection to the HTTP listener or to the TURN
// listener. A STUN message (RFC 8489 section 5) starts with two zero bits;
// an HTTP/1.1 request starts with a method name in ASCII letters. The
// relay uses it when it owns port 443, the port firewalls that inspect
// traffic let through, so that turns:host:443 works beside https://host.
package tlsmux

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// HandshakeTimeout bounds the TLS handshake and the client's first byte.
const HandshakeTimeout = 10 * time.Second

// queueLen bounds the classified connections waiting to be accepted per
// side; past it a connection is closed (its client retries).
const queueLen = 64

// Split wraps ln (plain TCP) with TLS (cfg) and returns the listeners of
// HTTPS connections and of TURN connections, both already decrypted. The
// HTTP side must be served as plain HTTP/1.1 (cfg should offer no "h2"
// ALPN). Closing either listener closes ln and both.
func Split(ln net.Listener, cfg *tls.Config) (httpL, turnL net.Listener) {
	m := &mux{ln: ln, cfg: cfg, done: make(chan struct{})}
	m.http = &side{m: m, ch: make(chan net.Conn, queueLen)}
	m.turn = &side{m: m, ch: make(chan net.Conn, queueLen)}
	go m.accept()
	return m.http, m.turn
}

type mux struct {
	ln         net.Listener
	cfg        *tls.Config
	http, turn *side
	done       chan struct{}
	once       sync.Once
}

func (m *mux) accept() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.close(err)
			return
		}
		go m.classify(c)
	}
}

func (m *mux) classify(raw net.Conn) {
	tc := tls.Server(raw, m.cfg)
	_ = raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	br := bufio.NewReaderSize(tc, 1024)
	first, err := br.Peek(1)
	if err != nil {
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	c := &peekedConn{Conn: tc, r: br}
	dst := m.http
	if first[0]&0xC0 == 0 {
		dst = m.turn
	}
	select {
	case dst.ch <- c:
	case <-m.done:
		_ = c.Close()
	default:
		_ = c.Close() // nobody accepts: overloaded
	}
}

func (m *mux) close(error) {
	m.once.Do(func() {
		close(m.done)
		_ = m.ln.Close()
	})
}

// side is one of the two listeners.
type side struct {
	m  *mux
	ch chan net.Conn
}

func (s *side) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

func (s *side) Close() error {
	s.m.close(net.ErrClosed)
	return nil
}

func (s *side) Addr() net.Addr { return s.m.ln.Addr() }

// peekedConn reads through the reader that peeked the first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
