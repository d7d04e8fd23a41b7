//go:build unix

package relay

import (
	"net"
	"syscall"
)

// rawConn is c's socket, for reading without a buffer held while waiting
// (wsConn.readLazy); nil when c is not a socket (TLS).
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// sysRead reads from a non-blocking socket, retrying when interrupted.
func sysRead(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}
