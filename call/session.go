package call

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/wire"
)

// session is one call, from Call or an incoming offer to the end of its
// teardown. The fields after "guarded by m.mu" are guarded by the module's
// mutex; pion is never called with it held (pion's callbacks take it).
type session struct {
	m        *Module
	id       string
	peer     identity.Alias
	incoming bool
	video    bool // guarded by m.mu: the machine sets it with each state (a renegotiation changes it)
	log      *slog.Logger

	ctx    context.Context // cancelled when the call ends
	cancel context.CancelFunc
	done   chan struct{} // closed when the teardown finished
	wg     sync.WaitGroup
	iceOut chan wire.ICEPayload // local candidates to send, in order
	facts  iceFacts             // for the reason of an ICE failure (icediag.go)

	st counters
	// statsMu serialises reading the connection's figures (readPC) with
	// its Close, which tears down the ICE agent and the interceptors they
	// come from.
	statsMu sync.Mutex
	// pendingEpoch is pendingSend's epoch (0: none), read by the receive
	// loops without the lock.
	pendingEpoch atomic.Uint32
	// oldFrameAt is when a frame of an epoch older than pendingEpoch last
	// decrypted (Unix ns): the peer still sends under the old key.
	oldFrameAt atomic.Int64

	sends sync.WaitGroup // messages the machine sent, waited for by the teardown

	// guarded by m.mu
	state       State
	final       State     // the end state the machine chose, published after the teardown
	finalReason EndReason // its ending
	failure     error     // what OnError gets after the teardown
	device      string    // the peer's device: the caller's (callee), the selected one (caller)
	timers      map[fsm.Timer]*time.Timer
	ending      bool // the teardown started
	closing     bool // teardown is waiting for wg: no new goroutines
	sendsClosed bool // teardown is waiting for sends: a later send is not waited for
	answering   bool // the answer is being made
	recovering  bool // the connection is down and being recovered
	ps          *peerSig
	offerSent   bool
	offerID     string             // the envelope id of our offer (undeliverable notices)
	offerBody   *wire.OfferPayload // caller: our offer, kept for resend_offer
	localSent   []wire.ICEPayload  // caller: local candidates queued after the offer, for resend_offer
	offerSDP    string             // callee: the offer, kept while ringing
	prepared    chan struct{}      // callee: closed when prepareCallee is done
	setupDone   chan struct{}      // caller: closed when startCaller is done
	prepErr     error              // callee: prepareCallee's failure
	ephem       *ecdh.PrivateKey
	peerEPK     []byte
	pc          *webrtc.PeerConnection
	net         *callNet // the interfaces pc gathers on
	remoteSet   bool
	holdRemote  bool // callee: the caller's candidates wait until it selects this device (releaseRemote)
	pendRemote  []webrtc.ICECandidateInit
	localReady  bool
	pendLocal   []wire.ICEPayload
	connected   bool // reached connected at least once
	connectedAt time.Time
	restarts    int // ICE restarts begun
	enc         *e2ee.Encryptor
	dec         *e2ee.Decryptor
	epoch       uint32
	rekey       *rekeyState        // our call_rekey awaiting the reply
	lastReply   *wire.RekeyPayload // our last reply to the peer's call_rekey
	pendingSend *e2ee.DirectionKey // responder: the next send key, not used yet
	switchTimer *time.Timer        // switches to pendingSend at the latest
	rekeyTimer  *time.Timer        // sends our call_rekey again
	senders     []sender
	stats       stats.Getter // outbound RTP figures
	sources     []*media.PacedSource
	sinks       Sinks
	localTracks Tracks
	remTracks   Tracks
	diag        diagState
	media       MediaState // what this side sends (SetMicrophoneEnabled, SetCameraEnabled)

	audioMuted atomic.Bool                // media.AudioMuted, for the send loop
	videoOff   atomic.Bool                // media.VideoOff, for the send loop
	mediaKick  chan struct{}              // the media state changed: mediaLoop sends it
	renegDone  chan error                 // SetVideo waits for its renegotiation (m.mu)
	renegOffer *webrtc.SessionDescription // our renegotiation offer, set locally when answered (m.mu)
}

func (m *Module) newSession(id string, peer identity.Alias, incoming, video bool) *session {
	s := &session{
		m:         m,
		id:        id,
		peer:      peer,
		incoming:  incoming,
		video:     video,
		done:      make(chan struct{}),
		iceOut:    make(chan wire.ICEPayload, iceQueue),
		timers:    make(map[fsm.Timer]*time.Timer),
		mediaKick: make(chan struct{}, 1),
	}
	s.log = m.log.With("call_id", id, "peer", string(peer))
	s.ctx, s.cancel = context.WithCancel(m.ctx)
	return s
}

