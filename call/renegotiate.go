package call

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/wire"
)

// Renegotiation errors (SetVideo).
var (
	// ErrNotConnected: SetVideo before the call is connected.
	ErrNotConnected = errors.New("call: the call is not connected yet")
	// ErrRenegotiating: SetVideo while another change, or a connection
	// recovery, is in progress; try again.
	ErrRenegotiating = errors.New("call: a media change or a connection recovery is in progress")
	// ErrRenegotiationFailed: the change did not complete (no answer in
	// 10 s, the connection went down, or the peer's change crossed ours
	// and won, docs/PROTOCOL.md §10.10); the call goes on as it was.
	ErrRenegotiationFailed = errors.New("call: the media change did not complete")
)

// SetVideo turns the connected call into a video call (on: this side
// sends its Options.Video, the fixture by default) or back into an audio
// call for this side (off: it stops sending video), by a renegotiation
// within the call (docs/PROTOCOL.md §10.10): a call_offer with renegotiate
// for the same call_id, answered by the peer; the media keys do not
// change and every video frame is encrypted like the audio. The peer may
// answer without sending video itself and still receives ours. It returns
// when the answer is applied, or ErrNotConnected, ErrRenegotiating, or
// ErrRenegotiationFailed (the call goes on unchanged).
func (m *Module) SetVideo(ctx context.Context, on bool) error {
	m.mu.Lock()
	s := m.cur
	if s == nil || s.ending {
		m.mu.Unlock()
		return ErrNoCall
	}
	done := make(chan error, 1)
	m.mu.Unlock()
	fx := m.event(fsm.Event{Kind: fsm.EvRenegotiate, CallID: s.id, Video: on}, input{renegotiated: done})
	switch fx.apiErr {
	case "":
	case fsm.ErrNotConnected:
		return ErrNotConnected
	default:
		return ErrRenegotiating
	}
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		return ErrCallEnded
	case <-ctx.Done():
		return ctx.Err()
	}
}

// renegotiationDone tells SetVideo how its renegotiation ended.
func (s *session) renegotiationDone(err error) {
	s.m.mu.Lock()
	ch := s.renegDone
	s.renegDone = nil
	s.m.mu.Unlock()
	if ch != nil {
		ch <- err
	}
}

// sendRenegotiation changes what this side sends (a video sender added
// or removed) and sends the renegotiation offer.
func (s *session) sendRenegotiation(video bool) {
	m := s.m
	m.mu.Lock()
	pc, ephem := s.pc, s.ephem
	var vs *sender
	for i := range s.senders {
		if s.senders[i].kind == KindVideo {
			vs = &s.senders[i]
		}
	}
	m.mu.Unlock()
	if pc == nil || s.ctx.Err() != nil {
		return
	}
	var err error
	switch {
	case video && vs == nil:
		err = s.addVideoSender(pc)
	case !video && vs != nil:
		err = s.removeVideoSender(pc, vs)
	}
	if err != nil {
		s.log.Warn("call: changing the video sender failed", "err", err)
		s.renegotiationDone(fmt.Errorf("%w: %w", ErrRenegotiationFailed, err))
		return
	}
	// The offer is set as the local description only when its answer
	// comes (applyRenegotiationAnswer): pion v4.2.24 cannot roll an offer
	// back (SetLocalDescription(rollback) from have-local-offer is
	// refused), so until then the connection stays stable and a crossing
	// offer of the peer (glare), a timeout or an outage simply forget it.
	// ICE is not restarted, so nothing waits on the local description.
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		s.renegotiationDone(fmt.Errorf("%w: offer: %w", ErrRenegotiationFailed, err))
		return
	}
	m.mu.Lock()
	s.renegOffer = &offer
	m.mu.Unlock()
	s.log.Info("call: renegotiating", "video", video)
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.send(ctx, wire.OfferPayload{SDP: offer.SDP, EPK: ephem.PublicKey().Bytes(), Renegotiate: true}); err != nil && s.ctx.Err() == nil {
		s.log.Warn("call: sending the renegotiation offer failed", "err", err)
	}
}

// addVideoSender opens the video source and adds its track to pc (reusing
// a video transceiver that only receives); its send loop encrypts every
// frame before pion sees it.
func (s *session) addVideoSender(pc *webrtc.PeerConnection) error {
	src, err := s.openSource(KindVideo)
	if err != nil {
		return err
	}
	track, err := webrtc.NewTrackLocalStaticSample(vp8Codec.RTPCodecCapability, string(KindVideo), streamID)
	if err != nil {
		_ = src.Close()
		return err
	}
	rs, err := pc.AddTrack(track)
	if err != nil {
		_ = src.Close()
		return err
	}
	var ssrc uint32
	if enc := rs.GetParameters().Encodings; len(enc) > 0 {
		ssrc = uint32(enc[0].SSRC)
	}
	sn := sender{kind: KindVideo, track: track, src: src, ssrc: ssrc, rtp: rs}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closing || s.ending {
		_ = src.Close()
		return ErrCallEnded
	}
	s.sources = append(s.sources, src)
	s.senders = append(s.senders, sn)
	s.localTracks.Video = &Track{Kind: KindVideo, Codec: codecOf(KindVideo), ID: string(KindVideo), StreamID: streamID}
	m.local.Set(s.localTracks)
	s.goLocked(func() { drainRTCP(rs) })
	s.goLocked(func() { s.sendLoop(sn) })
	return nil
}

