package testproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, p *testproxy.Proxy) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func echo(t *testing.T, c net.Conn, r *bufio.Reader, line string) error {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		t.Fatalf("echo %q, got %q", line, got)
	}
	return nil
}

func TestFreeze(t *testing.T) {
	p := testproxy.New(t, echoServer(t))
	c, r := dial(t, p)
	if err := echo(t, c, r, "before"); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	// The frozen connection stays open but nothing comes back.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if err := echo(t, c, r, "frozen"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("frozen connection: %v, want a read timeout", err)
	}
	// A new connection forwards.
	c2, r2 := dial(t, p)
	if err := echo(t, c2, r2, "after"); err != nil {
		t.Fatalf("connection after the freeze: %v", err)
	}
}

func TestKill(t *testing.T) {
	p := testproxy.New(t, echoServer(t))
	c, r := dial(t, p)
	if err := echo(t, c, r, "before"); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("read on a killed connection succeeded")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Fatal("a killed proxy accepted a connection")
	}
}

// TestCloseForwarded: a connection the target closes is closed for the
// client too (while not frozen).
func TestCloseForwarded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	p := testproxy.New(t, ln.Addr().String())
	c, r := dial(t, p)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("read after the target closed: %v, want EOF", err)
	}
}
