package turnserver

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch sizes: datagrams one recvmmsg takes at most, on a listening socket
// (every client's packets) and on a relay socket (one allocation's peers).
const (
	listenBatch = 32
	relayBatch  = 8
	// addrCacheMax bounds the source addresses a socket remembers.
	addrCacheMax = 4096
)

// batchConn is a UDP socket whose reads and writes are system calls made
// without the Go scheduler's syscall bookkeeping (the socket is
// non-blocking: a call never waits in the kernel, and when it would, the
// goroutine waits in the netpoller as net.UDPConn's do). On this path, at
// tens of thousands of datagrams a second, entersyscall/exitsyscall woke
// the runtime's sysmon thread after every idle spell and it then polled
// every 20 µs: a tenth of the server's CPU.
//
// ReadFrom serves datagrams from batches read with one recvmmsg each:
// under load, when datagrams queue up in the socket, one call takes many.
// It returns the same *net.UDPAddr for the same source while the source is
// remembered, so that a datagram costs no allocation. Its addresses, and
// LocalAddr's, hold IPv4 addresses in 16 bytes: pion/turn looks up the
// allocation of every datagram by the IP.To16 of both, which allocates for
// a 4-byte IP. ReadFrom must not be called concurrently (pion/turn reads
// each socket on one goroutine); WriteTo may be.
type batchConn struct {
	*net.UDPConn
	rc    syscall.RawConn
	ip6   bool
	laddr *net.UDPAddr

	// Read side, owned by the reading goroutine.
	r       *batchReader
	next, n int
	rerr    error
	recvFn  func(fd uintptr) bool
}

// batchReader reads up to a batch of datagrams with one recvmmsg into
// slots that leave room for a ChannelData header before each datagram
// (relayConn.relay writes it there) and for its padding after. It
// remembers source addresses, so that a source known already costs no
// allocation. Its methods must not be called concurrently.
type batchReader struct {
	hdrs  []unix.Mmsghdr // struct mmsghdr[], as recvmmsg takes them
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	buf   []byte
	addrs map[addrKey]*net.UDPAddr

	// n is how many datagrams the last recvDontWait took.
	n            int
	recvDontWait func(fd uintptr) // a RawConn.Control callback
}

// batchSlot is the room of one datagram in batchReader.buf: a ChannelData
// header, batchBufSize bytes, padding to 4 bytes.
const batchSlot = channelDataHeader + batchBufSize + 4

func newBatchReader(batch int) *batchReader {
	r := &batchReader{
		hdrs:  make([]unix.Mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		buf:   make([]byte, batch*batchSlot),
		addrs: make(map[addrKey]*net.UDPAddr),
	}
	for i := range r.hdrs {
		h := &r.hdrs[i]
		r.iovs[i].Base = &r.buf[i*batchSlot+channelDataHeader]
		r.iovs[i].SetLen(batchBufSize)
		h.Hdr.Iov = &r.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.recvDontWait = func(fd uintptr) {
		// An error (a pending ICMP error, reported once) or nothing
		// queued (EAGAIN) leaves nothing to read.
		r.n, _, _ = r.recv(fd, unix.MSG_DONTWAIT)
	}
	return r
}

// recv is one recvmmsg on socket fd with flags; done is false when
// nothing was queued (EAGAIN).
func (r *batchReader) recv(fd uintptr, flags int) (n int, done bool, err error) {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		r.hdrs[i].Hdr.Flags = 0
	}
	return nonBlocking("recvmmsg", func() (uintptr, syscall.Errno) {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), uintptr(flags), 0, 0)
		return n, e
	})
}

// datagram is the i-th datagram of the last recv: its slot (the datagram
// at slot[channelDataHeader:][:n]), its length and its source. A datagram
// longer than batchBufSize comes as batchBufSize bytes, which pion/turn
// drops as oversized.
func (r *batchReader) datagram(i int) (slot []byte, n int, src net.Addr) {
	h := &r.hdrs[i]
	n = int(h.Len)
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		n = batchBufSize
	}
	return r.buf[i*batchSlot : (i+1)*batchSlot], n, r.addr(&r.names[i])
}

// batchSocket wraps a UDP socket in a batchConn reading up to batch
// datagrams a call; other conns are returned as they are.
func batchSocket(c net.PacketConn, batch int) net.PacketConn {
	u, ok := rawUDP(c)
	if !ok {
		return c
	}
	bc := &batchConn{UDPConn: u.conn, rc: u.rc, ip6: u.ip6, laddr: u.laddr, r: newBatchReader(batch)}
	bc.recvFn = bc.recv
	return bc
}

// udpSocket is a UDP socket as batchConn and loopSocket use it.
type udpSocket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	laddr *net.UDPAddr // its IP in 16 bytes
	ip6   bool         // an IPv6 socket
}

// rawUDP is c as a udpSocket; false when c is not a UDP socket with a
// descriptor.
func rawUDP(c net.PacketConn) (udpSocket, bool) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return udpSocket{}, false
	}
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return udpSocket{}, false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return udpSocket{}, false
	}
	return udpSocket{conn: uc, rc: rc, ip6: la.IP.To4() == nil,
		laddr: &net.UDPAddr{IP: la.IP.To16(), Port: la.Port, Zone: la.Zone}}, true
}

