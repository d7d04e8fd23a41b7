//go:build !unix

package relay

import (
	"errors"
	"net"
	"syscall"
)

// rawConn is nil: sessions read through net.Conn (see wsConn.readLazy).
func rawConn(net.Conn) syscall.RawConn { return nil }

// sysRead is not used without rawConn.
func sysRead(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

// sysWrite is not used without rawConn.
func sysWrite(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
