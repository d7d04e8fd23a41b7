package call

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/wire"
)

// newPC creates the call's peer connection and installs its handlers.
func (s *session) newPC(ice client.ICEConfig) (*webrtc.PeerConnection, error) {
	cfg := s.m.rtcConfig(ice)
	// The call's own view of the network interfaces, re-read before an
	// ICE restart gathers (a network change made the old ones stale).
	n, err := newCallNet()
	if err != nil {
		return nil, fmt.Errorf("%w: network interfaces: %w", ErrMediaSetup, err)
	}
	s.m.mu.Lock()
	s.net = n
	s.m.mu.Unlock()
	api, err := s.m.newAPI(n, func(g stats.Getter) {
		s.m.mu.Lock()
		s.stats = g
		s.m.mu.Unlock()
	}, cfg.ICETransportPolicy == webrtc.ICETransportPolicyRelay)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: peer connection: %w", ErrMediaSetup, err)
	}
	s.facts.config(ice, cfg.ICETransportPolicy == webrtc.ICETransportPolicyRelay)
	pc.OnICECandidate(s.onLocalCandidate)
	pc.OnICEConnectionStateChange(s.onICEState)
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) { s.onPCState(pc) })
	pc.OnTrack(s.onTrack)
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(s.onPair)
	pc.OnICEGatheringStateChange(func(g webrtc.ICEGatheringState) {
		s.log.Debug("call: ICE gathering", "state", g.String())
	})
	return pc, nil
}

// onLocalCandidate trickles a gathered candidate (nil: gathering complete,
// sent as the end-of-candidates marker) in canonical form. Candidates
// gathered before the offer or answer is out wait in pendLocal.
func (s *session) onLocalCandidate(c *webrtc.ICECandidate) {
	p := wire.ICEPayload{}
	if c != nil {
		init := c.ToJSON()
		p.Candidate = init.Candidate
		p.SDPMid = init.SDPMid
		if init.SDPMLineIndex != nil {
			n := int(*init.SDPMLineIndex)
			p.SDPMLine = &n
		}
		s.log.Debug("call: local candidate", "type", c.Typ.String(), "address", c.Address, "port", c.Port, "protocol", c.Protocol.String())
		s.facts.addLocal(c.Typ.String())
	}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ending {
		return
	}
	if !s.localReady {
		if len(s.pendLocal) >= maxPendingCandidates {
			s.st.iceDropped.Add(1)
			return
		}
		s.pendLocal = append(s.pendLocal, p)
		return
	}
	s.queueLocalLocked(p)
}

// queueLocalLocked queues p for the ICE sender; m.mu is held.
func (s *session) queueLocalLocked(p wire.ICEPayload) {
	if !s.incoming && !s.connected && len(s.localSent) < maxPendingCandidates {
		s.localSent = append(s.localSent, p) // for resend_offer
	}
	select {
	case s.iceOut <- p:
	default:
		s.st.iceDropped.Add(1)
	}
}

// flushLocalLocked marks the local description as sent and queues the
// candidates that waited for it; m.mu is held.
func (s *session) flushLocalLocked() {
	s.localReady = true
	for _, p := range s.pendLocal {
		s.queueLocalLocked(p)
	}
	s.pendLocal = nil
}

// iceSender sends queued local candidates in order until the call ends.
func (s *session) iceSender() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case p := <-s.iceOut:
			ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
			if err := s.send(ctx, p); err != nil && s.ctx.Err() == nil {
				s.log.Warn("call: sending an ICE candidate failed", "err", err)
			}
			cancel()
		}
	}
}

