package call

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/hot"
	"github.com/duetcall/duet/wire"
)

// Module is the call module: it places and receives one call at a time
// over a Signaler. Create it with New; it is safe for concurrent use. Close
// it when done.
type Module struct {
	opts Options
	sig  Signaler
	log  *slog.Logger

	status *hot.Value[Status]
	local  *hot.Value[Tracks]
	remote *hot.Value[Tracks]

	ctx     context.Context // the module's lifetime
	cancel  context.CancelFunc
	inbound chan *wire.Envelope
	wg      sync.WaitGroup // the signaling worker and call teardowns

	mu        sync.Mutex
	closed    bool
	cur       *session // the call in progress, until its teardown finished
	last      *session // the previous call, for Stats
	peers     map[identity.Alias]*peerSig
	drops     map[string]uint64     // signaling frames dropped, by reason
	replay    *wire.ReplayGuard     // nonces of every peer's frames
	sent      map[string]*sentFrame // recently sent envelopes, by id
	relayErrs map[string]uint64     // frames the relay refused, by code
	idPrefix  string
	idSeq     atomic.Uint64

	hooks hooks // test hooks, set before the first call
}

// hooks let this package's tests reach into pion; production code never sets
// them.
type hooks struct {
	settingEngine func(*webrtc.SettingEngine)
	rtpTap        func(Kind, *rtp.Packet)
	onRestart     func(callID string)
	// firstSeq is the sequence number of the first media frame sent under
	// the call's epoch-0 key (e2ee.EncryptorOptions.FirstSeq): close to
	// e2ee.RekeyFrames, the Encryptor signals rekey-needed after a few
	// frames.
	firstSeq uint32
}

// errNoSignaler is returned by every operation of a Module without one.
var errNoSignaler = errors.New("call: Options.Signaler is nil; pass a connected *client.Client")

// New returns a module using opts. It starts one goroutine that processes
// received signaling; Close stops it.
func New(opts Options) *Module {
	m := &Module{
		opts:      opts,
		sig:       opts.Signaler,
		log:       opts.Logger,
		status:    hot.New(Status{State: StateIdle}),
		local:     hot.New(Tracks{}),
		remote:    hot.New(Tracks{}),
		inbound:   make(chan *wire.Envelope, inboundQueue),
		peers:     make(map[identity.Alias]*peerSig),
		drops:     make(map[string]uint64),
		replay:    wire.NewReplayGuard(wire.DefaultReplayCapacity),
		sent:      make(map[string]*sentFrame),
		relayErrs: make(map[string]uint64),
		idPrefix:  newCallID()[:8],
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.worker()
	return m
}

// State returns the module's status as a hot value: a subscriber gets the
// current Status at once and every later one.
func (m *Module) State() *hot.Value[Status] { return m.status }

// LocalTracks returns the tracks the current call sends, as a hot value.
func (m *Module) LocalTracks() *hot.Value[Tracks] { return m.local }

// RemoteTracks returns the tracks received in the current call, as a hot
// value; a track appears when its first packet arrives.
func (m *Module) RemoteTracks() *hot.Value[Tracks] { return m.remote }

// Close hangs up a call in progress, stops the module's goroutines and ends
// the hot values' subscriptions. The module cannot be used afterwards.
func (m *Module) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	s := m.cur
	m.mu.Unlock()
	if s != nil {
		<-m.end(s, StateHangup, ReasonUserHangup, notifyHangup, nil)
	}
	m.cancel()
	m.wg.Wait()
	m.status.Close()
	m.local.Close()
	m.remote.Close()
	return nil
}

// Call places a call to peer. It returns once the offer is sent (the state
// is then calling); the call goes on in the background and its progress is
// in State. It fails with ErrInCall during another call, with an error
// wrapping client.ErrKeyChanged when peer's keys changed since they were
// pinned, and with other setup errors; after a failure the state is ended
// with ReasonError. The peer's keys are checked with the relay at every
// call; with a signaling session held for the peer (keys still the pinned
// ones) the offer goes out before that check returns, and Call returns
// once both are done.
func (m *Module) Call(ctx context.Context, peer identity.Alias, md Media) error {
	if m.sig == nil {
		return errNoSignaler
	}
	if !peer.Valid() {
		_, err := identity.ParseAlias(string(peer))
		return fmt.Errorf("call: %w", err)
	}
	if peer == m.sig.Alias() {
		return fmt.Errorf("call: cannot call yourself (%s)", peer)
	}
	if !md.Audio && !md.Video {
		return ErrNoMedia
	}
	md.Audio = true // a video call carries audio too
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.cur != nil {
		m.mu.Unlock()
		return ErrInCall
	}
	s := m.newSession(newCallID(), peer, false, md.Video)
	s.state = StateCalling
	s.setupDone = make(chan struct{})
	m.cur = s
	m.publishLocked(s, ReasonNone)
	m.mu.Unlock()

	if err := s.startCaller(ctx); err != nil {
		if errors.Is(err, ErrCallEnded) {
			return err
		}
		// The offer may be out: tell the peer, so it does not ring on.
		<-m.end(s, StateEnded, ReasonError, notifyHangup, nil)
		return err
	}
	return nil
}

