package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// Session limits (docs/PROTOCOL.md §9.2).
const (
	// AuthTimeout is how long a client has to authenticate after connecting.
	AuthTimeout = 10 * time.Second
	// SendQueueLen bounds a session's queue of frames waiting to be written
	// (SendQueueBytes its bytes). Overload policy: when a routed envelope
	// finds the queue full, a session whose writer has written nothing for
	// stallTimeout is a slow consumer (the envelope is dropped, counted as
	// slow_consumer, and the session closed with 1013); a session that is
	// draining keeps its connection and the heaviest sender's frames are
	// dropped instead (recipient_busy, the sender is told).
	SendQueueLen = 256
	// RateLimit and RateBurst limit the frames a session may send.
	RateLimit = 50
	RateBurst = 100
	// FloodLimit is the number of rate-limited frames after which a session
	// is closed with 1008. The count restarts after floodReset without a
	// refusal.
	FloodLimit = 1000
	floodReset = 10 * time.Second
	// FrameFloodLimit is the number of WebSocket frames past the session's
	// frame budget (see onWireFrame) after which it is closed with 1008.
	// Lower than FloodLimit: every frame is answered or parsed before the
	// close (a ping with a pong: a write each), and the budget is twice the
	// message rate, which no client exceeds but by flooding.
	FrameFloodLimit = 100
	// WriteTimeout bounds every write to a client (a batch of queued
	// frames shares one).
	WriteTimeout = 10 * time.Second
	// CloseGrace bounds a close: the final frame and the close handshake;
	// then the TCP connection is dropped.
	CloseGrace = 2 * time.Second
	// DefaultPingInterval and DefaultPingTimeout are the relay's liveness
	// check of an authenticated session (Options.PingInterval/PingTimeout):
	// a WebSocket ping after an interval without a frame from the client,
	// and a session that sends nothing within the timeout after it is
	// dropped, so a dead client is gone (its callers get offline) within
	// interval+timeout of its last frame, 30 s by default. The interval is
	// longer than the SDKs' own 15 s pings: the relay pings only clients
	// that stopped pinging, and a live idle client's connection carries
	// one ping and pong per 15 s, not two.
	DefaultPingInterval = 20 * time.Second
	DefaultPingTimeout  = 10 * time.Second
)

// WebSocket close codes used by the relay.
const (
	StatusUnauthorized = 4001
	statusPolicy       = 1008 // policy violation
	statusRestart      = 1012 // service restart
	statusTryLater     = 1013 // try again later
)

// session is one WebSocket connection. Its reader runs on the HTTP handler
// goroutine until the session is ready, then on a goroutine of its own,
// which ends as soon as nothing is left to read (the poller holds the
// socket); the poller's goroutine then serves what the client sends next
// (wake), handing the session to a goroutine of its own again only for
// what could wait. A frame for the client that finds nothing queued is
// written at once by the goroutine that routes it when the socket takes it
// without waiting (writeInline); else frames are queued (bounded) and
// written by a writer goroutine that exists only while the queue is
// non-empty, so an idle session costs no goroutine. Notices answering the
// client's own frames are written directly by the reader, which pushes
// back on a client that floods without reading.
type session struct {
	srv   *Server
	ws    *wsConn
	id    uint64
	alias identity.Alias // set once authenticated

	routed      bool           // registered with the router
	counted     bool           // counted in the alias's sessions (aliasLimits)
	limiter     *rate.Limiter  // the alias's, shared by its sessions (aliasLimits)
	byteLim     *rate.Limiter  // the alias's bytes, shared likewise
	bulkLim     *bulkAllowance // the alias's BulkAllowance, shared likewise
	refused     int            // rate-limited frames in the current flood
	lastRefused time.Time

	// The WebSocket frame budget (onWireFrame), on the reading goroutine.
	frameLim       *rate.Limiter
	frameRefused   int
	lastFrameFlood time.Time

	mu       sync.Mutex
	queue    []outFrame
	qBytes   int                    // bytes in queue
	bySender map[identity.Alias]int // bytes in queue per sender
	progress time.Time              // last write finished, or the writer started
	inflight bool                   // the writer is writing queue[0]
	writing  bool                   // a writer goroutine is running (or open holds the queue)
	closing  bool
	closed   chan struct{}  // closed with closing
	draining bool           // node shutdown: close once the queue is written (drain)
	reason   string         // disconnect reason (metrics label), set by kill
	wg       sync.WaitGroup // writer and closer goroutines
	pinger   *time.Timer    // the next liveness check, or the end of the wait for its pong (see ping)
	pingWait bool           // a ping is out: the pinger's end is the pong's deadline
	pingSent int64          // when it went out (monoNow)
	pingsOut atomic.Int32   // relay pings whose pong is not charged yet
	heard    atomic.Int64   // when the client's last frame came (monoNow), set by the reader

	// Served inline by the poller (see wake), on its goroutine: what was
	// left to a goroutine of the session's own, run before it reads on.
	inline bool
	later  func()
}

