package turnserver

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestListenBuffers: the listening sockets get the receive buffer asked
// for, past net.core.rmem_max when the process may (root), else as much
// as rmem_max lets them have; forceBuffers goes past rmem_max with
// CAP_NET_ADMIN and says it cannot otherwise.
func TestListenBuffers(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	admin := netAdmin(t)
	want := min(listenSocketBuffer, rmemMax)
	if admin {
		want = listenSocketBuffer
	}
	conns, err := listenUDP(context.Background(), "udp4", "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		defer c.Close()
		if got := readBuffer(c); got != want {
			t.Errorf("receive buffer %d bytes, want %d (rmem_max %d, CAP_NET_ADMIN %v)", got, want, rmemMax, admin)
		}
		forced := forceBuffers(c, 2*rmemMax)
		if forced != admin {
			t.Fatalf("forceBuffers %v with CAP_NET_ADMIN %v", forced, admin)
		}
		if got := readBuffer(c); forced && got != 2*rmemMax {
			t.Errorf("forced to %d bytes, has %d", 2*rmemMax, got)
		}
	}
}

// netAdmin reports whether this process has CAP_NET_ADMIN (bit 12 of
// CapEff in /proc/self/status).
func netAdmin(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<12) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
