package relay

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetcall/duet/identity"
)

// Limits beyond one session (docs/PROTOCOL.md §9.2). Sessions and
// registrations are free, so every limit that matters is per alias, per
// recipient or per node.
const (
	// MaxSessionsPerAlias is the default cap on concurrent sessions of one
	// alias across the relay's nodes (Options.MaxSessionsPerAlias; see
	// clusterLimits). A session past it is refused after authentication,
	// before "ready", with 1013 "too_many_sessions": the newest is refused,
	// not the oldest closed, so that devices already connected (maybe in a
	// call) keep working and devices cannot evict each other in a reconnect
	// loop.
	MaxSessionsPerAlias = 8
	// ByteRate and ByteBurst bound the bytes an alias sends (its frames'
	// sizes), shared by its sessions like RateLimit (split between the
	// nodes holding them, see clusterLimits): signaling needs a few KiB per
	// call, an attacker's large envelopes at the full frame rate would be
	// megabytes per second. Past the budget the relay
	// reads the alias's frames more slowly (they are delayed, not refused),
	// at most maxThrottle per frame.
	ByteRate    = 64 << 10
	ByteBurst   = 128 << 10
	maxThrottle = 10 * time.Second
	// BulkRate paces the node's bulk frames: those larger than bulkFrame,
	// and every frame of an alias past its byte budget, share one token
	// bucket of BulkRate bytes per second, so that they are read one after
	// the other at a steady pace, however many aliases send them at the
	// same moment (90 aliases throttled alike wake together). Small frames
	// of aliases within their budget (signaling: ICE candidates, notices'
	// answers) never wait for it: bulk traffic cannot delay them by more
	// than a frame or two's work. The bucket holds one largest frame.
	BulkRate  = 16 << 20
	bulkFrame = 4 << 10
	// BulkAllowance and BulkAllowanceRate: an alias's frames larger than
	// bulkFrame, while within its byte budget, skip the bulk pace as long
	// as they fit this allowance of its own (bytes, refilled at
	// BulkAllowanceRate per second): an occasional large frame, such as a
	// call offer (a sealed SDP, 4-16 KiB), does not wait behind other
	// aliases' bulk frames, however many are waiting. What the allowance
	// lets through, an alias could send as frames of bulkFrame, which never
	// wait for the pace; a frame larger than the allowance always waits.
	BulkAllowance     = 32 << 10
	BulkAllowanceRate = 1 << 10
	// SendQueueBytes bounds the bytes queued for one session, beside
	// SendQueueLen frames.
	SendQueueBytes = 2 << 20
	// RecipientByteRate and RecipientByteBurst bound what one recipient
	// alias is sent through one node, in bytes (a frame costs at least
	// recipientMinCost): past the budget, the heaviest senders' frames are
	// dropped (recipient_busy).
	RecipientByteRate  = 1 << 20
	RecipientByteBurst = 2 << 20
	recipientMinCost   = 2 << 10
	// stallTimeout: a session whose full queue has seen no frame written
	// for this long is a slow consumer and is disconnected; a full queue
	// that is moving only drops (recipient_busy).
	stallTimeout = 5 * time.Second
)

// aliasLimits holds the per-alias state of one node: the rate limiters
// shared by all of an alias's sessions on the node (reconnecting does not
// refill them), split with the other nodes holding the alias, and the count
// of its sessions here; cluster (nil-safe) makes the cap and the split hold
// across the nodes (see clusterLimits).
type aliasLimits struct {
	mu        sync.Mutex
	byAlias   map[identity.Alias]*aliasState
	lastSweep time.Time
	cluster   *clusterLimits
	log       *slog.Logger
	resyncs   map[*aliasState]*time.Timer // rewrites due (see resyncLocked)
	resyncWG  sync.WaitGroup              // resyncs and nodesChanged's goroutine
	stopped   bool                        // stopResyncs ran
	// nodesChanged's goroutine runs, and is to go over the aliases again.
	goneRunning, goneAgain bool
}

type aliasState struct {
	lim      *rate.Limiter // frames
	bytes    *rate.Limiter
	bulk     bulkAllowance // not split between nodes: the pace is per node
	sessions int
	busy     int       // acquire or release calls under way: keep the state
	idle     time.Time // when the last session went
	nodes    int       // nodes holding the alias's sessions, this one included
	listed   int       // nodes its entry named, live or not, when refresh read it
	rev      uint64    // the duet_sessions revision nodes is from
	// cluster serializes this node's updates of the alias's entry, so that
	// the last one written is the current count.
	cluster sync.Mutex
}

