package call

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// keysTimeout bounds the key lookup for an incoming offer.
const keysTimeout = 10 * time.Second

// peerSig is the signaling state with one peer: its pinned long-term keys
// and the wire session (session key; the replay guard is the module's).
type peerSig struct {
	alias identity.Alias
	keys  identity.PublicKeys
	sess  *wire.Session
	used  time.Time
}

// peerSession returns the signaling session with peer. It asks the
// Signaler for peer's keys every time (so a key change since they were
// pinned is refused at every call, with an error wrapping
// client.ErrKeyChanged) and reuses the session while they stay the same.
func (m *Module) peerSession(ctx context.Context, peer identity.Alias) (*peerSig, error) {
	keys, err := m.sig.PeerKeys(ctx, peer)
	if errors.Is(err, client.ErrKeyChanged) {
		// A session held for the old keys seals no new offer: the next
		// call waits for the lookup (and is refused before any offer
		// while the change is not accepted).
		m.mu.Lock()
		delete(m.peers, peer)
		m.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if ps, ok := m.peers[peer]; ok && ps.keys.Equal(keys) {
		ps.used = time.Now()
		m.mu.Unlock()
		return ps, nil
	}
	m.mu.Unlock()

	id := m.sig.Identity()
	if id == nil {
		return nil, fmt.Errorf("%w: the Signaler has no identity", ErrSignaling)
	}
	self := id.PublicKeys()
	key, err := wire.SessionKey(id.AgreementKey, self.Signing, keys.Signing, keys.Agreement)
	if err != nil {
		return nil, fmt.Errorf("%w: session key with %s: %w", ErrSignaling, peer, err)
	}
	sess, err := wire.NewSession(wire.SessionConfig{
		SigningKey:     id.SigningKey,
		PeerSigningKey: keys.Signing,
		Key:            key,
		Replay:         m.replay,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: session with %s: %w", ErrSignaling, peer, err)
	}
	ps := &peerSig{alias: peer, keys: keys, sess: sess, used: time.Now()}

	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.peers) >= maxPeers {
		var oldest *peerSig
		for _, p := range m.peers {
			if (m.cur == nil || m.cur.ps != p) && (oldest == nil || p.used.Before(oldest.used)) {
				oldest = p
			}
		}
		if oldest != nil {
			delete(m.peers, oldest.alias)
		}
	}
	m.peers[peer] = ps
	return ps, nil
}

// cachedSession returns the signaling session held for peer if its keys
// are the ones pinned now, as the Signaler's Pins reports them, and nil
// otherwise. A session whose keys are no longer pinned is dropped from the
// cache. Without Pins the keys cannot be checked locally: nil.
func (m *Module) cachedSession(peer identity.Alias) *peerSig {
	pins, ok := m.sig.(Pins)
	if !ok {
		return nil
	}
	m.mu.Lock()
	ps := m.peers[peer]
	m.mu.Unlock()
	if ps == nil {
		return nil
	}
	keys, pinned := pins.PinnedKeys(peer)
	if pinned && keys.Equal(ps.keys) {
		return ps
	}
	if pinned {
		m.log.Info("call: the keys pinned for the peer changed since its signaling session was made; the session is discarded", "peer", peer)
	} else {
		m.log.Info("call: no keys are pinned for the peer any more; its signaling session is discarded", "peer", peer)
	}
	m.mu.Lock()
	if m.peers[peer] == ps {
		delete(m.peers, peer)
	}
	m.mu.Unlock()
	return nil
}

// HandleEnvelope takes an envelope from the relay (wire it to
// client.Options.OnEnvelope). It never blocks: envelopes are queued for the
// module's signaling goroutine, and dropped (counted as "queue_full") when
// the bounded queue is full.
func (m *Module) HandleEnvelope(env *wire.Envelope) {
	if env == nil || m.ctx.Err() != nil {
		return
	}
	if !env.Type.IsCall() {
		m.countDrop("not_call")
		return
	}
	select {
	case m.inbound <- env:
	default:
		m.countDrop("queue_full")
	}
}

// countDrop counts a dropped signaling frame.
func (m *Module) countDrop(reason string) {
	m.mu.Lock()
	m.drops[reason]++
	m.mu.Unlock()
}

// worker processes received envelopes in order, and the key lookups'
// outcomes. A lookup (an HTTP round trip to the relay) never runs on the
// worker: the envelopes of a peer whose keys are being looked up wait for
// it in order, while everyone else's are processed.
func (m *Module) worker() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case env := <-m.inbound:
			m.process(env)
		case r := <-m.lookedUp:
			m.lookupDone(r)
		}
	}
}