// addRemote adds a candidate from the peer, or keeps it until the remote
// description is set.
func (s *session) addRemote(p wire.ICEPayload) {
	if p.Candidate == "" { // end of candidates
		return
	}
	s.facts.addRemote(p.Candidate)
	init := webrtc.ICECandidateInit{Candidate: p.Candidate, SDPMid: p.SDPMid}
	if p.SDPMLine != nil {
		n := uint16(*p.SDPMLine) // Validate bounds it to 0..65535
		init.SDPMLineIndex = &n
	}
	m := s.m
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		return
	}
	if !s.remoteSet || s.holdRemote {
		if len(s.pendRemote) >= maxPendingCandidates {
			s.st.iceDropped.Add(1)
		} else {
			s.pendRemote = append(s.pendRemote, init)
		}
		m.mu.Unlock()
		return
	}
	pc := s.pc
	m.mu.Unlock()
	if err := pc.AddICECandidate(init); err != nil {
		s.st.iceDropped.Add(1)
		s.log.Debug("call: remote candidate refused", "err", err)
	}
}

// remoteReady marks the remote description as set and adds the candidates
// that waited for it, unless they wait for the caller's select.
func (s *session) remoteReady() {
	m := s.m
	m.mu.Lock()
	s.remoteSet = true
	if s.holdRemote {
		m.mu.Unlock()
		return
	}
	s.addPendingLocked()
}

// releaseRemote adds the caller's candidates that a callee held since the
// offer: the caller selected this device (call_select), or its checks
// reached this device (the caller checks the selected device's candidates
// only).
//
// A callee device checks the caller's candidates only once selected: every
// device of the callee has the caller's ICE credentials (the offer rings
// them all), and a browser answers the checks of any of them. A device
// whose answer lost (or was late) would otherwise get the caller's
// responses, and its DTLS handshake could reach the caller before the
// selected device's: the caller's DTLS took it, and the call stayed
// connecting (PROTOCOL §10.4).
func (s *session) releaseRemote() {
	m := s.m
	m.mu.Lock()
	if !s.holdRemote {
		m.mu.Unlock()
		return
	}
	s.holdRemote = false
	if !s.remoteSet || s.ending {
		m.mu.Unlock()
		return
	}
	s.addPendingLocked()
}

// addPendingLocked adds the candidates that waited; m.mu is held, and
// released before they are added.
func (s *session) addPendingLocked() {
	pend, pc := s.pendRemote, s.pc
	s.pendRemote = nil
	s.m.mu.Unlock()
	for _, c := range pend {
		if err := pc.AddICECandidate(c); err != nil {
			s.st.iceDropped.Add(1)
			s.log.Debug("call: remote candidate refused", "err", err)
		}
	}
}

// splitCandidates takes the candidate lines (and end-of-candidates) out of
// sdp and returns them as candidates of their m-sections.
func splitCandidates(sdp string) (string, []webrtc.ICECandidateInit) {
	lines := strings.SplitAfter(sdp, "\n")
	var out strings.Builder
	var cands []webrtc.ICECandidateInit
	var section []int // indexes in cands of the current m-section's
	mline := -1
	var curMid *string
	flush := func() {
		for _, i := range section {
			cands[i].SDPMid = curMid
		}
		section, curMid = nil, nil
	}
	for _, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		switch {
		case strings.HasPrefix(t, "m="):
			flush()
			mline++
		case strings.HasPrefix(t, "a=mid:") && mline >= 0:
			v := strings.TrimPrefix(t, "a=mid:")
			curMid = &v
		case strings.HasPrefix(t, "a=candidate:") && mline >= 0:
			idx := uint16(mline)
			section = append(section, len(cands))
			cands = append(cands, webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(t, "a="), SDPMLineIndex: &idx})
			continue
		case t == "a=end-of-candidates":
			continue
		}
		out.WriteString(l)
	}
	flush()
	return out.String(), cands
}

