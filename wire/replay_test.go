package wire

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

func nonceN(n int) [NonceSize]byte {
	var b [NonceSize]byte
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return b
}

// checkGuard checks the guard's internal structures agree and respect the cap.
func checkGuard(t *testing.T, g *ReplayGuard) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for e := g.head; e != nil; e = e.next {
		n++
		if g.entries[e.nonce] != e {
			t.Fatalf("list entry %x not in the map", e.nonce)
		}
	}
	if n != len(g.entries) || len(g.byTS) != len(g.entries) {
		t.Fatalf("list %d, heap %d, map %d entries", n, len(g.byTS), len(g.entries))
	}
	if len(g.entries) > g.capacity {
		t.Fatalf("%d entries exceed the capacity %d", len(g.entries), g.capacity)
	}
	for i, e := range g.byTS {
		if e.index != i {
			t.Fatalf("heap index %d stored as %d", i, e.index)
		}
	}
}

func TestReplayGuardBasics(t *testing.T) {
	if got := NewReplayGuard(0).Cap(); got != 65536 {
		t.Fatalf("default capacity %d", got)
	}
	g := NewReplayGuard(10)
	now := newFakeClock().Now()
	a, b := nonceN(1), nonceN(2)
	if g.Seen(a, now) {
		t.Fatal("fresh guard has seen a nonce")
	}
	if err := g.Add(a, now, now); err != nil {
		t.Fatal(err)
	}
	if !g.Seen(a, now) || g.Seen(b, now) {
		t.Fatal("Seen wrong after Add")
	}
	if err := g.Add(a, now, now); !errors.Is(err, ErrReplay) {
		t.Fatalf("second Add: %v, want ErrReplay", err)
	}
	// Remembered for NonceWindow after acceptance, not longer.
	if !g.Seen(a, now.Add(NonceWindow-time.Millisecond)) {
		t.Fatal("forgotten before the nonce window ended")
	}
	if g.Seen(a, now.Add(NonceWindow)) {
		t.Fatal("remembered after the nonce window")
	}
	if g.Len() != 0 {
		t.Fatalf("Len = %d after expiry", g.Len())
	}
	if err := g.Add(a, now.Add(NonceWindow), now.Add(NonceWindow)); err != nil {
		t.Fatalf("Add after expiry: %v", err)
	}
	checkGuard(t, g)
}

func TestReplayGuardFullOfYoungEntries(t *testing.T) {
	const capacity = 100
	g := NewReplayGuard(capacity)
	now := newFakeClock().Now()
	refused := 0
	for i := range 3 * capacity {
		switch err := g.Add(nonceN(i), now, now); {
		case err == nil:
		case errors.Is(err, ErrReplayCacheFull):
			refused++
			if g.Seen(nonceN(i), now) {
				t.Fatalf("refused nonce %d was remembered", i)
			}
		default:
			t.Fatal(err)
		}
	}
	if refused != 2*capacity || g.Len() != capacity {
		t.Fatalf("refused %d, holding %d; want %d refused, %d held", refused, g.Len(), 2*capacity, capacity)
	}
	// Nothing accepted was evicted: all could still be replayed.
	for i := range capacity {
		if !g.Seen(nonceN(i), now) {
			t.Fatalf("nonce %d evicted while its _ts is fresh", i)
		}
	}
	// One millisecond short of the window the entries are still young.
	if err := g.Add(nonceN(-1), now, now.Add(TimestampWindow-time.Millisecond)); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("at window-1ms: %v", err)
	}
	if err := g.Add(nonceN(-1), now, now.Add(TimestampWindow)); err != nil {
		t.Fatalf("at the window: %v", err)
	}
	checkGuard(t, g)
}

// TestReplayGuardEvictsOldestTimestamp: when full, the entry evicted is the
// one with the oldest _ts, not the oldest accepted.
func TestReplayGuardEvictsOldestTimestamp(t *testing.T) {
	g := NewReplayGuard(3)
	t0 := newFakeClock().Now()
	early, late, mid := nonceN(1), nonceN(2), nonceN(3)
	must0(t, g.Add(late, t0.Add(30*time.Second), t0))   // accepted first, _ts ahead
	must0(t, g.Add(early, t0.Add(-30*time.Second), t0)) // _ts behind
	must0(t, g.Add(mid, t0, t0))
	now := t0.Add(30 * time.Second) // early's _ts is now 60 s old
	must0(t, g.Add(nonceN(4), now, now))
	if g.Seen(early, now) {
		t.Fatal("the stale entry was kept")
	}
	if !g.Seen(late, now) || !g.Seen(mid, now) {
		t.Fatal("a replayable entry was evicted")
	}
	checkGuard(t, g)
}

// TestReplayGuardExpiresByAgeFirst: entries older than the nonce window go
// first, even when another entry has an older _ts.
func TestReplayGuardExpiresByAgeFirst(t *testing.T) {
	g := NewReplayGuard(2)
	t0 := newFakeClock().Now()
	first, second := nonceN(1), nonceN(2)
	must0(t, g.Add(first, t0.Add(50*time.Second), t0))
	t1 := t0.Add(time.Minute)
	must0(t, g.Add(second, t0.Add(time.Second), t1)) // older _ts, accepted later
	now := t0.Add(NonceWindow)
	must0(t, g.Add(nonceN(3), now, now))
	if g.Seen(first, now) {
		t.Fatal("entry past the nonce window kept")
	}
	if !g.Seen(second, now) {
		t.Fatal("entry inside the nonce window evicted while an expired one was available")
	}
	checkGuard(t, g)
}

// TestReplayGuardFlood: a long flood with a moving clock never holds more
// than the capacity, and accepts again as entries age out.
func TestReplayGuardFlood(t *testing.T) {
	const capacity = 1000
	g := NewReplayGuard(capacity)
	clock := newFakeClock()
	accepted, refused := 0, 0
	for i := range 20 * capacity {
		now := clock.Now()
		switch err := g.Add(nonceN(i), now, now); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrReplayCacheFull):
			refused++
		default:
			t.Fatal(err)
		}
		if g.Len() > capacity {
			t.Fatalf("after %d adds the guard holds %d > %d", i+1, g.Len(), capacity)
		}
		clock.Advance(10 * time.Millisecond)
	}
	// The guard admits at most capacity nonces per TimestampWindow: in each
	// 60 s (6000 adds) the first 10 s fill it, then it refuses until those
	// entries' _ts are 60 s old. 200 s of flood: 4 windows of 1000.
	if accepted != 4*capacity || refused != 20*capacity-4*capacity {
		t.Fatalf("accepted %d, refused %d; want %d and %d", accepted, refused, 4*capacity, 16*capacity)
	}
	checkGuard(t, g)
}

func TestReplayGuardConcurrent(t *testing.T) {
	g := NewReplayGuard(0)
	now := newFakeClock().Now()
	shared := nonceN(-7)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	var mu sync.Mutex
	sharedOK := 0
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := g.Add(nonceN(w*each+i), now, now); err != nil {
					t.Error(err)
				}
				_ = g.Seen(shared, now)
			}
			if g.Add(shared, now, now) == nil {
				mu.Lock()
				sharedOK++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if sharedOK != 1 || g.Len() != workers*each+1 {
		t.Fatalf("shared nonce accepted %d times, guard holds %d", sharedOK, g.Len())
	}
	checkGuard(t, g)
}

func must0(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
