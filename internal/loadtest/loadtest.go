// Package loadtest drives a duet relay the way many users would, for
// operators sizing a deployment and for duet's own benchmarks (`duet
// loadtest`): it registers identities, holds one authenticated session per
// identity, sends sealed envelopes between random pairs at a paced,
// open-loop rate and measures each envelope's latency from when it was due;
// optionally it places real calls (pion peers, fixture media) at the same
// time. It works against any relay URL.
package loadtest

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/proccpu"
	"github.com/duetcall/duet/wire"
)

// Config is one load test.
type Config struct {
	// RelayURL is the relay, http(s)://host:port (several nodes of one
	// deployment separated by commas).
	RelayURL string
	// Sessions is how many identities are registered and connected.
	Sessions int
	// Rate is the envelopes per second sent between random pairs of
	// sessions, paced open loop; 0 sends none (sessions and calls only).
	Rate float64
	// Duration is how long envelopes are sent (and calls held).
	Duration time.Duration
	// Calls is how many concurrent calls are placed, each between two
	// identities of their own (not among Sessions).
	Calls int
	// Video makes the calls video calls (audio only otherwise).
	Video bool
	// Concurrency bounds the registrations and connects in flight
	// (default 32).
	Concurrency int
	// MetricsURL is the relay's Prometheus endpoint, read for
	// process_resident_memory_bytes before and after the sessions open;
	// "" means RelayURL's /metrics, "-" not to read it.
	MetricsURL string
	// Settle is how long the sessions idle before the relay's RSS is read
	// (default 2 s). The Go runtime collects garbage at least every 2
	// minutes even when nothing allocates, so an idle relay's steady state
	// shows after about 150 s.
	Settle time.Duration
	// GCHeadroom, when more than 0, turns the generator's own garbage
	// collection off while it sends: its collections (every ~2 s at 5 000
	// sessions and 10 000 envelopes/s, each taking a core for 0.1-0.4 s on
	// the relay's machine) would show as the relay's latency. It resumes if
	// the generator's memory grows by GCHeadroom bytes meanwhile (a memory
	// limit), and after the sending.
	GCHeadroom int64
	// Progress, if set, gets a line per phase.
	Progress io.Writer
	// HTTPClient is used for registration and metrics (default
	// http.DefaultClient).
	HTTPClient *http.Client
}

// Result is what a load test measured.
type Result struct {
	Relay              string
	Sessions           int // connected
	SessionsWanted     int
	RegisterTime       time.Duration
	ConnectTime        time.Duration
	RSSBefore, RSSIdle uint64        // bytes; 0 when unknown
	Settle             time.Duration // how long the sessions idled before RSSIdle
	// IdleCPU is the relay process's CPU time over the second half of
	// Settle (IdleSpan), the sessions connected and idle: what holding them
	// costs (their keepalives, the relay's timers); IdleSpan is 0 when
	// unknown.
	IdleCPU, IdleSpan  time.Duration
	Sent, Delivered    int64
	Rate               float64
	Duration           time.Duration
	SendTime           time.Duration // from the first envelope due to the last sent
	P50, P90, P99, Max time.Duration
	// Late is how late the generator wrote the envelopes (from their due
	// time to the start of their write: p50, p99, max), and Wire their
	// latency from the start of their write to their arrival (p50, p99,
	// max): when the generator falls behind, Late grows and shows how much
	// of the latency above is the generator's.
	Late, Wire [3]time.Duration
	// GCs is how many garbage collections the generator ran while it sent
	// (with GCHeadroom, only those forced by the memory limit).
	GCs uint32
	// RelayCPU is the relay process's CPU time (user+system) while the
	// envelopes were sent and delivered; 0 when unknown.
	RelayCPU time.Duration
	// GeneratorCPU is the generator's own CPU time over the same span (0
	// when unknown): on the relay's machine it competes with the relay for
	// the cores, and it is part of any latency measured there.
	GeneratorCPU time.Duration
	// Failures counts what did not go as it should, by reason:
	// "register: ...", "connect: ...", "send: ...", "undeliverable: REASON",
	// "relay_error: CODE", "lost" (neither delivered nor refused), "call: ...",
	// and "relay dropped: REASON" (the relay's duet_relay_drops_total, all
	// its sessions, also those of other users).
	Failures map[string]int64
	Calls    *CallResult // nil without calls
}

