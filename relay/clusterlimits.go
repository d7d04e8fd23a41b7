package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/duetcall/duet/identity"
)

// Cluster-wide alias limits. The cap on an alias's sessions and its frame
// and byte budgets hold across the relay nodes of one NATS, not per node
// (an attacker spreading sessions over N nodes would otherwise get N times
// both). The design:
//
//   - Session counts live in the JetStream KV bucket duet_sessions, one
//     entry per alias with an alias's session count on each node holding
//     it. A node admits a session only through a revision-checked update of
//     that entry (read, check the total against the cap, write with the
//     revision read, again on a conflict), so two nodes admitting sessions
//     of one alias at once cannot both take the last slot: the cap is
//     exact. It costs an authentication one read and one write of the
//     entry (and a session's close another pair), nothing per envelope.
//   - The frame and byte budgets stay local token buckets (an envelope is
//     never held for a NATS round trip), split by the number of nodes
//     holding the alias's sessions: with sessions on k nodes each node
//     gives the alias 1/k of RateLimit, RateBurst, ByteRate and ByteBurst,
//     so the alias's total does not grow with k. A node that changes an
//     alias's entry publishes the new k on the alias's subject space,
//     duet.a.<alias>._limits, which reaches exactly the nodes holding its
//     sessions through the subscription they already have; an envelope
//     type cannot start with '_', so no client can send it. (Splitting by
//     node rather than by session keeps one device alone on a node at a
//     usable share: a phone on one node and a laptop on another get half
//     each.) A node whose subscription to the alias was not in place yet
//     when a notice went out (between counting the alias's first session
//     there and subscribing) reads the entry again once subscribed
//     (aliasLimits.refresh), and one told by NATS that the alias's
//     subscription overflowed its routing queue (a notice may be among
//     what was dropped) reads it again then (aliasLimits.refreshLater).
//     A subscription just made can still miss a notice published on
//     another NATS server, before the subscription's interest has reached
//     it across the routes; so a notice of a split by two nodes or more is
//     sent again with the publishing node's next heartbeat (a node ignores
//     a notice older than its split).
//   - A node's counts are ignored once it is gone: each node publishes a
//     heartbeat on duet.node.hb every nodeHeartbeat (and duet.node.bye when
//     it shuts down), and a node not heard from for nodeDeadAfter
//     heartbeats is dead: its counts no longer hold slots and are pruned by
//     the next update of the entry, and each node re-reads the entries of
//     the aliases whose budgets it splits with other nodes, to split them
//     by the live ones (aliasLimits.nodesChanged; after a goodbye too, and
//     again when a node counted dead is heard from). A starting node asks
//     for everyone's heartbeat at once (duet.node.hello) and counts every node in an entry
//     as alive for its first nodeWarmup, until the answers are in. So after
//     a node crashes, its users reconnecting elsewhere may find their
//     alias's slots held by it for up to 15 s (only an alias near the cap
//     notices); a node shut down frees them at once, and a restarted node
//     ignores its previous run's after nodeWarmup.
//
// A node on the embedded NATS is the only node there can be (see router):
// it counts on its own, with none of this.
//
// When the entry cannot be read or written (JetStream without quorum, or
// this node cut off from NATS) the node fails open: it admits on its own
// count and keeps the alias's last known split, counts the failure in
// duet_relay_directory_ops_total{op="session_count"}, logs it, and writes
// the entry again later (aliasLimits.resyncLocked). (Cut off from NATS the
// node cannot authenticate anyone anyway: the directory and routing need
// it.)
const (
	nodeSubject      = "duet.node." // + "hb", "hello" or "bye"; the data is the node's id
	limitsType       = "_limits"    // duet.a.<alias>._limits: "<revision> <nodes>"
	nodeHeartbeat    = 5 * time.Second
	nodeDeadAfter    = 3 // heartbeats missed
	nodeWarmup       = 2 * time.Second
	nodeForget       = time.Hour // a node silent this long leaves seen
	clusterOpTimeout = 2 * time.Second
	resendMax        = 4096 // notices held to be sent again (clusterLimits.resend)
)

// aliasNodes is an alias's entry in bucketSessions: its sessions on each
// node, by node id.
type aliasNodes map[string]int

// clusterLimits keeps this node's part of the cluster-wide alias limits
// (see above).
type clusterLimits struct {
	self string // this node's id, new at every start
	dir  *directory
	nc   *nats.Conn
	// every is the heartbeat interval (nodeHeartbeat; tests shorten it).
	every time.Duration

	started time.Time
	mu      sync.Mutex
	seen    map[string]time.Time // other nodes' last heartbeat; the zero time: said goodbye
	gone    map[string]bool      // nodes of seen found gone (onChange called)
	// onChange: a node is found gone (dead, or said goodbye), or a node
	// found dead is heard from again.
	onChange func()
	sub      *nats.Subscription
	// resend: the notices of splits published since the last heartbeat,
	// by subject, to be sent again with the next one (see above).
	resend map[string][]byte
	quit   chan struct{}
	done   chan struct{}
	left   atomic.Bool // stop ran: sessions are counted on this node only
}