// Answer answers the ringing incoming call. It returns once the answer is
// sent (the state is then connecting). A second Answer for the same call
// returns ErrAlreadyAnswering (the seed's "answer() called while already
// answering"); Answer without a ringing call returns ErrNoIncomingCall.
func (m *Module) Answer(ctx context.Context) error {
	if m.sig == nil {
		return errNoSignaler
	}
	m.mu.Lock()
	s := m.cur
	switch {
	case s != nil && s.incoming && s.answering:
		m.mu.Unlock()
		return ErrAlreadyAnswering
	case s == nil || !s.incoming || s.state != StateRinging || s.ending:
		m.mu.Unlock()
		return ErrNoIncomingCall
	}
	s.answering = true
	stopTimer(&s.ringTimer)
	s.state = StateConnecting
	m.publishLocked(s, ReasonNone)
	m.mu.Unlock()

	if err := s.startCallee(ctx); err != nil {
		if errors.Is(err, ErrCallEnded) {
			return err
		}
		<-m.end(s, StateEnded, ReasonError, notifyHangup, nil)
		return err
	}
	return nil
}

// Reject declines the ringing incoming call: the caller gets call_reject
// (declined) and the state becomes rejected.
func (m *Module) Reject() error {
	m.mu.Lock()
	s := m.cur
	if s == nil || !s.incoming || s.state != StateRinging || s.answering || s.ending {
		m.mu.Unlock()
		return ErrNoIncomingCall
	}
	m.mu.Unlock()
	<-m.end(s, StateRejected, ReasonDeclined, notifyReject, nil)
	return nil
}

// Hangup ends the call in progress, in any state: the peer gets call_hangup
// (user_hangup) and the state becomes hangup. It returns when the call's
// resources are released.
func (m *Module) Hangup() error {
	m.mu.Lock()
	s := m.cur
	if s == nil || s.ending {
		m.mu.Unlock()
		return ErrNoCall
	}
	m.mu.Unlock()
	<-m.end(s, StateHangup, ReasonUserHangup, notifyHangup, nil)
	return nil
}

// HandleUndeliverable takes the relay's undeliverable notices (wire it to
// client.Options.OnUndeliverable). An undeliverable offer of the current
// call ends it at once with ReasonOffline. It does not block.
func (m *Module) HandleUndeliverable(u client.Undeliverable) {
	m.mu.Lock()
	s := m.cur
	if s == nil || s.incoming || s.ending || u.ID == "" || u.ID != s.offerID || s.state != StateCalling {
		m.mu.Unlock()
		m.log.Debug("call: undeliverable notice for no current offer; ignored", "id", u.ID, "to", u.To, "reason", u.Reason)
		return
	}
	m.mu.Unlock()
	s.log.Info("call: the relay could not deliver the offer; the callee is offline", "reason", u.Reason)
	m.end(s, StateEnded, ReasonOffline, notifyNone, ErrOffline)
}

// publishLocked publishes s's state; m.mu is held.
func (m *Module) publishLocked(s *session, reason EndReason) {
	st := Status{State: s.state, Peer: s.peer, CallID: s.id, Video: s.video, Incoming: s.incoming, Reason: reason}
	m.status.Set(st)
	s.log.Info("call: state", "state", st.State, "reason", st.Reason)
}

// notify says what end sends to the peer.
type notify int

const (
	notifyNone notify = iota
	notifyHangup
	notifyReject
)

// end ends s: it stops s's timers and work at once and tears the call down
// in the background: first it tells the peer (call_hangup or call_reject
// with reason, when asked), then closes the peer connection and media, and
// finally publishes the terminal state and frees the module for the next
// call. failure, if not nil, goes to OnError. The returned channel closes
// when the teardown is done. Ending a call twice is a no-op (the first end
// wins).
func (m *Module) end(s *session, st State, reason EndReason, n notify, failure error) <-chan struct{} {
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		return s.done
	}
	s.ending = true
	s.stopTimersLocked()
	m.mu.Unlock()
	s.cancel()
	s.log.Debug("call: ending", "state", st, "reason", reason)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.teardown(s, st, reason, n, failure)
	}()
	return s.done
}

func (m *Module) teardown(s *session, st State, reason EndReason, n notify, failure error) {
	defer close(s.done)
	if n != notifyNone && s.signalingReady() {
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		var body wire.Body = wire.HangupPayload{Reason: wire.Reason(reason)}
		if n == notifyReject {
			body = wire.RejectPayload{Reason: wire.Reason(reason)}
		}
		if err := s.send(ctx, body); err != nil {
			s.log.Warn("call: could not tell the peer the call ended", "err", err)
		}
		cancel()
	}
	final := s.collect()
	s.close()

	m.mu.Lock()
	s.state = st
	final.State = st
	s.diag.final = &final
	if m.cur == s {
		m.cur = nil
	}
	m.last = s
	m.publishLocked(s, reason)
	m.local.Set(Tracks{})
	m.remote.Set(Tracks{})
	m.mu.Unlock()

	if failure != nil && m.opts.OnError != nil {
		m.opts.OnError(fmt.Errorf("call %s with %s: %w", s.id, s.peer, failure))
	}
}

// fail ends s because of a local error after setup (a failed renegotiation,
// a sink error): the peer gets call_hangup with reason error.
func (m *Module) fail(s *session, err error) {
	s.log.Warn("call: failed", "err", err)
	m.end(s, StateEnded, ReasonError, notifyHangup, err)
}

// newCallID returns a fresh random call ID (22 characters of base64url).
func newCallID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// stopTimer stops and clears *t.
func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

// closeQuietly closes c if it is an io.Closer.
func closeQuietly(c any) {
	if cl, ok := c.(io.Closer); ok && cl != nil {
		_ = cl.Close()
	}
}
