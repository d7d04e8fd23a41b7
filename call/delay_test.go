package call

import (
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
)

// delayLine runs each function put into it d after it was put, in order,
// on a goroutine of its own until close: a one-way link of latency d.
type delayLine struct {
	d    time.Duration
	ch   chan delayed
	done chan struct{}
	once sync.Once
}

type delayed struct {
	at time.Time
	f  func()
}

func newDelayLine(d time.Duration) *delayLine {
	l := &delayLine{d: d, ch: make(chan delayed, 4096), done: make(chan struct{})}
	go l.run()
	return l
}

// put queues f; after close, or with the line full (a link dropping
// packets), f is dropped.
func (l *delayLine) put(f func()) {
	select {
	case l.ch <- delayed{time.Now().Add(l.d), f}:
	case <-l.done:
	default:
	}
}

func (l *delayLine) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case it := <-l.ch:
			if w := time.Until(it.at); w > 0 {
				t.Reset(w)
				select {
				case <-t.C:
				case <-l.done:
					return
				}
			}
			it.f()
		case <-l.done:
			return
		}
	}
}

func (l *delayLine) close() { l.once.Do(func() { close(l.done) }) }

// delayedNet delays every packet written on the sockets made through it by
// d: pion's host, server-reflexive and TURN sockets, so that peer-to-peer
// and peer-to-TURN packets take d one way.
type delayedNet struct {
	transport.Net
	d time.Duration
}

func (n *delayedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &delayedPacketConn{PacketConn: c, l: newDelayLine(n.d)}, nil
}

func (n *delayedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &delayedUDPConn{UDPConn: c, l: newDelayLine(n.d)}, nil
}

func (n *delayedNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return &delayedUDPConn{UDPConn: c, l: newDelayLine(n.d)}, nil
}

type delayedPacketConn struct {
	net.PacketConn
	l *delayLine
}

func (c *delayedPacketConn) WriteTo(p []byte, a net.Addr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.put(func() { _, _ = c.PacketConn.WriteTo(b, a) })
	return len(p), nil
}

func (c *delayedPacketConn) Close() error {
	c.l.close()
	return c.PacketConn.Close()
}

type delayedUDPConn struct {
	transport.UDPConn
	l *delayLine
}

func (c *delayedUDPConn) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	c.l.put(func() { _, _ = c.UDPConn.Write(b) })
	return len(p), nil
}

func (c *delayedUDPConn) WriteTo(p []byte, a net.Addr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.put(func() { _, _ = c.UDPConn.WriteTo(b, a) })
	return len(p), nil
}

func (c *delayedUDPConn) WriteToUDP(p []byte, a *net.UDPAddr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.put(func() { _, _ = c.UDPConn.WriteToUDP(b, a) })
	return len(p), nil
}

func (c *delayedUDPConn) WriteMsgUDP(p, oob []byte, a *net.UDPAddr) (int, int, error) {
	b, o := append([]byte(nil), p...), append([]byte(nil), oob...)
	c.l.put(func() { _, _, _ = c.UDPConn.WriteMsgUDP(b, o, a) })
	return len(p), len(oob), nil
}

func (c *delayedUDPConn) Close() error {
	c.l.close()
	return c.UDPConn.Close()
}
