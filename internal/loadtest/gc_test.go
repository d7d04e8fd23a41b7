package loadtest

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// gcPercent reads GOGC's current value.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// TestPauseGC: with a headroom, collection is off (and a memory limit set)
// until resume, which restores both and counts the collections between;
// with none, nothing changes.
func TestPauseGC(t *testing.T) {
	before, limit := gcPercent(), debug.SetMemoryLimit(-1)
	resume := pauseGC(1 << 30)
	if p := gcPercent(); p != -1 {
		t.Errorf("GOGC while paused = %d, want -1 (off)", p)
	}
	if l := debug.SetMemoryLimit(-1); l == limit {
		t.Errorf("no memory limit while paused (%d)", l)
	}
	runtime.GC()
	if n := resume(); n < 1 {
		t.Errorf("resume counted %d collections, want the forced one", n)
	}
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != before || l != limit {
		t.Errorf("after resume GOGC %d, limit %d; want %d, %d restored", p, l, before, limit)
	}
	resume = pauseGC(0)
	if p := gcPercent(); p != before {
		t.Errorf("GOGC with no headroom = %d, want %d unchanged", p, before)
	}
	resume()
}
