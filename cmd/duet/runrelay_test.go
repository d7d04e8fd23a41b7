package main

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
)

// runningRelay is `duet relay` (runRelay) running inside the test.
type runningRelay struct {
	stdout, stderr syncbuf.Buffer
	cancel         context.CancelFunc
	done           chan int
	once           sync.Once
	code           int
}

// startRunRelay runs runRelay with args (no environment) until stop or the
// end of the test.
func startRunRelay(t *testing.T, args ...string) *runningRelay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningRelay{cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- runRelay(ctx, args, &r.stdout, &r.stderr, mapLookup(nil)) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the relay's context, as a signal does, and returns its exit
// code once it has returned.
func (r *runningRelay) stop() int {
	r.once.Do(func() {
		r.cancel()
		r.code = <-r.done
	})
	return r.code
}

// waitLog waits until re matches the relay's log (stderr) and returns its
// submatches; the test fails when the relay exits first or after 30 s.
func (r *runningRelay) waitLog(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(r.stderr.String()); m != nil {
			return m
		}
		select {
		case code := <-r.done:
			r.done <- code // for stop
			t.Fatalf("relay exited with %d before its log matched %s: %s", code, re, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay log does not match %s within 30 s: %s", re, r.stderr.String())
		}
	}
}
