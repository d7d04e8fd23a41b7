package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// Session limits (docs/PROTOCOL.md §9.2).
const (
	// AuthTimeout is how long a client has to authenticate after connecting.
	AuthTimeout = 10 * time.Second
	// SendQueueLen bounds a session's queue of frames waiting to be written.
	// Overload policy: an envelope that finds the queue full is dropped
	// (counted as slow_consumer) and the session is closed with 1013.
	SendQueueLen = 256
	// RateLimit and RateBurst limit the frames a session may send.
	RateLimit = 50
	RateBurst = 100
	// FloodLimit is the number of rate-limited frames after which a session
	// is closed with 1008. The count restarts after floodReset without a
	// refusal.
	FloodLimit = 1000
	floodReset = 10 * time.Second
	// WriteTimeout bounds every write to a client (a batch of queued
	// frames shares one).
	WriteTimeout = 10 * time.Second
	// CloseGrace bounds a close: the final frame and the close handshake;
	// then the TCP connection is dropped.
	CloseGrace = 2 * time.Second
	// DefaultPingInterval and DefaultPingTimeout are the relay's liveness
	// check of an authenticated session (Options.PingInterval/PingTimeout):
	// a WebSocket ping after every interval, and a session whose pong does
	// not come within the timeout is dropped, so a dead client is gone (its
	// callers get offline) within interval+timeout, 25 s by default.
	DefaultPingInterval = 15 * time.Second
	DefaultPingTimeout  = 10 * time.Second
)

// WebSocket close codes used by the relay.
const (
	StatusUnauthorized websocket.StatusCode = 4001
	statusRestart      websocket.StatusCode = 1012 // service restart
	statusTryLater     websocket.StatusCode = 1013 // try again later
)

// session is one WebSocket connection. Its reader runs on the HTTP handler
// goroutine; frames to the client are queued (bounded) and written by a
// writer goroutine that exists only while the queue is non-empty, so an idle
// session costs one goroutine. Notices answering the client's own frames are
// written directly by the reader, which pushes back on a client that floods
// without reading.
type session struct {
	srv     *Server
	conn    *websocket.Conn
	netConn net.Conn // under conn, for a forced close
	id      uint64
	alias   identity.Alias // set once authenticated
	log     *slog.Logger

	routed      bool // registered with the router
	limiter     *rate.Limiter
	refused     int // rate-limited frames in the current flood
	lastRefused time.Time

	mu       sync.Mutex
	queue    [][]byte
	writing  bool // a writer goroutine is running (or open holds the queue)
	closing  bool
	draining bool           // node shutdown: close once the queue is written (drain)
	reason   string         // disconnect reason (metrics label), set by kill
	wg       sync.WaitGroup // writer, closer and pinger goroutines
	pinger   *time.Timer    // the next liveness ping (see ping)
}

func (s *session) now() time.Time { return s.srv.now() }

// enqueue queues msg for the client without blocking. On a full queue the
// frame is dropped and the session closed (slow consumer).
func (s *session) enqueue(msg []byte) bool {
	s.mu.Lock()
	if s.closing {
		reason := s.dropReasonLocked()
		s.mu.Unlock()
		s.srv.metrics.drops.Inc(reason)
		return false
	}
	if len(s.queue) >= s.srv.tun.queueLen {
		s.mu.Unlock()
		s.srv.metrics.drops.Inc(DropSlowConsumer)
		s.kill(statusTryLater, "slow_consumer", nil)
		return false
	}
	s.queue = append(s.queue, msg)
	if !s.writing {
		s.writing = true
		s.wg.Add(1)
		go s.writeLoop()
	}
	s.mu.Unlock()
	return true
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
	var batch [][]byte
	for {
		s.mu.Lock()
		if s.closing || len(s.queue) == 0 {
			s.writing = false
			if cap(s.queue) > 16 {
				s.queue = nil // give back memory after a burst
			}
			if s.draining {
				s.closeLocked(statusRestart, "shutdown", reconnectFrame)
			}
			s.mu.Unlock()
			return
		}
		batch, s.queue = s.queue, batch[:0]
		s.mu.Unlock()
		if h := s.srv.tun.beforeBatch; h != nil {
			h(s)
		}
		// One write timeout bounds the whole batch.
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.tun.writeTimeout)
		for i, m := range batch {
			if err := s.conn.Write(ctx, websocket.MessageText, m); err != nil {
				cancel()
				// The rest of the batch, this frame included, is lost.
				s.mu.Lock()
				s.srv.metrics.drops.Add(s.dropReasonLocked(), uint64(len(batch)-i))
				s.closeLocked(websocket.StatusInternalError, "write_error", nil)
				s.mu.Unlock()
				return
			}
			batch[i] = nil
		}
		cancel()
	}
}