func (s *session) now() time.Time { return s.srv.now() }

// outFrame is a frame queued for the client: a routed envelope (from and
// reply set) or a notice of the relay's (from empty).
type outFrame struct {
	data  []byte
	from  identity.Alias // the envelope's sender, for fairness
	reply string         // the sender's reply subject, for recipient_busy
}

// enqueue queues a notice for the client without blocking (see enqueueFrame).
func (s *session) enqueue(msg []byte) bool {
	ok, _, _ := s.enqueueFrame(outFrame{data: msg})
	return ok
}

// enqueueFrame queues f without blocking. It returns whether f was queued
// (or written at once), the frames dropped to make room or refused (f
// itself when not queued for lack of room): the caller tells their senders
// (recipient_busy), and whether f.data is kept (queued, not written yet:
// the caller must not reuse it). A session that has not written for
// stallTimeout with a full queue is closed instead (slow_consumer).
func (s *session) enqueueFrame(f outFrame) (queued bool, dropped []outFrame, kept bool) {
	n := len(f.data)
	s.mu.Lock()
	if s.closing {
		reason := s.dropReasonLocked()
		s.mu.Unlock()
		s.srv.metrics.drops.Inc(reason)
		return false, nil, false
	}
	tun := &s.srv.tun
	full := func() bool { return len(s.queue) >= tun.queueLen || s.qBytes+n > tun.queueBytes }
	if full() {
		if s.writing && s.now().Sub(s.progress) > tun.stallTimeout {
			s.mu.Unlock()
			s.srv.metrics.drops.Inc(DropSlowConsumer)
			s.kill(statusTryLater, "slow_consumer", nil)
			return false, nil, false
		}
		// Fair drop: the heaviest sender's frames go first, f included.
		for full() {
			heavy, hb := s.heaviestLocked()
			var ev outFrame
			ok := heavy != f.from && s.bySender[f.from]+n < hb
			if ok {
				ev, ok = s.evictLocked(heavy)
			}
			if !ok {
				s.mu.Unlock()
				s.srv.metrics.drops.Add(DropRecipientBusy, uint64(1+len(dropped)))
				return false, append(dropped, f), false
			}
			dropped = append(dropped, ev)
		}
	}
	if f.reply == "" {
		s.srv.budget.force(n) // the relay's own notices: small, bounded by their cause
	} else if !s.srv.budget.take(n) {
		s.mu.Unlock()
		s.srv.metrics.drops.Add(DropRecipientBusy, uint64(len(dropped)))
		s.srv.metrics.drops.Inc(DropNodeBudget)
		return false, append(dropped, f), false
	}
	s.queue = append(s.queue, f)
	s.qBytes += n
	if s.bySender == nil {
		s.bySender = make(map[identity.Alias]int)
	}
	s.bySender[f.from] += n
	inline := false
	if !s.writing {
		// The queue was empty: f is written at once, here, if the socket
		// takes it without waiting (writeInline), else by a writer.
		s.writing = true
		s.progress = s.now()
		if inline = s.srv.tun.beforeBatch == nil; inline {
			s.inflight = true
		} else {
			s.wg.Add(1)
			go s.writeLoop()
		}
	}
	s.mu.Unlock()
	if len(dropped) > 0 {
		s.srv.metrics.drops.Add(DropRecipientBusy, uint64(len(dropped)))
	}
	if inline {
		return true, dropped, s.writeInline(f)
	}
	return true, dropped, true
}

