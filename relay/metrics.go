package relay

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcall/duet/wire"
)

// DropReason says why the relay dropped a frame it had accepted. Every drop
// is counted in duet_relay_drops_total{reason}.
type DropReason string

// The drop reasons.
const (
	// DropSlowConsumer: the recipient session's send queue was full; the
	// session is disconnected with 1013.
	DropSlowConsumer DropReason = "slow_consumer"
	// DropSessionClosed: the recipient session closed before the frame was
	// written: it was queued when the session closed, or arrived while the
	// session was closing.
	DropSessionClosed DropReason = "session_closed"
	// DropRouteBacklog: this node's inbound routing queue (NATS to sessions)
	// was full.
	DropRouteBacklog DropReason = "route_backlog"
	// DropNoSession: a routed envelope arrived for an alias whose last local
	// session had just gone.
	DropNoSession DropReason = "no_local_session"
	// DropPublish: publishing to NATS failed (NATS disconnected or closing).
	DropPublish DropReason = "publish_error"
	// DropLostInCluster: published to NATS, but no recipient node answered
	// within ackWait (see acks.go): lost inside NATS or with a connection
	// to it, or its answer was; the sender is told unavailable.
	DropLostInCluster DropReason = "lost_in_cluster"
	// DropShutdown: the node shut down before the frame was written to its
	// recipient session: the shutdown deadline ended with the frame still
	// queued, or the session closed while it was being drained.
	DropShutdown DropReason = "shutdown"
	// DropRecipientBusy: the recipient was sent more than it takes (its
	// send queue full while it still reads, or its inbound byte budget
	// spent) and this sender was the heaviest; the sender is told
	// (undeliverable, recipient_busy).
	DropRecipientBusy DropReason = "recipient_busy"
	// DropNodeBudget: the node's queued-bytes budget (Options.QueueBudget)
	// was spent; the sender is told recipient_busy.
	DropNodeBudget DropReason = "node_budget"
)

var dropReasons = [...]DropReason{DropSlowConsumer, DropSessionClosed, DropRouteBacklog, DropNoSession, DropPublish, DropShutdown, DropRecipientBusy, DropNodeBudget, DropLostInCluster}

// dropCounter counts drops by reason. It is a custom collector because the
// route_backlog count is kept by nats.go per subscription and is read at
// scrape time.
type dropCounter struct {
	desc    *prometheus.Desc
	counts  [len(dropReasons)]atomic.Uint64
	backlog func() uint64 // extra route_backlog drops, may be nil
}

func newDropCounter() *dropCounter {
	return &dropCounter{desc: prometheus.NewDesc("duet_relay_drops_total",
		"Frames the relay accepted but dropped, by reason.", []string{"reason"}, nil)}
}

func (d *dropCounter) Inc(r DropReason) { d.Add(r, 1) }

func (d *dropCounter) Add(r DropReason, n uint64) {
	for i, x := range dropReasons {
		if x == r {
			d.counts[i].Add(n)
			return
		}
	}
}

// Value returns the current count for r.
func (d *dropCounter) Value(r DropReason) uint64 {
	for i, x := range dropReasons {
		if x == r {
			v := d.counts[i].Load()
			if r == DropRouteBacklog && d.backlog != nil {
				v += d.backlog()
			}
			return v
		}
	}
	return 0
}

func (d *dropCounter) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *dropCounter) Collect(ch chan<- prometheus.Metric) {
	for _, r := range dropReasons {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.Value(r)), string(r))
	}
}

