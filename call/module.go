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

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/hot"
	"github.com/duetcall/duet/identity"
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
	// peerMedia is the peer's announced media state (PeerMedia).
	peerMedia *hot.Value[MediaState]

	ctx      context.Context // the module's lifetime
	cancel   context.CancelFunc
	inbound  chan *wire.Envelope
	lookedUp chan lookupResult // key lookups done, for the worker
	wg       sync.WaitGroup    // the signaling worker, sends and call teardowns
	device   string            // this module's device id on the wire (PROTOCOL §10.4)
	tm       timings           // the timings (PROTOCOL §6); set before the first call

	mu       sync.Mutex
	closed   bool
	machine  *fsm.Machine        // the call state machine (PROTOCOL §10)
	cur      *session            // the machine's call in progress
	sessions map[string]*session // calls not torn down yet, by call ID
	last     *Stats              // the previous call's final figures (its keys are gone)
	tearing  *session            // the call being torn down, for Stats meanwhile
	// offerOut, while set, is closed once the offer the machine was told
	// is out has been written: later messages wait for it (sendTo).
	offerOut     chan struct{}
	peers        map[identity.Alias]*peerSig
	lookups      map[identity.Alias]*keyLookup // key lookups in flight
	lookupFailed map[identity.Alias]time.Time  // peers whose lookup failed, until
	drops        map[string]uint64             // signaling frames dropped, by reason
	replay       *wire.ReplayGuard             // nonces of every peer's frames
	sent         map[string]*sentFrame         // recently sent envelopes, by id
	relayErrs    map[string]uint64             // frames the relay refused, by code
	idPrefix     string
	idSeq        atomic.Uint64

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
	// callID, when set, makes the IDs of the calls this module places
	// (tests of glare's ordering).
	callID func() string
	// localAddrs, when set, replaces the interface addresses the call
	// watches for network changes.
	localAddrs func() []string
}

// errNoSignaler is returned by every operation of a Module without one.
var errNoSignaler = errors.New("call: Options.Signaler is nil; pass a connected *client.Client")

// New returns a module using opts. It starts one goroutine that processes
// received signaling; Close stops it.
func New(opts Options) *Module {
	m := &Module{
		opts:         opts,
		sig:          opts.Signaler,
		log:          opts.Logger,
		status:       hot.New(Status{State: StateIdle}),
		local:        hot.New(Tracks{}),
		remote:       hot.New(Tracks{}),
		peerMedia:    hot.New(MediaState{}),
		inbound:      make(chan *wire.Envelope, inboundQueue),
		sessions:     make(map[string]*session),
		lookedUp:     make(chan lookupResult),
		peers:        make(map[identity.Alias]*peerSig),
		lookups:      make(map[identity.Alias]*keyLookup),
		lookupFailed: make(map[identity.Alias]time.Time),
		drops:        make(map[string]uint64),
		replay:       wire.NewReplayGuard(wire.DefaultReplayCapacity),
		sent:         make(map[string]*sentFrame),
		relayErrs:    make(map[string]uint64),
		idPrefix:     newCallID()[:8],
		device:       newCallID()[:12],
	}
	m.tm = defaultTimings()
	m.machine = fsm.New(m.device, m.tm.machine())
	if m.log == nil {
		m.log = slog.Default()
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.worker()
	return m
}

// Device returns this module's device id: the other devices of a callee
// learn from it which device answered (docs/PROTOCOL.md §10.4).
func (m *Module) Device() string { return m.device }

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
	m.mu.Unlock()
	m.event(fsm.Event{Kind: fsm.EvHangup}, input{})
	m.mu.Lock()
	pending := make([]*session, 0, len(m.sessions))
	for _, s := range m.sessions {
		m.teardownLocked(s)
		pending = append(pending, s)
	}
	m.mu.Unlock()
	for _, s := range pending {
		<-s.done
	}
	m.cancel()
	m.wg.Wait()
	m.status.Close()
	m.local.Close()
	m.remote.Close()
	m.peerMedia.Close()
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
// once both are done. When the peer calls us at the same moment (glare,
// docs/PROTOCOL.md §10.5), one of the two calls is answered on both sides:
// Call then returns nil and State shows the call that won.
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
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	id := newCallID()
	m.mu.Lock()
	if m.hooks.callID != nil {
		id = m.hooks.callID()
	}
	m.mu.Unlock()
	fx := m.event(fsm.Event{Kind: fsm.EvCall, CallID: id, Peer: string(peer), Video: md.Video}, input{sync: true})
	if fx.apiErr != "" || fx.setup == nil {
		if fx.apiErr == "" {
			return ErrClosed
		}
		return ErrInCall
	}
	s := fx.setup
	err := s.startCaller(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrCallEnded) {
		m.mu.Lock()
		replaced := s.finalReason == EndReason(fsm.Replaced)
		m.mu.Unlock()
		if replaced {
			return nil
		}
		return err
	}
	kind := fsm.EvFailed
	if errors.Is(err, client.ErrKeyChanged) && s.offerWasSent() {
		kind = fsm.EvKeyChg
	}
	m.event(fsm.Event{Kind: kind, CallID: s.id, Error: err.Error()}, input{err: err, sync: true})
	<-s.done
	return err
}

