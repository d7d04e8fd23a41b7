package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/duetcall/duet/internal/loadtest"
)

// loadtestUsage is the help of duet loadtest.
func loadtestUsage() string {
	return `Usage:
  duet loadtest [--sessions N] [--rate R] [--duration D] [--calls M] [--video]
                [--concurrency C] [--settle S] [--gc-headroom SIZE]
                [--metrics URL] [--relay URL]

Load-tests a relay (any URL: a local one or a deployment): registers N fresh
identities, opens one authenticated session for each, then sends sealed
call_ice envelopes between random pairs of them at R per second for D, each
at its due time (open loop: a relay that falls behind shows in the latency,
which counts from when the envelope was due). It prints the sessions
connected, the envelopes delivered per second, latency percentiles, failures
by reason and, when the relay's /metrics shows process_resident_memory_bytes
(duet relay's does), the relay's resident memory per session (from before
the registrations to the sessions idle for S: the directory entry is
included), its CPU time while the sessions idle (process_cpu_seconds_total
over the second half of S: their keepalives, every 15 s from each session,
and the relay's timers) and its CPU time per envelope delivered (over the
sending).
With --calls M it also places M concurrent real calls between identities of
their own (pion peers sending the built-in test media), holds them for D and
prints the setup-time percentiles and the media received.

The envelopes are sealed before the run (at most 20,000 distinct, sent again
in turn with new ids; their recipients do not open them). The load generator
needs a file descriptor per session: on one machine, the relay and the load
test each need N. Envelopes count against the relay's per-sender rate limit
(50/s): keep R/N under it or see relay_error: rate_limited. While it sends,
the generator collects no garbage of its own (its collections, a core for
0.1-0.4 s every ~2 s at 10,000 envelopes/s, would show as the relay's
latency) unless its memory grows by --gc-headroom; it prints how many it
ran. Besides the latency from each envelope's due
time, it prints how late it wrote them (its own pacing: when this grows, the
generator fell behind, and the latency above includes that) and the latency
from each write to its arrival.

Flags:
  --sessions N       identities and sessions (default 1000)
  --rate R           envelopes per second, 0 for none (default 1000)
  --duration D       how long to send envelopes and hold calls (default 10s)
  --calls M          concurrent calls (default 0)
  --video            video calls (default audio only)
  --concurrency C    registrations and connects in flight (default 32)
  --settle S         how long the sessions idle before the relay's RSS is
                     read, its idle CPU measured over the second half
                     (default 2s; the Go runtime collects garbage at
                     least every 2 minutes, so 150s shows an idle relay's
                     steady state, and 60s or more spans several
                     keepalives of every session)
  --gc-headroom SIZE how much the generator's memory may grow while it
                     sends before it collects garbage (default 1GiB, about
                     18 s at 10,000 envelopes/s; 0 collects as usual)
  --metrics URL      the relay's Prometheus endpoint (default RELAY/metrics;
                     - not to read it)
  --relay URL[,URL]  the relay [DUET_RELAY] (default ` + relayDefault() + `)

Example:
  duet loadtest --relay http://127.0.0.1:8080 --sessions 5000 --rate 10000 --duration 10s
`
}

func runLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("duet loadtest", flag.ContinueOnError)
	var cfg loadtest.Config
	fs.StringVar(&cfg.RelayURL, "relay", relayDefault(), "relay URL")
	fs.IntVar(&cfg.Sessions, "sessions", 1000, "identities and sessions")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "envelopes per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long")
	fs.IntVar(&cfg.Calls, "calls", 0, "concurrent calls")
	fs.BoolVar(&cfg.Video, "video", false, "video calls")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "registrations and connects in flight")
	fs.StringVar(&cfg.MetricsURL, "metrics", "", "the relay's Prometheus endpoint")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "how long the sessions idle before the relay's RSS is read")
	gcHeadroom := fs.String("gc-headroom", "1GiB", "memory the generator may add while sending before it collects garbage")
	pos, code, done := parseFlags(fs, args, loadtestUsage(), stdout, stderr)
	if done {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(stderr, "%s\n(see duet loadtest --help)\n", argsError("duet loadtest", "", pos))
		return 2
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "duet loadtest: "+format+"\n(see duet loadtest --help)\n", a...)
		return 2
	}
	switch {
	case cfg.Sessions < 0:
		return bad("--sessions %d: want 0 or more", cfg.Sessions)
	case cfg.Rate < 0:
		return bad("--rate %g: want 0 or more envelopes per second", cfg.Rate)
	case cfg.Rate > 0 && cfg.Sessions < 2:
		return bad("--rate %g needs --sessions 2 or more (envelopes go between pairs)", cfg.Rate)
	case cfg.Duration <= 0:
		return bad("--duration %v: want more than 0, e.g. 10s", cfg.Duration)
	case cfg.Calls < 0:
		return bad("--calls %d: want 0 or more", cfg.Calls)
	case cfg.Concurrency <= 0:
		return bad("--concurrency %d: want 1 or more", cfg.Concurrency)
	case cfg.Settle <= 0:
		return bad("--settle %v: want more than 0, e.g. 150s", cfg.Settle)
	case cfg.Sessions == 0 && cfg.Calls == 0:
		return bad("nothing to do: give --sessions or --calls")
	}
	var err error
	if cfg.GCHeadroom, err = parseSize(*gcHeadroom); err != nil {
		return bad("--gc-headroom: %v: want a size such as 1GiB, or 0", err)
	}
	cfg.Progress = stderr
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "duet loadtest: %v\n", err)
		return 1
	}
	res.Print(stdout)
	return 0
}
