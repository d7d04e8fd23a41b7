package call

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/wire"
)

// The module is the driver of a call/fsm Machine (docs/PROTOCOL.md §10):
// every decision about states, timers, the messages call_reject,
// call_hangup and call_select, endings and errors is the machine's; the
// driver feeds it the app's calls, authenticated messages, connection
// changes and timers, and performs the actions it returns: the pion work,
// the sending, the timers and the app's callbacks.

// input is what an event came with, for the actions that need it.
type input struct {
	ps  *peerSig      // the sender's signaling session (received messages)
	msg *wire.Message // the received message
	err error         // EvFailed: the failure
	// sync: the API call that fed the event performs the setup work the
	// actions ask for itself (Call's setup_caller, Answer's send_answer).
	sync bool
	// renegotiated: SetVideo's channel for the end of its renegotiation.
	renegotiated chan error
}

// effects are what performing actions left to do once m.mu is released.
type effects struct {
	after     []func() // in order, on the calling goroutine
	setup     *session // setup_caller or send_answer for the API call to run
	apiErr    string   // the machine refused the API call
	callbacks []func() // the app's callbacks, after the rest
}

// event feeds e to the machine and performs its actions.
func (m *Module) event(e fsm.Event, in input) effects {
	m.mu.Lock()
	if m.closed && e.Kind != fsm.EvHangup {
		// A closed module only tears down.
		m.mu.Unlock()
		return effects{}
	}
	acts := m.machine.Handle(e)
	fx := m.performLocked(acts, in)
	m.mu.Unlock()
	for _, f := range fx.after {
		f()
	}
	for _, f := range fx.callbacks {
		f()
	}
	return fx
}

// needsSession reports whether an action of kind k works on its call's
// session (performLocked skips it when there is none).
func needsSession(k fsm.ActionKind) bool {
	switch k {
	case fsm.ActApplyAnswer, fsm.ActAddICE, fsm.ActSelected, fsm.ActRestartICE, fsm.ActApplyRestart,
		fsm.ActApplyRestartAnswer, fsm.ActStartMedia, fsm.ActRekey, fsm.ActApplyRenegotiation,
		fsm.ActApplyRenegotiationAnswer:
		return true
	}
	return false
}

