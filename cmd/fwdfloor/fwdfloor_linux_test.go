//go:build linux

package main

import (
	"os"
	"testing"
	"time"
)

// The test binary is the forwarder of its own child processes, as the
// command is of its.
func TestMain(m *testing.M) {
	if v := os.Getenv(serveEnv); v != "" {
		if err := serveChild(v); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func TestForwardersDeliverEveryFrame(t *testing.T) {
	for _, fwd := range []string{"poller", "goroutines"} {
		t.Run(fwd, func(t *testing.T) {
			cfg := config{forwarder: fwd, sessions: 50, rate: 1000, duration: 300 * time.Millisecond, size: 64, genCPU: 20 * time.Microsecond}
			r, err := run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.sent != 300 || r.delivered != r.sent {
				t.Fatalf("%d of %d frames delivered, want 300 of 300", r.delivered, r.sent)
			}
			if r.p50 <= 0 || r.p99 < r.p50 {
				t.Fatalf("latency p50 %v, p99 %v: want 0 < p50 <= p99", r.p50, r.p99)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := run(config{forwarder: "poller", sessions: 1, rate: 1, duration: time.Millisecond, size: header - 1}); err == nil {
		t.Fatal("a frame shorter than its header: no error")
	}
	if err := serveChild("poller x"); err == nil {
		t.Fatal("a malformed child spec: no error")
	}
	if err := serveFloor("nonesuch", 0, 64); err == nil {
		t.Fatal("an unknown forwarder: no error")
	}
}
