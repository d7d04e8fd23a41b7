package main

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestRelayLimitFlags(t *testing.T) {
	c, err := parseRelayConfig([]string{"--max-sessions-per-alias", "3", "--queue-budget", "64MiB"}, mapLookup(nil))
	if err != nil || c.maxSessions != 3 || c.queueBudget != 64<<20 {
		t.Fatalf("got %d, %d, %v; want 3, 64 MiB", c.maxSessions, c.queueBudget, err)
	}
	c, err = parseRelayConfig(nil, mapLookup(map[string]string{"DUET_QUEUE_BUDGET": "2G", "DUET_MAX_SESSIONS_PER_ALIAS": "1"}))
	if err != nil || c.maxSessions != 1 || c.queueBudget != 2<<30 {
		t.Fatalf("from the environment: %d, %d, %v", c.maxSessions, c.queueBudget, err)
	}
	for _, args := range [][]string{
		{"--max-sessions-per-alias", "0"}, {"--max-sessions-per-alias", "x"},
		{"--queue-budget", "100"}, {"--queue-budget", "1TiB"}, {"--queue-budget", "-5MiB"},
		{"--turn-allocations", "0"}, {"--register-pow", "29"}, {"--register-pow", "-1"}, {"--trusted-proxies", "10.0.0.0/8,proxy.example"},
	} {
		if _, err := parseRelayConfig(args, mapLookup(nil)); !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

func TestRelayHTTPFlags(t *testing.T) {
	c, err := parseRelayConfig([]string{"--trusted-proxies", "10.0.0.0/8, 192.0.2.7", "--register-pow", "16", "--metrics-addr", "127.0.0.1:9100", "--pprof-addr", "127.0.0.1:6060",
		"--turn-user-allocations", "4", "--turn-allocations", "100"}, mapLookup(nil))
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if err != nil || !slices.Equal(c.trustedProxies, want) || c.registerPoW != 16 || c.metricsAddr != "127.0.0.1:9100" ||
		c.turnUserAllocs != 4 || c.turnAllocs != 100 || c.pprofAddr != "127.0.0.1:6060" {
		t.Fatalf("got %v %d %q %v", c.trustedProxies, c.registerPoW, c.metricsAddr, err)
	}
}

// TestRelayMetricsAddr: with --metrics-addr, /metrics is served there and
// not on --addr.
func TestRelayMetricsAddr(t *testing.T) {
	r := startRunRelay(t, "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--no-turn", "--metrics-addr", "127.0.0.1:0")
	m := r.waitLog(t, regexp.MustCompile(`msg="relay: listening" addr=(\S+) .*metrics=(\S+)`))
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(m[2]); code != 200 || !strings.Contains(body, "duet_relay_sessions") {
		t.Errorf("%s: %d", m[2], code)
	}
	if code, body := get("http://" + m[1] + "/metrics"); strings.Contains(body, "duet_relay_sessions") {
		t.Errorf("/metrics on --addr: %d, still the metrics", code)
	}
}

// TestRelayPprofAddr: --pprof-addr serves Go's profiles there, and the
// public address does not.
func TestRelayPprofAddr(t *testing.T) {
	r := startRunRelay(t, "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--no-turn", "--pprof-addr", "127.0.0.1:0")
	p := r.waitLog(t, regexp.MustCompile(`msg="relay: serving profiles" pprof=(\S+)`))
	m := r.waitLog(t, regexp.MustCompile(`msg="relay: listening" addr=(\S+)`))
	resp, err := http.Get(p[1] + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("%s: %d %.80q", p[1], resp.StatusCode, b)
	}
	resp, err = http.Get("http://" + m[1] + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("profiles on --addr: %d", resp.StatusCode)
	}
}