// Key lookups for incoming offers.
const (
	// maxLookupWaiting bounds the envelopes of one peer waiting for its
	// key lookup; more are dropped (counted as "queue_full").
	maxLookupWaiting = 64
	// lookupFailFor: after a lookup failed for a reason other than a key
	// change (the relay unreachable, an unknown alias), that peer's offers
	// are dropped for this long without another lookup, so that junk
	// offers cost no round trip each.
	lookupFailFor = 10 * time.Second
)

// keyLookup is a lookup in flight for one peer and the envelopes waiting
// for it.
type keyLookup struct {
	waiting []*wire.Envelope
}

// lookupResult is a finished lookup.
type lookupResult struct {
	peer identity.Alias
	ps   *peerSig
	err  error
}

// waitForLookup queues env behind the key lookup in flight for its sender,
// or starts one, or drops env (counted): not an offer, too many waiting,
// or a peer whose lookup failed a moment ago.
func (m *Module) waitForLookup(env *wire.Envelope) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.lookups[env.From]; l != nil {
		if len(l.waiting) >= maxLookupWaiting {
			m.drops["queue_full"]++
			return
		}
		l.waiting = append(l.waiting, env)
		return
	}
	if env.Type != wire.TypeCallOffer {
		m.drops["unknown_call"]++
		return
	}
	if until, ok := m.lookupFailed[env.From]; ok && time.Now().Before(until) {
		m.drops["peer_keys"]++
		return
	}
	m.lookups[env.From] = &keyLookup{waiting: []*wire.Envelope{env}}
	peer := env.From
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, keysTimeout)
		ps, err := m.peerSession(ctx, peer)
		cancel()
		select {
		case m.lookedUp <- lookupResult{peer, ps, err}:
		case <-m.ctx.Done():
		}
	}()
}

// lookupDone processes the envelopes that waited for a peer's keys, in
// order, or drops them when the keys could not be had.
func (m *Module) lookupDone(r lookupResult) {
	m.mu.Lock()
	l := m.lookups[r.peer]
	delete(m.lookups, r.peer)
	if r.err != nil && !errors.Is(r.err, client.ErrKeyChanged) {
		m.lookupFailed[r.peer] = time.Now().Add(lookupFailFor)
		for p, until := range m.lookupFailed {
			if time.Now().After(until) {
				delete(m.lookupFailed, p)
			}
		}
	}
	m.mu.Unlock()
	if l == nil {
		return
	}
	if r.err != nil {
		reason := "peer_keys"
		if errors.Is(r.err, client.ErrKeyChanged) {
			reason = "key_changed"
		}
		m.mu.Lock()
		m.drops[reason] += uint64(len(l.waiting))
		m.mu.Unlock()
		m.log.Warn("call: offer refused: cannot authenticate the caller", "from", r.peer, "err", r.err)
		if reason == "key_changed" && m.opts.OnError != nil {
			// The callee's app should say so: nothing rings.
			m.opts.OnError(fmt.Errorf("call: an incoming call from %s was refused: %w", r.peer, r.err))
		}
		return
	}
	for _, env := range l.waiting {
		m.openAndDispatch(r.ps, env)
	}
}

