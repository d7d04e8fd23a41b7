package turnserver

import (
	"context"
	"net"
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

// TestQuotaTarpit: after tarpitAfter Allocates refused 486 in a row, a
// user's next Allocate goes unanswered while the quota would still refuse
// it, the allocation it holds keeps working, and once that allocation is
// closed the waiting client's retransmitted Allocate succeeds.
func TestQuotaTarpit(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAllocationsPerUser = 1 })
	user, pass := Credentials(testSecret, "u11111111", time.Now().Add(time.Hour))
	holder := allocate(t, newClient(t, s, user, pass))
	for i := range tarpitAfter {
		c := newClient(t, s, user, pass)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.AllocateWithContext(ctx)
		cancel()
		if turnErrorCode(err) != stun.CodeAllocQuotaReached {
			t.Fatalf("refused allocation %d: %v, want 486", i+1, err)
		}
	}
	if got := metricValue(t, s.quota.dropped); got != 0 {
		t.Fatalf("dropped %v Allocates before %d refusals, want 0", got, tarpitAfter)
	}

	waiting := newClient(t, s, user, pass)
	type result struct {
		conn net.PacketConn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := waiting.AllocateWithContext(ctx)
		done <- result{conn, err}
	}()
	waitFor(t, "an Allocate dropped", func() bool { return metricValue(t, s.quota.dropped) >= 1 })

	// The holder's own requests (CreatePermission, then its data) still
	// pass while its user is tarpitted.
	peer := newPeer(t, holder)
	if _, err := holder.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
		t.Fatalf("holder WriteTo while tarpitted: %v", err)
	}
	buf := make([]byte, 64)
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("peer got %q, %v; want ping", buf[:n], err)
	}

	holder.Close() // frees the user's only slot
	r := <-done
	if r.err != nil {
		t.Fatalf("tarpitted Allocate after the slot was freed: %v, want success", r.err)
	}
	r.conn.Close()
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTarpitOnlyRefusedAllocates: tarpit drops only an Allocate request
// with a REST username whose user is tarpitted, from an address holding no
// allocation; never another method, an indication, ChannelData, an
// Allocate without a username or one from an allocation's holder.
func TestTarpitOnlyRefusedAllocates(t *testing.T) {
	q := newQuota(1, 10)
	holder := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1).To16(), Port: 4000}
	other := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4001}
	q.created("alice", holder)
	for range tarpitAfter {
		q.allow("alice", "duet", other)
	}
	build := func(typ stun.MessageType, user string) []byte {
		setters := []stun.Setter{stun.TransactionID, typ, stun.RawAttribute{Type: stun.AttrSoftware, Value: []byte("x")}}
		if user != "" {
			setters = append(setters, stun.NewUsername(user))
		}
		m, err := stun.Build(setters...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	for _, c := range []struct {
		name string
		b    []byte
		src  net.Addr
		drop bool
	}{
		{"allocate", build(allocate, "123:alice"), other, true},
		{"allocate of another user", build(allocate, "123:bob"), other, false},
		{"allocate without username", build(allocate, ""), other, false},
		{"allocate with a non-REST username", build(allocate, "alice"), other, false},
		{"allocate from the holder", build(allocate, "123:alice"), holder, false},
		{"refresh", build(stun.NewType(stun.MethodRefresh, stun.ClassRequest), "123:alice"), other, false},
		{"create permission", build(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), "123:alice"), other, false},
		{"channel bind", build(stun.NewType(stun.MethodChannelBind, stun.ClassRequest), "123:alice"), other, false},
		{"send indication", build(stun.NewType(stun.MethodSend, stun.ClassIndication), "123:alice"), other, false},
		{"channel data", []byte{0x40, 0, 0, 4, 1, 2, 3, 4}, other, false},
		{"truncated allocate", build(allocate, "123:alice")[:30], other, false},
	} {
		if got := q.tarpit(c.b, c.src); got != c.drop {
			t.Errorf("%s: dropped %v, want %v", c.name, got, c.drop)
		}
	}
	q.deleted("alice", holder)
	if q.tarpit(build(allocate, "123:alice"), other) {
		t.Error("an Allocate the quota admits was dropped")
	}
}

// BenchmarkTarpit is the cost of deciding to drop a tarpitted Allocate,
// what a refused request costs the server past its read instead of a
// pion/turn round and a 486 answer.
func BenchmarkTarpit(b *testing.B) {
	q := newQuota(1, 10)
	q.created("alice", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000})
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4001}
	for range tarpitAfter {
		q.allow("alice", "duet", src)
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		stun.NewUsername("1765000000:alice"), stun.NewRealm("duet"), stun.NewNonce("0123456789abcdef"),
		stun.NewLongTermIntegrity("1765000000:alice", "duet", "password"), stun.Fingerprint)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !q.tarpit(m.Raw, src) {
			b.Fatal("not dropped")
		}
	}
}