// goLocked starts f on a goroutine of the session unless the teardown is
// already waiting for them; m.mu is held.
func (s *session) goLocked(f func()) bool {
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// spawn is goLocked taking the lock.
func (s *session) spawn(f func()) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.goLocked(f)
}

// live reports, under the lock, whether the call has not been ended.
func (s *session) live() bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return !s.ending
}

// offerWasSent reports whether the caller's offer went out.
func (s *session) offerWasSent() bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.offerSent
}

// peerAlias is the alias of a machine action's peer.
func peerAlias(p string) identity.Alias { return identity.Alias(p) }

// setupCtx returns a context that ends with ctx or with the call.
func (s *session) setupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// step logs one setup step at debug level, like the seed's STEP 1..8 lines.
func (s *session) step(name string, n float64, msg string, args ...any) {
	if s.debug() {
		s.log.Debug(fmt.Sprintf("call: %s %g: %s", name, n, msg), args...)
	}
}

// debug reports whether debug logs are on, for steps whose arguments cost
// something to compute.
func (s *session) debug() bool { return s.log.Enabled(context.Background(), slog.LevelDebug) }

// ended returns ErrCallEnded if the call was ended, else err.
func (s *session) ended(err error) error {
	if !s.live() {
		return fmt.Errorf("%w (during setup: %v)", ErrCallEnded, err)
	}
	return err
}

// startCaller runs the caller's setup, STEP 1..8: it sends the offer and
// arms the answer timeout.
func (s *session) startCaller(ctx context.Context) error {
	defer close(s.setupDone)
	m := s.m
	ctx, cancel := s.setupCtx(ctx)
	defer cancel()

	// The peer's keys (an HTTP round trip to the relay) are fetched while
	// the peer connection and the offer are prepared. The offer waits for
	// them, unless a signaling session is held for the peer whose keys are
	// still the pinned ones: then it goes out at once, sealed to the pinned
	// keys, and the fresh keys are checked after it (a round trip less
	// before the peer rings). The held session is taken before the lookup
	// starts: a lookup that finds a key change drops it.
	s.step("STEP", 1, "fetching the peer's keys and the ICE configuration")
	held := m.cachedSession(s.peer)
	keysc := make(chan keysResult, 1)
	go func() {
		ps, err := m.peerSession(ctx, s.peer)
		keysc <- keysResult{ps, err}
	}()
	var keys *keysResult
	waitKeys := func() keysResult {
		if keys == nil {
			r := <-keysc
			keys = &r
		}
		return *keys
	}
	defer func() {
		cancel() // an early return needs the lookup to stop, then to end
		waitKeys()
	}()

	ice, err := m.sig.ICEConfig(ctx)
	if err != nil {
		return s.ended(fmt.Errorf("%w: ICE configuration: %w", ErrMediaSetup, err))
	}
	s.step("STEP", 2, "ephemeral key")
	ephem, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("%w: ephemeral key: %w", ErrMediaSetup, err)
	}
	if s.debug() {
		s.step("STEP", 3, "creating the peer connection", "policy", m.rtcConfig(ice).ICETransportPolicy.String(), "ice_servers", len(ice.ICEServers))
	}
	pc, err := s.newPC(ice)
	if err != nil {
		return s.ended(err)
	}
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		_ = pc.GracefulClose() // its goroutines end before the call's teardown does
		return fmt.Errorf("%w before the offer was sent", ErrCallEnded)
	}
	s.ephem, s.pc = ephem, pc
	video := s.video // the machine's goroutine sets it under m.mu
	m.mu.Unlock()

	s.step("STEP", 4, "adding local tracks", "video", video)
	if err := s.addTracks(pc, video); err != nil {
		return s.ended(err)
	}
	s.step("STEP", 5, "creating the offer")
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return s.ended(fmt.Errorf("%w: creating the offer: %w", ErrMediaSetup, err))
	}
	s.step("STEP", 6, "setting the local description (ICE gathering starts)")
	if err := pc.SetLocalDescription(offer); err != nil {
		return s.ended(fmt.Errorf("%w: setting the offer: %w", ErrMediaSetup, err))
	}
	if s.debug() {
		s.step("STEP", 6.5, "offer m-lines", "m", mLines(offer.SDP))
	}

	var kr keysResult
	if held != nil {
		select {
		case r := <-keysc:
			// The lookup is in already: its session, or its key change,
			// wins over the held session (not a failure to look up).
			keys = &r
			if r.err == nil || errors.Is(r.err, client.ErrKeyChanged) {
				held = nil
			}
		default:
		}
	}
	if held != nil {
		s.step("STEP", 7, "sending call_offer with the session held for the peer (its keys are checked after)")
		kr.ps = held
	} else {
		s.step("STEP", 7, "waiting for the peer's checked keys, then sending call_offer")
		kr = waitKeys()
	}
	if kr.err != nil {
		return s.ended(fmt.Errorf("call: keys of %s: %w", s.peer, kr.err))
	}
	id := "o" + s.id
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		return fmt.Errorf("%w before the offer was sent", ErrCallEnded)
	}
	s.ps, s.offerID = kr.ps, id
	// Messages sent from now on wait until the offer is written, so that
	// none overtakes it: the machine treats it as out from the next event
	// on (an answer to the peer's call after a glare it decided on that
	// ground would otherwise reach the peer first, and the peer, past
	// calling by then, would refuse the offer busy; PROTOCOL §10.5).
	out := make(chan struct{})
	m.offerOut = out
	written := func() {
		m.mu.Lock()
		if m.offerOut == out {
			m.offerOut = nil
		}
		m.mu.Unlock()
		close(out)
	}
	m.mu.Unlock()
	// The machine learns that the offer goes out before it does: from now
	// on the peer may know the call (a glare is decided by call ID, an
	// end tells the peer). A call it ended meanwhile sends nothing.
	m.event(fsm.Event{Kind: fsm.EvOfferOut, CallID: s.id}, input{})
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		written()
		return fmt.Errorf("%w before the offer was sent", ErrCallEnded)
	}
	s.offerSent = true
	body := wire.OfferPayload{SDP: offer.SDP, EPK: ephem.PublicKey().Bytes()}
	s.offerBody = &body
	m.mu.Unlock()
	err = s.sendID(ctx, body, id)
	written()
	if err != nil {
		return s.ended(err)
	}

	s.step("STEP", 8, "offer sent; waiting for the answer", "timeout", m.tm.answer)
	m.mu.Lock()
	if s.ending {
		// The call is placed; it already ended (hung up, or the relay
		// reported the callee offline), which State and OnError report.
		m.mu.Unlock()
		return nil
	}
	s.flushLocalLocked()
	s.goLocked(s.iceSender)
	m.mu.Unlock()
	if held != nil {
		return s.checkHeldKeys(waitKeys())
	}
	return nil
}

