package proccpu

import (
	"fmt"
	"os"
	"time"
)

// Of is process pid's CPU time so far, from /proc/<pid>/stat.
func Of(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("proccpu: %w", err)
	}
	return parseStat(string(b))
}