// write writes one frame with the write timeout.
func (s *session) write(msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.tun.writeTimeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, msg)
}

// writeDirect writes a notice from the reader goroutine, unless closing.
func (s *session) writeDirect(msg []byte) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return errSessionClosing
	}
	return s.write(msg)
}

var errSessionClosing = errors.New("relay: session closing")

// kill closes the session once: it drops the queue (counted as
// session_closed, or shutdown while draining), optionally writes final, then
// closes the WebSocket with code and reason. It never blocks.
func (s *session) kill(code websocket.StatusCode, reason string, final []byte) {
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
func (s *session) closeLocked(code websocket.StatusCode, reason string, final []byte) {
	if s.closing {
		return
	}
	s.closing = true
	s.reason = reason
	if n := len(s.queue); n > 0 {
		s.srv.metrics.drops.Add(s.dropReasonLocked(), uint64(n))
	}
	s.queue = nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// A client that does not read never completes the close handshake
		// (nor takes the final frame): drop the TCP connection after a grace.
		force := time.AfterFunc(s.srv.tun.closeGrace, func() { _ = s.netConn.Close() })
		defer force.Stop()
		if final != nil {
			_ = s.write(final)
		}
		_ = s.conn.Close(code, reason)
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
	s.log = s.log.With("alias", alias)
	// Envelopes routed before "ready" is written wait in the queue: mark the
	// writer busy until then.
	s.mu.Lock()
	s.writing = true
	s.mu.Unlock()
	if err := s.srv.router.add(s); errors.Is(err, errRouterClosed) {
		s.kill(statusRestart, "shutdown", reconnectFrame) // authenticated while the node shuts down
		return false
	} else if err != nil {
		s.log.Warn("relay: cannot route session", "err", err)
		s.kill(websocket.StatusInternalError, "routing unavailable", nil)
		return false
	}
	s.routed = true
	s.srv.metrics.sessions.Inc()
	ready := encodeFrame(readyFrame{Type: "ready", Alias: alias, Token: s.srv.tokens.Issue(alias), TokenExpiresIn: int(TokenTTL / time.Second), Time: s.now().UnixMilli()})
	if err := s.writeDirect(ready); err != nil {
		return false
	}
	s.mu.Lock()
	s.writing = false
	if !s.closing && len(s.queue) > 0 {
		s.writing = true
		s.wg.Add(1)
		go s.writeLoop()
	} else if s.draining {
		s.closeLocked(statusRestart, "shutdown", reconnectFrame)
	}
	s.mu.Unlock()
	s.log.Info("relay: session ready")
	s.limiter = rate.NewLimiter(rate.Limit(s.srv.tun.rateLimit), s.srv.tun.rateBurst)
	s.mu.Lock()
	s.schedulePingLocked()
	s.mu.Unlock()
	return true
}

// schedulePingLocked arms the next liveness ping. s.mu is held. An idle
// session holds only a timer for it; the goroutine runs while a ping waits.
func (s *session) schedulePingLocked() {
	d := s.srv.tun.pingInterval
	if s.closing || d <= 0 {
		return
	}
	if s.pinger == nil {
		s.pinger = time.AfterFunc(d, s.ping)
	} else {
		s.pinger.Reset(d)
	}
}

// ping sends a WebSocket ping (answered by the client's WebSocket stack, a
// browser's too, with a pong that the reader consumes: it never reaches
// handleFrame) and drops the session when no pong comes within the
// timeout: the client is gone without a close (its network changed, its
// machine slept, a NAT forgot the connection). The TCP connection is
// closed at once: a dead peer would never complete a close handshake.
func (s *session) ping() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.tun.pingTimeout)
	err := s.conn.Ping(ctx)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.schedulePingLocked()
		return
	}
	if s.closing {
		return
	}
	s.log.Info("relay: dropping a session that did not answer a ping", "err", err)
	s.closeLocked(websocket.StatusGoingAway, "ping_timeout", nil)
	_ = s.netConn.Close()
}

// serve reads the client's frames until the connection closes.
func (s *session) serve(ctx context.Context) {
	for {
		typ, data, err := s.conn.Read(ctx)
		if err != nil {
			s.readClosed(err)
			return
		}
		s.handleFrame(typ, data)
	}
}

