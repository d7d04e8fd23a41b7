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
// duet.a.<alias>.* (but for a node on the embedded NATS: see below). Each
// envelope carries a reply subject on the sending
// node's inbox,
//
//	duet.n.<node>.<session>.<to>.<seq>[.<id>]
//
// (seq numbers the node's published envelopes, see acks.go; 0 for one
// delivered without NATS) on which NATS answers with a 503 "no responders"
// status message when no node subscribes to the recipient: that is how the
// relay learns that the recipient is offline. The recipient's nodes answer
// there too: an empty message once the envelope is queued to a session
// (acknowledged; a dispatcher with more envelopes queued sends their seqs
// together on duet.n.<node>.acks instead), or a Duet-Undeliverable header
// saying why it was not (recipient_busy, dropped).
//
// A node on the embedded nats-server is the only node there can be (the
// server has no listener, routes or leaf nodes): it delivers an envelope
// for an alias with sessions on the node to them directly, without NATS
// (router.solo), and publishes only envelopes for other aliases, whose
// no-responders answer says they are offline. So it subscribes to no
// alias: nothing would ever be routed to the subscription, which cost
// about 1.1 KiB of memory per alias (nats-server's and nats.go's state).
// On a shared NATS every envelope is published, so that the recipient's
// sessions on every node get it.
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
	sub      *nats.Subscription // nil while the node routes on its own (solo)
	sessions []*session
	inbound  inbound // the alias's inbound byte budget on this node
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
	// onLimits takes the duet.a.<alias>._limits notices (clusterLimits).
	onLimits func(identity.Alias, []byte)
	// sessionsOf, offlineq: see checkedOffline (a cluster only).
	sessionsOf  func(context.Context, identity.Alias) (int, error)
	offlineq    chan []offlineCheck
	offlineDone chan struct{}
	stopping    atomic.Bool
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
	r.acks = newAcker(ackWait, r.unacknowledged, r.checkedOffline)
	go r.acks.run()
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
	var acks ackBatch
	for _, ch := range r.shards {
		for len(ch) > 0 {
			r.deliver(<-ch, &acks)
		}
	}
	acks.flush(r.nc)
}

// stop closes the routes (if not done yet), waits for the answers to the
// envelopes published (at most ackWait) and unsubscribes the inbox.
func (r *router) stop() {
	r.stopping.Store(true)
	r.closeRoutes(context.Background())
	r.acks.stop()
	if r.offlineq != nil {
		close(r.offlineq)
		<-r.offlineDone
	}
	_ = r.inboxSub.Unsubscribe()
}

func (r *router) shardFor(a identity.Alias) chan *nats.Msg {
	h := fnv.New32a()
	h.Write([]byte(a))
	return r.shards[h.Sum32()%uint32(len(r.shards))]
}

// add registers an authenticated session. Unless the node routes on its
// own (solo), it subscribes to the alias when this is the alias's first
// session on this node, and waits until NATS has the subscription, so
// envelopes sent after "ready" are delivered; subscribed reports that it
// did.
func (r *router) add(s *session) (subscribed bool, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false, errRouterClosed
	}
	solo := r.solo.Load()
	rt := r.routes[s.alias]
	if rt == nil {
		rt = &route{}
	}
	if rt.sub == nil && !solo {
		sub, err := r.nc.ChanSubscribe(subjectPrefix+string(s.alias)+".*", r.shardFor(s.alias))
		if err != nil {
			r.mu.Unlock()
			return false, fmt.Errorf("%w: subscribing %s: %w", ErrNATS, s.alias, err)
		}
		rt.sub, subscribed = sub, true
	}
	r.routes[s.alias] = rt
	rt.sessions = append(rt.sessions, s)
	r.sessions[s.id] = s
	r.mu.Unlock()
	if solo {
		return false, nil
	}
	if err := r.nc.FlushTimeout(subscribeWait); err != nil {
		r.remove(s)
		return false, fmt.Errorf("%w: %w", ErrNATS, err)
	}
	return subscribed, nil
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
	if rt.sub == nil {
		return
	}
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
		if rt.sub == nil {
			continue
		}
		if d, err := rt.sub.Dropped(); err == nil && d > 0 {
			n += uint64(d)
		}
	}
	return n
}