// RSSPerSession is the relay's resident memory per connected session, from
// before the identities were registered to when the sessions were idle
// (0 when unknown).
func (r *Result) RSSPerSession() float64 {
	if r.RSSBefore == 0 || r.RSSIdle == 0 || r.Sessions == 0 {
		return 0
	}
	return (float64(r.RSSIdle) - float64(r.RSSBefore)) / float64(r.Sessions)
}

// DeliveredRate is the envelopes delivered per second of sending.
func (r *Result) DeliveredRate() float64 {
	if r.SendTime <= 0 {
		return 0
	}
	return float64(r.Delivered) / r.SendTime.Seconds()
}

// Print writes the result as the CLI shows it.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "relay         %s\n", r.Relay)
	fmt.Fprintf(w, "sessions      %d of %d connected (registered in %s, connected in %s)\n",
		r.Sessions, r.SessionsWanted, r.RegisterTime.Round(time.Millisecond), r.ConnectTime.Round(time.Millisecond))
	if per := r.RSSPerSession(); per != 0 {
		fmt.Fprintf(w, "relay RSS     %.1f MiB before, %.1f MiB with the sessions idle for %s: %.1f KiB per session (directory entry included)\n",
			float64(r.RSSBefore)/(1<<20), float64(r.RSSIdle)/(1<<20), r.Settle, per/1024)
	} else {
		fmt.Fprintf(w, "relay RSS     unknown (no process_resident_memory_bytes in the relay's metrics)\n")
	}
	if r.IdleSpan > 0 && r.Sessions > 0 {
		fmt.Fprintf(w, "relay idle    %.2f s of CPU over the last %s of it: %.2f %% of a core, %.2f µs per session per second\n",
			r.IdleCPU.Seconds(), r.IdleSpan, 100*r.IdleCPU.Seconds()/r.IdleSpan.Seconds(),
			float64(r.IdleCPU.Microseconds())/r.IdleSpan.Seconds()/float64(r.Sessions))
	}
	if r.Rate > 0 {
		fmt.Fprintf(w, "envelopes     %d sent at %g/s for %s, %d delivered (%.0f/s)\n",
			r.Sent, r.Rate, r.Duration, r.Delivered, r.DeliveredRate())
		fmt.Fprintf(w, "latency       p50 %s  p90 %s  p99 %s  max %s (from when each was due)\n", ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
		fmt.Fprintf(w, "  written     late by p50 %s  p99 %s  max %s (the generator's pacing)\n", ms(r.Late[0]), ms(r.Late[1]), ms(r.Late[2]))
		fmt.Fprintf(w, "  write->read p50 %s  p99 %s  max %s\n", ms(r.Wire[0]), ms(r.Wire[1]), ms(r.Wire[2]))
		fmt.Fprintf(w, "generator     %d garbage collections of its own while sending\n", r.GCs)
		if r.RelayCPU > 0 && r.Delivered > 0 {
			fmt.Fprintf(w, "relay CPU     %.2f s while sending: %.1f µs per envelope delivered\n",
				r.RelayCPU.Seconds(), float64(r.RelayCPU.Microseconds())/float64(r.Delivered))
		}
		if r.GeneratorCPU > 0 && r.Delivered > 0 {
			fmt.Fprintf(w, "generator CPU %.2f s while sending: %.1f µs per envelope delivered\n",
				r.GeneratorCPU.Seconds(), float64(r.GeneratorCPU.Microseconds())/float64(r.Delivered))
		}
	}
	if r.Calls != nil {
		r.Calls.print(w)
	}
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "failures      none\n")
		return
	}
	keys := make([]string, 0, len(r.Failures))
	for k := range r.Failures {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "failures\n")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %d\n", k, r.Failures[k])
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// failures counts failures by reason, safe for concurrent use.
type failures struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *failures) add(reason string, n int64) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]int64{}
	}
	f.m[reason] += n
	f.mu.Unlock()
}

