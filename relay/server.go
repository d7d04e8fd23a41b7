package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay/ice"
)

// ICEProvider answers GET /api/v1/calls/ice-config for an authenticated
// alias. *ice.Resolver implements it.
type ICEProvider interface {
	Get(ctx context.Context, user identity.Alias) (ice.Config, error)
}

// Options configure a relay server.
type Options struct {
	// NATSURL is an external NATS server with JetStream to join; empty runs
	// an embedded nats-server in-process (no network port) storing JetStream
	// under DataDir.
	NATSURL string
	// DataDir holds the embedded NATS's JetStream store (DataDir/nats).
	// Required when NATSURL is empty.
	DataDir string
	// KVReplicas is the replica count of the directory buckets (external
	// NATS clusters), applied when the node starts: new buckets get it,
	// existing ones are raised to it. Zero keeps the buckets' current count
	// (1 for new buckets), so only the node that changes it needs it set.
	// A count below the buckets' is ignored with a warning unless
	// KVReplicasLower is set. Server.KVReplicas tells the effective count.
	KVReplicas int
	// KVReplicasLower lets KVReplicas lower the buckets' replica count.
	KVReplicasLower bool
	// ICE serves the ice-config endpoint; nil answers 503.
	ICE ICEProvider
	// OriginPatterns, if set, restricts the WebSocket's Origin header: a
	// browser's Origin must name the request's host or match one of the
	// patterns (path.Match syntax, case-insensitive, against the origin's
	// host, or its scheme://host for a pattern with ://). By default any
	// origin may connect: sessions authenticate by signature, with no
	// ambient credentials to protect.
	OriginPatterns []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the relay's metrics and is served on /metrics;
	// default: a new registry.
	Registry *prometheus.Registry
	// Now is the clock for tokens, challenges and rate limits; default
	// time.Now.
	Now func() time.Time
	// MaxSessionsPerAlias caps one alias's concurrent sessions across the
	// relay's nodes (every node should have the same); 0 means
	// MaxSessionsPerAlias. The newest session past it is refused
	// (docs/PROTOCOL.md §9.2).
	MaxSessionsPerAlias int
	// TrustedProxies are the addresses of reverse proxies in front of the
	// relay: for a request from one of them, the client address the HTTP
	// rate limits are keyed on is taken from X-Forwarded-For (the rightmost
	// address not itself a trusted proxy). Empty: X-Forwarded-For is
	// ignored.
	TrustedProxies []netip.Prefix
	// RegisterPoWBits, when above zero, makes registration cost a proof of
	// work of that many bits (docs/PROTOCOL.md §9.1), at most
	// MaxRegisterPoWBits. Each bit doubles the client's work: 16 takes
	// about 65 000 SHA-256 hashes.
	RegisterPoWBits int
	// SeparateMetrics leaves /metrics out of Handler: serve MetricsHandler
	// on another address (duet relay --metrics-addr).
	SeparateMetrics bool
	// QueueBudget bounds the bytes queued for all sessions of this node;
	// past it, envelopes are dropped (node_budget) and their senders told
	// recipient_busy. 0 means DefaultQueueBudget().
	QueueBudget int64
	// PingInterval and PingTimeout are the liveness check of every
	// authenticated session: a WebSocket ping after PingInterval without a
	// frame from the client (its own pings count), and a session that sends
	// nothing within PingTimeout after it is dropped (its callers get
	// offline). Zero means DefaultPingInterval and
	// DefaultPingTimeout; a negative PingInterval sends no pings.
	PingInterval time.Duration
	PingTimeout  time.Duration

	// tune, if set, adjusts the tunables before the node starts (tests).
	tune func(*tunables)
}

