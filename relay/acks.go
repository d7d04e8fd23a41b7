package relay

import (
	"sync"
	"time"

	"github.com/duetcall/duet/identity"
)

// Delivery acknowledgements between relay nodes. A publish that returns nil
// is only buffered in nats.go: when a NATS node dies, what it had read but
// not passed on yet is lost inside NATS, and what the relay wrote but the
// node had not read yet is lost with the connection, all without an error
// and without an answer. So every envelope a node publishes is awaited: the
// recipient's node answers on the envelope's reply subject once it has
// queued the envelope to a local session (an empty message: acknowledged),
// or told why it did not (a Duet-Undeliverable header: recipient_busy, or
// dropped when it dropped and counted the envelope for another reason), and
// NATS answers "no responders" when no node holds a session of the
// recipient (offline, told after offlineWait if the node's NATS connection
// held meanwhile). An envelope that gets none of these within ackWait
// is counted as dropped, lost_in_cluster, and its sender is told
// undeliverable/unavailable: it may have been delivered (the
// acknowledgement may be what was lost), but nothing says so.
//
// With sessions of the recipient on several nodes, each node answers: the
// first acknowledgement settles the envelope (delivered to the alias,
// though perhaps not to every device), and "dropped" only means that this
// node did not deliver it; if no node acknowledges it by the end of the
// wait, the sender is told unavailable, with no lost_in_cluster count (the
// dropping node counted it).
const (
	// ackWait is how long a node waits for an envelope's answer: short
	// enough that the sender hears unavailable within a second (PROTOCOL
	// §9.2), long against the milliseconds an answer takes.
	ackWait = 800 * time.Millisecond
	// The table of awaited envelopes grows from minAwaited entries as
	// needed up to maxAwaited (about 8 MiB: 160k envelopes a second at the
	// default wait); past that, publishing fails (publish_error).
	minAwaited = 256
	maxAwaited = 1 << 17
	// offlineWait is how long a "no responders" answer waits before its
	// sender is told offline (see router.checkedOffline).
	offlineWait = 250 * time.Millisecond
)

// ackState is where an awaited envelope stands.
type ackState uint8

const (
	ackPending ackState = iota // no answer yet
	ackDropped                 // a recipient node dropped (and counted) it; another may still acknowledge it
	ackSettled                 // acknowledged or answered: nothing more to do
)

// awaited is an envelope published by this node whose answer has not come.
type awaited struct {
	seq   uint64
	due   int64  // end of the wait, in nanoseconds since acker.base
	sid   uint64 // the sending session
	to    identity.Alias
	id    string // the envelope's id, "" if none (no notice possible)
	state ackState
}

// offlineCheck is an envelope NATS answered "no responders" for, waiting
// offlineWait (until e.due) before its sender is told.
type offlineCheck struct {
	e     awaited
	epoch uint64 // the node's NATS reconnect count at the answer
}

