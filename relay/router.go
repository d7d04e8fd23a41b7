package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// NATS subjects. Envelopes for an alias are published on
//
//	duet.a.<alias>.<type>
//
// and every node with a session of that alias holds one subscription on
// duet.a.<alias>.*. Each envelope carries a reply subject on the sending
// node's inbox,
//
//	duet.n.<node>.<session>.<to>.<seq>[.<id>]
//
// (seq numbers the node's envelopes, see acks.go) on which NATS answers
// with a 503 "no responders" status message when no node subscribes to the
// recipient: that is how the relay learns that the recipient is offline.
// The recipient's nodes answer there too: an empty message once the
// envelope is queued to a session (acknowledged), or a Duet-Undeliverable
// header saying why it was not (recipient_busy, dropped).
const (
	subjectPrefix = "duet.a."
	inboxPrefix   = "duet.n."
	// routeQueueLen bounds each inbound routing shard (NATS -> sessions),
	// in envelopes: routeQueueFor sizes it so that all shards full of the
	// largest envelopes hold at most half the node's queue budget, within
	// minRouteQueue..routeQueueLen. Overload policy: NATS drops the message
	// (counted as route_backlog).
	routeQueueLen = 16384
	minRouteQueue = 256
	subscribeWait = 5 * time.Second
)

// route is the one subscription of this node for an alias and the alias's
// local sessions.
type route struct {
	sub      *nats.Subscription
	sessions []*session
	inbound  *inbound // the alias's inbound byte budget on this node
}

// router moves envelopes between local sessions and NATS.
type router struct {
	nc    *nats.Conn
	inbox string
	m     *metrics
	log   *slog.Logger
	tun   *tunables
	now   func() time.Time

	shards   []chan *nats.Msg // per-alias order is kept: an alias maps to one shard
	quit     chan struct{}
	wg       sync.WaitGroup
	inboxSub *nats.Subscription
	acks     *acker // published envelopes awaiting their answer

	mu          sync.RWMutex
	routes      map[identity.Alias]*route
	sessions    map[uint64]*session
	goneDropped uint64 // route_backlog drops of removed subscriptions
	closed      bool   // closeRoutes ran: no more sessions are added
}

// errRouterClosed is returned by router.add once the node shuts down.
var errRouterClosed = errors.New("relay: the node is shutting down")

// routeQueueFor is the capacity of each of n shards for a node whose queue
// budget is budget bytes: all shards full of the largest envelopes hold
// half the budget.
func routeQueueFor(budget int64, n int) int {
	return int(min(max(budget/2/int64(wire.MaxEnvelopeSize)/int64(n), minRouteQueue), routeQueueLen))
}

func newRouter(nc *nats.Conn, m *metrics, log *slog.Logger, tun *tunables, now func() time.Time, budget int64) (*router, error) {
	r := &router{
		tun:      tun,
		now:      now,
		nc:       nc,
		inbox:    inboxPrefix + nuid.Next(),
		m:        m,
		log:      log,
		quit:     make(chan struct{}),
		routes:   make(map[identity.Alias]*route),
		sessions: make(map[uint64]*session),
	}
	sub, err := nc.Subscribe(r.inbox+".>", r.onInbox)
	if err != nil {
		return nil, fmt.Errorf("%w: subscribing the node inbox: %w", ErrNATS, err)
	}
	r.inboxSub = sub
	n := max(2, runtime.GOMAXPROCS(0))
	r.shards = make([]chan *nats.Msg, n)
	for i := range r.shards {
		r.shards[i] = make(chan *nats.Msg, routeQueueFor(budget, n))
		r.wg.Add(1)
		go r.dispatch(r.shards[i])
	}
	m.drops.backlog = r.backlogDrops
	r.acks = newAcker(&tun.ackWait, r.unacknowledged)
	return r, nil
}