// startClusterLimits subscribes to the nodes' heartbeats, asks for them
// and starts this node's; onChange is called (on the heartbeat's
// goroutine) each time it finds nodes gone, or back.
func startClusterLimits(dir *directory, nc *nats.Conn, every time.Duration, onChange func()) (*clusterLimits, error) {
	c := &clusterLimits{self: nuid.Next(), dir: dir, nc: nc, every: every, started: time.Now(),
		seen: make(map[string]time.Time), gone: make(map[string]bool), onChange: onChange,
		quit: make(chan struct{}), done: make(chan struct{})}
	sub, err := nc.Subscribe(nodeSubject+"*", c.onNode)
	if err != nil {
		return nil, fmt.Errorf("%w: subscribing the node heartbeats: %w", ErrNATS, err)
	}
	c.sub = sub
	_ = nc.Publish(nodeSubject+"hello", []byte(c.self))
	go c.beat()
	return c, nil
}

// beat publishes this node's heartbeat now and every interval, tells
// onChange when nodes are found gone or back, and forgets nodes not heard
// from for long.
func (c *clusterLimits) beat() {
	defer close(c.done)
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		_ = c.nc.Publish(nodeSubject+"hb", []byte(c.self))
		select {
		case <-c.quit:
			return
		case <-t.C:
		}
		c.mu.Lock()
		again := c.resend
		c.resend = nil
		c.mu.Unlock()
		for subj, data := range again {
			_ = c.nc.Publish(subj, data)
		}
		if c.findChanges() && c.onChange != nil {
			c.onChange()
		}
		// Once past the warm-up a node not in seen is dead anyway.
		if time.Since(c.started) > nodeWarmup {
			c.mu.Lock()
			for id, at := range c.seen {
				if time.Since(at) > nodeForget {
					delete(c.seen, id)
					delete(c.gone, id)
				}
			}
			c.mu.Unlock()
		}
	}
}

// findChanges reports whether a node of seen is gone that was not, or
// back (heard from) after it was found gone.
func (c *clusterLimits) findChanges() bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for id, at := range c.seen {
		isGone := at.IsZero() || now.Sub(at) > nodeDeadAfter*c.every
		if isGone != c.gone[id] {
			changed = true
			if isGone {
				c.gone[id] = true
			} else {
				delete(c.gone, id)
			}
		}
	}
	return changed
}

// stop says goodbye (the other nodes stop counting this node's sessions at
// once) and stops the heartbeat.
func (c *clusterLimits) stop() {
	c.left.Store(true)
	close(c.quit)
	<-c.done
	_ = c.sub.Unsubscribe()
	_ = c.nc.Publish(nodeSubject+"bye", []byte(c.self))
}