// writeInline writes f, the only frame queued, on the caller's goroutine
// (the sender's reader, or a dispatcher) when the client's socket takes it
// at once; otherwise, and for the frames queued meanwhile, it starts the
// writer. It never waits for the client, so a recipient that does not read
// holds up no sender: the writer waits for it, bounded as ever by the write
// timeout and the stall rules of enqueueFrame. Called with s.writing and
// s.inflight set by enqueueFrame, s.mu not held. It reports whether f is
// still queued (kept, see enqueueFrame).
func (s *session) writeInline(f outFrame) (kept bool) {
	taken, err := s.ws.tryWrite(opText, f.data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight = false
	if s.closing {
		// kill dropped and counted the rest of the queue; f is ours.
		if !taken {
			s.srv.metrics.drops.Inc(s.dropReasonLocked())
		}
		s.writing = false
		return false
	}
	if err != nil {
		s.srv.metrics.drops.Inc(s.dropReasonLocked())
		s.closeLocked(closeInternalError, "write_error", nil)
		s.writing = false
		return false
	}
	if taken {
		s.queue[0] = outFrame{}
		s.queue = s.queue[1:]
		s.unqueuedLocked(f)
		s.progress = s.now()
	}
	if len(s.queue) > 0 || s.ws.hasRest() {
		s.wg.Add(1)
		go s.writeLoop()
		return !taken
	}
	s.writerDoneLocked()
	return false
}

// writerDoneLocked ends writing with the queue empty: a draining session
// closes. s.mu is held.
func (s *session) writerDoneLocked() {
	s.writing = false
	if cap(s.queue) > 16 {
		s.queue = nil // give back memory after a burst
	}
	if s.draining {
		s.closeLocked(statusRestart, "shutdown", reconnectFrame)
	}
}

// heaviestLocked is the sender with the most bytes queued. s.mu is held.
func (s *session) heaviestLocked() (identity.Alias, int) {
	var heavy identity.Alias
	hb := -1
	for a, b := range s.bySender {
		if b > hb {
			heavy, hb = a, b
		}
	}
	return heavy, hb
}

// evictLocked removes the last queued frame of sender from the queue and
// returns it; false when sender has none but the one being written. s.mu is
// held.
func (s *session) evictLocked(sender identity.Alias) (outFrame, bool) {
	first := 0
	if s.inflight {
		first = 1
	}
	for i := len(s.queue) - 1; i >= first; i-- {
		if f := s.queue[i]; f.from == sender {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.unqueuedLocked(f)
			return f, true
		}
	}
	return outFrame{}, false
}

// unqueuedLocked accounts for f leaving the queue. s.mu is held.
func (s *session) unqueuedLocked(f outFrame) {
	n := len(f.data)
	s.qBytes -= n
	s.srv.budget.give(n)
	if b := s.bySender[f.from] - n; b > 0 {
		s.bySender[f.from] = b
	} else {
		delete(s.bySender, f.from)
	}
}

// dropReasonLocked is the reason frames a closing session discards are
// counted under. s.mu is held.
func (s *session) dropReasonLocked() DropReason {
	if s.draining {
		return DropShutdown
	}
	return DropSessionClosed
}

// writeLoop writes queued frames until the queue is empty or the session
// closes; a draining session closes once its queue is empty.
func (s *session) writeLoop() {
	defer s.wg.Done()
	held := false
	for {
		s.mu.Lock()
		if !s.closing && len(s.queue) == 0 && s.ws.hasRest() {
			// The rest of a frame writeInline wrote in part.
			s.mu.Unlock()
			err := s.ws.flushRest(s.srv.tun.writeTimeout)
			s.mu.Lock()
			if err != nil && !s.closing {
				s.srv.metrics.drops.Inc(s.dropReasonLocked())
				s.closeLocked(closeInternalError, "write_error", nil)
			}
			s.progress = s.now()
		}
		if s.closing || len(s.queue) == 0 {
			s.writerDoneLocked()
			s.mu.Unlock()
			return
		}
		// The frame stays queued (and counted) until it is written, so that
		// the queue's bytes and senders are what the client has not got.
		f := s.queue[0]
		s.inflight = true
		s.mu.Unlock()
		if h := s.srv.tun.beforeBatch; h != nil && !held {
			h(s)
		}
		held = true
		// Each frame has the write timeout (at least 90 % of it, see
		// setWriteDeadline): a client that reads slowly but steadily is not
		// cut off by a long queue.
		err := s.ws.writeFrame(opText, f.data, s.srv.tun.writeTimeout)
		s.mu.Lock()
		s.inflight = false
		if s.closing {
			// kill dropped and counted the rest of the queue; f is ours.
			if err != nil {
				s.srv.metrics.drops.Inc(s.dropReasonLocked())
			}
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.queue[0] = outFrame{}
		s.queue = s.queue[1:]
		s.unqueuedLocked(f)
		if err != nil {
			// This frame is lost, and the rest with the session.
			s.srv.metrics.drops.Inc(s.dropReasonLocked())
			s.closeLocked(closeInternalError, "write_error", nil)
			s.mu.Unlock()
			return
		}
		s.progress = s.now()
		s.mu.Unlock()
	}
}

// write writes one frame with the write timeout.
func (s *session) write(msg []byte) error {
	return s.ws.writeFrame(opText, msg, s.srv.tun.writeTimeout)
}

// writeDirect writes a notice from the reader, unless closing. Served
// inline (see wake), it writes only what the client's socket takes at once
// and leaves the rest to s.later.
func (s *session) writeDirect(msg []byte) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errSessionClosing
	}
	if s.inline {
		return s.tryDirect(opText, msg)
	}
	return s.write(msg)
}