// keysResult is the outcome of a key lookup.
type keysResult struct {
	ps  *peerSig
	err error
}

// checkHeldKeys checks the fresh key lookup of a call whose offer went out
// with the session held for the peer. Keys that changed since they were
// pinned fail the call like a lookup before the offer would (Call's caller
// then ends it, telling the peer); a lookup that failed otherwise says
// nothing against the pinned keys the offer was sealed to, and the call
// goes on.
func (s *session) checkHeldKeys(kr keysResult) error {
	switch {
	case kr.err == nil:
		return nil
	case errors.Is(kr.err, client.ErrKeyChanged):
		return s.ended(fmt.Errorf("call: keys of %s: %w", s.peer, kr.err))
	case s.ctx.Err() != nil:
		return nil // the call ended, which cancelled the lookup
	default:
		s.log.Warn("call: checking the peer's keys failed; the call goes on with the pinned ones", "err", kr.err)
		return nil
	}
}

// prepareCallee runs while the callee rings (RCVD STEP 2..3): it creates
// the peer connection and sets the caller's offer on it, so that answering
// only has to derive the media keys and create the answer. Nothing is sent
// and no candidate is gathered before Answer (gathering starts with the
// local description). A failure is kept for Answer; the teardown closes the
// connection of a call that is not answered.
func (s *session) prepareCallee() {
	m := s.m
	defer close(s.prepared)
	fail := func(err error) {
		m.mu.Lock()
		s.prepErr = err
		m.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(s.ctx, keysTimeout)
	defer cancel()
	m.mu.Lock()
	offerSDP := s.offerSDP
	m.mu.Unlock()

	s.step("RCVD STEP", 2, "fetching the ICE configuration")
	ice, err := m.sig.ICEConfig(ctx)
	if err != nil {
		fail(fmt.Errorf("%w: ICE configuration: %w", ErrMediaSetup, err))
		return
	}
	if s.debug() {
		s.step("RCVD STEP", 2.5, "creating the peer connection", "policy", m.rtcConfig(ice).ICETransportPolicy.String(), "ice_servers", len(ice.ICEServers))
	}
	pc, err := s.newPC(ice)
	if err != nil {
		fail(err)
		return
	}
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		_ = pc.GracefulClose() // its goroutines end before the call's teardown does
		fail(fmt.Errorf("%w before the answer", ErrCallEnded))
		return
	}
	s.pc = pc
	m.mu.Unlock()

	if s.debug() {
		s.step("RCVD STEP", 3, "setting the remote offer", "m", mLines(offerSDP))
	}
	// The offer's candidates wait with those of call_ice until the caller
	// selects this device (releaseRemote).
	offerSDP, held := splitCandidates(offerSDP)
	m.mu.Lock()
	s.holdRemote = true
	s.pendRemote = append(held, s.pendRemote...)
	if n := len(s.pendRemote); n > maxPendingCandidates {
		s.st.iceDropped.Add(uint64(n - maxPendingCandidates))
		s.pendRemote = s.pendRemote[:maxPendingCandidates]
	}
	m.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		fail(fmt.Errorf("%w: the caller's offer: %w", ErrMediaSetup, err))
		return
	}
	s.remoteReady()
}

