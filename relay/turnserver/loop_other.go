//go:build !linux

package turnserver

import "net"

// udpLoop is Linux only: elsewhere pion/turn reads each socket itself.
type udpLoop struct{}

func newUDPLoop() (*udpLoop, error) { return nil, nil }

func (*udpLoop) relaySocket(net.PacketConn, *channels) (*relayConn, error) { return nil, nil }

func (*udpLoop) listenSocket(c net.PacketConn, _ *quota, _ *channels) (net.PacketConn, error) {
	return c, nil
}

func (*udpLoop) stop() {}

func (*udpLoop) reads(net.PacketConn) bool { return false }

func (*udpLoop) dropped() [2]uint64 { return [2]uint64{} }