// tryDirect writes a frame from wake if the client's socket takes it at
// once, and leaves it, or what is left of it, to s.later.
func (s *session) tryDirect(op byte, p []byte) error {
	taken, err := s.ws.tryWrite(op, p)
	switch {
	case err != nil: // the connection is dropped: the reader reads its end
		return err
	case !taken:
		p = bytes.Clone(p) // a ping's payload is in the read buffer
		s.later = func() { _ = s.ws.writeFrame(op, p, s.srv.tun.writeTimeout) }
	case s.ws.hasRest():
		s.later = func() { _ = s.ws.flushRest(s.srv.tun.writeTimeout) }
	}
	return nil
}

var errSessionClosing = errors.New("relay: session closing")

// kill closes the session once: it drops the queue (counted as
// session_closed, or shutdown while draining), optionally writes final, then
// closes the WebSocket with code and reason. It never blocks.
func (s *session) kill(code int, reason string, final []byte) {
	s.mu.Lock()
	s.closeLocked(code, reason, final)
	s.mu.Unlock()
}

// drain closes the session for the node's shutdown once the frames queued
// so far, and those queued meanwhile, are written: then it writes
// {"type":"reconnect"} and closes with 1012. A session with nothing queued
// (or not yet authenticated) closes at once. It never blocks; Server.Shutdown
// bounds the wait by dropping the connection.
func (s *session) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.draining {
		return
	}
	s.draining = true
	if !s.writing {
		s.closeLocked(statusRestart, "shutdown", reconnectFrame)
	}
	// Otherwise the writer (or open, once ready is written) closes the
	// session when the queue is empty.
}

// closeLocked is kill with s.mu held.
func (s *session) closeLocked(code int, reason string, final []byte) {
	if s.closing {
		return
	}
	s.closing = true
	close(s.closed)
	s.reason = reason
	n := len(s.queue)
	if s.inflight {
		n-- // the writer counts the frame it is writing, if it is lost
	}
	if n > 0 {
		s.srv.metrics.drops.Add(s.dropReasonLocked(), uint64(n))
	}
	s.srv.budget.give(s.qBytes)
	s.queue, s.qBytes, s.bySender = nil, 0, nil
	s.wg.Add(1)
	if s.pinger != nil {
		s.pinger.Stop()
	}
	go func() {
		defer s.wg.Done()
		// A client that does not read never completes the close handshake
		// (nor takes the final frame): drop the TCP connection after a grace.
		force := time.AfterFunc(s.srv.tun.closeGrace, s.ws.close)
		defer force.Stop()
		if final != nil {
			_ = s.write(final)
		}
		_ = s.ws.writeClose(code, reason, s.srv.tun.closeGrace)
		// The reader takes the client's close frame (see finish), or fails
		// when the connection is dropped.
		s.ws.reading.Wait()
		s.ws.close()
	}()
}

