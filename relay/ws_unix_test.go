//go:build unix

package relay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a real TCP connection on loopback, both ends, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TestWSTryWriteRest: tryWrite writes frames without waiting until the
// client's socket is full; a frame it wrote in part is completed before the
// next frame by whichever writer comes next, so the client reads every frame
// whole and in order.
func TestWSTryWriteRest(t *testing.T) {
	client, server := tcpPair(t)
	_ = client.(*net.TCPConn).SetReadBuffer(4096)
	_ = server.(*net.TCPConn).SetWriteBuffer(4096)
	ws := newWSConn(server, nil, 1<<16, 10*time.Second)

	payload := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%04d", i)), 1000) }
	var taken int
	for !ws.hasRest() {
		ok, err := ws.tryWrite(opText, payload(taken))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break // the socket was full at a frame's end: nothing left over
		}
		taken++
		if taken > 100000 {
			t.Fatal("the socket never filled up")
		}
	}
	t.Logf("%d frames taken, a rest left: %v", taken, ws.hasRest())
	if ok, _ := ws.tryWrite(opText, payload(taken)); ok {
		t.Fatal("tryWrite took a frame with the socket full")
	}
	done := make(chan error, 1)
	go func() { done <- ws.writeFrame(opText, []byte("after"), 10*time.Second) }()

	br := bufio.NewReader(client)
	for i := range taken {
		if p := readTextFrame(t, br); !bytes.Equal(p, payload(i)) {
			t.Fatalf("frame %d of %d: got %q..., want %q...", i, taken, p[:8], payload(i)[:8])
		}
	}
	if p := readTextFrame(t, br); string(p) != "after" {
		t.Fatalf("after the frames tryWrite took: got %q..., want after", p[:min(8, len(p))])
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ws.hasRest() {
		t.Fatal("a rest is left after writeFrame")
	}
}

// TestWSWriteFrameAfterPartialRaw: writeFrame writes what the socket takes
// at once and waits for the rest (wsConn.writeLocked): with small socket
// buffers and a client that reads only later, most frames are cut by the
// raw write; the client still reads every frame whole, once, in order.
func TestWSWriteFrameAfterPartialRaw(t *testing.T) {
	client, server := tcpPair(t)
	_ = client.(*net.TCPConn).SetReadBuffer(4096)
	_ = server.(*net.TCPConn).SetWriteBuffer(4096)
	ws := newWSConn(server, nil, 1<<16, 10*time.Second)

	const frames = 20
	payload := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("%04d", i)), 750) }
	done := make(chan error, 1)
	go func() {
		for i := range frames {
			if err := ws.writeFrame(opText, payload(i), 10*time.Second); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	br := bufio.NewReader(client)
	for i := range frames {
		if p := readTextFrame(t, br); !bytes.Equal(p, payload(i)) {
			t.Fatalf("frame %d: got %q..., want %q...", i, p[:8], payload(i)[:8])
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// readTextFrame reads one final text frame the relay wrote (unmasked, at
// most a 16-bit length) and returns its payload.
func readTextFrame(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	op, p := readFrame(t, br)
	if op != opText {
		t.Fatalf("frame opcode %#x, want text", op)
	}
	return p
}

// readFrame reads one final frame the relay wrote (unmasked, at most a
// 16-bit length) and returns its opcode and payload.
func readFrame(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	op, p, err := nextFrame(br)
	if err != nil {
		t.Fatal(err)
	}
	return op, p
}

// nextFrame is readFrame, for any goroutine.
func nextFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[1] > 126 {
		return 0, nil, fmt.Errorf("frame header %x, want a final frame of at most a 16-bit length", h[:2])
	}
	n := int(h[1])
	if n == 126 {
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(h[2:4]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}
