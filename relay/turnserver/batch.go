package turnserver

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batch sizes: datagrams one recvmmsg takes at most, on a listening socket
// (every client's packets) and on a relay socket (one allocation's peers).
const (
	listenBatch = 32
	relayBatch  = 8
	// batchBufSize holds any datagram pion/turn accepts (its inbound MTU is
	// 1600); a longer one is cut to this and then dropped by pion as
	// oversized, as with a plain read into its buffer.
	batchBufSize = 1600
)

// batchReader is what ipv4.PacketConn and ipv6.PacketConn share.
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// batchConn serves ReadFrom from batches of datagrams read with one
// recvmmsg system call each (where the platform has it, else one datagram
// per call): under load, when datagrams queue up in the socket, one call
// takes many. Writes and the rest go to the socket directly. ReadFrom must
// not be called concurrently (pion/turn reads each socket on one
// goroutine).
type batchConn struct {
	net.PacketConn
	br      batchReader
	msgs    []ipv4.Message
	next, n int
}

// withBatchReads wraps a UDP socket in a batchConn; other conns are
// returned as they are.
func withBatchReads(c net.PacketConn, batch int) net.PacketConn {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return c
	}
	bc := &batchConn{PacketConn: c, msgs: make([]ipv4.Message, batch)}
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		bc.br = ipv4.NewPacketConn(uc)
	} else {
		bc.br = ipv6.NewPacketConn(uc)
	}
	buf := make([]byte, batch*batchBufSize)
	for i := range bc.msgs {
		bc.msgs[i].Buffers = [][]byte{buf[i*batchBufSize : (i+1)*batchBufSize : (i+1)*batchBufSize]}
	}
	return bc
}

func (c *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.next >= c.n {
		n, err := c.br.ReadBatch(c.msgs, 0)
		if err != nil {
			return 0, nil, err
		}
		c.next, c.n = 0, n
	}
	m := &c.msgs[c.next]
	c.next++
	return copy(p, m.Buffers[0][:m.N]), m.Addr, nil
}