// open runs the handshake of §9.2 (challenge, auth, ready) and registers the
// session for routing. It returns false when the session ended; the caller
// then calls finish. It runs on the HTTP handler goroutine, whose stack grows
// deep during the handshake; serve runs on a fresh goroutine that stays
// small while the session idles.
func (s *session) open(ctx context.Context) bool {
	alias, ok := s.authenticate(ctx)
	if !ok {
		return false
	}
	s.alias = alias
	lims, ok := s.srv.aliases.acquire(ctx, alias, s.now(), &s.srv.tun)
	if !ok {
		// The newest session is refused (see MaxSessionsPerAlias).
		s.srv.metrics.sessionsRefused.Inc()
		s.kill(statusTryLater, "too_many_sessions", nil)
		return false
	}
	s.counted, s.limiter, s.byteLim, s.bulkLim = true, lims.frames, lims.bytes, lims.bulk
	// Envelopes routed before "ready" is written wait in the queue: mark the
	// writer busy until then.
	s.mu.Lock()
	s.writing = true
	s.mu.Unlock()
	if s.srv.tun.afterAcquire != nil {
		s.srv.tun.afterAcquire(alias)
	}
	subscribed, err := s.srv.router.add(s)
	if errors.Is(err, errRouterClosed) {
		s.kill(statusRestart, "shutdown", reconnectFrame) // authenticated while the node shuts down
		return false
	} else if err != nil {
		s.logger().Warn("relay: cannot route session", "err", err)
		s.kill(closeInternalError, "routing unavailable", nil)
		return false
	}
	if subscribed {
		// A change of the alias's nodes between acquire and the
		// subscription was announced while this node could not hear it.
		if err := s.srv.aliases.refresh(ctx, alias, s.now(), &s.srv.tun); err != nil {
			s.logger().Warn("relay: cannot read the alias's nodes in the cluster; keeping its split", "err", err)
		}
	}
	s.routed = true
	s.srv.metrics.sessions.Inc()
	ready := encodeFrame(readyFrame{Type: "ready", Alias: alias, Token: s.srv.tokens.Issue(alias, s.srv.tun.tokenTTL), TokenExpiresIn: int(s.srv.tun.tokenTTL / time.Second), Time: s.now().UnixMilli()})
	if err := s.writeDirect(ready); err != nil {
		return false
	}
	s.mu.Lock()
	s.writing = false
	if !s.closing && len(s.queue) > 0 {
		s.writing = true
		s.progress = s.now()
		s.wg.Add(1)
		go s.writeLoop()
	} else if s.draining {
		s.closeLocked(statusRestart, "shutdown", reconnectFrame)
	}
	s.mu.Unlock()
	s.logger().Info("relay: session ready")
	s.mu.Lock()
	s.schedulePingLocked()
	s.mu.Unlock()
	return true
}

// schedulePingLocked arms the next liveness check. s.mu is held. An idle
// session holds only a timer for it, no goroutine. The first comes after a
// random half to whole interval: sessions that connected together (a relay
// restart's reconnections, a load test) would otherwise be checked, and
// wake, together for as long as they stay.
func (s *session) schedulePingLocked() {
	d := s.srv.tun.pingInterval
	if s.closing || d <= 0 {
		return
	}
	if s.pinger == nil {
		s.pinger = time.AfterFunc(d/2+mrand.N(d/2+1), s.ping)
	} else {
		s.pinger.Reset(d)
	}
}

// monoEpoch and monoNow: the monotonic clock as a number, for times kept
// in atomics.
var monoEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// ping is the liveness check: when the relay has heard nothing from the
// client (no frame of any kind) for the ping interval, it sends a
// WebSocket ping (answered by the client's WebSocket stack, a browser's
// too, with a pong that the reader consumes: it never reaches handleFrame)
// and arms the pinger for the pong's deadline; when the pinger fires again
// and nothing came since the ping, the session is dropped: the client is
// gone without a close (its network changed, its machine slept, a NAT
// forgot the connection). The TCP connection is closed at once: a dead
// peer would never complete a close handshake. A client that was heard
// within the interval is not pinged: the check moves to an interval after
// its last frame. The SDKs ping the relay every 15 s themselves, which
// moves it too (alive), so the relay pings only clients that stopped.
func (s *session) ping() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	now, heard := monoNow(), s.heard.Load()
	if s.pingWait {
		if heard <= s.pingSent {
			s.logger().Info("relay: dropping a session that did not answer a ping")
			s.dropDeadLocked()
			s.mu.Unlock()
			return
		}
		s.pingWait = false
	}
	if silent := time.Duration(now - heard); silent < s.srv.tun.pingInterval {
		s.pinger.Reset(s.srv.tun.pingInterval - silent)
		s.mu.Unlock()
		return
	}
	s.pingWait = true
	s.pingSent = now
	s.pinger.Reset(s.srv.tun.pingTimeout)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.pingsOut.Add(1)
	if err := s.ws.writeFrame(opPing, nil, s.srv.tun.pingTimeout); err != nil {
		s.mu.Lock()
		if !s.closing {
			s.logger().Info("relay: dropping a session that did not take a ping", "err", err)
			s.dropDeadLocked()
		}
		s.mu.Unlock()
	}
}