// closeRoutes stops routing envelopes to this node (the first step of a
// shutdown): it unsubscribes every alias, so that NATS routes new envelopes
// to the alias's sessions on other nodes, or answers the sender as for an
// offline recipient; it stops the dispatchers and delivers what they had not
// delivered yet, in order, to the sessions' queues. Sessions are no longer
// added; the inbox stays subscribed and publishing still works. ctx bounds
// the wait for NATS.
func (r *router) closeRoutes(ctx context.Context) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for _, rt := range r.routes {
		r.unsubscribe(rt) // the route and its sessions stay for the delivery below
	}
	r.mu.Unlock()
	// Once NATS answers, every envelope it routed here is in the shards (or
	// counted as route_backlog).
	if r.nc.IsConnected() {
		fctx, cancel := context.WithTimeout(ctx, subscribeWait)
		if err := r.nc.FlushWithContext(fctx); err != nil {
			r.log.Warn("relay: shutdown: NATS did not confirm the unsubscriptions; envelopes in flight may be lost", "err", err)
		}
		cancel()
	}
	close(r.quit)
	r.wg.Wait()
	// Nothing is subscribed any more: the shards only shrink.
	for _, ch := range r.shards {
		for len(ch) > 0 {
			r.deliver(<-ch)
		}
	}
}

// stop closes the routes (if not done yet), waits for the answers to the
// envelopes published (at most ackWait) and unsubscribes the inbox.
func (r *router) stop() {
	r.closeRoutes(context.Background())
	r.acks.stop()
	_ = r.inboxSub.Unsubscribe()
}

func (r *router) shardFor(a identity.Alias) chan *nats.Msg {
	h := fnv.New32a()
	h.Write([]byte(a))
	return r.shards[h.Sum32()%uint32(len(r.shards))]
}

// add registers an authenticated session; when it is the alias's first on
// this node, it subscribes to the alias and waits until NATS has the
// subscription, so envelopes sent after "ready" are delivered.
func (r *router) add(s *session) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errRouterClosed
	}
	rt := r.routes[s.alias]
	if rt == nil {
		sub, err := r.nc.ChanSubscribe(subjectPrefix+string(s.alias)+".*", r.shardFor(s.alias))
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("%w: subscribing %s: %w", ErrNATS, s.alias, err)
		}
		rt = &route{sub: sub, inbound: newInbound(r.tun)}
		r.routes[s.alias] = rt
	}
	rt.sessions = append(rt.sessions, s)
	r.sessions[s.id] = s
	r.mu.Unlock()
	if err := r.nc.FlushTimeout(subscribeWait); err != nil {
		r.remove(s)
		return fmt.Errorf("%w: %w", ErrNATS, err)
	}
	return nil
}

// remove unregisters a session; the alias's subscription goes with its last
// local session.
func (r *router) remove(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.id] != s {
		return
	}
	delete(r.sessions, s.id)
	rt := r.routes[s.alias]
	if rt == nil {
		return
	}
	for i, x := range rt.sessions {
		if x == s {
			rt.sessions = append(rt.sessions[:i], rt.sessions[i+1:]...)
			break
		}
	}
	if len(rt.sessions) == 0 {
		if !r.closed { // else closeRoutes did
			r.unsubscribe(rt)
		}
		delete(r.routes, s.alias)
	}
}

// unsubscribe drops rt's subscription, keeping its drop count. r.mu is held.
// It drains the subscription rather than unsubscribing it: nats.go discards
// the messages still in flight to an unsubscribed subscription, uncounted
// (the server had routed them, so their senders learn nothing either); a
// draining one takes them until the server has the unsubscription, and
// deliver counts them (no_local_session) or hands them to a new session.
// (Drops of a draining subscription, after its count was taken here, are
// not counted.) While NATS is reconnecting it unsubscribes instead: nats.go
// would resubscribe a draining subscription on reconnect and then forget it
// without telling the server, which would keep routing the alias here and
// never answer its senders' "offline".
func (r *router) unsubscribe(rt *route) {
	if d, err := rt.sub.Dropped(); err == nil && d > 0 {
		r.goneDropped += uint64(d)
	}
	if r.nc.IsConnected() {
		_ = rt.sub.Drain()
		return
	}
	_ = rt.sub.Unsubscribe()
}

