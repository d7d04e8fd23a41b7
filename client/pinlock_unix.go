//go:build unix

package client

import (
	"fmt"
	"os"
	"syscall"
)

// lockPins takes an exclusive lock on path's lock file (path + ".lock"),
// which every PinStore of the file takes around a change, across processes.
func lockPins(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("client: locking pinned keys: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("client: locking pinned keys: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