// dropDeadLocked closes a session that failed its liveness check. s.mu is
// held.
func (s *session) dropDeadLocked() {
	s.closeLocked(closeGoingAway, "ping_timeout", nil)
	s.ws.close()
}

// alive notes the client's answer to a liveness ping or its own liveness
// check (a WebSocket ping, or {"type":"ping"}): the next check is due an
// interval later, and the timer need not fire before. Before the session
// is ready (no pinger yet) there is nothing to move.
func (s *session) alive() {
	s.mu.Lock()
	if s.pinger != nil {
		s.pingWait = false
		s.schedulePingLocked()
	}
	s.mu.Unlock()
}

// serve reads the client's frames until the connection closes (true), or
// until nothing is left to read between messages and the session is
// parked (false: the poller serves it again once the client sends, see
// wake).
func (s *session) serve() bool {
	for {
		op, data, err := s.ws.readMessage()
		if err == errWSIdle {
			if s.ws.park() {
				return false
			}
			continue
		}
		if err != nil {
			s.readClosed(err)
			return true
		}
		s.handleFrame(op, data)
	}
}

// wake serves a parked session on the poller's goroutine once its socket
// is readable, without a goroutine of its own: it reads the socket once,
// handles what came whole (messages in a single frame of at most
// bulkFrame bytes: envelopes, the client's {"type":"ping"}; WebSocket
// pings and pongs) and parks the session again. Whatever could wait (the
// rest of a frame, a close frame, a bulk frame, the end of the
// connection, a frame held for the byte budget, a notice or a pong the
// client's socket does not take at once) goes on a goroutine of the
// session's own (run, after s.later), as before the park: a client holds
// up no other session. The poller's wait is level-triggered: a session
// parked with bytes left (the read filled the buffer) or with its
// client's end behind them is woken again at once, after the other ready
// sessions.
func (s *session) wake() {
	c := s.ws
	switch err := c.readNow(); err {
	case nil:
	case errWSIdle: // nothing after all
		if !c.repark(false) {
			s.handOff(nil)
		}
		return
	default:
		c.failed = err // for run's reader
		c.unpark()
		s.handOff(nil)
		return
	}
	more := !c.drained
	c.drained = false // wake reads at once; run's reader reads anew
	s.inline = true
	for i := 0; ; i++ {
		if i == maxInline {
			// A read full of small frames (a flood, a burst): the rest on
			// the session's goroutine, the poller on to other sessions.
			s.inline = false
			c.unpark()
			s.handOff(nil)
			return
		}
		op, data, ok, empty := c.nextBuffered(s.srv.tun.bulkFrame)
		if !ok {
			s.inline = false
			if empty {
				c.release()
				if h := s.srv.tun.beforeRepark; h != nil {
					h(s)
				}
				if c.repark(more) {
					return
				}
			} else {
				c.unpark()
			}
			s.handOff(nil)
			return
		}
		switch op {
		case opPing:
			_ = s.tryDirect(opPong, data)
		case opPong:
		default:
			s.handleFrame(op, data)
		}
		if later := s.later; later != nil {
			s.inline, s.later = false, nil
			c.unpark()
			s.handOff(later)
			return
		}
	}
}

// maxInline bounds the frames one wake serves: a read of 4 KiB holds up to
// ~10 envelopes, and ~680 of the smallest frames.
const maxInline = 32

// handOff ends wake: a goroutine of the session's own runs later (if set)
// and reads on (run).
func (s *session) handOff(later func()) {
	if h := s.srv.tun.onHandOff; h != nil {
		h()
	}
	go func() {
		if later != nil {
			later()
		}
		s.run()
	}()
}

// finish closes the session (if not yet closing), reads until the client's
// close frame (or the connection's end), waits for its writer and closer,
// and unregisters it. It runs on the reading goroutine.
func (s *session) finish() {
	s.kill(closeNormal, "closed", nil)
	s.ws.drain()
	s.wg.Wait()
	if s.routed {
		s.srv.router.remove(s)
	}
	// The slot is freed once the session no longer takes envelopes (the
	// release may wait for the cluster's count).
	if s.counted {
		s.srv.aliases.release(context.Background(), s.alias, s.now(), &s.srv.tun)
	}
	if !s.routed {
		return
	}
	s.srv.metrics.sessions.Dec()
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	s.srv.metrics.disconnects.WithLabelValues(reason).Inc()
	s.logger().Info("relay: session closed", "reason", reason)
}