// acker is the table of awaited envelopes: a ring indexed by a sequence
// number, the envelope's token in its reply subject. Entries are added in
// order and expire in order (one wait for all), so run sweeps from the
// oldest; an answer settles an entry in place.
type acker struct {
	wait    time.Duration // ackWait (TestAcker shortens it)
	base    time.Time
	expire  func([]awaited)      // called by run, without the lock, with the expired entries
	checked func([]offlineCheck) // likewise, with the offline checks due

	mu       sync.Mutex
	ring     []awaited // len is a power of two
	head     uint64    // the next sequence number
	tail     uint64    // every entry before it is swept
	checks   []offlineCheck
	stopping bool

	wake     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// newAcker makes an empty table; its owner starts run on a goroutine of
// its own.
func newAcker(wait time.Duration, expire func([]awaited), checked func([]offlineCheck)) *acker {
	a := &acker{
		wait: wait, base: time.Now(), expire: expire, checked: checked,
		ring: make([]awaited, minAwaited), head: 1, tail: 1, // 0 is never a sequence number
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	return a
}

// track adds an envelope from session sid and returns its sequence number;
// false when the table is full.
func (a *acker) track(sid uint64, to identity.Alias, id string) (uint64, bool) {
	due := int64(time.Since(a.base) + a.wait)
	a.mu.Lock()
	if a.head-a.tail == uint64(len(a.ring)) && !a.growLocked() {
		a.mu.Unlock()
		return 0, false
	}
	seq := a.head
	a.head++
	idle := seq == a.tail
	a.ring[seq&uint64(len(a.ring)-1)] = awaited{seq: seq, due: due, sid: sid, to: to, id: id}
	a.mu.Unlock()
	if idle {
		a.wakeUp()
	}
	return seq, true
}

// wakeUp makes run look at the table again.
func (a *acker) wakeUp() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// acked settles the envelopes whose seqs list holds (decimal, separated
// by spaces: an ackSubject message).
func (a *acker) acked(list []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(list) > 0 {
		var seq uint64
		i := 0
		for ; i < len(list) && list[i] != ' '; i++ {
			seq = seq*10 + uint64(list[i]-'0')
		}
		list = list[min(i+1, len(list)):]
		if e := a.findLocked(seq); e != nil {
			e.state = ackSettled
		}
	}
}

// growLocked doubles the ring, up to maxAwaited entries. a.mu is held.
func (a *acker) growLocked() bool {
	if len(a.ring) >= maxAwaited {
		return false
	}
	ring := make([]awaited, 2*len(a.ring))
	for s := a.tail; s < a.head; s++ {
		ring[s&uint64(len(ring)-1)] = a.ring[s&uint64(len(a.ring)-1)]
	}
	a.ring = ring
	return true
}

// settle moves envelope seq to state to (ackDropped only from ackPending)
// and returns the entry as it was; false when seq is not awaited any more.
func (a *acker) settle(seq uint64, to ackState) (awaited, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.findLocked(seq)
	if e == nil {
		return awaited{}, false
	}
	was := *e
	if to == ackSettled || e.state == ackPending {
		e.state = to
	}
	return was, true
}

// findLocked returns the entry of envelope seq if it is not settled yet.
// a.mu is held.
func (a *acker) findLocked(seq uint64) *awaited {
	if seq < a.tail || seq >= a.head {
		return nil
	}
	e := &a.ring[seq&uint64(len(a.ring)-1)]
	if e.seq != seq || e.state == ackSettled {
		return nil
	}
	return e
}

// offline settles envelope seq, which NATS answered "no responders" for
// while the node's reconnect count was epoch, and hands it to checked after
// offlineWait.
func (a *acker) offline(seq, epoch uint64) {
	due := int64(time.Since(a.base) + offlineWait)
	a.mu.Lock()
	e := a.findLocked(seq)
	if e == nil {
		a.mu.Unlock()
		return
	}
	e.state = ackSettled
	c := offlineCheck{e: *e, epoch: epoch}
	c.e.due = due
	a.checks = append(a.checks, c)
	a.mu.Unlock()
	a.wakeUp()
}

// sweep drops the settled entries from the tail and takes out the expired
// ones and the offline checks due. It returns how long until the next of
// the remaining ones is due (-1 if none).
func (a *acker) sweep(expired []awaited, checks []offlineCheck) ([]awaited, []offlineCheck, time.Duration, bool) {
	now := int64(time.Since(a.base))
	a.mu.Lock()
	defer a.mu.Unlock()
	next := int64(-1)
	mask := uint64(len(a.ring) - 1)
	for ; a.tail < a.head; a.tail++ {
		e := &a.ring[a.tail&mask]
		if e.state != ackSettled {
			if e.due > now {
				next = e.due - now
				break
			}
			expired = append(expired, *e)
		}
		*e = awaited{}
	}
	n := 0
	for n < len(a.checks) && a.checks[n].e.due <= now {
		n++
	}
	checks = append(checks, a.checks[:n]...)
	clear(a.checks[:n])
	a.checks = a.checks[n:]
	if len(a.checks) == 0 {
		a.checks = nil
	} else if d := a.checks[0].e.due - now; next < 0 || d < next {
		next = d
	}
	return expired, checks, time.Duration(next), a.stopping
}

// run expires entries at the end of their wait. After stop, it returns
// once no entry is left (within one wait).
func (a *acker) run() {
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	quit := a.quit
	var expired []awaited
	var checks []offlineCheck
	for {
		var next time.Duration
		var stopping bool
		expired, checks, next, stopping = a.sweep(expired[:0], checks[:0])
		if len(expired) > 0 {
			a.expire(expired)
			clear(expired) // no strings kept alive
		}
		if len(checks) > 0 {
			a.checked(checks)
			clear(checks)
		}
		switch {
		case next < 0 && stopping:
			return
		case next < 0:
			select {
			case <-a.wake:
			case <-quit:
				quit = nil
			}
		default:
			timer.Reset(next)
			select {
			case <-timer.C:
			case <-a.wake:
			case <-quit:
				quit = nil
			}
		}
	}
}

// stop ends run once every awaited envelope is settled or expired (at most
// one wait; their senders are still told and counted).
func (a *acker) stop() {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.stopping = true
		a.mu.Unlock()
		close(a.quit)
	})
	<-a.done
}