// tunables are the protocol limits; tests shorten some of them.
type tunables struct {
	// afterAcquire, when set (tests), runs when a session of the alias has
	// been counted and before it is routed.
	afterAcquire func(identity.Alias)

	authTimeout  time.Duration
	writeTimeout time.Duration
	closeGrace   time.Duration
	queueLen     int
	rateLimit    float64
	rateBurst    int
	floodLimit   int
	frameFlood   int // FrameFloodLimit
	queueBytes   int
	byteRate     float64
	byteBurst    int
	bulkRate     float64 // BulkRate
	bulkFrame    int     // bulkFrame

	bulkAllowance     int           // BulkAllowance
	bulkAllowanceRate float64       // BulkAllowanceRate
	maxThrottle       time.Duration // maxThrottle; tests shorten it

	bodyTimeout  time.Duration
	refuseDelay  time.Duration // RefuseDelay
	stallTimeout time.Duration
	maxSessions  int
	// per recipient alias (inbound)
	recipientRate  float64
	recipientBurst int
	pingInterval   time.Duration
	pingTimeout    time.Duration
	readyGrace     time.Duration // see ReadyGrace
	nodeHeartbeat  time.Duration // see clusterLimits
	tokenTTL       time.Duration // TokenTTL; tests shorten it (export_test.go)
	// beforeBatch, if set, is called by a session's writer before it writes
	// a batch of queued frames (tests hold a writer there).
	beforeBatch func(*session)
	// onHandOff, if set, is called when a parked session's wake-up is
	// handed to a goroutine of its own (session.handOff).
	onHandOff func()
	// beforeRepark, if set, is called by a session's wake before it parks
	// the session again (tests close the connection there).
	beforeRepark func(*session)
	// pollers, if set, replaces pollerCount (tests that need every
	// session on one poller).
	pollers int
	// onLimitsNotice, if set, sees each duet.a.<alias>._limits notice the
	// node receives; false drops it (tests lose one).
	onLimitsNotice func(identity.Alias) bool
	// onChallengePurge, if set, is called before the directory purges a
	// used challenge; an error it returns is the purge's (tests).
	onChallengePurge func(key string) error
}

var defaultTunables = tunables{
	authTimeout:  AuthTimeout,
	writeTimeout: WriteTimeout,
	closeGrace:   CloseGrace,
	queueLen:     SendQueueLen,
	rateLimit:    RateLimit,
	rateBurst:    RateBurst,
	floodLimit:   FloodLimit,
	frameFlood:   FrameFloodLimit,
	queueBytes:   SendQueueBytes,
	byteRate:     ByteRate,
	byteBurst:    ByteBurst,
	bulkRate:     BulkRate,
	bulkFrame:    bulkFrame,

	bulkAllowance:     BulkAllowance,
	bulkAllowanceRate: BulkAllowanceRate,
	maxThrottle:       maxThrottle,

	bodyTimeout:  BodyTimeout,
	refuseDelay:  RefuseDelay,
	stallTimeout: stallTimeout,
	maxSessions:  MaxSessionsPerAlias,

	recipientRate:  RecipientByteRate,
	recipientBurst: RecipientByteBurst,
	pingInterval:   DefaultPingInterval,
	pingTimeout:    DefaultPingTimeout,
	readyGrace:     ReadyGrace,
	nodeHeartbeat:  nodeHeartbeat,
	tokenTTL:       TokenTTL,
}

// ErrClosed is returned by Shutdown when the server is already shut down.
var ErrClosed = errors.New("relay: server closed")

// Server is one relay node.
type Server struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	tun      tunables
	registry *prometheus.Registry
	metrics  *metrics
	nats     *natsBackend
	dir      *directory
	tokens   *tokens
	router   *router
	handler  http.Handler
	aliases  aliasLimits
	budget   nodeBudget
	pollers  pollers              // park sessions between messages; nil where unsupported
	bulk     func() *rate.Limiter // the node's bulk pace (BulkRate), made on first use

	regLimits, lookupAlias, lookupAddr *limiterTable
	held                               heldRefusals // refused requests waiting for RefuseDelay

	nextID atomic.Uint64

	mu       sync.Mutex
	shutting bool
	conns    map[*session]struct{} // every WebSocket, authenticated or not
	connWG   sync.WaitGroup
}