// logger is the session's logger: the alias is added to each line (a
// logger of its own would cost every idle session memory).
func (s *session) logger() *slog.Logger {
	if s.alias == "" {
		return s.srv.log
	}
	return s.srv.log.With("alias", s.alias)
}

// readClosed records why reading stopped.
func (s *session) readClosed(err error) {
	var ce *wsCloseError
	switch {
	case errors.Is(err, errWSTooBig):
		s.kill(closeTooBig, "frame_too_big", nil)
	case errors.As(err, &ce), errors.Is(err, io.EOF):
		s.kill(closeNormal, "client_closed", nil)
	case errors.Is(err, errWSProtocol):
		s.kill(closeProtocolError, "read_error", nil)
	default:
		s.kill(closeNormal, "read_error", nil)
	}
}

// authFailedReason is the close reason of every authentication failure
// (with 4001): one reason, so that the close does not tell whether an alias
// exists. The metrics and the log keep the cause.
const authFailedReason = "unauthorized"

// authenticate runs §9.2 steps 1 and 2 and returns the authenticated alias.
func (s *session) authenticate(ctx context.Context) (identity.Alias, bool) {
	challenge := make([]byte, challengeSize)
	if _, err := io.ReadFull(rand.Reader, challenge); err != nil {
		s.kill(closeInternalError, "internal error", nil)
		return "", false
	}
	timer := time.AfterFunc(s.srv.tun.authTimeout, func() {
		s.srv.authFailure("ws_timeout")
		s.kill(StatusUnauthorized, authFailedReason, nil)
	})
	defer timer.Stop()
	if err := s.writeDirect(encodeFrame(challengeFrame{Type: "challenge", Challenge: challenge})); err != nil {
		return "", false
	}
	op, data, err := s.ws.readMessage()
	if err != nil {
		s.readClosed(err)
		return "", false
	}
	alias, sig, err := decodeAuth(data)
	if err != nil || op != opText {
		s.srv.authFailure("ws_unauthenticated_frame")
		s.kill(StatusUnauthorized, authFailedReason, nil)
		return "", false
	}
	rec, err := s.srv.dir.Lookup(ctx, alias)
	if errors.Is(err, ErrNotFound) {
		s.srv.authFailure("ws_unknown_alias")
		s.kill(StatusUnauthorized, authFailedReason, nil)
		return "", false
	}
	if err != nil {
		s.logger().Warn("relay: directory lookup failed", "err", err)
		s.kill(statusTryLater, "directory unavailable", nil)
		return "", false
	}
	if !ed25519.Verify(rec.Ed25519, WSAuthMessage(challenge), sig) {
		s.srv.authFailure("ws_bad_signature")
		s.kill(StatusUnauthorized, authFailedReason, nil)
		return "", false
	}
	if !timer.Stop() {
		return "", false // timed out meanwhile
	}
	return alias, true
}

// handleFrame processes one frame of an authenticated session. Served
// inline (see wake), it does not wait: a frame that is to wait for the
// alias's byte budget leaves the rest of its handling to s.later.
func (s *session) handleFrame(op byte, data []byte) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return // read only to complete the close handshake
	}
	n := len(data)
	d := s.reserveBytes(n)
	if d > 0 && s.inline {
		s.later = func() {
			if s.hold(d) && s.paceBulk(n, d) {
				s.handleWithin(op, data)
			}
		}
		return
	}
	if d > 0 && !s.hold(d) {
		return // closed meanwhile
	}
	if s.paceBulk(n, d) {
		s.handleWithin(op, data)
	}
}

// handleWithin is handleFrame for a frame within the budgets.
func (s *session) handleWithin(op byte, data []byte) {
	now := s.now()
	if !s.limiter.AllowN(now, 1) {
		s.srv.metrics.refused.WithLabelValues(string(codeRateLimited)).Inc()
		if now.Sub(s.lastRefused) > floodReset {
			s.refused = 0
		}
		s.refused++
		s.lastRefused = now
		if s.refused >= s.srv.tun.floodLimit {
			s.logger().Info("relay: closing a flooding session")
			s.killFlooder()
			return
		}
		s.notice(&frameError{codeRateLimited, "too many frames, slow down", frameID(data)})
		return
	}
	if op != opText {
		s.srv.metrics.refused.WithLabelValues(string(codeMalformed)).Inc()
		s.notice(&frameError{Code: codeMalformed, Message: "frames must be text"})
		return
	}
	env, ferr := decodeFrame(data, s.alias)
	if ferr != nil && ferr.Code == codeUnknownType && isPingFrame(data) {
		// The client's liveness check (a browser cannot send WebSocket
		// pings): answered at once, like a notice.
		s.alive()
		_ = s.writeDirect(pongFrame)
		return
	}
	if ferr != nil {
		s.srv.metrics.refused.WithLabelValues(string(ferr.Code)).Inc()
		s.notice(ferr)
		return
	}
	logCall(s.logger, env)
	s.srv.router.publish(s, env)
}