// state returns a's state, marked busy (unbusy releases it).
func (l *aliasLimits) state(a identity.Alias, now time.Time, tun *tunables) *aliasState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAlias == nil {
		l.byAlias = make(map[identity.Alias]*aliasState)
	}
	refill := time.Duration(float64(tun.rateBurst) / tun.rateLimit * float64(time.Second))
	if now.Sub(l.lastSweep) > refill+time.Second {
		l.lastSweep = now
		for k, st := range l.byAlias {
			// An idle alias's bucket would be full again: forget it.
			if st.sessions == 0 && st.busy == 0 && now.Sub(st.idle) > refill {
				delete(l.byAlias, k)
			}
		}
	}
	st := l.byAlias[a]
	if st == nil {
		st = &aliasState{lim: rate.NewLimiter(rate.Limit(tun.rateLimit), tun.rateBurst),
			bytes: rate.NewLimiter(rate.Limit(tun.byteRate), tun.byteBurst), nodes: 1}
		l.byAlias[a] = st
	}
	st.busy++
	return st
}

func (l *aliasLimits) unbusy(st *aliasState) {
	l.mu.Lock()
	st.busy--
	l.mu.Unlock()
}

// aliasLimiters are an alias's limiters, shared by its sessions.
type aliasLimiters struct {
	frames, bytes *rate.Limiter
	bulk          *bulkAllowance
}

// acquire counts a new session of a and returns the alias's limiters, or
// false when a has max sessions already, on this node or in the cluster.
func (l *aliasLimits) acquire(ctx context.Context, a identity.Alias, now time.Time, tun *tunables) (aliasLimiters, bool) {
	st := l.state(a, now, tun)
	defer l.unbusy(st)
	st.cluster.Lock()
	defer st.cluster.Unlock()
	l.mu.Lock()
	n := st.sessions
	l.mu.Unlock()
	if n >= tun.maxSessions {
		return aliasLimiters{}, false
	}
	nodes, rev := 0, uint64(0)
	var err error
	if l.cluster != nil {
		var admitted bool
		nodes, rev, admitted, err = l.cluster.update(ctx, a, n+1, tun.maxSessions)
		if err != nil {
			l.log.Warn("relay: cannot count the alias's sessions in the cluster; admitting on this node's count", "alias", a, "err", err)
		} else if !admitted {
			return aliasLimiters{}, false
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.resyncLocked(a, st, resyncFirst)
	}
	st.sessions++
	st.setNodesLocked(nodes, rev, now, tun)
	return aliasLimiters{frames: st.lim, bytes: st.bytes, bulk: &st.bulk}, true
}

// refresh re-reads the number of live nodes holding a's sessions from a's
// entry (cluster only) and splits a's budgets by it: for a node that has
// just subscribed to a (a _limits notice sent before the subscription was
// in place did not reach it), and after a node was found gone or back (see
// nodesChanged). A failed read keeps the split.
func (l *aliasLimits) refresh(ctx context.Context, a identity.Alias, now time.Time, tun *tunables) error {
	if l.cluster == nil {
		return nil
	}
	nodes, listed, rev, err := l.cluster.nodesOf(ctx, a)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.byAlias[a]; st != nil {
		st.listed = listed
		st.setNodesLocked(nodes, rev, now, tun)
	}
	return nil
}

// refreshLater runs refresh on a goroutine of its own (stopResyncs waits
// for it): for an alias whose _limits notice this node may have dropped,
// its routing queue full.
func (l *aliasLimits) refreshLater(a identity.Alias, tun *tunables, now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || l.cluster == nil {
		return
	}
	l.resyncWG.Add(1)
	go func() {
		defer l.resyncWG.Done()
		if err := l.refresh(context.Background(), a, now(), tun); err != nil {
			l.log.Warn("relay: cannot read the alias's nodes in the cluster; keeping its split", "alias", a, "err", err)
		}
	}()
}

// nodesChanged re-reads, on a goroutine of its own, the node counts of
// the aliases this node splits with other nodes (or whose entry named a
// node not live when last read), once a node is found gone (dead, or said
// goodbye) or back: their entries still count a gone node (only an update
// prunes it), so their budgets would stay split by it until their next
// session came or went, and a node back counts again.
// Called again while it runs, it goes over them once more when done.
func (l *aliasLimits) nodesChanged(tun *tunables, now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.goneAgain = true
	if l.goneRunning {
		return
	}
	l.goneRunning = true
	l.resyncWG.Add(1)
	go func() {
		defer l.resyncWG.Done()
		for {
			l.mu.Lock()
			if !l.goneAgain || l.stopped {
				l.goneRunning = false
				l.mu.Unlock()
				return
			}
			l.goneAgain = false
			var split []identity.Alias
			for a, st := range l.byAlias {
				if st.sessions > 0 && (st.nodes > 1 || st.listed > st.nodes) {
					split = append(split, a)
				}
			}
			l.mu.Unlock()
			for _, a := range split {
				if l.cluster.left.Load() {
					break // shutting down
				}
				if err := l.refresh(context.Background(), a, now(), tun); err != nil {
					l.log.Warn("relay: cannot read the aliases' node counts after a node went or came back; keeping their splits", "err", err)
					break
				}
			}
		}
	}()
}

// bulkAllowance is an alias's BulkAllowance. The zero value is a full
// allowance: its bucket is made at the alias's first frame larger than
// bulkFrame (most aliases never send one).
type bulkAllowance struct{ lim atomic.Pointer[rate.Limiter] }

// allow charges a frame of n bytes to the allowance.
func (b *bulkAllowance) allow(now time.Time, n int, tun *tunables) bool {
	lim := b.lim.Load()
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(tun.bulkAllowanceRate), tun.bulkAllowance)
		if !b.lim.CompareAndSwap(nil, lim) {
			lim = b.lim.Load()
		}
	}
	return lim.AllowN(now, n)
}

