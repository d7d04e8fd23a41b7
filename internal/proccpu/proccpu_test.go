package proccpu

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// utime 250, stime 50 ticks; a command name with a space and parentheses.
	line := "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10"
	got, err := parseStat(line)
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStat = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"", "42 no paren", "42 (x) S 1 2", "42 (x) S 1 42 42 0 -1 4194304 100 0 0 0 x 50 0", "42 (x) S 1 42 42 0 -1 4194304 100 0 0 0 -5 50 0"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestSelfAndOf(t *testing.T) {
	self0, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until this process has used 50 ms more (the clock, not a
	// machine-speed figure: CPU time only grows while it spins).
	for {
		d, err := Self()
		if err != nil {
			t.Fatal(err)
		}
		if d >= self0+50*time.Millisecond {
			break
		}
	}
	if runtime.GOOS != "linux" {
		if _, err := Of(os.Getpid()); err == nil {
			t.Fatal("Of: no error off Linux")
		}
		return
	}
	of, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if of < 50*time.Millisecond-time.Second/userHZ {
		t.Errorf("Of(self) = %v after spinning 50 ms of CPU", of)
	}
	if _, err := Of(-1); err == nil {
		t.Error("Of(-1): no error")
	}
}