// finish closes the session (if not yet closing), waits for its writer and
// closer, and unregisters it.
func (s *session) finish() {
	s.kill(websocket.StatusNormalClosure, "closed", nil)
	s.mu.Lock()
	if s.pinger != nil {
		s.pinger.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if !s.routed {
		return
	}
	s.srv.router.remove(s)
	s.srv.metrics.sessions.Dec()
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	s.srv.metrics.disconnects.WithLabelValues(reason).Inc()
	s.log.Info("relay: session closed", "reason", reason)
}

// readClosed records why reading stopped.
func (s *session) readClosed(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		s.kill(websocket.StatusMessageTooBig, "frame_too_big", nil)
	case websocket.CloseStatus(err) != -1:
		s.kill(websocket.StatusNormalClosure, "client_closed", nil)
	case errors.Is(err, io.EOF):
		s.kill(websocket.StatusNormalClosure, "client_closed", nil)
	default:
		s.kill(websocket.StatusNormalClosure, "read_error", nil)
	}
}

// authenticate runs §9.2 steps 1 and 2 and returns the authenticated alias.
func (s *session) authenticate(ctx context.Context) (identity.Alias, bool) {
	challenge := make([]byte, challengeSize)
	if _, err := io.ReadFull(rand.Reader, challenge); err != nil {
		s.kill(websocket.StatusInternalError, "internal error", nil)
		return "", false
	}
	timer := time.AfterFunc(s.srv.tun.authTimeout, func() {
		s.srv.authFailure("ws_timeout")
		s.kill(StatusUnauthorized, "unauthorized: authentication timeout", nil)
	})
	defer timer.Stop()
	if err := s.writeDirect(encodeFrame(challengeFrame{Type: "challenge", Challenge: challenge})); err != nil {
		return "", false
	}
	typ, data, err := s.conn.Read(ctx)
	if err != nil {
		s.readClosed(err)
		return "", false
	}
	alias, sig, err := decodeAuth(data)
	if err != nil || typ != websocket.MessageText {
		s.srv.authFailure("ws_unauthenticated_frame")
		s.kill(StatusUnauthorized, "unauthorized: expected an auth frame", nil)
		return "", false
	}
	rec, err := s.srv.dir.Lookup(ctx, alias)
	if errors.Is(err, ErrNotFound) {
		s.srv.authFailure("ws_unknown_alias")
		s.kill(StatusUnauthorized, "unauthorized: unknown alias", nil)
		return "", false
	}
	if err != nil {
		s.log.Warn("relay: directory lookup failed", "err", err)
		s.kill(websocket.StatusTryAgainLater, "directory unavailable", nil)
		return "", false
	}
	if !ed25519.Verify(rec.Ed25519, WSAuthMessage(challenge), sig) {
		s.srv.authFailure("ws_bad_signature")
		s.kill(StatusUnauthorized, "unauthorized: bad signature", nil)
		return "", false
	}
	if !timer.Stop() {
		return "", false // timed out meanwhile
	}
	return alias, true
}

// handleFrame processes one frame of an authenticated session.
func (s *session) handleFrame(typ websocket.MessageType, data []byte) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return // read only to complete the close handshake
	}
	now := s.now()
	if !s.limiter.AllowN(now, 1) {
		s.srv.metrics.refused.WithLabelValues(string(codeRateLimited)).Inc()
		if now.Sub(s.lastRefused) > floodReset {
			s.refused = 0
		}
		s.refused++
		s.lastRefused = now
		if s.refused >= s.srv.tun.floodLimit {
			s.log.Info("relay: closing a flooding session")
			s.kill(websocket.StatusPolicyViolation, "rate_limited", nil)
			return
		}
		s.notice(&frameError{codeRateLimited, "too many frames, slow down", frameID(data)})
		return
	}
	if typ != websocket.MessageText {
		s.srv.metrics.refused.WithLabelValues(string(codeMalformed)).Inc()
		s.notice(&frameError{Code: codeMalformed, Message: "frames must be text"})
		return
	}
	env, ferr := decodeFrame(data, s.alias)
	if ferr != nil && ferr.Code == codeUnknownType && isPingFrame(data) {
		// The client's liveness check (a browser cannot send WebSocket
		// pings): answered at once, like a notice.
		_ = s.writeDirect(pongFrame)
		return
	}
	if ferr != nil {
		s.srv.metrics.refused.WithLabelValues(string(ferr.Code)).Inc()
		s.notice(ferr)
		return
	}
	logCall(s.log, env)
	s.srv.router.publish(s, env)
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
