package wire

import (
	"container/heap"
	"fmt"
	"sync"
	"time"
)

// Signaling time windows (docs/PROTOCOL.md §4.4, §6).
const (
	// TimestampWindow: a message whose _ts is this far from the receiver's
	// clock, in either direction, is refused.
	TimestampWindow = 60 * time.Second
	// NonceWindow: how long an accepted nonce is remembered.
	NonceWindow = 5 * time.Minute
	// DefaultReplayCapacity is a ReplayGuard's default bound on nonces.
	DefaultReplayCapacity = 65536
)

// NonceSize is the size of a message's _nonce.
const NonceSize = 16

// ReplayGuard is the bounded nonce cache of docs/PROTOCOL.md §4.4. One guard
// may serve several sessions (a "peer set"). It is safe for concurrent use.
//
// The guard has no clock of its own: callers pass now, so one injectable
// clock (the Session's) drives both the timestamp checks and eviction.
//
// Eviction: nonces accepted NonceWindow ago or earlier are dropped first.
// When the guard is full after that, the nonce with the oldest _ts is dropped
// if that _ts is TimestampWindow or more in the past (such a message can no
// longer pass the timestamp check); otherwise every remembered nonce could
// still be replayed and Add refuses with ErrReplayCacheFull. Memory never
// grows past the capacity.
type ReplayGuard struct {
	mu       sync.Mutex
	capacity int
	entries  map[[NonceSize]byte]*replayEntry
	head     *replayEntry // oldest accepted; FIFO by acceptance
	tail     *replayEntry
	byTS     tsHeap // min-heap by _ts
}

type replayEntry struct {
	nonce      [NonceSize]byte
	seen       int64 // receiver's Unix ms at acceptance
	ts         int64 // the message's _ts, Unix ms
	prev, next *replayEntry
	index      int // position in byTS
}

// NewReplayGuard returns a guard remembering at most capacity nonces;
// capacity ≤ 0 means DefaultReplayCapacity.
func NewReplayGuard(capacity int) *ReplayGuard {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &ReplayGuard{
		capacity: capacity,
		entries:  make(map[[NonceSize]byte]*replayEntry),
	}
}

// Cap returns the guard's capacity.
func (g *ReplayGuard) Cap() int { return g.capacity }

// Len returns how many nonces the guard remembers.
func (g *ReplayGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.entries)
}

// Seen reports whether nonce was accepted within NonceWindow before now.
func (g *ReplayGuard) Seen(nonce [NonceSize]byte, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(now.UnixMilli())
	_, ok := g.entries[nonce]
	return ok
}

// Add remembers nonce, accepted at now for a message stamped ts. It returns
// an error wrapping ErrReplay if the nonce is already remembered, and one
// wrapping ErrReplayCacheFull if the guard is full of nonces whose _ts is
// younger than TimestampWindow.
func (g *ReplayGuard) Add(nonce [NonceSize]byte, ts, now time.Time) error {
	nowMS := now.UnixMilli()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(nowMS)
	if _, ok := g.entries[nonce]; ok {
		return fmt.Errorf("%w: nonce %x already accepted", ErrReplay, nonce)
	}
	for len(g.entries) >= g.capacity {
		oldest := g.byTS[0]
		if nowMS-oldest.ts < TimestampWindow.Milliseconds() {
			return fmt.Errorf("%w: %d nonces younger than %v; the peer set is sending faster than the cache can prove fresh", ErrReplayCacheFull, len(g.entries), TimestampWindow)
		}
		g.remove(oldest)
	}
	e := &replayEntry{nonce: nonce, seen: nowMS, ts: ts.UnixMilli(), prev: g.tail}
	if g.tail != nil {
		g.tail.next = e
	} else {
		g.head = e
	}
	g.tail = e
	heap.Push(&g.byTS, e)
	g.entries[nonce] = e
	return nil
}

// expire drops the nonces accepted NonceWindow or more before now.
func (g *ReplayGuard) expire(nowMS int64) {
	for g.head != nil && nowMS-g.head.seen >= NonceWindow.Milliseconds() {
		g.remove(g.head)
	}
}

func (g *ReplayGuard) remove(e *replayEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		g.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		g.tail = e.prev
	}
	e.prev, e.next = nil, nil
	heap.Remove(&g.byTS, e.index)
	delete(g.entries, e.nonce)
}

// tsHeap is a min-heap of entries by _ts (container/heap).
type tsHeap []*replayEntry

func (h tsHeap) Len() int           { return len(h) }
func (h tsHeap) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h tsHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *tsHeap) Push(x any) {
	e := x.(*replayEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *tsHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
