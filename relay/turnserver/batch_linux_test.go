package turnserver

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBatchConnScopedAddr: a scoped IPv6 source (a link-local client) gets
// its interface's name as the zone, and the same *net.UDPAddr every time.
func TestBatchConnScopedAddr(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err) // every Linux network namespace has lo
	}
	bc := listenBatched(t, "udp4", "127.0.0.1:0", 4).(*batchConn)
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(5000), Scope_id: uint32(lo.Index),
		Addr: [16]byte{0xfe, 0x80, 15: 1}}
	a := bc.r.addr(&sa)
	want := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 5000, Zone: "lo"}
	if ua, ok := a.(*net.UDPAddr); !ok || ua.String() != want.String() {
		t.Fatalf("addr = %v, want %v", a, want)
	}
	if again := bc.r.addr(&sa); again != a {
		t.Errorf("a second datagram's source is a new *net.UDPAddr")
	}
}