// removeVideoSender stops sending video: the source closes (its send loop
// ends) and the track leaves pc.
func (s *session) removeVideoSender(pc *webrtc.PeerConnection, vs *sender) error {
	m := s.m
	m.mu.Lock()
	sn := *vs
	kept := s.senders[:0]
	for _, x := range s.senders {
		if x.kind != KindVideo {
			kept = append(kept, x)
		}
	}
	s.senders = kept
	s.localTracks.Video = nil
	m.local.Set(s.localTracks)
	m.mu.Unlock()
	_ = sn.src.Close()
	if sn.rtp != nil {
		return pc.RemoveTrack(sn.rtp)
	}
	return nil
}

// applyRenegotiation applies the peer's renegotiation offer (forgetting
// ours when it crossed it and lost, §10.10) and answers it. A new
// video m-line is answered receive-only unless this side already sends
// video: the callee of an upgrade receives video without sending any.
func (s *session) applyRenegotiation(p wire.OfferPayload) {
	m := s.m
	m.mu.Lock()
	pc, ephem := s.pc, s.ephem
	ok := !s.ending && pc != nil && bytes.Equal(p.EPK, s.peerEPK)
	m.mu.Unlock()
	if !ok {
		m.countDrop("renegotiation_mismatch")
		return
	}
	m.mu.Lock()
	s.renegOffer = nil // ours crossed this one and gave way (never set)
	m.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: p.SDP}); err != nil {
		m.failCall(s, fmt.Errorf("%w: the peer's renegotiation offer: %w", ErrMediaSetup, err))
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		m.failCall(s, fmt.Errorf("%w: renegotiation answer: %w", ErrMediaSetup, err))
		return
	}
	s.log.Info("call: the peer changed the call's media", "video", wire.IsVideoOffer(p.SDP))
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.send(ctx, wire.AnswerPayload{SDP: answer.SDP, EPK: ephem.PublicKey().Bytes()}); err != nil && s.ctx.Err() == nil {
		s.log.Warn("call: sending the renegotiation answer failed", "err", err)
	}
}

// applyRenegotiationAnswer sets the peer's answer to our renegotiation.
func (s *session) applyRenegotiationAnswer(p wire.AnswerPayload) {
	m := s.m
	m.mu.Lock()
	pc, offer := s.pc, s.renegOffer
	s.renegOffer = nil
	ok := !s.ending && pc != nil && offer != nil && bytes.Equal(p.EPK, s.peerEPK)
	m.mu.Unlock()
	if !ok || pc.SignalingState() != webrtc.SignalingStateStable {
		m.countDrop("renegotiation_mismatch")
		s.renegotiationDone(fmt.Errorf("%w: the answer does not match the offer", ErrRenegotiationFailed))
		return
	}
	if err := pc.SetLocalDescription(*offer); err != nil {
		s.renegotiationDone(fmt.Errorf("%w: our offer: %w", ErrRenegotiationFailed, err))
		m.failCall(s, fmt.Errorf("%w: renegotiation offer: %w", ErrMediaSetup, err))
		return
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.SDP}); err != nil {
		s.renegotiationDone(fmt.Errorf("%w: the answer: %w", ErrRenegotiationFailed, err))
		m.failCall(s, fmt.Errorf("%w: renegotiation answer: %w", ErrMediaSetup, err))
		return
	}
	s.log.Info("call: media change done")
	s.renegotiationDone(nil)
}

// renegotiationEnded is the machine's end of our renegotiation (glare,
// timeout, interrupted): the offer, never set locally, is forgotten.
func (s *session) renegotiationEnded(why string) {
	m := s.m
	m.mu.Lock()
	s.renegOffer = nil // never set as the local description: nothing to roll back
	m.mu.Unlock()
	s.renegotiationDone(fmt.Errorf("%w: %s", ErrRenegotiationFailed, why))
}

// upgradeSink returns the video sink of a call that gains video after it
// began without (Options.VideoSink); nil without one.
func (s *session) upgradeSink() FrameSink {
	m := s.m
	m.mu.Lock()
	if s.sinks.Video != nil || m.opts.VideoSink == nil || s.ending {
		v := s.sinks.Video
		m.mu.Unlock()
		return v
	}
	st := Status{State: s.state, Peer: s.peer, CallID: s.id, Video: true, Incoming: s.incoming}
	m.mu.Unlock()
	v, err := m.opts.VideoSink(st)
	if err != nil {
		s.log.Warn("call: no video sink for the upgraded call", "err", err)
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closing {
		closeQuietly(v)
		return nil
	}
	s.sinks.Video = v
	return v
}