// New starts a relay node: it connects to NATS (starting the embedded server
// when Options.NATSURL is empty) and opens the directory. Call Shutdown to
// stop it.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.NATSURL == "" && opts.DataDir == "" {
		return nil, errors.New("relay: Options.DataDir is required with the embedded NATS")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		tun:      defaultTunables,
		registry: opts.Registry,
		conns:    make(map[*session]struct{}),
	}
	if opts.PingInterval != 0 {
		s.tun.pingInterval = opts.PingInterval
	}
	if opts.PingTimeout > 0 {
		s.tun.pingTimeout = opts.PingTimeout
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("relay: registering metrics: %w", err)
	}
	s.metrics = m
	if opts.MaxSessionsPerAlias > 0 {
		s.tun.maxSessions = opts.MaxSessionsPerAlias
	}
	if opts.RegisterPoWBits < 0 || opts.RegisterPoWBits > MaxRegisterPoWBits {
		return nil, fmt.Errorf("relay: Options.RegisterPoWBits %d: want 0 to %d", opts.RegisterPoWBits, MaxRegisterPoWBits)
	}
	s.bulk = sync.OnceValue(func() *rate.Limiter {
		return rate.NewLimiter(rate.Limit(s.tun.bulkRate), maxFrameSize)
	})
	s.regLimits = newLimiterTable(RegisterRate, RegisterBurst)
	s.lookupAlias = newLimiterTable(LookupRate, LookupBurst)
	s.lookupAddr = newLimiterTable(2*LookupRate, 2*LookupBurst)
	s.budget.limit = opts.QueueBudget
	if s.budget.limit <= 0 {
		s.budget.limit = DefaultQueueBudget()
	}
	if opts.tune != nil {
		opts.tune(&s.tun)
	}
	if opts.DataDir != "" {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("relay: data dir: %w", err)
		}
	}
	nb, err := connectNATS(ctx, opts.NATSURL, opts.DataDir, s.log)
	if err != nil {
		return nil, err
	}
	s.nats = nb
	err = waitJetStream(ctx, s.log, "opening the directory", func(ctx context.Context) error {
		d, err := openDirectory(ctx, nb.js, opts.KVReplicas, opts.KVReplicasLower, s.now, s.log)
		s.dir = d
		return err
	})
	if err != nil {
		nb.close()
		return nil, err
	}
	s.dir.m = m
	s.dir.onPurge = s.tun.onChallengePurge
	var key []byte
	err = waitJetStream(ctx, s.log, "reading the token key", func(ctx context.Context) (err error) {
		key, err = s.dir.TokenKey(ctx)
		return err
	})
	if err != nil {
		nb.close()
		return nil, err
	}
	s.tokens = &tokens{key: key, now: s.now}
	s.router, err = newRouter(nb.nc, nb.embedded != nil, m, s.log, &s.tun, s.now, s.budget.limit)
	if err != nil {
		nb.close()
		return nil, err
	}
	s.aliases.log = s.log
	if nb.embedded == nil {
		// On the embedded NATS this node is the only one: its own counts
		// are the cluster's.
		s.aliases.cluster, err = startClusterLimits(s.dir, nb.nc, s.tun.nodeHeartbeat, func() { s.aliases.nodesChanged(&s.tun, s.now) })
		if err != nil {
			s.router.stop()
			nb.close()
			return nil, err
		}
		s.router.checkOfflineWith(s.aliases.cluster.sessionsOn)
		// A full routing shard may have dropped an alias's _limits notice.
		onSlow := func(sub *nats.Subscription) {
			if a, _, ok := splitSubject(sub.Subject); ok {
				s.aliases.refreshLater(a, &s.tun, s.now)
			}
		}
		nb.onSlow.Store(&onSlow)
	}
	s.router.onLimits = func(a identity.Alias, data []byte) {
		if h := s.tun.onLimitsNotice; h != nil && !h(a) {
			return
		}
		s.aliases.onNotice(a, data, s.now(), &s.tun)
	}
	n := pollerCount(runtime.GOMAXPROCS(0))
	if s.tun.pollers > 0 {
		n = s.tun.pollers
	}
	if s.pollers, err = newPollers(n); err != nil {
		s.log.Warn("relay: sessions keep a reading goroutine each", "err", err)
	}
	// The directory took its buckets' writes: ready from here (see
	// handleReady's grace).
	s.dir.lastOK.Store(time.Now().UnixNano())
	s.handler = s.routes()
	return s, nil
}