// publish sends an envelope from session s to its recipient: straight to
// the recipient's sessions on this node when no other node can have any
// (solo), else to the recipient's subject, awaiting its answer.
func (r *router) publish(s *session, env *wire.Envelope) {
	buf := encodeBufs.Get().(*[]byte)
	data := env.AppendJSON((*buf)[:0]) // re-encoded: clients get one canonical shape
	env.Payload = ""                   // borrowed from the read buffer (decodeFrame): not kept
	r.m.in(env.Type).Inc()
	if r.solo.Load() {
		out, kept := r.fanOut(env.To, env.Type, outFrame{data: data, from: env.From, reply: r.reply(s, env, 0)})
		if out != noSession {
			if !kept {
				putEncodeBuf(buf, data)
			}
			return
		}
	}
	defer putEncodeBuf(buf, data) // nats.go copies what it publishes
	seq, ok := r.acks.track(s.id, env.To, env.ID)
	if !ok {
		r.refuse(s, env, errAwaitFull)
		return
	}
	msg := &nats.Msg{Subject: subjectPrefix + string(env.To) + "." + string(env.Type), Reply: r.reply(s, env, seq), Data: data}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.acks.settle(seq, ackSettled)
		r.refuse(s, env, err)
	}
}

// encodeBufs holds the buffers publish re-encodes envelopes in: a buffer
// comes back once no queue holds the envelope (written at once, or
// published), so forwarding allocates none.
var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledEncode bounds the buffers kept in encodeBufs (a bulk envelope's
// is left to the collector).
const maxPooledEncode = 4096

// putEncodeBuf gives buf back to encodeBufs, with data, the envelope
// encoded in it, as its storage.
func putEncodeBuf(buf *[]byte, data []byte) {
	if cap(data) > maxPooledEncode {
		return
	}
	*buf = data[:0]
	encodeBufs.Put(buf)
}

// reply is the reply subject of envelope env from session s, number seq,
// built with one allocation (the string).
func (r *router) reply(s *session, env *wire.Envelope, seq uint64) string {
	var b [192]byte
	rb := strconv.AppendUint(append(append(b[:0], r.inbox...), '.'), s.id, 10)
	rb = strconv.AppendUint(append(append(append(rb, '.'), env.To...), '.'), seq, 10)
	if env.ID != "" {
		rb = append(append(rb, '.'), env.ID...)
	}
	return string(rb)
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

// unacknowledged tells the senders of envelopes no node acknowledged within
// ackWait that they are unavailable, and counts those no node counted.
func (r *router) unacknowledged(es []awaited) {
	var lost uint64
	for _, e := range es {
		if e.state == ackPending {
			lost++
		}
		if e.id != "" {
			r.tell(e.sid, e.id, e.to, reasonUnavailable)
		}
	}
	if lost > 0 {
		r.m.drops.Add(DropLostInCluster, lost)
	}
}

// tell sends session sid (if still on this node) an undeliverable notice.
func (r *router) tell(sid uint64, id string, to identity.Alias, reason string) {
	r.mu.RLock()
	s := r.sessions[sid]
	r.mu.RUnlock()
	if s != nil {
		s.enqueue(encodeFrame(undeliverableFrame{Type: "undeliverable", ID: id, To: to, Reason: reason}))
	}
}

// Reasons of undeliverable notices.
const (
	reasonOffline     = "offline"
	reasonUnavailable = "unavailable"    // this node cannot reach NATS, or no node acknowledged the envelope
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

// The answers to an envelope (see answered).
type answerKind uint8

const (
	answerAck answerKind = iota
	answerOffline
	answerBusy
	answerDropped
)

// onInbox handles the answers to envelopes sent by this node's sessions:
// the recipient nodes' acknowledgements and notices, and NATS's
// no-responders (offline).
func (r *router) onInbox(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, r.inbox+".")
	if !ok {
		return
	}
	switch {
	case rest == ackSubject:
		r.acks.acked(m.Data)
	case len(m.Header) == 0:
		r.answered(rest, answerAck)
	case m.Header.Get("Status") == "503":
		r.answered(rest, answerOffline)
	case m.Header.Get(hdrUndeliverable) == reasonBusy:
		r.answered(rest, answerBusy)
	case m.Header.Get(hdrUndeliverable) == hdrDropped:
		r.answered(rest, answerDropped)
	}
}

// answered settles an envelope of this node's sessions and tells its
// sender what there is to tell. rest is its reply subject after the node's
// inbox: <session>.<to>.<seq>[.<id>].
func (r *router) answered(rest string, kind answerKind) {
	sidStr, rest, _ := strings.Cut(rest, ".")
	to, rest, _ := strings.Cut(rest, ".")
	seqStr, id, _ := strings.Cut(rest, ".")
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return
	}
	switch kind {
	case answerAck:
		r.acks.settle(seq, ackSettled)
		return
	case answerDropped:
		r.acks.settle(seq, ackDropped)
		return
	case answerOffline:
		// Told once, later (checkedOffline): not when the wait ended first
		// (unavailable).
		r.acks.offline(seq, r.nc.Stats().Reconnects)
		return
	case answerBusy:
		// Told even when acknowledged: a queued envelope may be dropped
		// later to make room for a lighter sender's.
		r.acks.settle(seq, ackSettled)
	}
	sid, err := strconv.ParseUint(sidStr, 10, 64)
	if err != nil || id == "" {
		return
	}
	r.tell(sid, id, identity.Alias(to), reasonBusy)
}

// checkedOffline tells the senders of envelopes that NATS answered "no
// responders" for offlineWait ago that their recipient is offline, unless
// this node's NATS connection dropped since: a NATS server shutting down
// closes its routes, and loses the interest of the other servers' clients
// with them, before its own clients, and answers "no responders" in
// between. Such an envelope is counted as lost_in_cluster, and its sender
// told unavailable.
//
// On a cluster (r.sessionsOf set) the recipient's relay may instead be the
// one cut off from NATS: its sessions are connected, but NATS has no
// interest until that relay has its subscriptions on another NATS node. So
// the envelopes still to be told offline wait for the alias's session
// count in the directory (clusterLimits.sessionsOn): an alias with
// sessions on a live node is told unavailable (a passing reason; a call's
// offer is sent again) and counted as lost_in_cluster. Those reads happen
// on their own goroutine, a bounded queue of batches; a batch that finds it
// full is told offline as before.
func (r *router) checkedOffline(cs []offlineCheck) {
	reconnects, connected := r.nc.Stats().Reconnects, r.nc.IsConnected()
	var offline []offlineCheck
	for _, c := range cs {
		if !connected || reconnects != c.epoch {
			r.tellOffline(c, true)
			continue
		}
		offline = append(offline, c)
	}
	if len(offline) == 0 {
		return
	}
	if r.sessionsOf != nil {
		select {
		case r.offlineq <- offline:
			return
		default:
		}
	}
	for _, c := range offline {
		r.tellOffline(c, false)
	}
}

// tellOffline tells the sender of c that its recipient is offline, or, when
// lost, unavailable (counted as lost_in_cluster).
func (r *router) tellOffline(c offlineCheck, lost bool) {
	reason, notice := reasonOffline, "sent"
	if c.e.id == "" {
		notice = "silent"
	}
	if lost {
		reason, notice = reasonUnavailable, ""
		r.m.drops.Inc(DropLostInCluster)
	}
	if notice != "" {
		r.m.undeliverable.WithLabelValues(notice).Inc()
	}
	if c.e.id != "" {
		r.tell(c.e.sid, c.e.id, c.e.to, reason)
	}
}

// offlineLookupWait bounds the directory reads of a batch of offline checks
// (the notice is due within the second of PROTOCOL §9.2); on no answer the
// senders are told offline.
const offlineLookupWait = 500 * time.Millisecond

// confirmOffline reads, for each batch of offline checks, whether the
// recipients have sessions on a live node (see checkedOffline), until the
// router stops (stop closes offlineq once the acker is stopped: nothing is
// queued after that); once it is stopping, the rest are told offline
// without a read.
func (r *router) confirmOffline() {
	defer close(r.offlineDone)
	for cs := range r.offlineq {
		ctx, cancel := context.WithTimeout(context.Background(), offlineLookupWait)
		held := map[identity.Alias]bool{}
		for _, c := range cs {
			h, ok := held[c.e.to]
			if !ok && !r.stopping.Load() {
				n, err := r.sessionsOf(ctx, c.e.to)
				h = err == nil && n > 0
				held[c.e.to] = h
			}
			r.tellOffline(c, h)
		}
		cancel()
	}
}

// checkOfflineWith makes offline notices wait for sessionsOf, the alias's
// sessions on the cluster's live nodes (see checkedOffline). Called once,
// before any session is added.
func (r *router) checkOfflineWith(sessionsOf func(context.Context, identity.Alias) (int, error)) {
	r.sessionsOf = sessionsOf
	r.offlineq = make(chan []offlineCheck, offlineQueueLen)
	r.offlineDone = make(chan struct{})
	go r.confirmOffline()
}

// offlineQueueLen bounds the batches of offline checks waiting for the
// directory.
const offlineQueueLen = 64

// busy tells the senders of dropped envelopes that the recipient is busy:
// directly when they are on this node, else through NATS.
func (r *router) busy(frames []outFrame) {
	for _, f := range frames {
		if rest, ok := strings.CutPrefix(f.reply, r.inbox+"."); ok {
			r.answered(rest, answerBusy)
			continue
		}
		r.answer(f.reply, reasonBusy)
	}
}

// ackSubject is the token after a node's inbox of the subject on which other
// nodes acknowledge several of its envelopes at once: the payload is their
// seqs, in decimal, separated by spaces.
const ackSubject = "acks"

// maxAckBatch bounds the acknowledgements a dispatcher holds back.
const maxAckBatch = 512

// ackBatch collects the acknowledgements a dispatcher owes, by sending node.
type ackBatch struct {
	inbox []string // sending nodes' inboxes
	seqs  [][]byte // their seqs
	n     int
}

// add adds the acknowledgement of the envelope with reply subject reply
// (duet.n.<node>.<session>.<to>.<seq>[.<id>]); false if reply has no seq.
func (b *ackBatch) add(reply string) bool {
	// inbox: the first 3 tokens; seq: the 6th.
	end, start, dots := 0, 0, 0
	for i := 0; i < len(reply); i++ {
		if reply[i] != '.' {
			continue
		}
		dots++
		switch dots {
		case 3:
			end = i
		case 5:
			start = i + 1
		case 6:
			reply = reply[:i]
		}
	}
	if dots < 5 || start == len(reply) {
		return false
	}
	inbox, seq := reply[:end], reply[start:]
	for _, c := range []byte(seq) {
		if c < '0' || c > '9' {
			return false
		}
	}
	b.n++
	for i, x := range b.inbox {
		if x == inbox {
			b.seqs[i] = append(append(b.seqs[i], ' '), seq...)
			return true
		}
	}
	b.inbox = append(b.inbox, inbox)
	if len(b.seqs) < len(b.inbox) {
		b.seqs = append(b.seqs, nil)
	}
	i := len(b.inbox) - 1
	b.seqs[i] = append(b.seqs[i][:0], seq...)
	return true
}

// flush sends the acknowledgements collected, one message per node.
func (b *ackBatch) flush(nc *nats.Conn) {
	for i, inbox := range b.inbox {
		_ = nc.Publish(inbox+"."+ackSubject, b.seqs[i])
	}
	clear(b.inbox)
	b.inbox, b.n = b.inbox[:0], 0
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
	var acks ackBatch // sent when the shard is empty, or full enough
	for {
		select {
		case <-r.quit:
			acks.flush(r.nc)
			return
		case m := <-ch:
			r.deliver(m, &acks)
			if len(ch) == 0 || acks.n >= maxAckBatch {
				acks.flush(r.nc)
			}
		}
	}
}

// splitSubject splits an alias's subject, duet.a.<alias>.<type> (or its
// subscription's, duet.a.<alias>.*), into the alias and the rest.
func splitSubject(subject string) (identity.Alias, string, bool) {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	if !ok || len(rest) < 11 || rest[9] != '.' {
		return "", "", false
	}
	return identity.Alias(rest[:9]), rest[10:], true
}

// deliver fans an envelope routed by NATS out to the local sessions of its
// alias and answers its sender's node (an acknowledgement goes in acks).
func (r *router) deliver(m *nats.Msg, acks *ackBatch) {
	alias, t, ok := splitSubject(m.Subject)
	if !ok {
		return
	}
	typ := wire.Type(t)
	if typ == limitsType {
		r.onLimits(alias, m.Data)
		return
	}
	switch out, _ := r.fanOut(alias, typ, outFrame{data: m.Data, from: senderOf(m.Data), reply: m.Reply}); out {
	case queued:
		if !acks.add(m.Reply) {
			r.answer(m.Reply, "")
		}
	case noSession:
		r.m.drops.Inc(DropNoSession)
		r.answer(m.Reply, hdrDropped)
	case notQueued:
		r.answer(m.Reply, hdrDropped)
	}
}

// What fanOut did with an envelope.
type fanOutcome uint8

const (
	queued    fanOutcome = iota // to at least one session
	noSession                   // the alias has no session on this node: nothing done
	busyDrop                    // dropped under the overload policy, its sender told recipient_busy
	notQueued                   // the sessions were closing (counted by enqueueFrame)
)

// fanOut queues f, an envelope of type typ, for every local session of
// alias without blocking (see session.enqueueFrame for the overload
// policy), and tells the senders of the frames dropped for it
// (recipient_busy). kept reports whether a session's queue holds f.data.
func (r *router) fanOut(alias identity.Alias, typ wire.Type, f outFrame) (out fanOutcome, kept bool) {
	n, out := 0, notQueued
	var dropped []outFrame
	r.mu.RLock()
	rt := r.routes[alias]
	if rt == nil || len(rt.sessions) == 0 {
		r.mu.RUnlock()
		return noSession, false
	}
	if !rt.inbound.allow(f.from, len(f.data), r.now(), r.tun) {
		r.m.drops.Inc(DropRecipientBusy)
		dropped, out = append(dropped, f), busyDrop
	} else {
		refused := false
		for _, s := range rt.sessions {
			ok, d, k := s.enqueueFrame(f)
			if ok {
				n++
			}
			kept = kept || k
			for _, x := range d {
				if x.reply == f.reply {
					refused = true // told below, once
				} else {
					dropped = append(dropped, x)
				}
			}
		}
		if refused && n == 0 {
			dropped, out = append(dropped, f), busyDrop
		}
	}
	r.mu.RUnlock()
	r.busy(dropped)
	if n > 0 {
		r.m.out(typ).Add(float64(n))
		out = queued
	}
	return out, kept
}
