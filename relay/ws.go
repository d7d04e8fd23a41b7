package relay

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The relay's side of a WebSocket (RFC 6455), in its own code rather than
// a library's, so that an idle session holds no buffer: a session's reader
// takes a buffer from a pool when its socket has bytes to read and gives
// it back when nothing is left buffered (see wsConn.fill). Frames the
// relay writes are one write each (header and payload together); the
// frames a client sends are parsed here, each charged to the session's
// frame budget (control frames and fragments too), so a flood of pings or
// fragments costs the client its session like a flood of messages.

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// WebSocket close codes (RFC 6455 section 7.4.1).
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeNoStatus      = 1005
	closeTooBig        = 1009
	closeInternalError = 1011
)

// wsBufSize is the size of the pooled buffers sessions read and write with.
const wsBufSize = 4096

var wsBufPool = sync.Pool{New: func() any { return new([wsBufSize]byte) }}

// wsMsgPool holds the buffers of messages that do not fit in the read
// buffer (bulk envelopes, up to maxFrameSize): a session reading 40 KiB
// envelopes reuses one instead of allocating each, so that bulk traffic does
// not drive the garbage collector (each cycle's stops and marking delay
// every session's frames; see "The relay under attack" in the README).
var wsMsgPool = sync.Pool{New: func() any { return new([maxFrameSize]byte) }}

// Errors of reading a WebSocket.
var (
	// errWSTooBig: a message over the read limit (closed with 1009).
	errWSTooBig = errors.New("relay: WebSocket message too big")
	// errWSProtocol: the client broke RFC 6455 (closed with 1002).
	errWSProtocol = errors.New("relay: WebSocket protocol error")
	// errWSClosed: writing after the close frame.
	errWSClosed = errors.New("relay: WebSocket closed")
	// errWSIdle: nothing is left to read between messages (not an end of
	// reading): the reader may park (see wsConn.parks).
	errWSIdle = errors.New("relay: WebSocket idle")
	// errWouldBlock: nothing to read now (readLazy without waiting).
	errWouldBlock = errors.New("relay: nothing to read yet")
	// errStopRead ends reading a session closed for flooding.
	errStopRead = errors.New("relay: the session was closed for flooding; its frames are no longer read")
)

// wsCloseError is the close frame a client sent.
type wsCloseError struct {
	code   int // closeNoStatus when the frame had none
	reason string
}

func (e *wsCloseError) Error() string {
	return fmt.Sprintf("relay: the client closed the WebSocket: %d %q", e.code, e.reason)
}

// wsConn is a server-side WebSocket over a hijacked connection.
type wsConn struct {
	c   net.Conn
	raw syscall.RawConn // c's socket when reachable (plain TCP): see fill
	fd  int32           // raw's number, -1 without raw

	// Parking between messages (see poller): set before the session is
	// served.
	poller  *poller
	parks   bool   // park when nothing is left to read between messages
	resume  func() // reads the session again, on a goroutine of its own
	wake    func() // the poller's call once the parked socket is readable; set when parks is
	drained bool   // the last read came back short: the socket was emptied (see fill)
	dead    bool   // closed: not to be parked (poller.mu)
	failed  error  // a read of wake's that failed, for the next reader (see fill)

	// Reading, on the session's reading goroutine only.
	buf     *[wsBufSize]byte    // nil while nothing is buffered
	msgBuf  *[maxFrameSize]byte // the last message returned, when not in buf (wsMsgPool)
	r, w    int                 // buf[r:w] is read and not yet parsed
	limit   int                 // the largest message taken
	readErr error               // sticky: reading ended
	// onFrame is called with each frame's opcode once its header is read.
	onFrame func(op byte)
	// writeTimeout bounds the pongs the reader writes.
	writeTimeout time.Duration
	stop         atomic.Bool    // stop reading (a flooder): see stopReading
	reading      sync.WaitGroup // done when reading ends (drain)
	closeOnce    sync.Once

	wmu       sync.Mutex // one writer at a time
	closeSent bool       // the close frame is written: nothing more is
	wdl       time.Time  // the write deadline set (see setWriteDeadline)
	rest      []byte     // the rest of a frame tryWrite wrote in part: written first
	restLeft  atomic.Bool
}

func newWSConn(c net.Conn, pending []byte, limit int, writeTimeout time.Duration) *wsConn {
	ws := &wsConn{c: c, raw: rawConn(c), limit: limit, writeTimeout: writeTimeout}
	ws.reading.Add(1)
	ws.fd = socketFD(ws.raw)
	if len(pending) > 0 {
		ws.buf = wsBufPool.Get().(*[wsBufSize]byte)
		ws.w = copy(ws.buf[:], pending)
	}
	return ws
}

