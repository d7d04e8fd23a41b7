//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "fwdfloor: Linux only (epoll, /proc)")
	os.Exit(2)
}
