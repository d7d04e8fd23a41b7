package turnserver

import (
	"net"

	"golang.org/x/sys/unix"
)

// forceBuffers sets c's receive and send buffers to size bytes past
// net.core.rmem_max / wmem_max (SO_RCVBUFFORCE, SO_SNDBUFFORCE), which
// needs CAP_NET_ADMIN; false when it cannot (the caller asks within the
// limits instead).
func forceBuffers(c net.PacketConn, size int) bool {
	u, ok := rawUDP(c)
	if !ok {
		return false
	}
	var serr error
	if err := u.rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		}
	}); err != nil {
		return false
	}
	return serr == nil
}

// readBuffer is the receive buffer c has, in bytes as asked for (Linux
// reports twice that, the room for its bookkeeping included); 0 when it
// cannot tell.
func readBuffer(c net.PacketConn) int {
	u, ok := rawUDP(c)
	if !ok {
		return 0
	}
	n := 0
	_ = u.rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			n = v / 2
		}
	})
	return n
}