// process opens one envelope with the sender's session and dispatches it.
// Frames that fail are dropped silently towards the peer and counted here by
// reason (wire.DropReason for Open's checks).
func (m *Module) process(env *wire.Envelope) {
	if m.sig == nil {
		return
	}
	if env.To != m.sig.Alias() {
		m.countDrop("misrouted")
		return
	}
	m.mu.Lock()
	var ps *peerSig
	if s := m.cur; s != nil && s.peer == env.From && s.ps != nil {
		ps = s.ps
	}
	m.mu.Unlock()
	if ps == nil {
		m.mu.Lock()
		waiting := m.lookups[env.From] != nil
		m.mu.Unlock()
		if waiting || env.Type != wire.TypeCallOffer {
			m.waitForLookup(env) // in order behind the lookup, or dropped
			return
		}
		// A peer we already hold a session with, whose keys are still the
		// pinned ones: open with it, saving a key lookup. A session whose
		// keys are no longer pinned (the user accepted a new key) is
		// forgotten, so that the old keys open no new call (a call already
		// running keeps its session to its end).
		// Only when the frame does not authenticate with the session are
		// the keys looked up again (they may have changed), so a key change
		// is still reported as such.
		cached := m.cachedSession(env.From)
		if cached != nil {
			msg, err := cached.sess.Open(env)
			if err == nil {
				m.mu.Lock()
				cached.used = time.Now()
				m.mu.Unlock()
				m.dispatch(cached, msg)
				return
			}
			if !errors.Is(err, wire.ErrDecrypt) && !errors.Is(err, wire.ErrSignature) {
				reason := wire.DropReason(err)
				m.countDrop(reason)
				m.log.Debug("call: signaling frame dropped", "type", env.Type, "from", env.From, "reason", reason, "err", err)
				return
			}
		}
		m.waitForLookup(env)
		return
	}
	m.openAndDispatch(ps, env)
}

// openAndDispatch opens env with ps and dispatches it, or drops it.
func (m *Module) openAndDispatch(ps *peerSig, env *wire.Envelope) {
	msg, err := ps.sess.Open(env)
	if err != nil {
		reason := wire.DropReason(err)
		m.countDrop(reason)
		m.log.Debug("call: signaling frame dropped", "type", env.Type, "from", env.From, "reason", reason, "err", err)
		return
	}
	m.dispatch(ps, msg)
}

// dispatch feeds an authenticated message to the state machine.
func (m *Module) dispatch(ps *peerSig, msg wire.Message) {
	e := fsm.Event{CallID: msg.CallID, Device: msg.Device}
	switch b := msg.Body.(type) {
	case wire.OfferPayload:
		e.Kind, e.Peer, e.Video, e.Restart = fsm.EvRecvOffer, string(msg.From), wire.IsVideoOffer(b.SDP), b.ICERestart
		if b.ICERestart && !m.restartMatches(msg.CallID, b.EPK) {
			m.countDrop("restart_mismatch")
			return
		}
		if e.Renegotiate = b.Renegotiate; e.Renegotiate {
			e.Video = wire.OfferSendsVideo(b.SDP) // §10.10
		}
	case wire.AnswerPayload:
		e.Kind = fsm.EvRecvAnswer
	case wire.ICEPayload:
		e.Kind = fsm.EvRecvICE
	case wire.RejectPayload:
		e.Kind, e.Reason = fsm.EvRecvReject, string(b.Reason)
	case wire.HangupPayload:
		e.Kind, e.Reason = fsm.EvRecvHangup, string(b.Reason)
	case wire.SelectPayload:
		e.Kind, e.Selected, e.Outcome = fsm.EvRecvSelect, b.Selected, string(b.Outcome)
	case wire.RekeyPayload:
		e.Kind = fsm.EvRecvRekey
	case wire.MediaPayload:
		e.Kind, e.AudioMuted, e.VideoOff, e.Screen = fsm.EvRecvMedia, b.AudioMuted, b.VideoOff, b.Screen
	default:
		m.countDrop("unexpected")
		return
	}
	if e.Kind != fsm.EvRecvOffer {
		// Messages of a call come from its peer only (the machine
		// checks the call ID and, for the caller, the device).
		m.mu.Lock()
		s := m.cur
		ok := s != nil && s.id == msg.CallID && s.peer == msg.From
		m.mu.Unlock()
		if !ok {
			m.countDrop("unknown_call")
			return
		}
	}
	m.event(e, input{ps: ps, msg: &msg})
}

// restartMatches reports whether an ICE restart offer for callID carries
// the caller's ephemeral key of the call in progress.
func (m *Module) restartMatches(callID string, epk []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.cur
	return s == nil || s.id != callID || (s.incoming && s.pc != nil && s.remoteSet && bytes.Equal(epk, s.peerEPK))
}

// send seals body for the call's peer and sends it.
func (s *session) send(ctx context.Context, body wire.Body) error {
	return s.sendID(ctx, body, "")
}

