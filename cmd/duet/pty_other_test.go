//go:build !linux

package main

import (
	"os"
	"testing"
)

// openPTY: the terminal tests open a pseudo-terminal with Linux's ioctls;
// they run on Linux (CI) only.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Skip("the pseudo-terminal helper is Linux-only")
	return nil, nil
}
