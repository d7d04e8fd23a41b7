// Package hot provides a hot value: the latest value of something that
// changes (a connection state, a call state, a track) that any number of
// subscribers can observe. A new subscriber gets the current value at once,
// so it never misses the state it subscribed in (the seed's observeState
// semantics). Slow subscribers never block the publisher: each subscription
// holds only the latest value it has not read yet.
package hot

import "sync"

// Value is a hot value of T. The zero Value holds the zero T; use New to set
// an initial value. It is safe for concurrent use.
type Value[T any] struct {
	mu     sync.Mutex
	cur    T
	subs   map[*Subscription[T]]struct{}
	closed bool
}

// New returns a Value holding v.
func New[T any](v T) *Value[T] { return &Value[T]{cur: v} }

// Get returns the current value.
func (h *Value[T]) Get() T {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur
}

// Set stores v and offers it to every subscriber.
func (h *Value[T]) Set(v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = v
	for s := range h.subs {
		s.offer(v)
	}
}

// Subscribe returns a subscription whose channel yields the current value at
// once and then every later value; a subscriber that falls behind sees the
// latest value, not every intermediate one. Call Unsubscribe when done.
func (h *Value[T]) Subscribe() *Subscription[T] {
	s := &Subscription[T]{ch: make(chan T, 1), parent: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.offer(h.cur)
		close(s.ch)
		return s
	}
	if h.subs == nil {
		h.subs = make(map[*Subscription[T]]struct{})
	}
	h.subs[s] = struct{}{}
	s.offer(h.cur)
	return s
}

// Close ends every subscription (their channels close after the last value)
// and makes later subscriptions end at once after the current value.
func (h *Value[T]) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		close(s.ch)
	}
	h.subs = nil
}

// Subscription is one observer of a Value.
type Subscription[T any] struct {
	ch     chan T
	parent *Value[T]
}

// C yields values; it is closed by Unsubscribe or the Value's Close.
func (s *Subscription[T]) C() <-chan T { return s.ch }

// Unsubscribe stops the subscription and closes its channel. It is
// idempotent.
func (s *Subscription[T]) Unsubscribe() {
	h := s.parent
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// offer replaces any unread value with v; called with the parent's lock held.
func (s *Subscription[T]) offer(v T) {
	select {
	case <-s.ch:
	default:
	}
	s.ch <- v
}
