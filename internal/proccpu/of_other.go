//go:build !linux

package proccpu

import "time"

// Of is process pid's CPU time so far: ErrUnsupported here (Linux only).
func Of(int) (time.Duration, error) { return 0, ErrUnsupported }