func (c *clusterLimits) onNode(m *nats.Msg) {
	id := string(m.Data)
	if id == c.self {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Subject {
	case nodeSubject + "hello":
		_ = c.nc.Publish(nodeSubject+"hb", []byte(c.self))
		fallthrough // a node saying hello is alive
	case nodeSubject + "hb":
		if at, ok := c.seen[id]; !ok || !at.IsZero() {
			c.seen[id] = time.Now()
		}
	case nodeSubject + "bye":
		c.seen[id] = time.Time{}
	}
}

// alive reports whether node id counts: it is this node, or it was heard
// from within nodeDeadAfter heartbeats, or this node started too recently
// to have heard it.
func (c *clusterLimits) alive(id string, now time.Time) bool {
	if id == c.self {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.seen[id]; ok {
		return !at.IsZero() && now.Sub(at) <= nodeDeadAfter*c.every
	}
	return now.Sub(c.started) <= nodeWarmup
}

// errCASConflicts: the entry kept changing under this node's writes.
var errCASConflicts = errors.New("relay: session count: too many concurrent updates")

// update sets this node's count of a's sessions to n in a's entry. With
// limit > 0 it refuses (admitted false, nothing written) when n and the
// other live nodes' sessions would exceed limit. It returns the number of
// live nodes holding a's sessions after the update (this one counted when
// n > 0) and the entry's revision.
func (c *clusterLimits) update(ctx context.Context, a identity.Alias, n, limit int) (nodes int, rev uint64, admitted bool, err error) {
	if c.left.Load() {
		return 0, 0, true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	key := string(a)
	fresh := false
	// Another node's (or session's) write came between the read and the
	// write: read again, until the operation's time is up. Sessions of one
	// alias opened at once all conflict but one each round, so the losers
	// wait a little, at random, before they read again: a fixed number of
	// attempts at once ran out with a dozen sessions at once, and the node
	// then admitted on its own count, past the cap.
	for attempt := 0; ; attempt++ {
		nodes, rev, admitted, err = c.tryUpdate(ctx, key, n, limit, fresh)
		if !casConflict(err) || !casBackoff(ctx, attempt) {
			break
		}
		fresh = true // the replica read may be behind: read the leader
	}
	if casConflict(err) {
		err = fmt.Errorf("%w: %w", errCASConflicts, err)
	}
	if err != nil {
		c.dir.m.dirOp("session_count", errorKind(err))
		return 0, 0, false, err
	}
	c.dir.m.dirOp("session_count", "ok")
	if admitted && rev > 0 {
		subj, data := subjectPrefix+key+"."+limitsType, []byte(strconv.FormatUint(rev, 10)+" "+strconv.Itoa(nodes))
		_ = c.nc.Publish(subj, data)
		c.mu.Lock()
		switch {
		case nodes <= 1:
			delete(c.resend, subj) // an older split is not sent again
		case len(c.resend) < resendMax:
			if c.resend == nil {
				c.resend = make(map[string][]byte)
			}
			c.resend[subj] = data
		}
		c.mu.Unlock()
	}
	return nodes, rev, admitted, nil
}

func (c *clusterLimits) tryUpdate(ctx context.Context, key string, n, limit int, fresh bool) (nodes int, rev uint64, admitted bool, err error) {
	e, err := c.dir.get(ctx, &c.dir.sessions, key, fresh)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, false, err
	}
	var cur aliasNodes
	if err == nil {
		_ = json.Unmarshal(e.value, &cur) // a damaged entry is rewritten
	}
	now := time.Now()
	next := aliasNodes{}
	others := 0
	for id, k := range cur {
		if id != c.self && k > 0 && c.alive(id, now) {
			next[id] = k
			others += k
		}
	}
	if limit > 0 && others+n > limit {
		return 0, 0, false, nil
	}
	if n > 0 {
		next[c.self] = n
	}
	switch {
	case maps.Equal(cur, next):
		if cur == nil {
			return 0, 0, true, nil // no entry (e.rev may be a delete marker's)
		}
		return len(next), e.rev, true, nil
	case len(next) == 0:
		_, err = c.dir.wrote(0, c.dir.sessions.kv.Delete(ctx, key, jetstream.LastRevision(e.rev)))
		return 0, 0, err == nil, err
	}
	v, _ := json.Marshal(next)
	// A deleted entry read from the leader has its marker's revision: it is
	// written over with Update.
	if e.rev == 0 {
		rev, err = c.dir.wrote(c.dir.sessions.kv.Create(ctx, key, v))
	} else {
		rev, err = c.dir.wrote(c.dir.sessions.kv.Update(ctx, key, v, e.rev))
	}
	return len(next), rev, err == nil, err
}

// sessionsOn returns a's sessions on the live nodes, from a's entry as a
// replica has it.
func (c *clusterLimits) sessionsOn(ctx context.Context, a identity.Alias) (int, error) {
	cur, _, err := c.entry(ctx, a, false)
	_, n := c.live(cur)
	return n, err
}

// nodesOf returns the number of live nodes holding a's sessions, the
// number of nodes a's entry names (live or not), and the entry's
// revision, read from the stream leader (0 nodes: none).
func (c *clusterLimits) nodesOf(ctx context.Context, a identity.Alias) (nodes, listed int, rev uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	cur, rev, err := c.entry(ctx, a, true)
	nodes, _ = c.live(cur)
	return nodes, len(cur), rev, err
}

// entry reads a's entry (from the leader when fresh): its sessions by node
// (nil when there is none) and revision.
func (c *clusterLimits) entry(ctx context.Context, a identity.Alias, fresh bool) (aliasNodes, uint64, error) {
	e, err := c.dir.get(ctx, &c.dir.sessions, string(a), fresh)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var cur aliasNodes
	if err := json.Unmarshal(e.value, &cur); err != nil {
		return nil, 0, fmt.Errorf("relay: session count of %s: %w", a, err)
	}
	for id, k := range cur {
		if k <= 0 {
			delete(cur, id)
		}
	}
	return cur, e.rev, nil
}

// live counts the live nodes of an entry and their sessions.
func (c *clusterLimits) live(cur aliasNodes) (nodes, sessions int) {
	now := time.Now()
	for id, k := range cur {
		if c.alive(id, now) {
			nodes++
			sessions += k
		}
	}
	return nodes, sessions
}

// parseLimitsNotice reads a duet.a.<alias>._limits message.
func parseLimitsNotice(data []byte) (rev uint64, nodes int, ok bool) {
	r, k, found := strings.Cut(string(data), " ")
	if !found {
		return 0, 0, false
	}
	rev, err1 := strconv.ParseUint(r, 10, 64)
	nodes, err2 := strconv.Atoi(k)
	return rev, nodes, err1 == nil && err2 == nil && nodes > 0
}