// close drops the connection at once. A parked session is resumed to read
// the end.
func (c *wsConn) close() {
	c.closeOnce.Do(func() {
		parked := c.poller != nil && c.poller.forget(c)
		_ = c.c.Close()
		if parked {
			go c.resume()
		}
	})
}

// park hands the connection to the poller (see errWSIdle): true when the
// reader is to stop, the poller calling wake when the socket
// is readable.
func (c *wsConn) park() bool {
	if c.poller != nil && c.poller.park(c) {
		return true
	}
	// The poller cannot take it (epoll refused the socket: the system's
	// limit of watched descriptors, no memory; or the poller stops): the
	// reader waits in its reads from now on, instead of finding the socket
	// empty and trying to park again, round after round.
	c.parks = false
	return false
}

// repark parks the connection again from its wake (see poller.rest).
func (c *wsConn) repark(more bool) bool { return c.poller.rest(c, more) }

// unpark ends wake's hold of the connection before another goroutine
// reads it (see poller.release).
func (c *wsConn) unpark() { c.poller.release(c) }

// stopReading makes the reader stop: it reads no more frames and ends when
// the connection is closed.
func (c *wsConn) stopReading() { c.stop.Store(true) }

// frameHeader is a parsed frame header (RFC 6455 section 5.2).
type frameHeader struct {
	fin    bool
	op     byte
	length uint64
	key    [4]byte
}

// parseFrameHeader parses the header of a client frame at the start of b.
// n is the header's length, 0 when b holds only part of it; err is a
// protocol error. It never panics.
func parseFrameHeader(b []byte) (h frameHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	if b[0]&0x70 != 0 {
		return h, 0, fmt.Errorf("%w: reserved bits set", errWSProtocol)
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0f
	switch h.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, fmt.Errorf("%w: unknown opcode %#x", errWSProtocol, h.op)
	}
	if b[1]&0x80 == 0 {
		return h, 0, fmt.Errorf("%w: a client frame must be masked", errWSProtocol)
	}
	l := b[1] & 0x7f
	n = 2
	switch l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	n += 4
	if len(b) < n {
		return h, 0, nil
	}
	switch l {
	case 126:
		h.length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		h.length = binary.BigEndian.Uint64(b[2:10])
		if h.length>>63 != 0 {
			return h, 0, fmt.Errorf("%w: frame length over 2^63", errWSProtocol)
		}
	default:
		h.length = uint64(l)
	}
	copy(h.key[:], b[n-4:n])
	if h.op >= opClose && (!h.fin || h.length > 125) {
		return h, 0, fmt.Errorf("%w: a control frame must be final and at most 125 bytes", errWSProtocol)
	}
	return h, n, nil
}

