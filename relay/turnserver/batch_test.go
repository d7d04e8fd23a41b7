package turnserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

// listenBatch opens a UDP socket on loopback wrapped as the server wraps its
// sockets, with batches of batch datagrams.
func listenBatched(t *testing.T, network, addr string, batch int) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		if network == "udp6" {
			t.Skipf("no IPv6 loopback here: %v", err) // a host or container without IPv6
		}
		t.Fatal(err)
	}
	bc := batchSocket(c, batch)
	t.Cleanup(func() { bc.Close() })
	return bc
}

// TestBatchConn: datagrams queued from several sources are read back in
// order with their sources and lengths (a batch of 4 takes 10 datagrams in
// three calls), replies reach each source, and an oversized datagram comes
// back as a full buffer, which pion/turn drops as too long.
func TestBatchConn(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			bc := listenBatched(t, tc.network, tc.addr, 4)
			if ip := bc.LocalAddr().(*net.UDPAddr).IP; !ip.IsLoopback() {
				t.Fatalf("LocalAddr %v, want loopback", bc.LocalAddr())
			}
			bc.SetDeadline(time.Now().Add(10 * time.Second))
			var senders [2]*net.UDPConn
			for i := range senders {
				c, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: bc.LocalAddr().(*net.UDPAddr).IP})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				senders[i] = c
			}
			for i := range 10 {
				msg := fmt.Appendf(nil, "datagram %d", i)
				if _, err := senders[i%2].WriteTo(msg, bc.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			long := bytes.Repeat([]byte{'x'}, 2000)
			if _, err := senders[0].WriteTo(long, bc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if _, err := senders[1].WriteTo([]byte("after"), bc.LocalAddr()); err != nil {
				t.Fatal(err)
			}

			buf := make([]byte, 1600) // pion/turn's inbound MTU
			for i := range 10 {
				n, from, err := bc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				want := fmt.Sprintf("datagram %d", i)
				if string(buf[:n]) != want || !sameAddr(from, senders[i%2].LocalAddr()) {
					t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, want, senders[i%2].LocalAddr())
				}
				if _, err := bc.WriteTo([]byte("re: "+want), from); err != nil {
					t.Fatalf("reply to %v: %v", from, err)
				}
			}
			if n, _, err := bc.ReadFrom(buf); err != nil || n != len(buf) {
				t.Fatalf("oversized datagram: %d bytes, %v; want %d (a full buffer)", n, err, len(buf))
			}
			if n, from, err := bc.ReadFrom(buf); err != nil || string(buf[:n]) != "after" || !sameAddr(from, senders[1].LocalAddr()) {
				t.Fatalf("after the oversized one: %q from %v, %v", buf[:n], from, err)
			}
			for i := range 10 {
				n, err := senders[i%2].Read(buf)
				if want := fmt.Sprintf("re: datagram %d", i); err != nil || string(buf[:n]) != want {
					t.Fatalf("sender %d got %q, %v; want %q", i%2, buf[:n], err, want)
				}
			}
		})
	}
}

func sameAddr(a, b net.Addr) bool {
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	return ok1 && ok2 && ua.IP.Equal(ub.IP) && ua.Port == ub.Port
}

// TestBatchConnErrors: a write to the other address family fails as on a
// plain socket, a read past its deadline times out, and Close ends a read
// that waits.
func TestBatchConnErrors(t *testing.T) {
	bc := listenBatched(t, "udp4", "127.0.0.1:0", 4)
	if _, err := bc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9}); err == nil {
		t.Error("WriteTo an IPv6 address from an IPv4 socket succeeded")
	}
	bc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := bc.ReadFrom(make([]byte, 1600)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom past the deadline: %v, want a timeout", err)
	}
	bc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := bc.ReadFrom(make([]byte, 1600))
		done <- err
	}()
	bc.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom on a closed socket: %v, want net.ErrClosed", err)
	}
}

// TestBatchConnNoAllocs: relaying a datagram (read it, write it on)
// allocates nothing once its source is known: no garbage per packet.
func TestBatchConnNoAllocs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("batched sockets are Linux only")
	}
	bc := listenBatched(t, "udp4", "127.0.0.1:0", 4)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	deadline := time.Now().Add(10 * time.Second)
	bc.SetDeadline(deadline)
	peer.SetDeadline(deadline)
	to := bc.LocalAddr().(*net.UDPAddr).AddrPort()
	msg, buf, back := make([]byte, 1200), make([]byte, 1600), make([]byte, 1600)
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := peer.WriteToUDPAddrPort(msg, netip.AddrPortFrom(to.Addr().Unmap(), to.Port())); err != nil {
			failed = err
			return
		}
		n, from, err := bc.ReadFrom(buf)
		if err != nil {
			failed = err
			return
		}
		if _, err := bc.WriteTo(buf[:n], from); err != nil {
			failed = err
			return
		}
		if _, _, err := peer.ReadFromUDPAddrPort(back); err != nil {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per relayed datagram, want 0", allocs)
	}
}
