package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWSReadInPieces: a reader that found its socket empty waits for the
// runtime's poller, and each later byte wakes it. Over real loopback TCP,
// the client writes every message in pieces, the next only once the
// server has taken all the socket held (its receive queue empty): each
// piece is read by a reader that waited on an empty socket, at a frame
// header, in a payload, in a message larger than the read buffer. Every
// message must come whole; a lost wake-up leaves the reader waiting.
func TestWSReadInPieces(t *testing.T) {
	client, server := tcpPair(t)
	ws := newWSConn(server, nil, 64<<10, 10*time.Second)
	if ws.raw == nil {
		t.Fatal("no raw socket: the test needs one")
	}
	queued := func() int {
		n := -1
		_ = ws.raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return n
	}

	msgs := [][]byte{
		[]byte(`{"type":"ping"}`),
		bytes.Repeat([]byte("a"), 300),
		bytes.Repeat([]byte("b"), 3*wsBufSize+17), // larger than the read buffer
		[]byte("last"),
	}
	got := make(chan []byte, len(msgs))
	errc := make(chan error, 1)
	go func() {
		for range msgs {
			_, m, err := ws.readMessage()
			if err != nil {
				errc <- err
				return
			}
			got <- bytes.Clone(m)
		}
	}()
	key := [4]byte{4, 3, 2, 1}
	for i, m := range msgs {
		f := clientFrame(true, opText, m, key)
		// Cut in the header, after it, in the payload's middle.
		cuts := []int{0, 1, 6, 6 + len(m)/2, len(f)}
		for j := 1; j < len(cuts); j++ {
			if _, err := client.Write(f[cuts[j-1]:cuts[j]]); err != nil {
				t.Fatal(err)
			}
			if j < len(cuts)-1 {
				eventually(t, 10*time.Second, fmt.Sprintf("message %d piece %d taken", i, j), func() bool { return queued() == 0 })
			}
		}
		select {
		case g := <-got:
			if !bytes.Equal(g, m) {
				t.Fatalf("message %d: got %d bytes %.20q, want %d bytes %.20q", i, len(g), g, len(m), m)
			}
		case err := <-errc:
			t.Fatalf("message %d: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not read: a wake-up was lost", i)
		}
	}
}

// TestWSReadEndAfterData: a client that sends a message and closes its
// side at once (its FIN behind the message in the socket, one wake-up for
// both) is read to the end: the read that takes the message returns less
// than it asked for although the end is still to be read, and no later
// byte will wake the reader. It must get the message, then the end.
func TestWSReadEndAfterData(t *testing.T) {
	client, server := tcpPair(t)
	ws := newWSConn(server, nil, 64<<10, 10*time.Second)
	if ws.raw == nil {
		t.Fatal("no raw socket: the test needs one")
	}
	state := func() uint8 {
		var st uint8
		_ = ws.raw.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				st = ti.State
			}
		})
		return st
	}

	// The first message is read alone (the reader then waits on an empty
	// socket); the second comes with the end.
	type read struct {
		msg []byte
		err error
	}
	got := make(chan read, 3)
	go func() {
		for {
			_, m, err := ws.readMessage()
			got <- read{bytes.Clone(m), err}
			if err != nil {
				return
			}
		}
	}()
	next := func(what string) read {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10 s: the reader waits for a wake-up that will not come", what)
			return read{}
		}
	}
	key := [4]byte{1, 2, 3, 4}
	if _, err := client.Write(clientFrame(true, opText, []byte("first"), key)); err != nil {
		t.Fatal(err)
	}
	if r := next("first message"); r.err != nil || string(r.msg) != "first" {
		t.Fatalf("got %q, %v; want the first message", r.msg, r.err)
	}
	if _, err := client.Write(clientFrame(true, opText, []byte("second"), key)); err != nil {
		t.Fatal(err)
	}
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the client's FIN received", func() bool { return state() == unix.BPF_TCP_CLOSE_WAIT })
	if r := next("second message"); r.err != nil || string(r.msg) != "second" {
		t.Fatalf("got %q, %v; want the second message", r.msg, r.err)
	}
	if r := next("end"); !errors.Is(r.err, io.EOF) {
		t.Fatalf("got %q, %v; want the end (EOF)", r.msg, r.err)
	}
}

// TestParkRefusedWaitsInReads: a connection the poller cannot take (here a
// stopped poller; on a live node, epoll refusing the socket) is read with
// reads that wait from then on. The session's loop (session.serve) used to
// find the socket empty, fail to park and read again without waiting, a
// busy loop until the client sent something.
func TestParkRefusedWaitsInReads(t *testing.T) {
	client, server := tcpPair(t)
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	p.stop()
	ws := newWSConn(server, nil, 64<<10, 10*time.Second)
	ws.poller, ws.parks = p, true
	if _, _, err := ws.readMessage(); err != errWSIdle {
		t.Fatalf("first read of an empty socket: %v, want errWSIdle", err)
	}
	if ws.park() {
		t.Fatal("a stopped poller took the connection")
	}
	got := make(chan error, 1)
	go func() {
		_, m, err := ws.readMessage()
		if err == nil && string(m) != "late" {
			err = fmt.Errorf("read %q, want late", m)
		}
		got <- err
	}()
	// The frame comes later: a reader that does not wait returns first.
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write(clientFrame(true, opText, []byte("late"), [4]byte{1, 2, 3, 4})); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the read after a refused park: %v, want the frame sent later", err)
	}
}