// release uncounts a session of a.
func (l *aliasLimits) release(ctx context.Context, a identity.Alias, now time.Time, tun *tunables) {
	l.mu.Lock()
	st := l.byAlias[a]
	if st == nil || st.sessions == 0 {
		l.mu.Unlock()
		return
	}
	st.sessions--
	if st.sessions == 0 {
		st.idle = now
	}
	st.busy++
	l.mu.Unlock()
	defer l.unbusy(st)
	if l.cluster == nil {
		return
	}
	st.cluster.Lock()
	defer st.cluster.Unlock()
	l.mu.Lock()
	n := st.sessions
	l.mu.Unlock()
	nodes, rev, _, err := l.cluster.update(ctx, a, n, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.log.Warn("relay: cannot uncount the alias's session in the cluster", "alias", a, "err", err)
		l.resyncLocked(a, st, resyncFirst)
		return
	}
	st.setNodesLocked(nodes, rev, now, tun)
}

// After a failed update of an alias's entry, the entry keeps a count of
// this node's that no longer holds (a release: the alias would lose a slot
// for as long as this node lives) or lacks one (an admission on this
// node's own count): it is rewritten with the current count after
// resyncFirst, then with doubling waits up to resyncMax until written.
const (
	resyncFirst = time.Second
	resyncMax   = 30 * time.Second
)

// resyncLocked schedules the rewrite of a's entry, unless one is due. l.mu
// is held.
func (l *aliasLimits) resyncLocked(a identity.Alias, st *aliasState, wait time.Duration) {
	if l.stopped || l.resyncs[st] != nil {
		return
	}
	if l.resyncs == nil {
		l.resyncs = make(map[*aliasState]*time.Timer)
	}
	st.busy++ // the state stays until then
	l.resyncWG.Add(1)
	l.resyncs[st] = time.AfterFunc(wait, func() {
		defer l.resyncWG.Done()
		st.cluster.Lock()
		l.mu.Lock()
		n := st.sessions
		delete(l.resyncs, st)
		st.busy--
		l.mu.Unlock()
		_, _, _, err := l.cluster.update(context.Background(), a, n, 0)
		st.cluster.Unlock()
		if err != nil {
			l.log.Warn("relay: cannot count the alias's sessions in the cluster; will try again", "alias", a, "err", err)
			l.mu.Lock()
			l.resyncLocked(a, st, min(2*wait, resyncMax))
			l.mu.Unlock()
		}
	})
}

