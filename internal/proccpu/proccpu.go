// Package proccpu reads a process's CPU time (user + system): this
// process's, for the benchmarks and load generators that report their own
// cost, and another's by its pid (Linux), for the tools that measure a
// relay they started.
package proccpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported: this system cannot say.
var ErrUnsupported = errors.New("proccpu: not supported on this system")

// userHZ is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// parseStat returns the user + system time of a /proc/<pid>/stat line. The
// command name (field 2) may hold spaces and parentheses: fields are
// counted from its last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("proccpu: malformed stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("proccpu: short stat %q", s)
	}
	var ticks int64
	for _, v := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("proccpu: malformed stat %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}