// startCallee runs the callee's setup, ANSWER STEP 0..5: it answers the kept
// offer on the peer connection prepareCallee prepared.
func (s *session) startCallee(ctx context.Context) error {
	m := s.m
	ctx, cancel := s.setupCtx(ctx)
	defer cancel()

	m.mu.Lock()
	peerEPK := s.peerEPK
	video := s.video // the machine's goroutine sets it under m.mu (each state it publishes)
	m.mu.Unlock()

	s.step("ANSWER STEP", 0, "answering", "video", video)
	ephem, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("%w: ephemeral key: %w", ErrMediaSetup, err)
	}
	s.step("ANSWER STEP", 1, "deriving the media keys")
	if err := s.installKeys(ephem, peerEPK); err != nil {
		return s.ended(err)
	}
	s.step("ANSWER STEP", 2, "waiting for the peer connection prepared while ringing")
	select {
	case <-s.prepared:
	case <-ctx.Done():
		return s.ended(fmt.Errorf("%w: preparing the peer connection: %w", ErrMediaSetup, ctx.Err()))
	}
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		return fmt.Errorf("%w before the answer was sent", ErrCallEnded)
	}
	pc, err := s.pc, s.prepErr
	s.ephem = ephem
	m.mu.Unlock()
	if err != nil {
		return s.ended(err)
	}

	s.step("ANSWER STEP", 3, "adding local tracks and creating the answer")
	if err := s.addTracks(pc, video); err != nil {
		return s.ended(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return s.ended(fmt.Errorf("%w: creating the answer: %w", ErrMediaSetup, err))
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return s.ended(fmt.Errorf("%w: setting the answer: %w", ErrMediaSetup, err))
	}
	if s.debug() {
		s.step("ANSWER STEP", 3.5, "answer m-lines", "m", mLines(answer.SDP))
	}

	s.step("ANSWER STEP", 4, "sending call_answer")
	if err := s.send(ctx, wire.AnswerPayload{SDP: answer.SDP, EPK: ephem.PublicKey().Bytes()}); err != nil {
		return s.ended(err)
	}
	s.step("ANSWER STEP", 5, "answer sent; connecting")
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ending {
		return fmt.Errorf("%w while the answer was sent", ErrCallEnded)
	}
	s.flushLocalLocked()
	s.goLocked(s.iceSender)
	return nil
}

// installKeys derives the epoch-0 media keys from our ephemeral key and the
// peer's, and creates the session's Encryptor and Decryptor.
func (s *session) installKeys(ephem *ecdh.PrivateKey, peerEPK []byte) error {
	m := s.m
	self := m.sig.Identity().PublicKeys()
	m.mu.Lock()
	ps := s.ps
	m.mu.Unlock()
	send, recv, err := e2ee.DeriveKeys(ephem, peerEPK, s.id, self.Signing, ps.keys.Signing, 0)
	if err != nil {
		return fmt.Errorf("%w: media keys: %w", ErrMediaSetup, err)
	}
	enc, err := e2ee.NewEncryptor(send, &e2ee.EncryptorOptions{OnRekeyNeeded: s.onRekeyNeeded, FirstSeq: m.hooks.firstSeq})
	if err != nil {
		return fmt.Errorf("%w: media keys: %w", ErrMediaSetup, err)
	}
	dec, err := e2ee.NewDecryptor(recv, nil)
	if err != nil {
		return fmt.Errorf("%w: media keys: %w", ErrMediaSetup, err)
	}
	var sinks Sinks
	if m.opts.Sinks != nil {
		m.mu.Lock()
		st := Status{State: s.state, Peer: s.peer, CallID: s.id, Video: s.video, Incoming: s.incoming}
		m.mu.Unlock()
		if sinks, err = m.opts.Sinks(st); err != nil {
			return fmt.Errorf("%w: sinks: %w", ErrMediaSetup, err)
		}
	}
	m.mu.Lock()
	if s.ending {
		// The teardown may have wiped the keys and closed the sinks
		// already: these would outlive the call.
		m.mu.Unlock()
		enc.Close()
		dec.Close()
		closeQuietly(sinks.Audio)
		closeQuietly(sinks.Video)
		return fmt.Errorf("%w while the media keys were made", ErrCallEnded)
	}
	s.enc, s.dec, s.sinks = enc, dec, sinks
	m.mu.Unlock()
	return nil
}