// Answer answers the ringing incoming call, whichever it is (the seed's
// answer()); AnswerCall answers one call by ID.
func (m *Module) Answer(ctx context.Context) error { return m.AnswerCall(ctx, "") }

// AnswerCall answers the ringing incoming call callID ("" for whichever
// rings). It returns once the answer is sent (the state is then
// connecting). A second answer for the same call returns
// ErrAlreadyAnswering (the seed's "answer() called while already
// answering"); without that call ringing (it ended, or another one rings
// now) it returns ErrNoIncomingCall, so an answer can never reach a call
// the user did not see.
func (m *Module) AnswerCall(ctx context.Context, callID string) error {
	if m.sig == nil {
		return errNoSignaler
	}
	fx := m.event(fsm.Event{Kind: fsm.EvAnswer, CallID: callID}, input{sync: true})
	switch fx.apiErr {
	case fsm.ErrAlreadyAnswering:
		return ErrAlreadyAnswering
	case "":
	default:
		return ErrNoIncomingCall
	}
	s := fx.setup
	if s == nil {
		return ErrNoIncomingCall
	}
	err := s.startCallee(ctx)
	if err == nil || errors.Is(err, ErrCallEnded) {
		return err
	}
	m.event(fsm.Event{Kind: fsm.EvFailed, CallID: s.id, Error: err.Error()}, input{err: err, sync: true})
	<-s.done
	return err
}

// Reject declines the ringing incoming call, whichever it is: the caller
// gets call_reject (declined), the callee's other devices stop ringing,
// and the state becomes rejected. RejectCall declines one call by ID.
func (m *Module) Reject() error { return m.RejectCall("") }

// RejectCall declines the ringing incoming call callID ("" for whichever
// rings); without that call ringing it returns ErrNoIncomingCall.
func (m *Module) RejectCall(callID string) error {
	s := m.ringing(callID)
	fx := m.event(fsm.Event{Kind: fsm.EvReject, CallID: callID}, input{})
	if fx.apiErr != "" || s == nil {
		return ErrNoIncomingCall
	}
	<-s.done
	return nil
}

// ringing returns the session of the ringing call callID ("" any).
func (m *Module) ringing(callID string) *session {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.cur; s != nil && (callID == "" || s.id == callID) {
		return s
	}
	return nil
}

// Hangup ends the call in progress, in any state: the peer gets call_hangup
// (user_hangup) and the state becomes hangup; a ringing call is declined
// (Reject). It returns when the call's resources are released.
func (m *Module) Hangup() error {
	m.mu.Lock()
	s := m.cur
	m.mu.Unlock()
	fx := m.event(fsm.Event{Kind: fsm.EvHangup}, input{})
	if fx.apiErr != "" || s == nil {
		return ErrNoCall
	}
	<-s.done
	return nil
}

// HandleUndeliverable takes the relay's undeliverable notices (wire it to
// client.Options.OnUndeliverable). An offer of the current call refused
// with reason offline ends it at once with ReasonOffline; refused for a
// passing reason (recipient_busy, unavailable) it is sent again with
// backoff while the answer timeout runs, and the call ends with
// ReasonUnavailable if the relay still refuses it then (docs/PROTOCOL.md
// §10.8). It does not block.
func (m *Module) HandleUndeliverable(u client.Undeliverable) {
	m.mu.Lock()
	s := m.cur
	ok := s != nil && u.ID != "" && u.ID == s.offerID
	m.mu.Unlock()
	if !ok {
		m.log.Debug("call: undeliverable notice for no current offer; ignored", "id", u.ID, "to", u.To, "reason", u.Reason)
		return
	}
	if u.Reason == "" || u.Reason == client.ReasonOffline {
		s.log.Info("call: the relay could not deliver the offer; the callee is offline", "reason", u.Reason)
	} else {
		s.log.Info("call: the relay could not deliver the offer for now; it will be sent again", "reason", u.Reason)
	}
	m.event(fsm.Event{Kind: fsm.EvUndeliverable, CallID: s.id, Reason: u.Reason}, input{})
}

// publishLocked publishes s's state; m.mu is held.
func (m *Module) publishLocked(s *session, reason EndReason) {
	st := Status{State: s.state, Peer: s.peer, CallID: s.id, Video: s.video, Incoming: s.incoming, Reason: reason,
		Recovering: s.recovering && !s.state.Terminal()}
	m.status.Set(st)
	s.log.Info("call: state", "state", st.State, "reason", st.Reason)
}

// failCall reports a failure of s's media or renegotiation work to the
// state machine: the call ends with ReasonError, the peer is told, and
// OnError gets err.
func (m *Module) failCall(s *session, err error) {
	s.log.Warn("call: failed", "err", err)
	m.event(fsm.Event{Kind: fsm.EvFailed, CallID: s.id, Error: err.Error()}, input{err: err})
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
