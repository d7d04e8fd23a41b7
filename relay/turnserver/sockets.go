package turnserver

import (
	"context"
	"net"
	"runtime"

	"github.com/pion/turn/v5"
)

// Socket buffer sizes asked for. A burst of relayed packets waits in the
// kernel while the reading goroutine is off the CPU; at the default of
// about 200 KiB a 2-core machine under load drops packets that coturn,
// which sizes its buffers up, does not. The kernel caps what a process
// asks for at net.core.rmem_max / wmem_max (208 KiB on a stock Debian);
// a server with CAP_NET_ADMIN (run as root) sets its listening sockets'
// past that, and one that gets less logs a warning (Server.New).
const (
	listenSocketBuffer = 4 << 20
	relaySocketBuffer  = 1 << 20
)

// batchBufSize holds any datagram pion/turn accepts (its inbound MTU is
// 1600); a longer one is cut to this and then dropped by pion as oversized,
// as with a plain read into its buffer.
const batchBufSize = 1600

// maxUDPSockets bounds the listening sockets of one port.
const maxUDPSockets = 8

// udpSocketCount is how many UDP sockets share the listening port: one per
// CPU where the platform has SO_REUSEPORT (the kernel spreads clients over
// them by address; on Linux the server's event loop reads them, on a
// second goroutine too when busy, elsewhere pion/turn reads each on a
// goroutine of its own), only when the port is a fixed one.
// A kernel-picked port (0) gets one socket: binding port 0 with
// SO_REUSEPORT may pick a port that another socket of the same user holds
// with SO_REUSEPORT, and then the two servers would share it.
func udpSocketCount(port string) int {
	if port == "0" || !haveReusePort {
		return 1
	}
	return min(runtime.GOMAXPROCS(0), maxUDPSockets)
}

// listenUDP opens n UDP sockets on addr (SO_REUSEPORT when n > 1) with
// large buffers. They are plain sockets: the loop takes them over
// (udpLoop.listenSocket), and only one it cannot take is batched.
func listenUDP(ctx context.Context, network, addr string, n int) ([]net.PacketConn, error) {
	var lc net.ListenConfig
	if n > 1 {
		// SO_REUSEPORT would let this server share a port another process
		// (of the same user) already serves, where a plain bind fails: probe
		// with a plain bind first, so that a port in use is still an error.
		probe, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		probe.Close()
		lc.Control = reusePort
	}
	conns := make([]net.PacketConn, 0, n)
	for range n {
		c, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		if !forceBuffers(c, listenSocketBuffer) {
			setBuffers(c, listenSocketBuffer)
		}
		conns = append(conns, c)
		addr = c.LocalAddr().String() // the same port for the next ones
	}
	return conns, nil
}

// setBuffers asks for size-byte send and receive buffers; a refusal keeps
// the defaults (the server works, it only drops sooner under load).
func setBuffers(c net.PacketConn, size int) {
	if b, ok := c.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		_ = b.SetReadBuffer(size)
		_ = b.SetWriteBuffer(size)
	}
}

// udpRelays makes the relay sockets of a UDP listener's allocations: large
// buffers, read by the server's event loop where there is one (batched
// reads by pion/turn otherwise), and channels' data relayed by ch.
type udpRelays struct {
	turn.RelayAddressGenerator
	ch   *channels
	loop *udpLoop
}

func (g udpRelays) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	c, a, err := g.RelayAddressGenerator.AllocatePacketConn(conf)
	if err != nil {
		return c, a, err
	}
	setBuffers(c, relaySocketBuffer)
	if g.loop != nil {
		rc, err := g.loop.relaySocket(c, g.ch)
		if err != nil {
			return nil, nil, err
		}
		if rc != nil {
			return rc, a, nil
		}
	}
	return g.ch.newRelayConn(batchSocket(c, relayBatch)), a, nil
}
