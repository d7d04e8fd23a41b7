package turnserver

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// shortenAllocateWithin makes connections allocate within d for the test.
func shortenAllocateWithin(t *testing.T, d time.Duration) {
	t.Helper()
	old := tcpAllocateWithin
	tcpAllocateWithin = d
	t.Cleanup(func() { tcpAllocateWithin = old })
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// A TCP connection that does not allocate is closed after
// tcpAllocateWithin; one that allocated stays and relays.
func TestTCPConnectionMustAllocate(t *testing.T) {
	shortenAllocateWithin(t, 300*time.Millisecond)
	s := startServer(t, func(c *Config) { c.TCP = true })

	idle, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if !closedWithin(idle, 10*time.Second) {
		t.Fatal("a connection that never allocated is still open after 10 s")
	}
	if got := metricValue(t, s.tcpGuard.unallocated); got != 1 {
		t.Errorf("duet_turn_tcp_unallocated_total = %v, want 1", got)
	}

	conn, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	relayConn := allocate(t, newClientOn(t, turn.NewSTUNConn(conn), s.TCPAddr().String(), user, pass))
	time.Sleep(3 * tcpAllocateWithin) // its time to allocate passes: it did
	peer := newPeer(t, relayConn)
	if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("the peer got %q, %v: the allocated connection should relay", buf[:n], err)
	}
	if got := metricValue(t, s.tcpGuard.unallocated); got != 1 {
		t.Errorf("duet_turn_tcp_unallocated_total = %v after an allocation, want still 1", got)
	}
}

// Past tcpPendingPerAddr connections of one address that have not
// allocated, the next is closed at once.
func TestTCPPendingPerAddress(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TCP = true })
	for i := range tcpPendingPerAddr {
		c, err := net.Dial("tcp4", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i == 0 && closedWithin(c, 200*time.Millisecond) {
			t.Fatal("the first connection was closed at once")
		}
	}
	extra, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedWithin(extra, 10*time.Second) {
		t.Fatalf("connection %d of one address, none allocated, is still open", tcpPendingPerAddr+1)
	}
	if got := metricValue(t, s.tcpGuard.refused.WithLabelValues("address")); got != 1 {
		t.Errorf(`duet_turn_tcp_refused_total{reason="address"} = %v, want 1`, got)
	}
}
