//go:build !unix && !windows

package proccpu

import "time"

// Self is this process's CPU time so far: ErrUnsupported here.
func Self() (time.Duration, error) { return 0, ErrUnsupported }
