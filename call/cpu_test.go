package call

import (
	"time"

	"github.com/duetcall/duet/internal/proccpu"
)

// processCPU is the CPU time (user and system) this process has used; -1
// when the system cannot tell.
func processCPU() time.Duration {
	d, err := proccpu.Self()
	if err != nil {
		return -1
	}
	return d
}