// stopResyncs cancels the rewrites due and waits for those under way (the
// node shuts down: the other nodes no longer count its sessions).
func (l *aliasLimits) stopResyncs() {
	l.mu.Lock()
	l.stopped = true
	for st, t := range l.resyncs {
		if t.Stop() {
			st.busy--
			l.resyncWG.Done()
		}
		delete(l.resyncs, st)
	}
	l.mu.Unlock()
	l.resyncWG.Wait()
}

// onNotice applies another node's duet.a.<alias>._limits notice: the
// number of nodes now holding a's sessions.
func (l *aliasLimits) onNotice(a identity.Alias, data []byte, now time.Time, tun *tunables) {
	rev, nodes, ok := parseLimitsNotice(data)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.byAlias[a]; st != nil {
		st.setNodesLocked(nodes, rev, now, tun)
	}
}

// setNodesLocked splits the alias's budgets by nodes (see clusterLimits),
// unless rev is older than the split in force; nodes 0 (unknown, or no
// session here) keeps it. l.mu is held.
func (st *aliasState) setNodesLocked(nodes int, rev uint64, now time.Time, tun *tunables) {
	if nodes <= 0 || rev < st.rev {
		return
	}
	st.rev = rev
	if nodes == st.nodes {
		return
	}
	st.nodes = nodes
	k := float64(nodes)
	st.lim.SetLimitAt(now, rate.Limit(tun.rateLimit/k))
	st.lim.SetBurstAt(now, max(1, ceilDiv(tun.rateBurst, nodes)))
	st.bytes.SetLimitAt(now, rate.Limit(tun.byteRate/k))
	// A frame larger than the byte burst would pass unthrottled
	// (throttleBytes): the burst stays at least the largest frame.
	st.bytes.SetBurstAt(now, max(min(tun.byteBurst, maxFrameSize), ceilDiv(tun.byteBurst, nodes)))
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// inbound is one recipient alias's byte budget on this node. While the
// budget lasts every frame passes; past it, a frame passes only when its
// sender has had less than an equal share of the budget in the current
// second, so the heaviest senders are the ones dropped. The zero value is
// a full budget: its bucket is made at the alias's first frame (an alias
// that is sent nothing costs no limiter).
type inbound struct {
	mu     sync.Mutex
	bucket *rate.Limiter // nil until the first frame
	window time.Time
	used   map[identity.Alias]int // bytes per sender in the current second
}

// allow charges a frame of n bytes from sender against the budget.
func (in *inbound) allow(from identity.Alias, n int, now time.Time, tun *tunables) bool {
	cost := max(n, recipientMinCost)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.bucket == nil {
		in.bucket = rate.NewLimiter(rate.Limit(tun.recipientRate), tun.recipientBurst)
	}
	if now.Sub(in.window) >= time.Second || in.used == nil {
		in.window = now
		clear(in.used)
		if in.used == nil {
			in.used = make(map[identity.Alias]int)
		}
	}
	in.used[from] += cost
	if in.bucket.AllowN(now, cost) {
		return true
	}
	if in.used[from] <= int(tun.recipientRate)/len(in.used) {
		return true // under its fair share: the heavy senders pay
	}
	in.used[from] -= cost
	return false
}

// nodeBudget bounds the bytes queued for all sessions of the node.
type nodeBudget struct {
	limit  int64
	queued atomic.Int64
}

// take reserves n bytes, or reports false when the budget is spent.
func (b *nodeBudget) take(n int) bool {
	if b.queued.Add(int64(n)) > b.limit {
		b.queued.Add(-int64(n))
		return false
	}
	return true
}

// force reserves n bytes even past the budget.
func (b *nodeBudget) force(n int) { b.queued.Add(int64(n)) }

func (b *nodeBudget) give(n int) { b.queued.Add(-int64(n)) }

// DefaultQueueBudget is the node's queued-bytes budget when
// Options.QueueBudget is zero: an eighth of the memory available to the
// process (the cgroup limit when there is one, else the machine's RAM),
// within 32 MiB..512 MiB.
func DefaultQueueBudget() int64 {
	mem := memoryLimit()
	if mem <= 0 {
		return 256 << 20
	}
	return min(max(mem/8, 32<<20), 512<<20)
}

// memoryLimit is the cgroup v2 memory limit, else MemTotal, else 0.
func memoryLimit() int64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}