// metrics are one relay server's Prometheus metrics, registered on its own
// registry (never the global one, so tests can run several servers).
type metrics struct {
	sessions      prometheus.Gauge
	envelopesIn   *prometheus.CounterVec // type
	envelopesOut  *prometheus.CounterVec // type
	refused       *prometheus.CounterVec // code
	undeliverable *prometheus.CounterVec // notice: sent|silent
	authFailures  *prometheus.CounterVec // reason
	registrations *prometheus.CounterVec // result
	disconnects   *prometheus.CounterVec // reason
	directory     *prometheus.CounterVec // op, result
	drops         *dropCounter
	// sessionsRefused: authenticated sessions refused because their alias
	// had MaxSessionsPerAlias already.
	sessionsRefused prometheus.Counter
	// framesOverBudget: WebSocket frames (control frames and fragments
	// included) past a session's frame budget.
	framesOverBudget prometheus.Counter
	http             *httpCounter

	inBy, outBy map[wire.Type]prometheus.Counter // cached children of envelopesIn/Out
}

// in and out return the envelope counters for t; types other than call_*
// share the label "other" to bound the label set.
func (m *metrics) in(t wire.Type) prometheus.Counter  { return pick(m.inBy, t) }
func (m *metrics) out(t wire.Type) prometheus.Counter { return pick(m.outBy, t) }

func pick(by map[wire.Type]prometheus.Counter, t wire.Type) prometheus.Counter {
	if c, ok := by[t]; ok {
		return c
	}
	return by["other"]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duet_relay_sessions", Help: "Authenticated WebSocket sessions on this node.",
		}),
		envelopesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_envelopes_in_total", Help: "Envelopes accepted from clients, by type.",
		}, []string{"type"}),
		envelopesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_envelopes_out_total", Help: "Envelopes queued to client sessions, by type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_frames_refused_total", Help: "Client frames refused with an error notice, by code.",
		}, []string{"code"}),
		undeliverable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_undeliverable_total", Help: "Envelopes addressed to an alias with no connected session; notice=sent when the envelope had an id.",
		}, []string{"notice"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_auth_failures_total", Help: "Failed registrations, WebSocket authentications and bearer tokens, by reason.",
		}, []string{"reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_registrations_total", Help: "Successful registrations, by result (created or existing).",
		}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_disconnects_total", Help: "Authenticated sessions closed, by reason.",
		}, []string{"reason"}),
		directory: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duet_relay_directory_ops_total",
			Help: "Directory (JetStream KV) operations of this node, by op (read: any replica; leader_read: the stream leader; write) and result (ok, not_found, conflict, timeout, disconnected, unavailable, error).",
		}, []string{"op", "result"}),
		drops: newDropCounter(),
		sessionsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_relay_sessions_refused_total", Help: "Authenticated sessions refused because their alias had the maximum number of sessions on this node.",
		}),
		framesOverBudget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duet_relay_ws_frames_over_budget_total", Help: "WebSocket frames (pings, pongs and continuation fragments included) past a session's frame budget.",
		}),
	}
	m.inBy, m.outBy = make(map[wire.Type]prometheus.Counter), make(map[wire.Type]prometheus.Counter)
	for _, t := range append(wire.CallTypes[:len(wire.CallTypes):len(wire.CallTypes)], "other") {
		m.inBy[t] = m.envelopesIn.WithLabelValues(string(t))
		m.outBy[t] = m.envelopesOut.WithLabelValues(string(t))
	}
	for _, c := range []errorCode{codeMalformed, codeUnknownType, codeSpoofedFrom, codeCryptoVersion, codeRateLimited} {
		m.refused.WithLabelValues(string(c))
	}
	for _, op := range []string{"read", "leader_read", "write"} {
		for _, r := range []string{"ok", "timeout", "disconnected", "unavailable", "error"} {
			m.directory.WithLabelValues(op, r)
		}
	}
	m.undeliverable.WithLabelValues("sent")
	m.undeliverable.WithLabelValues("silent")
	for _, c := range []prometheus.Collector{m.sessions, m.envelopesIn, m.envelopesOut, m.refused,
		m.undeliverable, m.authFailures, m.registrations, m.disconnects, m.directory, m.drops, m.sessionsRefused, m.framesOverBudget} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.http, err = newHTTPCounter(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// dirOp counts a directory operation; m may be nil.
func (m *metrics) dirOp(op, result string) {
	if m != nil {
		m.directory.WithLabelValues(op, result).Inc()
	}
}