// mask XORs p with the frame's masking key (RFC 6455 section 5.3).
func mask(p []byte, key [4]byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// readMessage reads the client's next data message: its opcode (opText or
// opBinary) and payload, reassembled from fragments. It answers pings with
// pongs and returns a *wsCloseError for a close frame. The payload is valid
// until the next call (it may be in the read buffer). With parks set, it
// returns errWSIdle when nothing is left to read between messages. Once it has
// returned another error, it returns that error again.
func (c *wsConn) readMessage() (byte, []byte, error) {
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	c.releaseMsg() // the previous message is no longer used
	op, msg, err := c.readFrames()
	if err != nil && err != errWSIdle {
		c.readErr = err
		c.r = c.w // nothing more is parsed
		c.release()
		c.releaseMsg()
	}
	return op, msg, err
}

// releaseMsg gives back the buffer of the last message returned.
func (c *wsConn) releaseMsg() {
	if c.msgBuf != nil {
		wsMsgPool.Put(c.msgBuf)
		c.msgBuf = nil
	}
}

// drain reads what the client still sends until its close frame or the
// connection's end (after a frame too big or a protocol error: every byte,
// unparsed), so that the client's writes and its close handshake complete,
// then lets the closer drop the connection (see session.closeLocked).
func (c *wsConn) drain() {
	c.parks = false // the close is bounded by the close grace, not parked
	for c.readErr == nil {
		_, _, _ = c.readMessage()
	}
	if errors.Is(c.readErr, errWSTooBig) || errors.Is(c.readErr, errWSProtocol) {
		_, _ = io.Copy(io.Discard, c.c)
	}
	c.reading.Done()
}

func (c *wsConn) readFrames() (byte, []byte, error) {
	var msg []byte
	var op byte
	started := false
	for {
		h, err := c.readHeader(!started)
		if err != nil {
			return 0, nil, err
		}
		if c.onFrame != nil {
			c.onFrame(h.op)
		}
		if c.stop.Load() {
			c.waitClosed()
			return 0, nil, errStopRead
		}
		if h.op >= opClose {
			var ctl [125]byte
			p := ctl[:h.length]
			if err := c.readPayload(p, h.key); err != nil {
				return 0, nil, err
			}
			switch h.op {
			case opPing:
				_ = c.writeFrame(opPong, p, c.writeTimeout)
			case opClose:
				return 0, nil, parseClose(p)
			}
			continue
		}
		if started != (h.op == opContinuation) {
			return 0, nil, fmt.Errorf("%w: unexpected continuation or data frame", errWSProtocol)
		}
		if h.length > uint64(c.limit-len(msg)) {
			return 0, nil, errWSTooBig
		}
		if !started && h.fin && c.buf != nil && h.length <= uint64(c.w-c.r) {
			// The whole message is buffered: unmasked in place, no copy.
			p := c.buf[c.r : c.r+int(h.length)]
			c.r += int(h.length)
			mask(p, h.key)
			return h.op, p, nil
		}
		if !started {
			op, started = h.op, true
		}
		n := len(msg)
		if msg == nil && c.limit <= maxFrameSize {
			// Fragments included, the message fits (limit).
			c.msgBuf = wsMsgPool.Get().(*[maxFrameSize]byte)
			msg = c.msgBuf[:0]
		}
		msg = append(msg, make([]byte, h.length)...)
		if err := c.readPayload(msg[n:], h.key); err != nil {
			return 0, nil, err
		}
		if h.fin {
			if c.r == c.w {
				c.release()
			}
			return op, msg, nil
		}
	}
}

// nextBuffered returns the next frame when it is in the buffer whole: a
// message in a single (final) data frame of at most max payload bytes, a
// ping or a pong; unmasked in place (valid until the buffer is read into
// again). ok is false, with nothing consumed, when the buffer is empty
// (empty) or holds anything else, for readMessage: a frame cut short, a
// close frame, a fragment, a larger message, a frame the reader is to
// stop at. It charges the frame (onFrame) as readFrames does.
func (c *wsConn) nextBuffered(max int) (op byte, p []byte, ok, empty bool) {
	if c.readErr != nil {
		return 0, nil, false, false
	}
	if c.buf == nil || c.r == c.w {
		return 0, nil, false, true
	}
	h, n, err := parseFrameHeader(c.buf[c.r:c.w])
	if err != nil || n == 0 || !h.fin || h.op == opContinuation || h.op == opClose ||
		h.length > uint64(min(max, c.limit)) || h.length > uint64(c.w-c.r-n) || c.stop.Load() {
		return 0, nil, false, false
	}
	if c.onFrame != nil {
		c.onFrame(h.op)
	}
	if c.stop.Load() {
		return 0, nil, false, false // readFrames charges it again, and stops
	}
	start := c.r + n
	c.r = start + int(h.length)
	p = c.buf[start:c.r]
	mask(p, h.key)
	return h.op, p, true, false
}

// waitClosed reads nothing more until the connection is closed: on a
// socket it waits (the client's bytes stay unread, TCP pushes back on it);
// elsewhere it reads and discards.
func (c *wsConn) waitClosed() {
	if c.raw != nil {
		_ = c.raw.Read(func(uintptr) bool { return false })
		return
	}
	_, _ = io.Copy(io.Discard, c.c)
}

// parseClose reads a close frame's payload.
func parseClose(p []byte) error {
	switch len(p) {
	case 0:
		return &wsCloseError{code: closeNoStatus}
	case 1:
		return fmt.Errorf("%w: a close frame of 1 byte", errWSProtocol)
	}
	return &wsCloseError{code: int(binary.BigEndian.Uint16(p)), reason: string(p[2:])}
}

// readHeader reads the next frame header; between messages (idle true)
// it may return errWSIdle.
func (c *wsConn) readHeader(idle bool) (frameHeader, error) {
	for {
		var b []byte
		if c.buf != nil {
			b = c.buf[c.r:c.w]
		}
		h, n, err := parseFrameHeader(b)
		if err != nil {
			return h, err
		}
		if n > 0 {
			c.r += n
			return h, nil
		}
		if err := c.fill(idle && c.r == c.w); err != nil {
			return h, err
		}
	}
}

// readPayload reads len(p) payload bytes into p and unmasks them: the
// buffered ones first, the rest straight from the connection.
func (c *wsConn) readPayload(p []byte, key [4]byte) error {
	q := p
	if c.buf != nil {
		n := copy(q, c.buf[c.r:c.w])
		c.r += n
		q = q[n:]
	}
	for len(q) > 0 {
		n, err := c.read(q)
		q = q[n:]
		if err != nil {
			return err
		}
	}
	mask(p, key)
	return nil
}

// fill reads more bytes into the buffer (there is room: it is only called
// with less than a frame header buffered). idle: nothing is buffered nor
// in progress, the reader may park (errWSIdle).
func (c *wsConn) fill(idle bool) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.r > 0 {
		c.w = copy(c.buf[:], c.buf[c.r:c.w])
		c.r = 0
	}
	if err := c.failed; err != nil {
		c.failed = nil
		return err
	}
	drained := c.drained
	c.drained = false
	if idle && c.parks {
		// Park as soon as there is nothing more to read. A read that came
		// back short found the socket empty: the session parks without
		// another read to see it empty (the poller's wait is
		// level-triggered, so a byte or an end that came since wakes it
		// again at once), one system call less per message.
		if drained {
			c.release() // as the read that saw the socket empty would
			return errWSIdle
		}
		return c.readNow()
	}
	n, err := c.readLazy(true)
	c.w += n
	return err
}

