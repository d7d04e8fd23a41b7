package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and its terminal (slave).
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		t.Fatalf("unlocking the pty: %v %v", err, ierr)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// TestIDRestoreOnTerminal: on a terminal, id restore prompts and reads the
// mnemonic without echoing it.
func TestIDRestoreOnTerminal(t *testing.T) {
	relayURL := startTestRelay(t)
	master, tty := openPTY(t)
	m, err := identity.NewMnemonic(12)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"id", "restore", "--relay", relayURL, "--home", t.TempDir()}, tty, &out, &errOut)
	}()
	// Type only once the prompt is out and echo is off (typing earlier
	// would be echoed by the terminal whatever the program does next).
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(errOut.String(), "Mnemonic") && tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prompt with echo off on the terminal; stderr %q, stdout %q", errOut.String(), out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := master.WriteString(m + "\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 || !aliasRE.MatchString(out.String()) {
			t.Fatalf("id restore on a terminal = %d: %s%s", code, out.String(), errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("id restore did not finish")
	}
	// Whatever the terminal echoed is in the master's buffer by now.
	master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	n, _ := master.Read(buf)
	for _, w := range strings.Fields(m) {
		if strings.Contains(string(buf[:n]), w) {
			t.Fatalf("the terminal echoed the mnemonic: %q", buf[:n])
		}
	}
	if tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("echo not restored after reading: %v", err)
	}
}