// onICEState runs synchronously on the ICE agent's goroutine: it must not
// block. ICE failure goes to the state machine from a session goroutine.
func (s *session) onICEState(st webrtc.ICEConnectionState) {
	s.log.Debug("call: ICE connection", "state", st.String())
	switch st {
	case webrtc.ICEConnectionStateChecking:
		s.facts.checking(func() {
			s.log.Info("call: no candidate pair worked", "within", iceCheckDeadline)
			s.m.event(fsm.Event{Kind: fsm.EvConn, CallID: s.id, Conn: fsm.ConnFailed}, input{})
		})
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		s.facts.connected()
		if s.incoming {
			s.spawn(s.releaseRemote) // the caller's checks came: it selected this device
		}
	case webrtc.ICEConnectionStateClosed:
		s.facts.connected() // no deadline after the end
	}
	if st == webrtc.ICEConnectionStateFailed {
		s.spawn(func() { s.m.event(fsm.Event{Kind: fsm.EvConn, CallID: s.id, Conn: fsm.ConnFailed}, input{}) })
	}
}

// onPCState follows the peer connection state. pion runs this handler on a
// new goroutine per change, so changes can arrive out of order: it reports
// the connection's current state, not the one it was called for.
func (s *session) onPCState(pc *webrtc.PeerConnection) {
	st := pc.ConnectionState()
	m := s.m
	m.mu.Lock()
	stale := s.ending || s.pc != pc
	m.mu.Unlock()
	if stale {
		return
	}
	var c fsm.Conn
	switch st {
	case webrtc.PeerConnectionStateConnected:
		c = fsm.ConnConnected
	case webrtc.PeerConnectionStateDisconnected:
		s.log.Info("call: connection disconnected")
		c = fsm.ConnDisconnected
	case webrtc.PeerConnectionStateFailed:
		c = fsm.ConnFailed
	default:
		return
	}
	m.event(fsm.Event{Kind: fsm.EvConn, CallID: s.id, Conn: c}, input{})
}

// restartICE is the caller's ICE restart (PROTOCOL §10.6): a new offer
// with ice_restart, gathering on the interfaces the machine has now.
func (s *session) restartICE() {
	m := s.m
	m.mu.Lock()
	if s.ending {
		m.mu.Unlock()
		return
	}
	s.localReady = false
	pc, ephem, n := s.pc, s.ephem, s.net
	m.mu.Unlock()

	s.log.Info("call: restarting ICE")
	if h := m.hooks.onRestart; h != nil {
		h(s.id)
	}
	updateInterfaces(s, n)
	s.refreshICEServers(pc)
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		m.failCall(s, fmt.Errorf("%w: ICE restart offer: %w", ErrMediaSetup, err))
		return
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		m.failCall(s, fmt.Errorf("%w: ICE restart offer: %w", ErrMediaSetup, err))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.send(ctx, wire.OfferPayload{SDP: offer.SDP, EPK: ephem.PublicKey().Bytes(), ICERestart: true}); err != nil {
		if s.ctx.Err() == nil {
			// The restart's wait ends the call if nothing recovers it.
			s.log.Warn("call: sending the ICE restart offer failed", "err", err)
		}
	}
	m.mu.Lock()
	if !s.ending {
		s.flushLocalLocked()
	}
	m.mu.Unlock()
}

// refreshICEServers gives pc the ICE servers the relay answers now, which
// an ICE restart gathers with: after a relay failover the client's node may
// name another TURN server (a dead node's embedded TURN died with it). On
// failure the restart gathers with the servers it had.
func (s *session) refreshICEServers(pc *webrtc.PeerConnection) {
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	ice, err := s.m.sig.ICEConfig(ctx)
	if err != nil {
		s.log.Debug("call: ICE restart with the ICE servers the call had", "err", err)
		return
	}
	cfg := pc.GetConfiguration()
	cfg.ICEServers = s.m.rtcConfig(ice).ICEServers
	if err := pc.SetConfiguration(cfg); err != nil {
		s.log.Warn("call: ICE restart with the ICE servers the call had", "err", err)
	}
}

