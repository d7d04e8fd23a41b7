package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/wire"
)

// CallResult is what the calls of a load test measured.
type CallResult struct {
	Wanted, Connected int
	// Setup is from Call to the caller's connected state, over the calls
	// that connected.
	P50, P90, P99, Max time.Duration
	// Media received on both sides of every call, while connected.
	BytesReceived                            uint64
	VideoFramesReceived, AudioFramesReceived uint64
	failures                                 map[string]int64
}

func (c *CallResult) print(w io.Writer) {
	fmt.Fprintf(w, "calls         %d of %d connected; setup p50 %s  p90 %s  p99 %s  max %s\n",
		c.Connected, c.Wanted, ms(c.P50), ms(c.P90), ms(c.P99), ms(c.Max))
	fmt.Fprintf(w, "call media    received %.1f MB, %d video and %d audio frames (both sides of every call)\n",
		float64(c.BytesReceived)/1e6, c.VideoFramesReceived, c.AudioFramesReceived)
}

// party is one side of the test's calls.
type party struct {
	m   *member
	mod *call.Module
	mu  sync.Mutex // mod is set after the client connects
}

func (p *party) options() client.Options {
	with := func(fn func(*call.Module)) {
		p.mu.Lock()
		m := p.mod
		p.mu.Unlock()
		if m != nil {
			fn(m)
		}
	}
	return client.Options{
		OnEnvelope:      func(e *wire.Envelope) { with(func(m *call.Module) { m.HandleEnvelope(e) }) },
		OnUndeliverable: func(u client.Undeliverable) { with(func(m *call.Module) { m.HandleUndeliverable(u) }) },
		OnRelayError:    func(e client.RelayError) { with(func(m *call.Module) { m.HandleRelayError(e) }) },
	}
}

// runCalls places cfg.Calls concurrent calls between fresh pairs of
// identities, holds each for cfg.Duration once connected and hangs up.
func runCalls(ctx context.Context, cfg *Config, progress func(string, ...any)) *CallResult {
	res := &CallResult{Wanted: cfg.Calls}
	fails := &failures{}
	defer func() { res.failures = fails.snapshot() }()
	progress("registering and connecting %d call parties", 2*cfg.Calls)
	ms := register(ctx, cfg, 2*cfg.Calls, fails)
	ms = ms[:len(ms)/2*2]
	parties := make([]*party, len(ms))
	for i := range ms {
		parties[i] = &party{m: ms[i]}
	}
	connected := connect(ctx, cfg, ms, func(i int) client.Options { return parties[i].options() }, fails)
	defer closeAll(connected)
	quiet := slog.New(slog.DiscardHandler)
	for _, p := range parties {
		if p.m.c == nil {
			continue
		}
		// Every party answers the calls it gets, at once.
		mod := call.New(call.Options{Signaler: p.m.c, Logger: quiet, OnIncoming: func(in call.Incoming) {
			p.mu.Lock()
			m := p.mod
			p.mu.Unlock()
			go m.AnswerCall(ctx, in.CallID)
		}})
		p.mu.Lock()
		p.mod = mod
		p.mu.Unlock()
	}
	defer func() {
		for _, p := range parties {
			if p.mod != nil {
				p.mod.Close()
			}
		}
	}()
	progress("placing %d calls", cfg.Calls)
	var mu sync.Mutex
	var setups []time.Duration
	var wg sync.WaitGroup
	for i := 0; i+1 < len(parties); i += 2 {
		a, b := parties[i], parties[i+1]
		if a.mod == nil || b.mod == nil {
			continue
		}
		wg.Go(func() {
			setup, reason := holdCall(ctx, cfg, a, b)
			if reason != "" {
				fails.add("call: "+reason, 1)
			}
			sa, sb := a.mod.Stats(), b.mod.Stats()
			mu.Lock()
			defer mu.Unlock()
			if setup > 0 {
				setups = append(setups, setup)
			}
			for _, s := range []call.Stats{sa, sb} {
				res.BytesReceived += s.BytesReceived
				res.VideoFramesReceived += s.VideoFramesReceived
				res.AudioFramesReceived += s.AudioFramesReceived
			}
		})
	}
	wg.Wait()
	res.Connected = len(setups)
	if n := len(setups); n > 0 {
		slices.Sort(setups)
		pct := func(p int) time.Duration { return setups[min(n-1, n*p/100)] }
		res.P50, res.P90, res.P99, res.Max = pct(50), pct(90), pct(99), setups[n-1]
	}
	return res
}

// holdCall has a call b, holds the call for cfg.Duration once connected and
// hangs up. It returns the setup time (0 if it did not connect) and, for a
// call that failed, why.
func holdCall(ctx context.Context, cfg *Config, a, b *party) (setup time.Duration, reason string) {
	sub := a.mod.State().Subscribe()
	defer sub.Unsubscribe()
	start := time.Now()
	if err := a.mod.Call(ctx, b.m.alias, call.Media{Audio: true, Video: cfg.Video}); err != nil {
		return 0, errReason(err)
	}
	timeout := time.After(30 * time.Second)
	for setup == 0 {
		select {
		case st, ok := <-sub.C():
			if !ok {
				return 0, "module closed"
			}
			if st.State == call.StateConnected {
				setup = time.Since(start)
			} else if st.State.Terminal() {
				return 0, describe(st)
			}
		case <-timeout:
			a.mod.Hangup()
			return 0, "not connected within 30s"
		case <-ctx.Done():
			a.mod.Hangup()
			return 0, "cancelled"
		}
	}
	hold := time.NewTimer(cfg.Duration)
	defer hold.Stop()
	for {
		select {
		case st, ok := <-sub.C():
			if !ok {
				return setup, "module closed"
			}
			if st.State.Terminal() {
				return setup, "ended early: " + describe(st)
			}
		case <-hold.C:
			a.mod.Hangup()
			return setup, ""
		case <-ctx.Done():
			a.mod.Hangup()
			return setup, ""
		}
	}
}

func describe(st call.Status) string {
	if st.Reason == "" {
		return string(st.State)
	}
	return fmt.Sprintf("%s (%s)", st.State, st.Reason)
}

// relayMetrics are what the load test reads from the relay's /metrics.
type relayMetrics struct {
	rss   uint64             // process_resident_memory_bytes
	cpu   float64            // process_cpu_seconds_total
	drops map[string]float64 // duet_relay_drops_total by reason
}

// readMetrics reads the relay's process_resident_memory_bytes,
// process_cpu_seconds_total and duet_relay_drops_total from a Prometheus
// endpoint (zero for what it does not show).
func readMetrics(ctx context.Context, hc *http.Client, url string) (m relayMetrics, err error) {
	m.drops = map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("loadtest: %s answered %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_cpu_seconds_total":
			m.cpu = f
		case name == "process_resident_memory_bytes":
			m.rss = uint64(f)
		case strings.HasPrefix(name, `duet_relay_drops_total{reason="`):
			m.drops[strings.TrimSuffix(strings.TrimPrefix(name, `duet_relay_drops_total{reason="`), `"}`)] = f
		}
	}
	return m, sc.Err()
}