// performLocked performs acts; m.mu is held. Work that calls pion or
// blocks goes to effects.after (or a goroutine of the session).
func (m *Module) performLocked(acts []fsm.Action, in input) effects {
	var fx effects
	for _, a := range acts {
		s := m.sessions[a.CallID]
		if s == nil && needsSession(a.Kind) {
			// The machine's call has no session here: it cannot happen
			// while every call's session stays registered until its own
			// teardown removes it, but a message of a peer must never
			// make the worker dereference a missing one.
			m.log.Error("call: an action for a call without a session; skipped", "action", a.Kind, "call_id", a.CallID)
			continue
		}
		switch a.Kind {
		case fsm.ActDrop:
			m.drops[a.Reason]++
		case fsm.ActAPIError:
			fx.apiErr = a.Error
		case fsm.ActState:
			if s == nil {
				continue
			}
			st := State(a.State)
			s.video = a.Video // a renegotiation changes it (§10.10)
			if st.Terminal() {
				// Published when the teardown is done (see teardown).
				s.final, s.finalReason = st, EndReason(a.Reason)
				continue
			}
			s.state = st
			if st == StateConnected && !s.connected {
				s.connected, s.connectedAt = true, time.Now()
			}
			m.publishLocked(s, ReasonNone)
		case fsm.ActRing:
			if s == nil {
				continue
			}
			from, video, id := s.peer, s.video, s.id
			if s.debug() {
				s.step("RCVD STEP", 1, "call_offer received; ringing", "video", video, "m", mLines(s.offerSDP))
			}
			fx.callbacks = append(fx.callbacks, func() {
				if cb := m.opts.OnIncoming; cb != nil {
					cb(Incoming{CallID: id, From: from, Video: video})
				}
				if cb := m.opts.OnIncomingCall; cb != nil {
					cb(from, video)
				}
			})
		case fsm.ActError:
			if s != nil {
				s.failure = m.failureOf(s, a.Error, in.err)
				if in.sync && a.Error == fsm.ErrSetup {
					s.failure = nil // the API call returns it
				}
			}
		case fsm.ActSend:
			m.sendLocked(s, a, in)
		case fsm.ActTimerStart:
			if s != nil {
				s.startTimerLocked(a.Timer, time.Duration(a.Ms)*time.Millisecond)
			}
		case fsm.ActTimerStop:
			if s != nil {
				s.stopTimerLocked(a.Timer)
			}
		case fsm.ActSetupCaller:
			s = m.newSession(a.CallID, peerAlias(a.Peer), false, a.Video)
			s.state = StateCalling
			s.setupDone = make(chan struct{})
			m.sessions[s.id], m.cur = s, s
			fx.setup = s
		case fsm.ActPrepareCallee:
			offer, _ := in.msg.Body.(wire.OfferPayload)
			s = m.newSession(a.CallID, in.msg.From, true, a.Video)
			s.ps, s.offerSDP, s.peerEPK, s.device = in.ps, offer.SDP, offer.EPK, in.msg.Device
			s.state = StateRinging
			s.prepared = make(chan struct{})
			m.sessions[s.id], m.cur = s, s
			if !s.goLocked(s.prepareCallee) {
				close(s.prepared)
			}
		case fsm.ActSendAnswer:
			if s == nil {
				continue
			}
			s.answering = true
			if in.sync {
				fx.setup = s
			} else { // glare: the machine answers on the app's behalf
				s.goLocked(func() {
					if err := s.startCallee(s.ctx); err != nil && !errors.Is(err, ErrCallEnded) {
						m.event(fsm.Event{Kind: fsm.EvFailed, CallID: s.id, Error: err.Error()}, input{err: err})
					}
				})
			}
		case fsm.ActApplyAnswer:
			p, _ := in.msg.Body.(wire.AnswerPayload)
			s.device = a.Device
			fx.after = append(fx.after, func() { s.applyAnswer(p) })
		case fsm.ActAddICE:
			p, _ := in.msg.Body.(wire.ICEPayload)
			fx.after = append(fx.after, func() { s.addRemote(p) })
		case fsm.ActSelected:
			fx.after = append(fx.after, s.releaseRemote)
		case fsm.ActRestartICE:
			s.restarts++
			s.goLocked(s.restartICE)
		case fsm.ActApplyRestart:
			p, _ := in.msg.Body.(wire.OfferPayload)
			s.restarts++
			fx.after = append(fx.after, func() { s.applyRestart(p) })
		case fsm.ActApplyRestartAnswer:
			p, _ := in.msg.Body.(wire.AnswerPayload)
			fx.after = append(fx.after, func() { s.applyRestartAnswer(p) })
		case fsm.ActStartMedia:
			s.startMediaLocked()
		case fsm.ActRekey:
			p, _ := in.msg.Body.(wire.RekeyPayload)
			fx.after = append(fx.after, func() { s.onRekey(p) })
		case fsm.ActRecovery:
			if s != nil && !s.ending {
				s.recovering = a.Recovering
				if a.Recovering {
					s.log.Info("call: connection lost; recovering")
				} else {
					s.log.Info("call: connection recovered")
				}
				m.publishLocked(s, ReasonNone)
			}
		case fsm.ActSendRenegotiation:
			if s == nil {
				continue
			}
			s.renegDone = in.renegotiated
			video := a.Video
			s.goLocked(func() { s.sendRenegotiation(video) })
		case fsm.ActApplyRenegotiation:
			p, _ := in.msg.Body.(wire.OfferPayload)
			fx.after = append(fx.after, func() { s.applyRenegotiation(p) })
		case fsm.ActApplyRenegotiationAnswer:
			p, _ := in.msg.Body.(wire.AnswerPayload)
			fx.after = append(fx.after, func() { s.applyRenegotiationAnswer(p) })
		case fsm.ActRenegotiationEnd:
			if s == nil {
				continue
			}
			why := a.Error
			s.log.Info("call: media change did not complete", "why", why)
			fx.after = append(fx.after, func() { s.renegotiationEnded(why) })
		case fsm.ActPeerMedia:
			m.peerMediaLocked(s, a)
		case fsm.ActResendOffer:
			if s != nil && s.offerBody != nil {
				body, cands := *s.offerBody, slices.Clone(s.localSent)
				s.log.Info("call: sending the offer again (the relay refused it for now)")
				s.goLocked(func() { s.resendOffer(body, cands) })
			}
		case fsm.ActTeardown:
			if s != nil {
				m.teardownLocked(s)
			}
		}
	}
	return fx
}

