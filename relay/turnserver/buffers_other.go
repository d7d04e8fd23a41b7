//go:build !linux

package turnserver

import "net"

func forceBuffers(net.PacketConn, int) bool { return false }

func readBuffer(net.PacketConn) int { return 0 }