// updateInterfaces has the call's network re-read the machine's interfaces
// before an ICE restart gathers (pion's stdnet lists them once, when made).
func updateInterfaces(s *session, n *callNet) {
	if n == nil {
		return
	}
	if err := n.UpdateInterfaces(); err != nil {
		s.log.Debug("call: re-reading the network interfaces", "err", err)
	}
}

// applyRestart is the callee's side of an ICE restart: it applies the
// caller's restart offer and answers it with its current ephemeral key.
func (s *session) applyRestart(p wire.OfferPayload) {
	m := s.m
	m.mu.Lock()
	if s.ending || s.pc == nil {
		m.mu.Unlock()
		return
	}
	s.localReady = false
	pc, ephem, n := s.pc, s.ephem, s.net
	m.mu.Unlock()

	s.log.Info("call: ICE restart requested by the caller")
	updateInterfaces(s, n)
	s.refreshICEServers(pc)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: p.SDP}); err != nil {
		m.failCall(s, fmt.Errorf("%w: ICE restart offer: %w", ErrMediaSetup, err))
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		m.failCall(s, fmt.Errorf("%w: ICE restart answer: %w", ErrMediaSetup, err))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.send(ctx, wire.AnswerPayload{SDP: answer.SDP, EPK: ephem.PublicKey().Bytes()}); err != nil && s.ctx.Err() == nil {
		s.log.Warn("call: sending the ICE restart answer failed", "err", err)
	}
	m.mu.Lock()
	if !s.ending {
		s.flushLocalLocked()
	}
	m.mu.Unlock()
}

// applyRestartAnswer is the caller's handling of the answer to its ICE
// restart offer.
func (s *session) applyRestartAnswer(p wire.AnswerPayload) {
	m := s.m
	m.mu.Lock()
	pc := s.pc
	ok := !s.ending && pc != nil && bytes.Equal(p.EPK, s.peerEPK)
	m.mu.Unlock()
	if !ok || pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		m.countDrop("restart_mismatch")
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.SDP}); err != nil {
		m.failCall(s, fmt.Errorf("%w: ICE restart answer: %w", ErrMediaSetup, err))
	}
}

// applyAnswer is the caller's handling of the selected device's
// call_answer: it derives the media keys and sets the answer.
func (s *session) applyAnswer(p wire.AnswerPayload) {
	m := s.m
	m.mu.Lock()
	if s.ending || s.pc == nil {
		m.mu.Unlock()
		return
	}
	pc, ephem := s.pc, s.ephem
	s.peerEPK = bytes.Clone(p.EPK)
	m.mu.Unlock()

	s.step("STEP", 8.5, "answer received")
	if err := s.installKeys(ephem, p.EPK); err != nil {
		m.failCall(s, err)
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.SDP}); err != nil {
		m.failCall(s, fmt.Errorf("%w: the callee's answer: %w", ErrMediaSetup, err))
		return
	}
	s.remoteReady()
}

// close releases everything the call holds; it runs once, in the teardown.
func (s *session) close() {
	m := s.m
	// The peer connection is closed once the goroutine setting it up is
	// done with it (the call's context is cancelled, so that is soon):
	// pion v4.2.24 creates a connection's ICE agent on first use without
	// checking that the connection was closed meanwhile, and that agent's
	// goroutines would outlive the call.
	for _, c := range []chan struct{}{s.prepared, s.setupDone} {
		if c != nil {
			<-c
		}
	}
	m.mu.Lock()
	s.closing = true
	pc, sources, sinks := s.pc, s.sources, s.sinks
	m.mu.Unlock()
	for _, src := range sources {
		_ = src.Close()
	}
	if pc != nil {
		s.statsMu.Lock() // never while readPC runs (see statsMu)
		if err := pc.GracefulClose(); err != nil {
			s.log.Debug("call: closing the peer connection", "err", err)
		}
		s.statsMu.Unlock()
	}
	s.wg.Wait()
	closeQuietly(sinks.Audio)
	closeQuietly(sinks.Video)
}
