package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
//	duet.n.<node>.<session>.<to>[.<id>]
//
// on which NATS answers with a 503 "no responders" status message when no
// node subscribes to the recipient: that is how the relay learns that the
// recipient is offline. Nothing else is ever sent to the inbox.
//
// A node on the embedded nats-server is the only node there can be (the
// server has no listener, routes or leaf nodes): it delivers an envelope
// for an alias with sessions on the node to them directly, without NATS
// (router.solo), and publishes only envelopes for other aliases, whose
// no-responders answer says they are offline. On a shared NATS every
// envelope is published, so that the recipient's sessions on every node get
// it.
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
	conf     *confirmer // accounts for published envelopes
	// onLimits takes the duet.a.<alias>._limits notices (clusterLimits).
	onLimits func(identity.Alias, []byte)
	// solo: no other node can subscribe (the embedded NATS), so an envelope
	// for an alias with local sessions is delivered to them directly;
	// closeRoutes clears it (the node stops routing).
	solo atomic.Bool

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

func newRouter(nc *nats.Conn, solo bool, m *metrics, log *slog.Logger, tun *tunables, now func() time.Time, budget int64) (*router, error) {
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
	r.solo.Store(solo)
	n := max(2, runtime.GOMAXPROCS(0))
	r.shards = make([]chan *nats.Msg, n)
	for i := range r.shards {
		r.shards[i] = make(chan *nats.Msg, routeQueueFor(budget, n))
		r.wg.Add(1)
		go r.dispatch(r.shards[i])
	}
	m.drops.backlog = r.backlogDrops
	r.conf = newConfirmer(nc, m.drops)
	return r, nil
}

// closeRoutes stops routing envelopes to this node (the first step of a
// shutdown): it stops delivering its own sessions' envelopes directly
// (solo) and unsubscribes every alias, so that NATS routes new envelopes
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
	r.solo.Store(false)
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

// stop closes the routes (if not done yet) and unsubscribes the inbox.
func (r *router) stop() {
	r.closeRoutes(context.Background())
	_ = r.inboxSub.Unsubscribe()
	r.conf.stop()
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

// publish sends an envelope from session s to its recipient: straight to
// the recipient's sessions on this node when no other node can have any
// (solo), else to the recipient's subject.
func (r *router) publish(s *session, env *wire.Envelope) {
	data := env.AppendJSON(nil) // re-encoded: clients get one canonical shape
	// The reply subject, built with one allocation (the string).
	var b [160]byte
	rb := strconv.AppendUint(append(append(b[:0], r.inbox...), '.'), s.id, 10)
	rb = append(append(rb, '.'), env.To...)
	if env.ID != "" {
		rb = append(append(rb, '.'), env.ID...)
	}
	reply := string(rb)
	r.m.in(env.Type).Inc()
	if r.solo.Load() && r.fanOut(env.To, env.Type, outFrame{data: data, from: env.From, reply: reply}) {
		return
	}
	msg := &nats.Msg{Subject: subjectPrefix + string(env.To) + "." + string(env.Type), Reply: reply, Data: data}
	if err := r.nc.PublishMsg(msg); err == nil {
		r.conf.sent()
	} else {
		r.m.drops.Inc(DropPublish)
		r.log.Warn("relay: publishing an envelope failed", "err", err)
		if env.ID != "" {
			s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: env.ID, To: env.To, Reason: reasonUnavailable}))
		}
	}
}

// Reasons of undeliverable notices.
const (
	reasonOffline     = "offline"
	reasonUnavailable = "unavailable"    // this node cannot reach NATS
	reasonBusy        = "recipient_busy" // the recipient is sent more than it takes
)

// hdrUndeliverable is the header of the notice a recipient's node sends to
// an envelope's reply subject when it drops the envelope (recipient_busy).
const hdrUndeliverable = "Duet-Undeliverable"

// onInbox handles NATS's no-responders answers for envelopes sent by this
// node's sessions, and the recipient nodes' recipient_busy notices.
func (r *router) onInbox(m *nats.Msg) {
	reason := reasonOffline
	switch {
	case m.Header.Get("Status") == "503":
	case m.Header.Get(hdrUndeliverable) == reasonBusy:
		reason = reasonBusy
	default:
		return
	}
	if rest, ok := strings.CutPrefix(m.Subject, r.inbox+"."); ok {
		r.undeliverable(rest, reason)
	}
}

// undeliverable tells the sender of an envelope that it was not delivered,
// for reason. rest is the envelope's reply subject after the node's inbox:
// <session>.<to>[.<id>]; an envelope without an id is not told.
func (r *router) undeliverable(rest, reason string) {
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) < 2 {
		return
	}
	if len(parts) == 2 {
		if reason == reasonOffline {
			r.m.undeliverable.WithLabelValues("silent").Inc()
		}
		return
	}
	if reason == reasonOffline {
		r.m.undeliverable.WithLabelValues("sent").Inc()
	}
	id, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return
	}
	r.mu.RLock()
	s := r.sessions[id]
	r.mu.RUnlock()
	if s != nil {
		s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: parts[2], To: identity.Alias(parts[1]), Reason: reason}))
	}
}

// busy tells the senders of dropped envelopes (those with an id: their
// reply subject has one more token) that the recipient is busy: directly
// when they are on this node, else through NATS.
func (r *router) busy(frames []outFrame) {
	for _, f := range frames {
		if f.reply == "" || strings.Count(f.reply, ".") != strings.Count(r.inbox, ".")+3 {
			continue
		}
		if rest, ok := strings.CutPrefix(f.reply, r.inbox+"."); ok {
			r.undeliverable(rest, reasonBusy)
			continue
		}
		msg := &nats.Msg{Subject: f.reply, Header: nats.Header{hdrUndeliverable: []string{reasonBusy}}}
		_ = r.nc.PublishMsg(msg)
	}
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

// deliver fans an envelope routed by NATS out to the local sessions of its
// alias.
func (r *router) deliver(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, subjectPrefix)
	if !ok || len(rest) < 11 || rest[9] != '.' {
		return
	}
	alias, typ := identity.Alias(rest[:9]), wire.Type(rest[10:])
	if typ == limitsType {
		r.onLimits(alias, m.Data)
		return
	}
	if !r.fanOut(alias, typ, outFrame{data: m.Data, from: senderOf(m.Data), reply: m.Reply}) {
		r.m.drops.Inc(DropNoSession)
	}
}

// fanOut queues f, an envelope of type typ, for every local session of
// alias without blocking (see session.enqueueFrame for the overload
// policy), and tells the senders of the frames dropped for it
// (recipient_busy). It reports false, doing nothing, when alias has no
// session on this node.
func (r *router) fanOut(alias identity.Alias, typ wire.Type, f outFrame) bool {
	n := 0
	var dropped []outFrame
	r.mu.RLock()
	rt := r.routes[alias]
	if rt == nil || len(rt.sessions) == 0 {
		r.mu.RUnlock()
		return false
	}
	if !rt.inbound.allow(f.from, len(f.data), r.now(), r.tun) {
		r.m.drops.Inc(DropRecipientBusy)
		dropped = append(dropped, f)
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
			dropped = append(dropped, f)
		}
	}
	r.mu.RUnlock()
	r.busy(dropped)
	if n > 0 {
		r.m.out(typ).Add(float64(n))
	}
	return true
}
