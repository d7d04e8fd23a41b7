//go:build unix

package relay

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// sysRead reads from a non-blocking socket, retrying when interrupted. The
// call is raw: it never blocks, so the scheduler need not hand the thread's
// P to another (entersyscall/exitsyscall cost more than a short read).
func sysRead(fd uintptr, p []byte) (int, error) {
	return rawIO(unix.SYS_READ, fd, p)
}

// sysWrite writes to a non-blocking socket, raw like sysRead.
func sysWrite(fd uintptr, p []byte) (int, error) {
	return rawIO(unix.SYS_WRITE, fd, p)
}

func rawIO(trap, fd uintptr, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	for {
		n, _, e := unix.RawSyscall(trap, fd, uintptr(ptr), uintptr(len(p)))
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
