package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
)

// streamConn is a net.Conn over a fixed byte stream, handed out at most
// chunk bytes per Read (to split headers and payloads at every place);
// writes are kept.
type streamConn struct {
	net.Conn
	r     io.Reader
	chunk int
	out   bytes.Buffer
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *streamConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (c *streamConn) Close() error                     { return nil }

// clientFrame is a masked client frame.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	h := appendFrameHeader(nil, op, len(payload))
	h[0] = b0
	h[1] |= 0x80
	p := bytes.Clone(payload)
	mask(p, key)
	return append(append(h, key[:]...), p...)
}

func TestParseFrameHeader(t *testing.T) {
	key := []byte{1, 2, 3, 4}
	tests := []struct {
		name   string
		b      []byte
		n      int
		length uint64
		bad    bool
	}{
		{"text 5", append([]byte{0x81, 0x85}, key...), 6, 5, false},
		{"partial", []byte{0x81}, 0, 0, false},
		{"partial key", []byte{0x81, 0x85, 1, 2}, 0, 0, false},
		{"16-bit length", append([]byte{0x82, 0xfe, 0x01, 0x00}, key...), 8, 256, false},
		{"64-bit length", append([]byte{0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0}, key...), 14, 65536, false},
		{"64-bit length, top bit", append([]byte{0x02, 0xff, 0x80, 0, 0, 0, 0, 1, 0, 0}, key...), 0, 0, true},
		{"unmasked", []byte{0x81, 0x05}, 0, 0, true},
		{"reserved bit", append([]byte{0xc1, 0x85}, key...), 0, 0, true},
		{"opcode 3", append([]byte{0x83, 0x80}, key...), 0, 0, true},
		{"opcode 0xb", append([]byte{0x8b, 0x80}, key...), 0, 0, true},
		{"fragmented ping", append([]byte{0x09, 0x80}, key...), 0, 0, true},
		{"long pong", append([]byte{0x8a, 0xfe, 0, 126}, key...), 0, 0, true},
		{"ping 125", append([]byte{0x89, 0xfd}, key...), 6, 125, false},
	}
	for _, tt := range tests {
		h, n, err := parseFrameHeader(tt.b)
		if (err != nil) != tt.bad || n != tt.n || (n > 0 && h.length != tt.length) {
			t.Errorf("%s: n %d length %d err %v; want n %d length %d bad %v", tt.name, n, h.length, err, tt.n, tt.length, tt.bad)
		}
		if err != nil && !errors.Is(err, errWSProtocol) {
			t.Errorf("%s: %v is not a protocol error", tt.name, err)
		}
	}
}

// TestWSRead: fragments are joined, a ping in between is answered with a
// pong of its payload, a close frame ends reading with its code, and
// every frame is reported to onFrame.
func TestWSRead(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	var in []byte
	in = append(in, clientFrame(true, opText, []byte(`{"type":"ping"}`), key)...)
	in = append(in, clientFrame(false, opText, []byte("hel"), key)...)
	in = append(in, clientFrame(true, opPing, []byte("p1"), key)...)
	in = append(in, clientFrame(false, opContinuation, []byte("lo "), key)...)
	in = append(in, clientFrame(true, opContinuation, bytes.Repeat([]byte("w"), 5000), key)...)
	in = append(in, clientFrame(true, opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, key)...)
	for _, chunk := range []int{1, 3, 7, 4096} {
		sc := &streamConn{r: bytes.NewReader(in), chunk: chunk}
		ws := newWSConn(sc, nil, 64<<10, time.Second)
		var ops []byte
		ws.onFrame = func(op byte) { ops = append(ops, op) }
		op, msg, err := ws.readMessage()
		if err != nil || op != opText || string(msg) != `{"type":"ping"}` {
			t.Fatalf("chunk %d: first message %d %q %v", chunk, op, msg, err)
		}
		op, msg, err = ws.readMessage()
		if err != nil || op != opText || string(msg) != "hello "+string(bytes.Repeat([]byte("w"), 5000)) {
			t.Fatalf("chunk %d: second message %d %q %v", chunk, op, msg[:min(len(msg), 20)], err)
		}
		_, _, err = ws.readMessage()
		var ce *wsCloseError
		if !errors.As(err, &ce) || ce.code != 1000 || ce.reason != "bye" {
			t.Fatalf("chunk %d: %v, want close 1000 bye", chunk, err)
		}
		if _, _, err2 := ws.readMessage(); err2 != err {
			t.Fatalf("chunk %d: read after the close: %v", chunk, err2)
		}
		if string(ops) != string([]byte{opText, opText, opPing, opContinuation, opContinuation, opClose}) {
			t.Errorf("chunk %d: onFrame got %x", chunk, ops)
		}
		if got := sc.out.Bytes(); !bytes.Equal(got, []byte{0x8a, 2, 'p', '1'}) {
			t.Errorf("chunk %d: wrote %x, want the pong", chunk, got)
		}
		if ws.buf != nil {
			t.Errorf("chunk %d: the buffer is held after reading ended", chunk)
		}
	}
}

