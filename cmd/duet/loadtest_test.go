package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/goleak"

	"github.com/duetcall/duet/relay"
)

// startMetricsRelay is startTestRelay with the process collector in the
// relay's registry, as duet relay has it: /metrics shows
// process_resident_memory_bytes.
func startMetricsRelay(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return startTestRelayWith(t, relay.Options{Registry: reg})
}

// TestLoadtest runs duet loadtest with small numbers against a real relay:
// every session connects, every envelope is delivered and timed, the call
// connects and carries media, and the relay's RSS per session is read from
// its /metrics. (Its figures are not checked: make targets measure.)
func TestLoadtest(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	// Registered first, so it runs after the relay's shutdown.
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, leaks)
		}
	})
	relayURL := startMetricsRelay(t)
	code, out, errOut := runCLI(t, "", "loadtest", "--relay", relayURL, "--sessions", "20", "--rate", "100", "--duration", "1s", "--calls", "1")
	if code != 0 {
		t.Fatalf("duet loadtest = %d:\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"sessions      20 of 20 connected",
		"envelopes     100 sent at 100/s for 1s, 100 delivered",
		"KiB per session (directory entry included)",
		"relay idle    ",
		"µs per envelope delivered",
		"relay CPU     ",
		"generator CPU ",
		"garbage collections of its own while sending",
		"calls         1 of 1 connected",
		"failures      none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`latency       p50 ([0-9.]+) ms  p90 ([0-9.]+) ms  p99 ([0-9.]+) ms  max ([0-9.]+) ms`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no latency line:\n%s", out)
	}
	var last float64
	for _, s := range m[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if v <= 0 || v < last {
			t.Errorf("latency percentiles %q: want positive and non-decreasing", m[1:])
		}
		last = v
	}
	if a := regexp.MustCompile(`received [0-9.]+ MB, 0 video and ([0-9]+) audio frames`).FindStringSubmatch(out); a == nil || a[1] == "0" {
		t.Errorf("no audio received in the call:\n%s", out)
	}
}

// TestLoadtestArguments: bad arguments exit 2 naming the problem; a relay
// that is not there fails the run (exit 1) with the reason.
func TestLoadtestArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--sessions", "1"}, {"--rate", "-1"}, {"--duration", "0s"}, {"--sessions", "0"}, {"--calls", "-2"}, {"--settle", "0s"}, {"--gc-headroom", "lots"}, {"--gc-headroom", "-1"}, {"extra"},
	} {
		code, out, errOut := runCLI(t, "", append([]string{"loadtest", "--relay", "http://127.0.0.1:9"}, args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, "duet loadtest") {
			t.Errorf("loadtest %q = %d, stdout %q, stderr %q; want 2 and the problem on stderr", args, code, out, errOut)
		}
	}
	code, _, errOut := runCLI(t, "", "loadtest", "--relay", "http://127.0.0.1:9", "--sessions", "2", "--duration", "1s")
	if code != 1 || !strings.Contains(errOut, "no session connected") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("loadtest against nothing = %d, stderr %q; want 1 naming the failure", code, errOut)
	}
}