// failureOf is the error OnError receives for the machine's error name.
func (m *Module) failureOf(s *session, name string, cause error) error {
	var err error
	switch name {
	case fsm.ErrNoAnswer:
		err = ErrNoAnswer
	case fsm.ErrDeclined:
		err = ErrDeclined
	case fsm.ErrBusy:
		err = ErrBusy
	case fsm.ErrOffline:
		err = ErrOffline
	case fsm.ErrUnavailable:
		err = ErrUnavailable
	case fsm.ErrICEFailed:
		err = fmt.Errorf("%w: %s", ErrICEFailed, s.facts.reason())
	case fsm.ErrMediaTimeout:
		err = ErrMediaTimeout
	case fsm.ErrDisconnected:
		err = ErrDisconnected
	default: // setup, key_changed
		err = cause
		if err == nil {
			err = ErrCallEnded
		}
	}
	return fmt.Errorf("call %s with %s: %w", s.id, s.peer, err)
}

// sendLocked performs a send action: the message goes out on a goroutine
// of its own (the call's teardown waits for it before closing, so a
// hangup leaves before the connection closes); m.mu is held.
func (m *Module) sendLocked(s *session, a fsm.Action, in input) {
	var body wire.Body
	switch a.Type {
	case string(wire.TypeCallReject):
		body = wire.RejectPayload{Reason: wire.Reason(a.Reason)}
	case string(wire.TypeCallHangup):
		body = wire.HangupPayload{Reason: wire.Reason(a.Reason)}
	case string(wire.TypeCallSelect):
		if a.Selected == "" {
			// The peer sends no device ids (PROTOCOL §3): nothing
			// to select among.
			return
		}
		body = wire.SelectPayload{Selected: a.Selected, Outcome: wire.Outcome(a.Outcome)}
	default:
		m.log.Error("call: the state machine asked to send an unknown type", "type", a.Type)
		return
	}
	ps := in.ps
	if s != nil && s.ps != nil {
		ps = s.ps
	}
	if ps == nil {
		// The call never had a signaling session (its setup failed
		// before the keys were in): there is nobody to tell.
		return
	}
	callID := a.CallID
	wait := m.tm.restartWait
	m.wg.Add(1)
	waited := s != nil && !s.sendsClosed
	if waited {
		s.sends.Add(1)
	}
	go func() {
		defer m.wg.Done()
		// The first try is waited for by the call's teardown (the message
		// leaves before the connection closes). While the relay connection
		// is down (a failover, a network change) the message is tried
		// again in the background, up to the restart wait: the teardown
		// does not wait for that (PROTOCOL §10.6).
		err := m.sendOnce(ps, callID, body)
		if waited {
			s.sends.Done()
		}
		deadline := time.Now().Add(wait)
		for backoff := 50 * time.Millisecond; errors.Is(err, client.ErrNotConnected) && time.Now().Add(backoff).Before(deadline); backoff = min(2*backoff, time.Second) {
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(backoff):
			}
			err = m.sendOnce(ps, callID, body)
		}
		if err != nil {
			m.log.Warn("call: sending failed", "type", a.Type, "call_id", callID, "peer", ps.alias, "err", err)
		}
	}()
}

// sendOnce seals and sends one message of the machine's, bounded by
// sendTimeout.
func (m *Module) sendOnce(ps *peerSig, callID string, body wire.Body) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), sendTimeout)
	defer cancel()
	return m.sendTo(ctx, ps, callID, body, "")
}