// onWireFrame charges one WebSocket frame the client sent (any opcode,
// fragments and control frames included, as wsConn parses them) to the session's
// frame budget, twice its message rate limit. A session over the budget by
// FrameFloodLimit frames, with no pause of floodReset between them, is
// closed with 1008 (rate_limited). It runs on the reading goroutine.
func (s *session) onWireFrame(op byte) {
	s.heard.Store(monoNow())
	if op == opPing {
		s.alive()
	}
	// The pong answering the relay's own liveness ping is not the
	// client's traffic: it is not charged (one per ping at most).
	if op == opPong {
		s.alive()
		for n := s.pingsOut.Load(); n > 0; n = s.pingsOut.Load() {
			if s.pingsOut.CompareAndSwap(n, n-1) {
				return
			}
		}
	}
	now := s.now()
	if s.frameLim.AllowN(now, 1) {
		return
	}
	s.srv.metrics.framesOverBudget.Inc()
	if now.Sub(s.lastFrameFlood) > floodReset {
		s.frameRefused = 0
	}
	s.frameRefused++
	s.lastFrameFlood = now
	if s.frameRefused == s.srv.tun.frameFlood {
		s.logger().Info("relay: closing a session flooding WebSocket frames", "opcode", op)
		s.killFlooder()
	}
}

// killFlooder closes a flooding session with 1008 and stops reading it:
// its frames would otherwise be read (and pings answered) until the close
// handshake or the close grace ends.
func (s *session) killFlooder() {
	s.kill(statusPolicy, "rate_limited", nil)
	s.ws.stopReading()
}

// reserveBytes charges a frame of n bytes to the alias's byte budget and
// returns how long the reader is to wait before it goes on (paceBulk
// next): past the budget the relay reads the alias's sessions at the
// budget's rate (TCP pushes back on the sender), so bulk traffic is slowed
// rather than read at full speed and refused.
func (s *session) reserveBytes(n int) time.Duration {
	now := s.now()
	r := s.byteLim.ReserveN(now, n)
	if !r.OK() { // larger than the burst: cannot happen below the frame limit
		return 0
	}
	return r.DelayFrom(now)
}

// paceBulk makes a bulk frame (larger than bulkFrame, or one that waited
// d for the alias's budget) wait for its turn at the node's bulk pace
// (BulkRate), unless it is within the budget and the alias's
// BulkAllowance covers it; a frame of at most bulkFrame that did not wait
// goes at once. Each wait is at most maxThrottle; a frame that would wait
// longer for the bulk pace gives its turn back (its bytes are not added to
// the pace's backlog) and goes after maxThrottle, so that however many
// frames wait at once the backlog stays within maxThrottle of BulkRate and
// a frame that comes after an overload waits for what is left of it, not
// for every capped frame before it. It reports false when the session
// closed meanwhile.
func (s *session) paceBulk(n int, d time.Duration) bool {
	if d == 0 && (n <= s.srv.tun.bulkFrame || s.bulkLim.allow(s.now(), n, &s.srv.tun)) {
		return true
	}
	now := s.now()
	turn := s.srv.bulk().ReserveN(now, n)
	d = turn.DelayFrom(now)
	if d > s.srv.tun.maxThrottle {
		turn.CancelAt(now)
	}
	if d > 0 {
		return s.hold(d)
	}
	return true
}

// hold waits for d, at most maxThrottle, on the reading goroutine; false
// when the session closed meanwhile.
func (s *session) hold(d time.Duration) bool {
	t := time.NewTimer(min(d, s.srv.tun.maxThrottle))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return false
	}
}

// notice writes an error notice for a refused frame.
func (s *session) notice(e *frameError) {
	_ = s.writeDirect(encodeFrame(errorFrame{Type: "error", Code: e.Code, Message: e.Message, ID: e.ID}))
}

// frameID extracts a frame's id for a notice, if it has a valid one.
func frameID(data []byte) string {
	h, ok := wire.EnvelopeHead(data)
	if !ok || !validNoticeID(h.ID) {
		return ""
	}
	return h.ID
}
