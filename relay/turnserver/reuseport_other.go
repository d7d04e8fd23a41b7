//go:build !linux

package turnserver

import "syscall"

const haveReusePort = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