func TestWSReadLimit(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	in := append(clientFrame(false, opBinary, make([]byte, 60), key), clientFrame(true, opContinuation, make([]byte, 41), key)...)
	ws := newWSConn(&streamConn{r: bytes.NewReader(in), chunk: 4096}, nil, 100, time.Second)
	if _, _, err := ws.readMessage(); !errors.Is(err, errWSTooBig) {
		t.Fatalf("101 bytes with a limit of 100: %v", err)
	}
	ws = newWSConn(&streamConn{r: bytes.NewReader(in), chunk: 4096}, nil, 101, time.Second)
	if op, msg, err := ws.readMessage(); err != nil || op != opBinary || len(msg) != 101 {
		t.Fatalf("101 bytes with a limit of 101: %d %d %v", op, len(msg), err)
	}
}

// FuzzWSRead reads any byte stream, split anywhere: it never panics, every
// message is text or binary within the limit, and reading ends with an
// error once the stream does.
func FuzzWSRead(f *testing.F) {
	key := [4]byte{1, 2, 3, 4}
	f.Add([]byte{}, uint8(1))
	f.Add(clientFrame(true, opText, []byte("hi"), key), uint8(1))
	f.Add(append(clientFrame(false, opText, []byte("a"), key), clientFrame(true, opContinuation, []byte("b"), key)...), uint8(2))
	f.Add(clientFrame(true, opPing, []byte("x"), key), uint8(5))
	f.Add(clientFrame(true, opClose, []byte{3, 232}, key), uint8(5))
	f.Add(clientFrame(true, opBinary, make([]byte, 300), key), uint8(200))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		ws := newWSConn(&streamConn{r: bytes.NewReader(in), chunk: int(chunk)%64 + 1}, nil, 256, time.Second)
		for range len(in) + 1 {
			op, msg, err := ws.readMessage()
			if err != nil {
				if ws.buf != nil || ws.msgBuf != nil {
					t.Fatal("a buffer is held after reading ended")
				}
				return
			}
			if op != opText && op != opBinary || len(msg) > 256 {
				t.Fatalf("message %d of %d bytes", op, len(msg))
			}
		}
		t.Fatal("reading did not end with the stream")
	})
}

// FuzzWSRoundTrip: a message sent in any fragmentation, with pings in
// between, is read back whole.
func FuzzWSRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint16(2), uint32(0x01020304), uint8(3))
	f.Add(make([]byte, 5000), uint16(1000), uint32(0), uint8(64))
	f.Fuzz(func(t *testing.T, payload []byte, frag uint16, k uint32, chunk uint8) {
		var key [4]byte
		binary.BigEndian.PutUint32(key[:], k)
		if len(payload) > 64<<10 {
			return
		}
		size := int(frag)%(len(payload)+1) + 1
		var in []byte
		pings := 0
		rest, op := payload, byte(opBinary)
		for {
			n := min(size, len(rest))
			in = append(in, clientFrame(n == len(rest), op, rest[:n], key)...)
			rest, op = rest[n:], opContinuation
			if len(rest) == 0 {
				break
			}
			in = append(in, clientFrame(true, opPing, nil, key)...)
			pings++
		}
		sc := &streamConn{r: bytes.NewReader(in), chunk: int(chunk)%64 + 1}
		ws := newWSConn(sc, nil, 64<<10, time.Second)
		got, msg, err := ws.readMessage()
		if err != nil || got != opBinary || !bytes.Equal(msg, payload) {
			t.Fatalf("read %d, %d bytes, %v; want the %d bytes sent", got, len(msg), err, len(payload))
		}
		if sc.out.Len() != 2*pings {
			t.Fatalf("wrote %d bytes for %d pings", sc.out.Len(), pings)
		}
	})
}

// TestBulkMessagesCopiedOnce: reading bulk envelopes (larger than the read
// buffer), decoding and re-encoding them allocates about one copy of each
// (the re-encoded frame that is queued), not three (a new message buffer,
// a copy of the payload, the re-encoding): the message buffer is reused
// (wsMsgPool) and the payload borrowed from it (decodeFrame). Every
// envelope read is the one sent.
func TestBulkMessagesCopiedOnce(t *testing.T) {
	const n, size = 50, 40 << 10
	from, to := "u11111111", "u22222222"
	var stream []byte
	var want [][]byte
	for i := range n {
		p := bytes.Repeat([]byte{byte('A' + i%26)}, size)
		env := []byte(`{"type":"call_ice","to":"` + to + `","from":"` + from + `","call_id":"c","crypto_v":2,"payload":"` + string(p) + `"}`)
		want = append(want, env)
		stream = append(stream, clientFrame(true, opText, env, [4]byte{1, 2, 3, byte(i)})...)
	}
	ws := newWSConn(&streamConn{r: bytes.NewReader(stream), chunk: 1 << 20}, nil, maxFrameSize, time.Second)
	read := func() []byte {
		_, data, err := ws.readMessage()
		if err != nil {
			t.Fatal(err)
		}
		env, ferr := decodeFrame(data, identity.Alias(from))
		if ferr != nil {
			t.Fatal(ferr)
		}
		return env.AppendJSON(nil)
	}
	got := [][]byte{read()} // the pool's first buffer
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n - 1 {
		got = append(got, read())
	}
	runtime.ReadMemStats(&m1)
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("envelope %d differs from the one sent", i)
		}
	}
	per := (m1.TotalAlloc - m0.TotalAlloc) / (n - 1)
	t.Logf("%d bytes allocated per %d-byte envelope", per, len(want[0]))
	if per > size*3/2 && !raceEnabled {
		t.Errorf("%d bytes allocated per %d-byte envelope, want about one copy", per, len(want[0]))
	}
}