// recv is the RawConn.Read callback: one recvmmsg; false when nothing is
// queued (the caller then waits for the socket to be readable).
func (c *batchConn) recv(fd uintptr) bool {
	n, done, err := c.r.recv(fd, 0)
	c.next, c.n, c.rerr = 0, n, err
	return done
}

// nonBlocking makes call, a system call on a non-blocking socket, again
// while a signal interrupts it. It tells a RawConn.Read or Write callback
// whether it is done: not when the call would block (EAGAIN), and then the
// caller waits for the socket in the netpoller.
func nonBlocking(name string, call func() (uintptr, syscall.Errno)) (n int, done bool, err error) {
	for {
		r, e := call()
		switch e {
		case 0:
			return int(r), true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, false, nil
		default:
			return 0, true, os.NewSyscallError(name, e)
		}
	}
}

func (c *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for c.next >= c.n {
		if err := c.rc.Read(c.recvFn); err != nil {
			return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
		}
		if err := c.rerr; err != nil {
			c.rerr = nil
			return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: err}
		}
	}
	slot, n, src := c.r.datagram(c.next)
	c.next++
	return copy(p, slot[channelDataHeader:channelDataHeader+n]), src, nil
}

// addr is the source address of a received datagram.
func (r *batchReader) addr(sa *unix.RawSockaddrInet6) net.Addr {
	var k addrKey
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		k = addrKey{ip: netip.AddrFrom4(sa4.Addr).As16(), port: ntohs(sa4.Port)}
	case unix.AF_INET6:
		k = addrKey{ip: sa.Addr, port: ntohs(sa.Port), scope: sa.Scope_id}
	default:
		return nil
	}
	if a, ok := r.addrs[k]; ok {
		return a
	}
	if len(r.addrs) >= addrCacheMax {
		clear(r.addrs)
	}
	a := &net.UDPAddr{IP: append(net.IP(nil), k.ip[:]...), Port: int(k.port)}
	if k.scope != 0 {
		if ifi, err := net.InterfaceByIndex(int(k.scope)); err == nil {
			a.Zone = ifi.Name
		}
	}
	r.addrs[k] = a
	return a
}

// addrKey is a source address as the kernel gives it: the interface of a
// scoped IPv6 address by index, looked up by name only once per source.
type addrKey struct {
	ip    [16]byte
	port  uint16
	scope uint32
}

// LocalAddr is the socket's address, its IP in 16 bytes.
func (c *batchConn) LocalAddr() net.Addr { return c.laddr }

// ntohs reads a port in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// sendOp is one WriteTo's state, pooled so that a write allocates nothing.
type sendOp struct {
	p     []byte
	sa    unix.RawSockaddrInet6
	salen uintptr
	flags int
	n     int
	err   error
	fn    func(fd uintptr) bool // s.send, for RawConn.Write
	ctl   func(fd uintptr)      // s.sendNow, for RawConn.Control; set at its first use
}

var sendOps = sync.Pool{New: func() any {
	s := new(sendOp)
	s.fn = s.send
	return s
}}

// sendNow is send for a descriptor nobody waits on: a datagram the socket
// cannot take at once is dropped, an error.
func (s *sendOp) sendNow(fd uintptr) {
	if !s.send(fd) {
		s.err = os.NewSyscallError("sendto", unix.EAGAIN)
	}
}

func (s *sendOp) send(fd uintptr) bool {
	var p unsafe.Pointer
	if len(s.p) > 0 {
		p = unsafe.Pointer(&s.p[0])
	}
	n, done, err := nonBlocking("sendto", func() (uintptr, syscall.Errno) {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.p)), uintptr(s.flags), uintptr(unsafe.Pointer(&s.sa)), s.salen)
		return n, e
	})
	s.n, s.err = n, err
	return done
}

// prepare sets s up to send p to addr from a socket of the family ip6
// says, with flags; false when addr is not a plain UDP address of that
// family (s is then unchanged).
func (s *sendOp) prepare(p []byte, addr net.Addr, ip6 bool, flags int) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.Zone != "" || ua.Port < 0 || ua.Port > 0xffff {
		return false
	}
	ip4 := ua.IP.To4()
	switch {
	case !ip6 && ip4 != nil:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.sa))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(uint16(ua.Port)), Addr: [4]byte(ip4)}
		s.salen = unix.SizeofSockaddrInet4
	case ip6 && len(ua.IP) == net.IPv6len && ip4 == nil:
		s.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(uint16(ua.Port)), Addr: [16]byte(ua.IP)}
		s.salen = unix.SizeofSockaddrInet6
	default:
		return false
	}
	s.p, s.flags, s.n, s.err = p, flags, 0, nil
	return true
}

// result is what the send s made returns (err: the RawConn's own), and
// drops s's reference to the data.
func (s *sendOp) result(err error, laddr, addr net.Addr) (int, error) {
	if err == nil {
		err = s.err
	}
	n := s.n
	s.p, s.err = nil, nil
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "udp", Source: laddr, Addr: addr, Err: err}
	}
	return n, nil
}

func (c *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	s := sendOps.Get().(*sendOp)
	defer sendOps.Put(s)
	if !s.prepare(p, addr, c.ip6, 0) {
		return c.UDPConn.WriteTo(p, addr) // net's own checks and errors
	}
	return s.result(c.rc.Write(s.fn), c.LocalAddr(), addr)
}

// htons gives a port in network byte order.
func htons(p uint16) uint16 {
	var v uint16
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(p>>8), byte(p)
	return v
}
