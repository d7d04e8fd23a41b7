package relay

import (
	"testing"
	"time"

	"github.com/duetcall/duet/internal/proccpu"
)

// processCPU is the CPU time (user+system) this process used so far.
func processCPU(b testing.TB) time.Duration {
	d, err := proccpu.Self()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