// teardownLocked starts tearing s down: its timers and work stop at once,
// the resources are released in the background (after the messages the
// machine sent first), then the end state is published and OnError gets
// the failure; m.mu is held.
func (m *Module) teardownLocked(s *session) {
	if s.ending {
		return
	}
	s.ending = true
	s.stopTimersLocked()
	s.cancel()
	if m.cur == s {
		m.cur = nil
	}
	m.tearing = s
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.teardown(s)
	}()
}

func (m *Module) teardown(s *session) {
	defer close(s.done)
	// A send the machine makes for this call from now on (a busy reject of
	// an offer reusing its id, say) is not waited for: a WaitGroup must not
	// be added to while it is waited on.
	m.mu.Lock()
	s.sendsClosed = true
	m.mu.Unlock()
	s.sends.Wait() // each bounded by sendTimeout
	final := s.collect()
	s.close()
	s.wipeKeys()

	m.mu.Lock()
	if m.sessions[s.id] == s {
		// (A peer's new offer may reuse the id of a call still tearing
		// down: that new call's session is not this one's to remove.)
		delete(m.sessions, s.id)
	}
	st, reason := s.final, s.finalReason
	if st == "" { // torn down without an end state (the module closed)
		st, reason = StateHangup, ReasonUserHangup
	}
	s.state = st
	final.State = st
	s.diag.final = &final
	m.last = &final
	if m.tearing == s {
		m.tearing = nil
	}
	failure := s.failure
	if reason != EndReason(fsm.Replaced) && (m.cur == nil || m.cur == s) {
		// A newer call already published its state: this one's end is
		// not shown over it.
		m.publishLocked(s, reason)
		m.local.Set(Tracks{})
		m.remote.Set(Tracks{})
		m.peerMedia.Set(MediaState{})
	}
	m.mu.Unlock()

	if failure != nil && m.opts.OnError != nil {
		m.opts.OnError(failure)
	}
}

// wipeKeys drops every key of the ended call (forward secrecy): the media
// keys are closed and zeroed, the ephemeral and rekey private keys and the
// peer's ephemeral key forgotten; only figures remain (Stats).
func (s *session) wipeKeys() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.enc != nil {
		s.enc.Close()
	}
	if s.dec != nil {
		s.dec.Close()
	}
	if s.pendingSend != nil {
		clear(s.pendingSend.Key[:])
		clear(s.pendingSend.BaseIV[:])
	}
	s.enc, s.dec, s.pendingSend = nil, nil, nil
	s.ephem, s.peerEPK, s.rekey, s.lastReply = nil, nil, nil, nil
}

// startTimerLocked (re)starts the machine's timer t for s; m.mu is held.
func (s *session) startTimerLocked(t fsm.Timer, d time.Duration) {
	s.stopTimerLocked(t)
	m := s.m
	id := s.id
	s.timers[t] = time.AfterFunc(d, func() {
		m.event(fsm.Event{Kind: fsm.EvTimer, CallID: id, Timer: t}, input{})
	})
}

// stopTimerLocked stops s's timer t; m.mu is held.
func (s *session) stopTimerLocked(t fsm.Timer) {
	if tm := s.timers[t]; tm != nil {
		tm.Stop()
		delete(s.timers, t)
	}
}

// stopTimersLocked stops every timer of the session; m.mu is held.
func (s *session) stopTimersLocked() {
	for t := range s.timers {
		s.stopTimerLocked(t)
	}
	stopTimer(&s.switchTimer)
	stopTimer(&s.rekeyTimer)
}

// resendOffer sends the call's offer again, under its envelope id, and then
// the local candidates sent after it so far: the relay refused the offer for
// a passing reason (resend_offer), and the candidates that followed it were
// most likely refused too (the callee drops candidates of a call it does
// not know yet).
func (s *session) resendOffer(body wire.OfferPayload, cands []wire.ICEPayload) {
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.sendID(ctx, body, s.offerIDOf()); err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("call: sending the offer again failed", "err", err)
		}
		return
	}
	for _, p := range cands {
		if err := s.send(ctx, p); err != nil {
			return
		}
	}
}

// offerIDOf is the envelope id of the call's offer.
func (s *session) offerIDOf() string {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.offerID
}