func (f *failures) snapshot() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps(f.m)
}

func maps(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// member is one identity of the test and its session.
type member struct {
	id    *identity.Identity
	alias identity.Alias
	c     *client.Client
}

// newIdentity makes an identity from fresh random keys: the relay sees the
// same keys a mnemonic would give, without the mnemonic's PBKDF2.
func newIdentity() (*identity.Identity, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &identity.Identity{SigningKey: priv, AgreementKey: x}, nil
}

// errReason is a short, stable reason for an error, to count failures by.
func errReason(err error) string {
	var api *client.APIError
	switch {
	case errors.As(err, &api):
		return fmt.Sprintf("HTTP %d %s", api.Status, api.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, client.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, client.ErrTooManySessions):
		return "too_many_sessions"
	case errors.Is(err, client.ErrNotConnected):
		return "not_connected"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	}
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "too many open files", "broken pipe", "EOF", "i/o timeout"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// parallel runs fn(i) for i in [0, n) on at most conc goroutines.
func parallel(ctx context.Context, n, conc int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// register registers n fresh identities; failed ones are nil.
func register(ctx context.Context, cfg *Config, n int, fails *failures) []*member {
	ms := make([]*member, n)
	parallel(ctx, n, cfg.Concurrency, func(i int) {
		id, err := newIdentity()
		if err != nil {
			fails.add("register: "+errReason(err), 1)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		alias, _, err := client.Register(rctx, cfg.HTTPClient, cfg.RelayURL, id)
		cancel()
		if err != nil {
			fails.add("register: "+errReason(err), 1)
			return
		}
		ms[i] = &member{id: id, alias: alias}
	})
	return slices.DeleteFunc(ms, func(m *member) bool { return m == nil })
}

// connect opens a session for every member with the options of opts(i);
// members whose session fails are removed.
func connect(ctx context.Context, cfg *Config, ms []*member, opts func(i int) client.Options, fails *failures) []*member {
	quiet := slog.New(slog.DiscardHandler)
	parallel(ctx, len(ms), cfg.Concurrency, func(i int) {
		o := opts(i)
		o.RelayURL, o.Identity, o.Alias, o.HTTPClient, o.Logger = cfg.RelayURL, ms[i].id, ms[i].alias, cfg.HTTPClient, quiet
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := client.Connect(cctx, o)
		cancel()
		if err != nil {
			fails.add("connect: "+errReason(err), 1)
			return
		}
		ms[i].c = c
	})
	return slices.DeleteFunc(ms, func(m *member) bool { return m.c == nil })
}

func closeAll(ms []*member) {
	var wg sync.WaitGroup
	for _, m := range ms {
		if m.c != nil {
			wg.Go(func() { m.c.Close() })
		}
	}
	wg.Wait()
}

// idPrefix starts the id of every envelope of the test; the rest is its
// sequence number.
const idPrefix = "lt"

// maxSealed bounds the envelopes sealed before a run; a longer run sends
// them again in turn (with new ids).
const maxSealed = 20000

// run is one paced run: the due time of every envelope and whether it
// arrived, and the latencies of those that did.
type run struct {
	start     time.Time
	rate      float64
	delivered []atomic.Bool
	written   []atomic.Int64 // when each envelope's write started, ns after start
	lat       []atomic.Int64 // by arrival order
	wire      []atomic.Int64 // from the write's start, by arrival order
	nLat      atomic.Int64
	accounted atomic.Int64 // delivered or refused
	fails     *failures
}

func (r *run) due(k int) time.Time {
	return r.start.Add(time.Duration(float64(k) / r.rate * float64(time.Second)))
}

// seq is the sequence number of an envelope id of this test.
func seq(id string) (int, bool) {
	s, ok := strings.CutPrefix(id, idPrefix)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(s)
	return k, err == nil
}

func (r *run) received(e *wire.Envelope) {
	k, ok := seq(e.ID)
	if !ok || k >= len(r.delivered) || r.delivered[k].Swap(true) {
		return
	}
	now := time.Since(r.start)
	i := r.nLat.Add(1) - 1
	r.lat[i].Store(int64(now - r.due(k).Sub(r.start)))
	r.wire[i].Store(int64(now) - r.written[k].Load())
	r.accounted.Add(1)
}

func (r *run) refused(id, reason string) {
	k, ok := seq(id)
	if !ok || k >= len(r.delivered) || r.delivered[k].Swap(true) {
		return
	}
	r.fails.add(reason, 1)
	r.accounted.Add(1)
}

// Run runs the load test described by cfg and returns what it measured. It
// returns an error only when the test could not run at all (bad
// configuration, no session connected); failures of single registrations,
// sessions, envelopes or calls are counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Sessions < 2 && cfg.Rate > 0 {
		return nil, fmt.Errorf("loadtest: --sessions %d: envelopes need at least 2 sessions", cfg.Sessions)
	}
	if cfg.Rate < 0 || cfg.Duration <= 0 || cfg.Calls < 0 || cfg.Sessions < 0 {
		return nil, errors.New("loadtest: sessions, rate and calls must not be negative and the duration must be more than 0")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	var progressMu sync.Mutex // the calls report from their own goroutine
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			progressMu.Lock()
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
			progressMu.Unlock()
		}
	}
	metricsURL := cfg.MetricsURL
	if metricsURL == "" {
		metricsURL = strings.TrimRight(strings.Split(cfg.RelayURL, ",")[0], "/") + "/metrics"
	}
	res := &Result{Relay: cfg.RelayURL, SessionsWanted: cfg.Sessions, Rate: cfg.Rate, Duration: cfg.Duration}
	fails := &failures{}
	metrics := func() relayMetrics {
		if metricsURL == "-" {
			return relayMetrics{}
		}
		m, _ := readMetrics(ctx, cfg.HTTPClient, metricsURL)
		return m
	}
	m0 := metrics()
	res.RSSBefore = m0.rss

	t0 := time.Now()
	progress("registering %d identities", cfg.Sessions)
	members := register(ctx, &cfg, cfg.Sessions, fails)
	res.RegisterTime = time.Since(t0)

	cur := &atomic.Pointer[run]{}
	t0 = time.Now()
	progress("connecting %d sessions", len(members))
	members = connect(ctx, &cfg, members, func(int) client.Options {
		return client.Options{
			OnEnvelope: func(e *wire.Envelope) {
				if r := cur.Load(); r != nil {
					r.received(e)
				}
			},
			OnUndeliverable: func(u client.Undeliverable) {
				if r := cur.Load(); r != nil {
					r.refused(u.ID, "undeliverable: "+u.Reason)
				}
			},
			OnRelayError: func(e client.RelayError) {
				if r := cur.Load(); r != nil {
					r.refused(e.ID, "relay_error: "+e.Code)
				}
			},
		}
	}, fails)
	defer closeAll(members)
	res.ConnectTime = time.Since(t0)
	res.Sessions = len(members)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if cfg.Sessions > 0 && len(members) == 0 {
		res.Failures = fails.snapshot()
		return res, fmt.Errorf("loadtest: no session connected to %s (%v)", cfg.RelayURL, res.Failures)
	}
	if res.RSSBefore != 0 {
		// Let the relay's writers and the Go runtime settle before reading
		// the idle figure.
		res.Settle = cfg.Settle
		if res.Settle <= 0 {
			res.Settle = 2 * time.Second
		}
		progress("sessions idle for %s", res.Settle)
		wait := func(d time.Duration) bool {
			select {
			case <-time.After(d):
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !wait(res.Settle - res.Settle/2) {
			return nil, ctx.Err()
		}
		cpu0 := metrics().cpu
		if !wait(res.Settle / 2) {
			return nil, ctx.Err()
		}
		m := metrics()
		res.RSSIdle = m.rss
		if cpu0 > 0 && m.cpu >= cpu0 {
			res.IdleCPU = time.Duration((m.cpu - cpu0) * float64(time.Second))
			res.IdleSpan = res.Settle / 2
		}
	}

	var pool []*wire.Envelope
	if cfg.Rate > 0 && len(members) >= 2 {
		total := int(cfg.Rate * cfg.Duration.Seconds())
		progress("sealing %d envelopes", min(total, maxSealed))
		var err error
		if pool, err = seal(ctx, members, min(total, maxSealed), cfg.Concurrency); err != nil {
			return nil, err
		}
	}

	var callsDone chan *CallResult
	if cfg.Calls > 0 {
		callsDone = make(chan *CallResult, 1)
		go func() { callsDone <- runCalls(ctx, &cfg, progress) }()
	}
	if len(pool) > 0 {
		progress("sending %g envelopes/s for %s", cfg.Rate, cfg.Duration)
		cpu0 := metrics().cpu
		own0, ownErr := proccpu.Self()
		resume := pauseGC(cfg.GCHeadroom)
		sendRun(ctx, &cfg, members, pool, cur, fails, res)
		res.GCs = resume()
		if own1, err := proccpu.Self(); ownErr == nil && err == nil {
			res.GeneratorCPU = own1 - own0
		}
		if cpu1 := metrics().cpu; cpu0 > 0 && cpu1 > cpu0 {
			res.RelayCPU = time.Duration((cpu1 - cpu0) * float64(time.Second))
		}
	}
	if callsDone != nil {
		res.Calls = <-callsDone
		for k, v := range res.Calls.failures {
			fails.add(k, v)
		}
	}
	// What the relay itself dropped meanwhile, by its reasons (PROTOCOL
	// §9.2): the cause of envelopes counted as lost here.
	for reason, v := range metrics().drops {
		if d := v - m0.drops[reason]; d > 0 {
			fails.add("relay dropped: "+reason, int64(d))
		}
	}
	res.Failures = fails.snapshot()
	return res, nil
}

// pauseGC turns garbage collection off, unless headroom is 0, with a memory
// limit headroom bytes above what the process uses now; the function it
// returns restores both and returns the collections run in between.
func pauseGC(headroom int64) func() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n0 := ms.NumGC
	pct, limit := -1, int64(-1)
	if headroom > 0 {
		pct = debug.SetGCPercent(-1)
		limit = debug.SetMemoryLimit(int64(min(ms.Sys, math.MaxInt64/2)) + min(headroom, math.MaxInt64/2))
	}
	return func() uint32 {
		if headroom > 0 {
			debug.SetGCPercent(pct)
			debug.SetMemoryLimit(limit)
		}
		runtime.ReadMemStats(&ms)
		return ms.NumGC - n0
	}
}

// seal seals n call_ice envelopes between random pairs of members, on
// conc goroutines (a pair's session key is derived once).
func seal(ctx context.Context, members []*member, n, conc int) ([]*wire.Envelope, error) {
	pool := make([]*wire.Envelope, n)
	var mu sync.Mutex
	sessions := map[[2]int]*wire.Session{}
	session := func(a, b int) (*wire.Session, error) {
		mu.Lock()
		s, ok := sessions[[2]int{a, b}]
		mu.Unlock()
		if ok {
			return s, nil
		}
		src, dst := members[a].id, members[b].id
		dstPub := dst.PublicKeys()
		key, err := wire.SessionKey(src.AgreementKey, src.SigningKey.Public().(ed25519.PublicKey), dstPub.Signing, dstPub.Agreement)
		if err != nil {
			return nil, err
		}
		s, err = wire.NewSession(wire.SessionConfig{SigningKey: src.SigningKey, PeerSigningKey: dstPub.Signing, Key: key})
		if err != nil {
			return nil, err
		}
		mu.Lock()
		sessions[[2]int{a, b}] = s
		mu.Unlock()
		return s, nil
	}
	var firstErr atomic.Value
	mid, mline := "0", 0
	parallel(ctx, n, conc, func(i int) {
		a := mrand.IntN(len(members))
		b := mrand.IntN(len(members) - 1)
		if b >= a {
			b++
		}
		s, err := session(a, b)
		if err == nil {
			var e *wire.Envelope
			e, err = s.Seal(wire.Message{
				Type: wire.TypeCallICE, From: members[a].alias, To: members[b].alias, CallID: "loadtest",
				Body: &wire.ICEPayload{
					Candidate: fmt.Sprintf("candidate:%d 1 udp 2130706431 192.0.2.%d %d typ host", i, i%250+1, 10000+i%50000),
					SDPMid:    &mid, SDPMLine: &mline,
				},
			})
			pool[i] = e
		}
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
		}
	})
	if err, ok := firstErr.Load().(error); ok {
		return nil, fmt.Errorf("loadtest: sealing envelopes: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return pool, nil
}

// sendRun sends rate*duration envelopes from the pool, each at its due time
// (open loop), and waits for them to be delivered or refused.
func sendRun(ctx context.Context, cfg *Config, members []*member, pool []*wire.Envelope, cur *atomic.Pointer[run], fails *failures, res *Result) {
	total := int(cfg.Rate * cfg.Duration.Seconds())
	byAlias := make(map[identity.Alias]*client.Client, len(members))
	for _, m := range members {
		byAlias[m.alias] = m.c
	}
	r := &run{
		rate:      cfg.Rate,
		delivered: make([]atomic.Bool, total),
		written:   make([]atomic.Int64, total),
		lat:       make([]atomic.Int64, total),
		wire:      make([]atomic.Int64, total),
		fails:     fails,
		start:     time.Now().Add(10 * time.Millisecond),
	}
	cur.Store(r)
	// Enough senders that one blocked on a slow write does not hold the
	// others back.
	const senders = 64
	var next, sent atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= total || ctx.Err() != nil {
					return
				}
				if d := time.Until(r.due(k)); d > 0 {
					time.Sleep(d)
				}
				e := *pool[k%len(pool)]
				e.ID = idPrefix + strconv.Itoa(k)
				r.written[k].Store(int64(time.Since(r.start)))
				err := byAlias[e.From].Send(ctx, &e)
				sent.Add(1)
				if err != nil {
					r.refused(e.ID, "send: "+errReason(err))
				}
			}
		})
	}
	wg.Wait()
	res.SendTime = time.Since(r.start)
	res.Sent = sent.Load()
	// Wait for the stragglers: until every envelope is accounted for, or
	// nothing moved for 5 s.
	last, lastChange := r.accounted.Load(), time.Now()
	for r.accounted.Load() < res.Sent && time.Since(lastChange) < 5*time.Second && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		if a := r.accounted.Load(); a != last {
			last, lastChange = a, time.Now()
		}
	}
	cur.Store(nil)
	n := int(r.nLat.Load())
	res.Delivered = int64(n)
	if lost := res.Sent - r.accounted.Load(); lost > 0 {
		fails.add("lost", lost)
	}
	late := make([]atomic.Int64, res.Sent)
	for k := range late {
		late[k].Store(r.written[k].Load() - int64(r.due(k).Sub(r.start)))
	}
	d := percentiles(late)
	res.Late = [3]time.Duration{d[0], d[2], d[3]}
	if n == 0 {
		return
	}
	l := percentiles(r.lat[:n])
	res.P50, res.P90, res.P99, res.Max = l[0], l[1], l[2], l[3]
	w := percentiles(r.wire[:n])
	res.Wire = [3]time.Duration{w[0], w[2], w[3]}
}

// percentiles is p50, p90, p99 and max of v (zero when v is empty).
func percentiles(v []atomic.Int64) (out [4]time.Duration) {
	n := len(v)
	if n == 0 {
		return out
	}
	l := make([]int64, n)
	for i := range l {
		l[i] = v[i].Load()
	}
	slices.Sort(l)
	pct := func(p int) time.Duration { return time.Duration(l[min(n-1, n*p/100)]) }
	return [4]time.Duration{pct(50), pct(90), pct(99), time.Duration(l[n-1])}
}