// KVReplicas is the directory buckets' replica count the node runs with
// (Options.KVReplicas, or what the buckets had).
func (s *Server) KVReplicas() int { return s.dir.replicas }

// Registry returns the registry the relay's metrics are on.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Embedded reports whether the node runs the embedded NATS.
func (s *Server) Embedded() bool { return s.nats.embedded != nil }

// Handler returns the relay's HTTP handler: the API, the WebSocket endpoint,
// /healthz, /readyz and /metrics. The API and the WebSocket accept pages of
// any origin (CORS, see apiCORS; Options.OriginPatterns narrows the
// WebSocket's).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	count := s.metrics.http.wrap
	mux.Handle("POST /api/v1/challenge", count("challenge", s.limitRegistration(s.handleChallenge)))
	mux.Handle("POST /api/v1/register", count("register", s.limitRegistration(s.handleRegister)))
	mux.Handle("GET /api/v1/keys/{alias}", count("keys", s.authed(s.handleKeys)))
	mux.Handle("GET /api/v1/calls/ice-config", count("ice_config", s.authed(s.handleICEConfig)))
	mux.HandleFunc("GET /api/v1/ws", s.handleWS)
	mux.Handle("/api/", count("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	if !s.opts.SeparateMetrics {
		mux.Handle("GET /metrics", s.MetricsHandler())
	}
	return apiCORS(mux)
}

// MetricsHandler serves the relay's metrics (Prometheus text format).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

// ReadyGrace is how long /readyz stays 200 while the directory's writes
// fail: a NATS cluster that lost the server leading the directory elects a
// new leader within seconds, during which no node can write; answering 503
// then would make a load balancer drain every node at once. Past the grace
// (no quorum, say) /readyz answers 503 directory_unavailable.
const ReadyGrace = 10 * time.Second

// readyProbeEvery: a /readyz within this of a successful directory write
// answers without writing again.
const readyProbeEvery = time.Second

// handleReady answers whether this node can serve a new user now: it is
// not shutting down, its own NATS connection is up, and the directory
// takes a write (the probe: a key in the challenges bucket, expiring with
// them), or took one within ReadyGrace.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	shutting := s.shutting
	s.mu.Unlock()
	if shutting {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the relay is shutting down")
		return
	}
	if !s.nats.nc.IsConnected() {
		writeError(w, http.StatusServiceUnavailable, "nats_unavailable", "not connected to NATS")
		return
	}
	if time.Since(s.dir.lastWrite()) < readyProbeEvery {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	err := s.dir.probe(ctx, s.router.inbox)
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	if since := time.Since(s.dir.lastWrite()); since < s.tun.readyGrace {
		s.log.Info("relay: the directory takes no writes (a NATS leader election?); still ready within the grace",
			"since_last_write", since.Round(time.Millisecond), "grace", s.tun.readyGrace, "err", err)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "directory": "retrying"})
		return
	}
	s.log.Warn("relay: not ready: the directory takes no writes", "err", err)
	writeError(w, http.StatusServiceUnavailable, "directory_unavailable", "the directory (JetStream KV) takes no writes: is a majority of the NATS cluster up?")
}