// sendID is send with an envelope id, for which the relay reports
// undeliverable envelopes.
func (s *session) sendID(ctx context.Context, body wire.Body, id string) error {
	s.m.mu.Lock()
	ps := s.ps
	s.m.mu.Unlock()
	if ps == nil {
		return fmt.Errorf("%w: no session with %s yet", ErrSignaling, s.peer)
	}
	// While the relay connection is down (a network change: the client
	// reconnects at once), the call's messages wait for it, up to the
	// restart wait, instead of failing (PROTOCOL §10.6). The end's own
	// messages do not (the machine sends them; ending never waits).
	deadline := time.Now().Add(s.m.tm.restartWait)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := s.m.sendTo(ctx, ps, s.id, body, id)
		if !errors.Is(err, client.ErrNotConnected) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// sendTo seals body for ps's peer under callID and sends it.
func (m *Module) sendTo(ctx context.Context, ps *peerSig, callID string, body wire.Body, id string) error {
	t := body.MessageType()
	env, err := ps.sess.Seal(wire.Message{Type: t, From: m.sig.Alias(), To: ps.alias, CallID: callID, Device: m.device, Body: body})
	if err != nil {
		return fmt.Errorf("%w: sealing %s: %w", ErrSignaling, t, err)
	}
	if id == "" {
		id = m.nextID()
	}
	env.ID = id
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: sending %s to %s: %w", ErrSignaling, t, ps.alias, err)
	}
	if t != wire.TypeCallOffer {
		// An offer the machine counts as out is written first.
		m.mu.Lock()
		out := m.offerOut
		m.mu.Unlock()
		if out != nil {
			select {
			case <-out:
			case <-ctx.Done():
				return fmt.Errorf("%w: sending %s to %s: %w", ErrSignaling, t, ps.alias, ctx.Err())
			}
		}
	}
	// The relay client writes with coder/websocket, which closes the whole
	// connection when a write's context ends in the middle of the write.
	// Hangup cancels the call's contexts while candidates may be on their
	// way, so the write gets a context of its own that the caller's
	// cancellation does not reach, bounded by sendTimeout.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	if err := m.sig.Send(wctx, env); err != nil {
		return fmt.Errorf("%w: sending %s to %s: %w", ErrSignaling, t, ps.alias, err)
	}
	m.remember(env)
	return nil
}

// Every envelope carries an id, so that the relay's notices (undeliverable,
// refused) name it. The last few sent are kept for a while, to be sent once
// more when the relay refused them for the rate limit.
const (
	maxSentKept   = 128
	sentKeptFor   = 10 * time.Second
	resendDelay   = time.Second
	codeRateLimit = "rate_limited"
)

// sentFrame is an envelope we sent, kept for a possible resend.
type sentFrame struct {
	env    wire.Envelope
	at     time.Time
	resent bool
}

// nextID returns a fresh envelope id.
func (m *Module) nextID() string {
	return fmt.Sprintf("m%s-%d", m.idPrefix, m.idSeq.Add(1))
}

// remember keeps env for a possible resend, forgetting old ones.
func (m *Module) remember(env *wire.Envelope) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sent) >= maxSentKept {
		var oldest string
		var oldestAt time.Time
		for id, f := range m.sent {
			if now.Sub(f.at) > sentKeptFor {
				delete(m.sent, id)
				continue
			}
			if oldest == "" || f.at.Before(oldestAt) {
				oldest, oldestAt = id, f.at
			}
		}
		if len(m.sent) >= maxSentKept {
			delete(m.sent, oldest)
		}
	}
	m.sent[env.ID] = &sentFrame{env: *env, at: now}
}

// HandleRelayError takes the relay's notices of refused frames (wire it to
// client.Options.OnRelayError). They are counted by code (Stats.RelayErrors);
// a frame refused for the rate limit is sent once more a second later (the
// sealed envelope as it was: the peer never saw its nonce). It does not
// block.
func (m *Module) HandleRelayError(e client.RelayError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relayErrs[e.Code]++
	f, ok := m.sent[e.ID]
	if !ok || e.Code != codeRateLimit || f.resent || m.closed {
		return
	}
	f.resent = true
	env := f.env
	m.log.Debug("call: the relay refused a frame for the rate limit; sending it again", "type", env.Type, "id", env.ID)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(resendDelay)
		defer t.Stop()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		defer cancel()
		if err := m.sig.Send(ctx, &env); err != nil {
			m.log.Warn("call: resending a refused frame failed", "type", env.Type, "err", err)
		}
	}()
}
