package turnserver

import (
	"context"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestAllocationQuota: past the per-user quota an Allocate gets 486, another
// user still allocates, a closed allocation frees its slot, and past the
// total quota everyone gets 486.
func TestAllocationQuota(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAllocationsPerUser, c.MaxAllocations = 2, 3 })
	exp := time.Now().Add(time.Hour)
	ua, pa := Credentials(testSecret, "u11111111", exp)
	ub, pb := Credentials(testSecret, "u22222222", exp)
	tryAllocate := func(user, pass string) error {
		c := newClient(t, s, user, pass)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := c.AllocateWithContext(ctx)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
		}
		return err
	}
	first := newClient(t, s, ua, pa)
	firstConn := allocate(t, first)
	if err := tryAllocate(ua, pa); err != nil {
		t.Fatalf("second allocation of a: %v", err)
	}
	if err := tryAllocate(ua, pa); turnErrorCode(err) != stun.CodeAllocQuotaReached {
		t.Fatalf("third allocation of a: %v, want 486", err)
	}
	if err := tryAllocate(ub, pb); err != nil {
		t.Fatalf("b's allocation: %v", err)
	}
	if err := tryAllocate(ub, pb); turnErrorCode(err) != stun.CodeAllocQuotaReached {
		t.Fatalf("past the total: %v, want 486", err)
	}
	if got := counterValue(t, s.quota.refused, "user"); got != 1 {
		t.Errorf("user quota refusals %v, want 1", got)
	}
	if got := counterValue(t, s.quota.refused, "total"); got != 1 {
		t.Errorf("total quota refusals %v, want 1", got)
	}
	firstConn.Close() // deletes the allocation (a Refresh with lifetime 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := tryAllocate(ua, pa)
		if err == nil {
			break
		}
		if turnErrorCode(err) != stun.CodeAllocQuotaReached || time.Now().After(deadline) {
			t.Fatalf("allocation after one was closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