// handleWS upgrades to a WebSocket session (docs/PROTOCOL.md §9.2).
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the relay is shutting down, connect again")
		return
	}
	s.connWG.Add(1)
	s.mu.Unlock()
	handedOff := false
	defer func() {
		if !handedOff {
			s.connWG.Done()
		}
	}()

	// Any Origin may connect unless Options.OriginPatterns says otherwise:
	// a browser attaches no ambient credentials the relay would honour
	// (no cookies), and a session authenticates only by signing the
	// challenge with the alias's key, which a foreign page does not hold.
	ws, err := acceptWS(w, r, s.opts.OriginPatterns, maxFrameSize, s.tun.writeTimeout)
	if err != nil {
		return // acceptWS has answered
	}
	sess := &session{srv: s, ws: ws, id: s.nextID.Add(1), closed: make(chan struct{}),
		frameLim: rate.NewLimiter(rate.Limit(2*s.tun.rateLimit), 2*s.tun.rateBurst)}
	ws.onFrame = sess.onWireFrame
	ws.poller, ws.resume = s.pollers.of(ws.fd), sess.run
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		_ = ws.writeClose(statusRestart, "service restart", s.tun.closeGrace)
		ws.close()
		return
	}
	s.conns[sess] = struct{}{}
	s.mu.Unlock()
	// The connection is hijacked: the session does not depend on the
	// request, whose context ends when this handler returns.
	if !sess.open(context.WithoutCancel(r.Context())) {
		sess.end()
		return
	}
	// Serve on a fresh goroutine and let the handler return: the handler's
	// stack and the request are freed.
	handedOff = true
	if ws.poller != nil {
		ws.parks, ws.wake = true, sess.wake
	}
	go sess.run()
}

// run serves an authenticated session on the current goroutine until it
// ends, or until it parks (see poller): then the poller runs it again on a
// new goroutine once the client sends.
func (s *session) run() {
	if !s.serve() {
		return // parked
	}
	s.end()
	s.srv.connWG.Done()
}

// end finishes the session and forgets it.
func (s *session) end() {
	s.finish()
	s.srv.mu.Lock()
	delete(s.srv.conns, s)
	s.srv.mu.Unlock()
}

// Shutdown stops the node gracefully: it refuses new sessions and stops
// routing envelopes to this node (NATS routes them to other nodes, or
// answers their senders as for an offline recipient); each session then
// gets the envelopes already routed to it, {"type":"reconnect"}, and a close
// with 1012 (a session not yet authenticated gets reconnect at once).
// Shutdown waits for the sessions to finish; when ctx ends first it drops
// their connections, and the frames they had not written are counted as
// dropped (shutdown); a session that still has not ended CloseGrace later
// is left behind (logged, and counted in the error). Then it drains the
// NATS connection (bounded by ctx) and stops the embedded server. Stop the
// http.Server (which does not track WebSockets) before or after; both
// orders work.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		return ErrClosed
	}
	s.shutting = true
	conns := make([]*session, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.log.Info("relay: shutting down", "sessions", len(conns))
	// The other nodes stop counting this node's sessions now: its clients
	// reconnecting to them are not refused for the sessions closing here.
	if s.aliases.cluster != nil {
		s.aliases.cluster.stop()
	}
	s.router.closeRoutes(ctx)
	for _, c := range conns {
		c.drain()
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("relay: shutdown: sessions still closing: %w", ctx.Err())
		for _, c := range conns {
			c.ws.close()
		}
		// A dropped connection ends its session within a close's grace. One
		// that does not (a goroutine stuck in a write, a session lost by a
		// bug) must not hold the shutdown for ever: the node stops anyway,
		// and says how many it left.
		t := time.NewTimer(s.tun.closeGrace)
		select {
		case <-done:
		case <-t.C:
			s.mu.Lock()
			n := len(s.conns)
			s.mu.Unlock()
			s.log.Error("relay: shutdown: sessions did not end after their connections were closed", "sessions", n)
			err = fmt.Errorf("relay: shutdown: sessions not ended %v after their connections were closed: %d: %w", s.tun.closeGrace, n, ctx.Err())
		}
		t.Stop()
	}
	s.aliases.stopResyncs()
	s.router.stop()
	s.pollers.stop()
	if derr := s.nats.drain(ctx); derr != nil && err == nil {
		err = fmt.Errorf("relay: shutdown: %w", derr)
	}
	return err
}

// authFailure counts a failed authentication.
func (s *Server) authFailure(reason string) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
}
