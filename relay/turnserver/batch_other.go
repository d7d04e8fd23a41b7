//go:build !linux

package turnserver

import "net"

// Batch sizes: unused without batchConn.
const (
	listenBatch = 1
	relayBatch  = 1
)

// batchSocket returns c: batchConn is Linux only.
func batchSocket(c net.PacketConn, _ int) net.PacketConn { return c }
