package turnserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// channels relays ChannelData of UDP allocations without pion/turn, in both
// directions, from a mirror of pion's channel bindings kept by its
// OnChannelCreated and OnChannelDeleted events (called under pion's own
// lock, as the bindings change, so the mirror never holds a channel pion no
// longer has). That is the media path of a relayed call: pion's own handling
// costs, per packet, debug-log arguments built whether logged or not, the
// client's address formatted as a string, a lookup of the allocation under
// the manager's lock and a new buffer for every ChannelData it sends.
// Anything else (STUN requests, Send and Data indications, packets of a
// peer without a channel, ChannelData of an unknown channel) still goes
// to pion.
//
// Channel bindings carry no per-packet state in pion (their lifetime and
// the permission they imply are refreshed by ChannelBind requests, which
// pion handles), so relaying their data here changes nothing it keeps.
type channels struct {
	out net.PacketConn // a listening socket, to send to clients (every socket of the port sends from the same address)

	// relayed counts the datagrams relayed here, both ways (tests read it:
	// pion would relay the same data).
	relayed atomic.Uint64

	mu       sync.RWMutex
	byPort   map[int]*relayConn            // relay sockets, by port
	byClient map[netip.AddrPort]*relayConn // relay sockets with a channel, by their client
}

func newChannels() *channels {
	return &channels{byPort: make(map[int]*relayConn), byClient: make(map[netip.AddrPort]*relayConn)}
}

// route is the channels of one allocation. It is replaced, never changed.
type route struct {
	client *net.UDPAddr
	byPeer map[netip.AddrPort]uint16
	byNum  map[uint16]*net.UDPAddr
}

// channelDataHeader is the size of a ChannelData header (number, length).
const channelDataHeader = 4

// relayConn is an allocation's relay socket: it relays the datagrams of
// peers that have a channel to the client itself, and returns the others
// to pion/turn.
type relayConn struct {
	net.PacketConn
	ch    *channels
	port  int
	route atomic.Pointer[route]

	// buf holds a datagram after room for a ChannelData header, and its
	// padding; owned by the reading goroutine (pion reads each relay
	// socket on one).
	buf []byte
}

func (ch *channels) newRelayConn(c net.PacketConn) *relayConn {
	rc := &relayConn{PacketConn: c, ch: ch, buf: make([]byte, channelDataHeader+batchBufSize+3)}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		rc.port = a.Port
		ch.mu.Lock()
		ch.byPort[rc.port] = rc
		ch.mu.Unlock()
	}
	return rc
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(c.buf[channelDataHeader : channelDataHeader+batchBufSize])
		if err != nil {
			return n, addr, err
		}
		if !c.relay(c.buf, n, addr) {
			return copy(p, c.buf[channelDataHeader:channelDataHeader+n]), addr, nil
		}
	}
}

// relay sends the n-byte datagram from src in b[channelDataHeader:] to the
// client as ChannelData when src has a channel; false leaves it to pion.
// b has room for the header before the datagram and its padding after.
func (c *relayConn) relay(b []byte, n int, src net.Addr) bool {
	r := c.route.Load()
	if r == nil {
		return false
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return false
	}
	num, ok := r.byPeer[unmapped(ua.AddrPort())]
	if !ok || n >= batchBufSize {
		return false
	}
	// ChannelData on channel num, padded to 4 bytes as pion/turn does.
	binary.BigEndian.PutUint16(b[0:2], num)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	end := channelDataHeader + n
	for end%4 != 0 {
		b[end] = 0
		end++
	}
	// Counted first: a test that got it back may look at once. A failed
	// send is a lost datagram, as when pion sends it.
	c.ch.relayed.Add(1)
	_, _ = c.ch.out.WriteTo(b[:end], r.client)
	return true
}

func (c *relayConn) Close() error {
	c.ch.mu.Lock()
	if c.ch.byPort[c.port] == c {
		delete(c.ch.byPort, c.port)
	}
	if r := c.route.Load(); r != nil {
		if ap := unmapped(r.client.AddrPort()); c.ch.byClient[ap] == c {
			delete(c.ch.byClient, ap)
		}
	}
	c.ch.mu.Unlock()
	return c.PacketConn.Close()
}