// backlogDrops is the number of envelopes NATS dropped because a routing
// shard was full.
func (r *router) backlogDrops() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := r.goneDropped
	for _, rt := range r.routes {
		if d, err := rt.sub.Dropped(); err == nil && d > 0 {
			n += uint64(d)
		}
	}
	return n
}

// publish sends an envelope from session s to its recipient's subject and
// awaits its answer.
func (r *router) publish(s *session, env *wire.Envelope) {
	data, err := json.Marshal(env) // re-encoded: clients get one canonical shape
	if err != nil {
		return
	}
	r.m.in(env.Type).Inc()
	seq, ok := r.acks.track(s.id, env.To, env.ID)
	if !ok {
		r.refuse(s, env, errAwaitFull)
		return
	}
	var reply strings.Builder
	reply.Grow(len(r.inbox) + 2*20 + len(env.To) + len(env.ID) + 4)
	reply.WriteString(r.inbox)
	reply.WriteByte('.')
	writeUint(&reply, s.id)
	reply.WriteByte('.')
	reply.WriteString(string(env.To))
	reply.WriteByte('.')
	writeUint(&reply, seq)
	if env.ID != "" {
		reply.WriteByte('.')
		reply.WriteString(env.ID)
	}
	msg := &nats.Msg{Subject: subjectPrefix + string(env.To) + "." + string(env.Type), Reply: reply.String(), Data: data}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.acks.settle(seq, ackSettled)
		r.refuse(s, env, err)
	}
}

// errAwaitFull refuses a publish while the node awaits answers for
// maxAwaited envelopes.
var errAwaitFull = errors.New("relay: too many envelopes awaiting acknowledgement")

// refuse counts an envelope the node could not publish and tells its
// sender.
func (r *router) refuse(s *session, env *wire.Envelope, err error) {
	r.m.drops.Inc(DropPublish)
	r.log.Warn("relay: publishing an envelope failed", "err", err)
	if env.ID != "" {
		s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: env.ID, To: env.To, Reason: reasonUnavailable}))
	}
}

// writeUint writes n in decimal without allocating.
func writeUint(b *strings.Builder, n uint64) {
	var buf [20]byte
	b.Write(strconv.AppendUint(buf[:0], n, 10))
}

// unacknowledged tells the senders of envelopes no node acknowledged within
// ackWait that they are unavailable, and counts those no node counted.
func (r *router) unacknowledged(es []awaited) {
	var lost uint64
	for _, e := range es {
		if e.state == ackPending {
			lost++
		}
		if e.id == "" {
			continue
		}
		r.mu.RLock()
		s := r.sessions[e.sid]
		r.mu.RUnlock()
		if s != nil {
			s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: e.id, To: e.to, Reason: reasonUnavailable}))
		}
	}
	if lost > 0 {
		r.m.drops.Add(DropLostInCluster, lost)
	}
}

// Reasons of undeliverable notices.
const (
	reasonOffline     = "offline"
	reasonUnavailable = "unavailable"    // this node cannot reach NATS
	reasonBusy        = "recipient_busy" // the recipient is sent more than it takes
)

// hdrUndeliverable is the header of the answer a recipient's node sends to
// an envelope's reply subject when it does not queue the envelope:
// recipient_busy (the sender is told so), or hdrDropped (dropped and counted
// for another reason, such as no_local_session).
const (
	hdrUndeliverable = "Duet-Undeliverable"
	hdrDropped       = "dropped"
)

