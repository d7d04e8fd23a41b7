package call

import (
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
)

// delayLine runs each function put into it d after it was put, in order,
// on a goroutine of its own until close (which runs the rest at once): a
// one-way link of latency d.
type delayLine struct {
	d    time.Duration
	ch   chan delayed
	done chan struct{}
	ran  chan struct{} // run returned
	once sync.Once
}

type delayed struct {
	at time.Time
	f  func()
}

func newDelayLine(d time.Duration) *delayLine {
	l := &delayLine{d: d, ch: make(chan delayed, 4096), done: make(chan struct{}), ran: make(chan struct{})}
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
	defer close(l.ran)
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
					it.f() // see close
					return
				}
			}
			it.f()
		case <-l.done:
			return
		}
	}
}

// close stops the line. What is on it is delivered at once, as a packet
// sent before its socket closed still arrives (a TURN client's
// deallocation: dropped, its allocation held the user's quota until its
// lifetime ended, and a benchmark's 18th relayed call failed).
func (l *delayLine) close() {
	l.once.Do(func() {
		close(l.done)
		<-l.ran
		for {
			select {
			case it := <-l.ch:
				it.f()
			default:
				return
			}
		}
	})
}

// linkNet passes every packet written on the sockets made through it to
// a link of the socket's own (newLink), which writes it now, later or never:
// pion's host, server-reflexive and TURN sockets.
type linkNet struct {
	transport.Net
	newLink func() link
}

// link carries one socket's packets: send calls write for p.
type link interface {
	send(p []byte, write func())
	close()
}

// delayedNet delays every packet written by d: peer-to-peer and
// peer-to-TURN packets take d one way.
func delayedNet(n transport.Net, d time.Duration) *linkNet {
	return &linkNet{Net: n, newLink: func() link { return newDelayLine(d) }}
}

func (l *delayLine) send(_ []byte, write func()) { l.put(write) }

// tapLink shows every packet to f before writing it at once.
type tapLink func(p []byte)

func (f tapLink) send(p []byte, write func()) { f(p); write() }
func (tapLink) close()                        {}

func (n *linkNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &linkPacketConn{PacketConn: c, l: n.newLink()}, nil
}

func (n *linkNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &linkUDPConn{UDPConn: c, l: n.newLink()}, nil
}

func (n *linkNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return &linkUDPConn{UDPConn: c, l: n.newLink()}, nil
}

type linkPacketConn struct {
	net.PacketConn
	l link
}

func (c *linkPacketConn) WriteTo(p []byte, a net.Addr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.send(b, func() { _, _ = c.PacketConn.WriteTo(b, a) })
	return len(p), nil
}

func (c *linkPacketConn) Close() error {
	c.l.close()
	return c.PacketConn.Close()
}

type linkUDPConn struct {
	transport.UDPConn
	l link
}

func (c *linkUDPConn) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	c.l.send(b, func() { _, _ = c.UDPConn.Write(b) })
	return len(p), nil
}

func (c *linkUDPConn) WriteTo(p []byte, a net.Addr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.send(b, func() { _, _ = c.UDPConn.WriteTo(b, a) })
	return len(p), nil
}

func (c *linkUDPConn) WriteToUDP(p []byte, a *net.UDPAddr) (int, error) {
	b := append([]byte(nil), p...)
	c.l.send(b, func() { _, _ = c.UDPConn.WriteToUDP(b, a) })
	return len(p), nil
}

func (c *linkUDPConn) WriteMsgUDP(p, oob []byte, a *net.UDPAddr) (int, int, error) {
	b, o := append([]byte(nil), p...), append([]byte(nil), oob...)
	c.l.send(b, func() { _, _, _ = c.UDPConn.WriteMsgUDP(b, o, a) })
	return len(p), len(oob), nil
}

func (c *linkUDPConn) Close() error {
	c.l.close()
	return c.UDPConn.Close()
}