// readNow reads what the socket holds into the buffer without waiting:
// errWSIdle when it holds nothing (the buffer is then given back). A read
// that comes back short marks the socket as emptied (drained).
func (c *wsConn) readNow() error {
	room := wsBufSize - c.w
	n, err := c.readLazy(false)
	c.w += n
	if err == errWouldBlock {
		return errWSIdle
	}
	c.drained = err == nil && c.raw != nil && n < room
	return err
}

// release gives the buffer back when nothing is buffered.
func (c *wsConn) release() {
	if c.buf != nil && c.r == c.w {
		wsBufPool.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
}

// read reads into p (with the pool's buffer not involved).
func (c *wsConn) read(p []byte) (int, error) {
	c.drained = false
	if c.raw == nil {
		return c.c.Read(p)
	}
	op := rawOpPool.Get().(*rawOp)
	op.p = p
	err := c.raw.Read(op.readIntoFn)
	n, rerr := op.done()
	return fixRead(n, rerr, err)
}

// readLazy reads into the buffer at c.w. On a socket it waits for bytes
// to come without holding a buffer: the buffer is taken from the pool when
// the socket is readable, and given back (when empty) before waiting; with
// wait false it returns errWouldBlock instead of waiting. Elsewhere (TLS)
// the buffer is held while the read blocks.
func (c *wsConn) readLazy(wait bool) (int, error) {
	if c.raw == nil {
		if c.buf == nil {
			c.buf = wsBufPool.Get().(*[wsBufSize]byte)
		}
		return c.c.Read(c.buf[c.w:])
	}
	op := rawOpPool.Get().(*rawOp)
	op.c, op.wait = c, wait
	err := c.raw.Read(op.readFn)
	n, rerr := op.done()
	if rerr == syscall.EAGAIN && err == nil {
		return 0, errWouldBlock
	}
	return fixRead(n, rerr, err)
}

// rawOp is a system call on a session's socket through its RawConn
// (readLazy, read, tryWrite), with its callbacks made once: a closure
// passed to RawConn.Read escapes, allocations per read otherwise.
type rawOp struct {
	c          *wsConn
	wait       bool   // readLazy's
	p          []byte // what read reads into, tryWrite writes
	n          int
	err        error
	readFn     func(fd uintptr) bool
	readIntoFn func(fd uintptr) bool
	writeFn    func(fd uintptr)
}

var rawOpPool = sync.Pool{New: func() any {
	op := new(rawOp)
	op.readFn, op.readIntoFn, op.writeFn = op.read, op.readInto, op.write
	return op
}}

// done returns the call's outcome and gives op back to the pool.
func (op *rawOp) done() (int, error) {
	n, err := op.n, op.err
	op.c, op.wait, op.p, op.n, op.err = nil, false, nil, 0, nil
	rawOpPool.Put(op)
	return n, err
}

// read is readLazy's callback.
//
// A read that returned less than it asked for does not mean that the next
// one finds nothing: the peer's FIN (or a reset) may be queued behind the
// data it returned, and with the runtime's edge-triggered poller no later
// event would come for it (TestWSReadEndAfterData). So the reader reads
// until EAGAIN before it waits.
func (op *rawOp) read(fd uintptr) bool {
	c := op.c
	if c.buf == nil {
		c.buf = wsBufPool.Get().(*[wsBufSize]byte)
	}
	op.n, op.err = sysRead(fd, c.buf[c.w:])
	if op.err == syscall.EAGAIN {
		c.release()
		return !op.wait
	}
	return true
}

// readInto is read's callback.
func (op *rawOp) readInto(fd uintptr) bool {
	op.n, op.err = sysRead(fd, op.p)
	return op.err != syscall.EAGAIN
}

// write is tryWrite's callback.
func (op *rawOp) write(fd uintptr) { op.n, op.err = sysWrite(fd, op.p) }

// fixRead turns a raw read's outcome into io.Reader's.
func fixRead(n int, rerr, err error) (int, error) {
	switch {
	case err != nil: // closed, or a deadline
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: rerr}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// appendFrameHeader appends the header of a server frame (final,
// unmasked) of n payload bytes.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n <= 125:
		return append(dst, byte(n))
	case n <= 0xffff:
		return append(dst, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
}

// writeFrame writes one frame within timeout. A failed write drops the
// connection (a frame may have been cut short). After the close frame
// nothing more is written.
func (c *wsConn) writeFrame(op byte, p []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errWSClosed
	}
	if op == opClose {
		c.closeSent = true
	}
	var hb [10]byte
	h := appendFrameHeader(hb[:0], op, len(p))
	var err error
	if c.rest == nil && len(h)+len(p) <= wsBufSize {
		b := wsBufPool.Get().(*[wsBufSize]byte)
		n := copy(b[:], h)
		n += copy(b[n:], p)
		err = c.writeLocked(b[:n], timeout)
		wsBufPool.Put(b)
	} else {
		c.setWriteDeadline(timeout)
		err = c.writeRestLocked()
		if err == nil {
			bufs := net.Buffers{h, p}
			_, err = bufs.WriteTo(c.c)
		}
	}
	if err != nil {
		c.close()
	}
	return err
}

// writeLocked writes b within timeout: first with a raw non-blocking write
// (rawWriteLocked), and only what the socket did not take through the
// connection, which waits for it. Most frames (pings, pongs, a writer's
// queue) go out at once: Go's blocking write would enter the scheduler's
// system call state, which wakes its monitor thread from its sleep, each
// time on a quiet node. c.wmu is held.
func (c *wsConn) writeLocked(b []byte, timeout time.Duration) error {
	if c.raw != nil {
		n, err := c.rawWriteLocked(b)
		if err != nil && err != syscall.EAGAIN {
			return &net.OpError{Op: "write", Net: "tcp", Err: err}
		}
		if b = b[n:]; len(b) == 0 {
			return nil
		}
	}
	c.setWriteDeadline(timeout)
	_, err := c.c.Write(b)
	return err
}

// rawWriteLocked writes what the non-blocking socket takes of b at once
// (EAGAIN: nothing). Control, not Write: nothing waits, and a write
// deadline that passed while the session was quiet is no matter. c.wmu is
// held, which keeps the other writers out.
func (c *wsConn) rawWriteLocked(b []byte) (int, error) {
	op := rawOpPool.Get().(*rawOp)
	op.p = b
	err := c.raw.Control(op.writeFn)
	n, werr := op.done()
	if err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// setWriteDeadline gives the next write timeout. The deadline is moved only
// when it is not within a tenth of timeout (at most a second) of
// now+timeout: a writer that writes frame after frame does not pay for a
// timer update per frame, and each write still has at least 90 % of
// timeout. c.wmu is held.
func (c *wsConn) setWriteDeadline(timeout time.Duration) {
	d := time.Now().Add(timeout)
	if slack := min(timeout/10, time.Second); c.wdl.After(d) || c.wdl.Before(d.Add(-slack)) {
		c.wdl = d
		_ = c.c.SetWriteDeadline(d)
	}
}

// writeRestLocked writes what tryWrite left of a frame, before anything
// else is written. c.wmu is held.
func (c *wsConn) writeRestLocked() error {
	if c.rest == nil {
		return nil
	}
	_, err := c.c.Write(c.rest)
	c.rest = nil
	c.restLeft.Store(false)
	return err
}

// flushRest writes, within timeout, what tryWrite left of a frame (if
// anything). A failed write drops the connection.
func (c *wsConn) flushRest(timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.rest == nil {
		return nil
	}
	c.setWriteDeadline(timeout)
	err := c.writeRestLocked()
	if err != nil {
		c.close()
	}
	return err
}

// hasRest reports whether part of a frame tryWrite wrote is still to be
// written (see flushRest).
func (c *wsConn) hasRest() bool { return c.restLeft.Load() }

// tryWrite writes a data frame of p if it can at once, without waiting for
// the socket or for another writer: on a socket (not TLS), when no other
// write is under way, nothing is left of an earlier frame and the frame
// fits a pooled buffer. It reports whether the frame is taken: written, or
// written in part, the rest kept for the next writer (see hasRest, which
// the caller then has flushed). A failed write drops the connection and
// reports the error.
func (c *wsConn) tryWrite(opcode byte, p []byte) (bool, error) {
	if c.raw == nil || len(p)+10 > wsBufSize || !c.wmu.TryLock() {
		return false, nil
	}
	defer c.wmu.Unlock()
	if c.closeSent {
		return false, errWSClosed
	}
	if c.rest != nil {
		return false, nil
	}
	b := wsBufPool.Get().(*[wsBufSize]byte)
	defer wsBufPool.Put(b)
	frame := appendFrameHeader(b[:0], opcode, len(p))
	frame = append(frame, p...)
	n, werr := c.rawWriteLocked(frame)
	switch {
	case werr == syscall.EAGAIN:
		return false, nil
	case werr != nil:
		c.close()
		return false, &net.OpError{Op: "write", Net: "tcp", Err: werr}
	case n < len(frame):
		c.rest = append([]byte(nil), frame[n:]...)
		c.restLeft.Store(true)
	}
	return true, nil
}

// writeClose writes the close frame with code and reason.
func (c *wsConn) writeClose(code int, reason string, timeout time.Duration) error {
	var p [125]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	n := 2 + copy(p[2:], reason)
	return c.writeFrame(opClose, p[:n], timeout)
}

// acceptWS answers a WebSocket handshake (RFC 6455 section 4.2) and
// returns the connection, with limit as the largest message it reads. On
// failure it has answered the request. originPatterns, when set, restricts
// the Origin header: its host must be the request's, or match one of the
// patterns (path.Match, case-insensitive; a pattern with :// matches
// scheme://host).
func acceptWS(w http.ResponseWriter, r *http.Request, originPatterns []string, limit int, timeout time.Duration) (*wsConn, error) {
	if code, err := checkUpgrade(w, r); err != nil {
		http.Error(w, err.Error(), code)
		return nil, err
	}
	if len(originPatterns) > 0 {
		if err := checkOrigin(r, originPatterns); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return nil, err
		}
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return nil, fmt.Errorf("relay: hijacking the WebSocket's connection: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	sum := sha1.Sum([]byte(strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key")) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("relay: answering the WebSocket handshake: %w", err)
	}
	_ = conn.SetDeadline(time.Time{}) // sessions bound their own writes
	return newWSConn(conn, buffered(brw.Reader), limit, timeout), nil
}