// forward relays ChannelData b from a client (src) to its peer when it is
// on a channel of the client's allocation; false leaves b to pion/turn.
func (ch *channels) forward(b []byte, src net.Addr) bool {
	if len(b) < channelDataHeader || b[0]&0xc0 != 0x40 {
		return false
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-channelDataHeader {
		return false // pion refuses it
	}
	ch.mu.RLock()
	rc := ch.byClient[unmapped(ua.AddrPort())]
	ch.mu.RUnlock()
	if rc == nil {
		return false
	}
	r := rc.route.Load()
	if r == nil {
		return false
	}
	peer, ok := r.byNum[binary.BigEndian.Uint16(b[0:2])]
	if !ok {
		return false
	}
	// Counted first, as in relayConn.relay.
	ch.relayed.Add(1)
	_, _ = rc.PacketConn.WriteTo(b[channelDataHeader:channelDataHeader+n], peer)
	return true
}

// created is pion's OnChannelCreated.
func (ch *channels) created(client, relay, peer net.Addr, num uint16) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	rc, ca, pa := ch.event(client, relay, peer)
	if rc == nil {
		return // not a relay socket of a UDP listener
	}
	next := rc.route.Load().without(netip.AddrPort{}, 0) // a copy: no channel has number 0
	next.client = ca
	next.byPeer[unmapped(pa.AddrPort())] = num
	next.byNum[num] = pa
	rc.route.Store(next)
	ch.byClient[unmapped(ca.AddrPort())] = rc
}

// deleted is pion's OnChannelDeleted.
func (ch *channels) deleted(client, relay, peer net.Addr, num uint16) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	rc, ca, pa := ch.event(client, relay, peer)
	if rc == nil || rc.route.Load() == nil {
		return
	}
	next := rc.route.Load().without(unmapped(pa.AddrPort()), num)
	if len(next.byNum) > 0 {
		rc.route.Store(next)
		return
	}
	rc.route.Store(nil)
	if ap := unmapped(ca.AddrPort()); ch.byClient[ap] == rc {
		delete(ch.byClient, ap)
	}
}

// event resolves the addresses of a channel event: the relay socket (nil
// when it is not one of ch's) and the client's and peer's UDP addresses.
// ch.mu is held.
func (ch *channels) event(client, relay, peer net.Addr) (*relayConn, *net.UDPAddr, *net.UDPAddr) {
	ca, ok1 := client.(*net.UDPAddr)
	ra, ok2 := relay.(*net.UDPAddr)
	pa, ok3 := peer.(*net.UDPAddr)
	if !ok1 || !ok2 || !ok3 {
		return nil, nil, nil
	}
	return ch.byPort[ra.Port], ca, pa
}

// without is a copy of r (which may be nil) without the channel of peer
// and number num.
func (r *route) without(peer netip.AddrPort, num uint16) *route {
	next := &route{byPeer: map[netip.AddrPort]uint16{}, byNum: map[uint16]*net.UDPAddr{}}
	if r == nil {
		return next
	}
	next.client = r.client
	for k, v := range r.byPeer {
		if k != peer {
			next.byPeer[k] = v
		}
	}
	for k, v := range r.byNum {
		if k != num {
			next.byNum[k] = v
		}
	}
	return next
}

// unmapped is ap with an IPv4-mapped address as IPv4.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// listenConn is a UDP listening socket the server's loop does not read
// (batchSocket, other platforms): it relays ChannelData on known channels
// itself (channels.forward) and drops what quota.tarpit says to, before
// pion/turn reads them, as the loop does with its sockets.
type listenConn struct {
	net.PacketConn
	q  *quota
	ch *channels
}

func (c listenConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !(c.ch.forward(p[:n], addr) || c.q.tarpit(p[:n], addr)) {
			return n, addr, err
		}
	}
}