// onInbox handles the answers to envelopes sent by this node's sessions:
// the recipient nodes' acknowledgements and notices, and NATS's
// no-responders (offline).
func (r *router) onInbox(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, r.inbox+".")
	if !ok {
		return
	}
	// <session>.<to>.<seq>[.<id>]
	sidStr, rest, _ := strings.Cut(rest, ".")
	to, rest, _ := strings.Cut(rest, ".")
	seqStr, id, _ := strings.Cut(rest, ".")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return
	}
	if len(m.Header) == 0 { // acknowledged
		r.acks.settle(seq, ackSettled)
		return
	}
	reason := reasonOffline
	switch {
	case m.Header.Get("Status") == "503":
		// Told once: not when the wait ended first (unavailable).
		if _, ok := r.acks.settle(seq, ackSettled); !ok {
			return
		}
		if id == "" {
			r.m.undeliverable.WithLabelValues("silent").Inc()
			return
		}
		r.m.undeliverable.WithLabelValues("sent").Inc()
	case m.Header.Get(hdrUndeliverable) == reasonBusy:
		// Told even when acknowledged: a queued envelope may be dropped
		// later to make room for a lighter sender's.
		r.acks.settle(seq, ackSettled)
		reason = reasonBusy
	case m.Header.Get(hdrUndeliverable) == hdrDropped:
		r.acks.settle(seq, ackDropped)
		return
	default:
		return
	}
	sid, err := strconv.ParseUint(sidStr, 10, 64)
	if err != nil || id == "" {
		return
	}
	r.mu.RLock()
	s := r.sessions[sid]
	r.mu.RUnlock()
	if s != nil {
		s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: id, To: identity.Alias(to), Reason: reason}))
	}
}

// busy tells the senders of dropped envelopes that the recipient is busy.
func (r *router) busy(frames []outFrame) {
	for _, f := range frames {
		r.answer(f.reply, reasonBusy)
	}
}

// answer sends the answer to an envelope with reply subject reply: an
// acknowledgement when reason is "", else a Duet-Undeliverable notice.
func (r *router) answer(reply, reason string) {
	if reply == "" {
		return
	}
	if reason == "" {
		_ = r.nc.Publish(reply, nil)
		return
	}
	_ = r.nc.PublishMsg(&nats.Msg{Subject: reply, Header: nats.Header{hdrUndeliverable: []string{reason}}})
}

// senderOf reads the from alias of an envelope the relay encoded
// (router.publish: type, to, from come first).
func senderOf(data []byte) identity.Alias {
	head := data[:min(len(data), 2*wire.MaxIDLen+64)]
	i := bytes.Index(head, []byte(`"from":"`))
	if i < 0 || len(data) < i+8+9 {
		return ""
	}
	return identity.Alias(data[i+8 : i+8+9])
}

// dispatch delivers routed envelopes of one shard to the local sessions.
func (r *router) dispatch(ch chan *nats.Msg) {
	defer r.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case m := <-ch:
			r.deliver(m)
		}
	}
}

// deliver fans an envelope out to every local session of its alias without
// blocking (see session.enqueue for the overload policy).
func (r *router) deliver(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, subjectPrefix)
	if !ok || len(rest) < 11 || rest[9] != '.' {
		return
	}
	alias, typ := identity.Alias(rest[:9]), wire.Type(rest[10:])
	f := outFrame{data: m.Data, from: senderOf(m.Data), reply: m.Reply}
	n, found, busy := 0, false, false
	var dropped []outFrame
	r.mu.RLock()
	if rt := r.routes[alias]; rt != nil && len(rt.sessions) > 0 {
		found = true
		if !rt.inbound.allow(f.from, len(f.data), r.now(), r.tun) {
			r.m.drops.Inc(DropRecipientBusy)
			dropped, busy = append(dropped, f), true
		} else {
			refused := false
			for _, s := range rt.sessions {
				ok, d := s.enqueueFrame(f)
				if ok {
					n++
				}
				for _, x := range d {
					if x.reply == f.reply {
						refused = true // told below, once
					} else {
						dropped = append(dropped, x)
					}
				}
			}
			if refused && n == 0 {
				dropped, busy = append(dropped, f), true
			}
		}
	}
	r.mu.RUnlock()
	r.busy(dropped)
	if !found {
		r.m.drops.Inc(DropNoSession)
	}
	switch {
	case n > 0:
		r.answer(m.Reply, "")
		r.m.out(typ).Add(float64(n))
	case !busy: // no local session, or they were closing: counted above or by enqueueFrame
		r.answer(m.Reply, hdrDropped)
	}
}