// buffered is what the client sent past the handshake request.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// checkUpgrade checks a WebSocket handshake request; on failure it returns
// the HTTP status to answer.
func checkUpgrade(w http.ResponseWriter, r *http.Request) (int, error) {
	if !r.ProtoAtLeast(1, 1) {
		return http.StatusUpgradeRequired, fmt.Errorf("WebSocket handshake: HTTP/1.1 needed, got %q", r.Proto)
	}
	if !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, errors.New("WebSocket handshake: Connection: Upgrade and Upgrade: websocket needed")
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, fmt.Errorf("WebSocket handshake: method %s, want GET", r.Method)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, fmt.Errorf("WebSocket handshake: version %q, only 13 is supported", r.Header.Get("Sec-WebSocket-Version"))
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, errors.New("WebSocket handshake: one Sec-WebSocket-Key needed")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, fmt.Errorf("WebSocket handshake: Sec-WebSocket-Key %q is not base64 of 16 bytes", keys[0])
	}
	return 0, nil
}

// hasToken reports whether a comma-separated header has token (any case).
func hasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkOrigin checks the Origin header against the request's host and the
// patterns. A request without Origin (not from a browser) passes.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("WebSocket handshake: Origin %q: %w", origin, err)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("WebSocket handshake: Origin %q is not allowed for host %q", origin, r.Host)
}
