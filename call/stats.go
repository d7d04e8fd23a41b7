package call

import (
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/identity"
)

// Stats are the figures of the current call (or of the last one, frozen when
// it ended) — the same as the Diag log line — plus the module's signaling
// drop counters.
type Stats struct {
	CallID string
	Peer   identity.Alias
	State  State
	// Connected is how long the call has been connected.
	Connected time.Duration

	// RTP bytes and packets, from pion's stats (outbound-rtp and
	// inbound-rtp, all kinds).
	BytesSent, BytesReceived     uint64
	PacketsSent, PacketsReceived uint64
	// PacketsLost is the inbound loss (cumulative); LossRate is
	// lost / (received + lost). FractionLost is the loss of what we send,
	// as the peer's last RTCP receiver report gives it (0..1).
	PacketsLost  int64
	LossRate     float64
	FractionLost float64

	// Frames: whole frames encrypted and written, and received and
	// decrypted.
	AudioFramesSent, VideoFramesSent         uint64
	AudioFramesReceived, VideoFramesReceived uint64

	// SendBitrate and ReceiveBitrate (bits per second) and FrameRate (video
	// frames sent per second) are over the last Diag interval.
	SendBitrate, ReceiveBitrate float64
	FrameRate                   float64
	// FrameWidth and FrameHeight are the size of the video sent (from the
	// last key frame).
	FrameWidth, FrameHeight int

	// RTT is the round-trip time on the selected candidate pair (from ICE
	// consent checks), or else from RTCP receiver reports.
	RTT time.Duration
	// LocalCandidate and RemoteCandidate are the types (host, srflx,
	// prflx, relay) of the selected candidate pair; empty before ICE
	// connects.
	LocalCandidate, RemoteCandidate string
	// ICERestarts counts the ICE restarts of the call.
	ICERestarts int
	// KeyEpoch is the media key epoch in use for sending.
	KeyEpoch uint32

	// EncryptErrors and DecryptErrors count frames dropped by the media
	// cipher; ICECandidatesDropped counts candidates dropped by the bounded
	// queues or refused by pion.
	EncryptErrors, DecryptErrors uint64
	ICECandidatesDropped         uint64

	// SignalingDrops counts the signaling frames the module dropped since
	// it was created, by reason: wire.DropReason's labels for frames that
	// fail to open (decrypt, signature, stale, replay, ...), and
	// queue_full, key_changed, peer_keys, unknown_call, duplicate,
	// unexpected, restart_mismatch, rekey_epoch, misrouted, not_call.
	SignalingDrops map[string]uint64
	// RelayErrors counts the frames the relay refused since the module was
	// created, by the relay's error code (rate_limited, malformed, ...).
	RelayErrors map[string]uint64
}

// counters are a session's own counts, updated by its media goroutines.
type counters struct {
	audioFramesSent, videoFramesSent atomic.Uint64
	audioBytesSent, videoBytesSent   atomic.Uint64
	audioFramesRecv, videoFramesRecv atomic.Uint64
	audioBytesRecv, videoBytesRecv   atomic.Uint64
	encryptErrors, decryptErrors     atomic.Uint64
	writeErrors, sinkErrors          atomic.Uint64
	iceDropped                       atomic.Uint64
	width, height                    atomic.Int32
}

// diagState holds the previous Diag sample, for rates; guarded by m.mu.
type diagState struct {
	n                   int
	at                  time.Time
	bytesSent, bytesRcv uint64
	videoFrames         uint64
	sendBps, recvBps    float64
	fps                 float64
	final               *Stats    // frozen at the end of the call
	fromPC              pcFigures // the last figures read from the connection
	remoteSSRCs         []uint32  // of the remote tracks, as they arrive
	pair                [2]string // the selected pair's local and remote candidate types
}

// pcFigures are the figures read from the connection (readPC).
type pcFigures struct {
	bytesSent, bytesRcv, pktsSent, pktsRcv uint64
	lost                                   int64
	fractionLost                           float64
	rtt                                    time.Duration
	local, remote                          string
}

// Stats returns the figures of the current call, or of the last call when
// none is in progress (zero when there was none), with the module's
// signaling drop counters.
func (m *Module) Stats() Stats {
	m.mu.Lock()
	s := m.cur
	if s == nil {
		s = m.tearing
	}
	var st Stats
	if s == nil && m.last != nil {
		st = *m.last
	}
	drops, relayErrs := maps.Clone(m.drops), maps.Clone(m.relayErrs)
	var final *Stats
	if s != nil {
		final = s.diag.final
	}
	m.mu.Unlock()
	switch {
	case final != nil:
		st = *final
	case s != nil:
		st = s.collect()
	}
	st.SignalingDrops, st.RelayErrors = drops, relayErrs
	return st
}

// collect gathers the call's figures from pion's stats and the session's
// counters.
func (s *session) collect() Stats {
	m := s.m
	m.mu.Lock()
	st := Stats{
		CallID:      s.id,
		Peer:        s.peer,
		State:       s.state,
		ICERestarts: s.restarts,
		SendBitrate: s.diag.sendBps, ReceiveBitrate: s.diag.recvBps, FrameRate: s.diag.fps,
	}
	if s.connected {
		st.Connected = time.Since(s.connectedAt)
	}
	if s.enc != nil {
		st.KeyEpoch = s.enc.Usage().Epoch
	}
	pc, getter := s.pc, s.stats
	ssrcs := make([]uint32, 0, len(s.senders))
	for _, sn := range s.senders {
		ssrcs = append(ssrcs, sn.ssrc)
	}
	remote, pair := slices.Clone(s.diag.remoteSSRCs), s.diag.pair
	m.mu.Unlock()

	st.AudioFramesSent = s.st.audioFramesSent.Load()
	st.VideoFramesSent = s.st.videoFramesSent.Load()
	st.AudioFramesReceived = s.st.audioFramesRecv.Load()
	st.VideoFramesReceived = s.st.videoFramesRecv.Load()
	st.FrameWidth, st.FrameHeight = int(s.st.width.Load()), int(s.st.height.Load())
	st.EncryptErrors = s.st.encryptErrors.Load()
	st.DecryptErrors = s.st.decryptErrors.Load()
	st.ICECandidatesDropped = s.st.iceDropped.Load()
	if pc == nil {
		return st
	}
	var f pcFigures
	s.statsMu.Lock()
	closed := pc.ConnectionState() == webrtc.PeerConnectionStateClosed
	if !closed {
		f = readPC(pc, getter, ssrcs, remote, pair)
	}
	s.statsMu.Unlock()
	m.mu.Lock()
	if closed { // pion's stats are gone; keep the last ones
		f = s.diag.fromPC
	} else {
		s.diag.fromPC = f
	}
	m.mu.Unlock()
	st.BytesSent, st.BytesReceived = f.bytesSent, f.bytesRcv
	st.PacketsSent, st.PacketsReceived = f.pktsSent, f.pktsRcv
	st.PacketsLost, st.RTT, st.FractionLost = f.lost, f.rtt, f.fractionLost
	st.LocalCandidate, st.RemoteCandidate = f.local, f.remote
	if total := st.PacketsReceived + uint64(max(st.PacketsLost, 0)); st.PacketsLost > 0 {
		st.LossRate = float64(st.PacketsLost) / float64(total)
	}
	return st
}

// readPC reads the outbound figures of our senders' SSRCs and the inbound
// ones of the remote tracks' from the stats interceptor, and the selected
// candidate pair's round-trip time from ICE (pair: its candidate types,
// empty before a pair is selected). Not from pion's GetStats: in pion
// v4.2.24 it reads a remote track's codec unlocked while the track's first
// packet sets it (a race a video call's Stats hit).
func readPC(pc *webrtc.PeerConnection, g stats.Getter, ssrcs, remote []uint32, pair [2]string) pcFigures {
	var f pcFigures
	var remoteRTT time.Duration
	if g != nil {
		for _, ssrc := range ssrcs {
			r := g.Get(ssrc)
			if r == nil {
				continue
			}
			f.bytesSent += r.OutboundRTPStreamStats.BytesSent
			f.pktsSent += r.OutboundRTPStreamStats.PacketsSent
			remoteRTT = max(remoteRTT, r.RemoteInboundRTPStreamStats.RoundTripTime)
			f.fractionLost = max(f.fractionLost, r.RemoteInboundRTPStreamStats.FractionLost)
		}
		f.bytesRcv, f.pktsRcv, f.lost = inbound(g, remote)
	}
	f.local, f.remote = pair[0], pair[1]
	if pair[0] != "" {
		// Only once a pair was selected: the ICE transport's gatherer is
		// read unlocked, and written while the transport starts.
		if ps, ok := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats(); ok {
			f.rtt = time.Duration(ps.CurrentRoundTripTime * float64(time.Second))
		}
	}
	if f.rtt == 0 {
		f.rtt = remoteRTT
	}
	return f
}

// inbound sums the inbound RTP figures of the remote SSRCs.
func inbound(g stats.Getter, remote []uint32) (bytes, pkts uint64, lost int64) {
	for _, ssrc := range remote {
		if r := g.Get(ssrc); r != nil {
			bytes += r.InboundRTPStreamStats.BytesReceived
			pkts += uint64(r.InboundRTPStreamStats.PacketsReceived)
			lost += r.InboundRTPStreamStats.PacketsLost
		}
	}
	return bytes, pkts, lost
}

// inboundBytes returns the inbound RTP bytes received so far.
func (s *session) inboundBytes() uint64 {
	m := s.m
	m.mu.Lock()
	g, remote := s.stats, slices.Clone(s.diag.remoteSSRCs)
	m.mu.Unlock()
	if g == nil {
		return 0
	}
	n, _, _ := inbound(g, remote)
	return n
}

// onPair records the candidate types of the pair ICE selected (again after
// an ICE restart).
func (s *session) onPair(p *webrtc.ICECandidatePair) {
	if p == nil || p.Local == nil || p.Remote == nil {
		return
	}
	local, remote := p.Local.Typ.String(), p.Remote.Typ.String()
	s.log.Debug("call: candidate pair selected", "local", local, "remote", remote)
	s.m.mu.Lock()
	s.diag.pair = [2]string{local, remote}
	s.m.mu.Unlock()
}

// watchdog reports growth of the inbound RTP bytes to the state machine,
// sampled every mediaCheckInterval (the module's timings); the machine ends the call when none
// comes for the media timeout (the seed's "no inbound RTP growth").
func (s *session) watchdog() {
	m := s.m
	t := time.NewTicker(s.m.tm.mediaCheck)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if n := s.inboundBytes(); n > last {
			last = n
			m.event(fsm.Event{Kind: fsm.EvMedia, CallID: s.id}, input{})
		}
	}
}

// diagLoop logs the seed's Diag line every diagInterval (the module's
// timings) while the call is up.
func (s *session) diagLoop() {
	t := time.NewTicker(s.m.tm.diag)
	defer t.Stop()
	// The first line's rates are over the time since now (the counters
	// start from zero), not 0 for want of a previous line.
	s.m.mu.Lock()
	if s.diag.at.IsZero() {
		s.diag.at = time.Now()
	}
	s.m.mu.Unlock()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		st := s.sample()
		s.log.Info(fmt.Sprintf("call: Diag #%d", s.diagN()),
			"state", st.State,
			"sent_bytes", st.BytesSent, "recv_bytes", st.BytesReceived,
			"sent_pkts", st.PacketsSent, "recv_pkts", st.PacketsReceived,
			"sent_frames", fmt.Sprintf("a%d/v%d", st.AudioFramesSent, st.VideoFramesSent),
			"recv_frames", fmt.Sprintf("a%d/v%d", st.AudioFramesReceived, st.VideoFramesReceived),
			"send_kbps", int(st.SendBitrate/1000), "recv_kbps", int(st.ReceiveBitrate/1000),
			"frame", fmt.Sprintf("%dx%d", st.FrameWidth, st.FrameHeight), "fps", fmt.Sprintf("%.1f", st.FrameRate),
			"rtt", st.RTT.Round(10*time.Microsecond).String(), "lost", st.PacketsLost, "loss", fmt.Sprintf("%.3f", st.LossRate),
			"peer_loss", fmt.Sprintf("%.3f", st.FractionLost),
			"pair", st.LocalCandidate+"/"+st.RemoteCandidate,
			"dec_err", st.DecryptErrors)
	}
}

// diagN returns the number of the Diag line just sampled.
func (s *session) diagN() int {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.diag.n
}

// sample collects the figures and updates the rates over the time since the
// previous sample.
func (s *session) sample() Stats {
	st := s.collect()
	now := time.Now()
	m := s.m
	m.mu.Lock()
	d := &s.diag
	if !d.at.IsZero() {
		if dt := now.Sub(d.at).Seconds(); dt > 0 {
			d.sendBps = float64(st.BytesSent-min(st.BytesSent, d.bytesSent)) * 8 / dt
			d.recvBps = float64(st.BytesReceived-min(st.BytesReceived, d.bytesRcv)) * 8 / dt
			d.fps = float64(st.VideoFramesSent-min(st.VideoFramesSent, d.videoFrames)) / dt
		}
	}
	d.n++
	d.at, d.bytesSent, d.bytesRcv, d.videoFrames = now, st.BytesSent, st.BytesReceived, st.VideoFramesSent
	st.SendBitrate, st.ReceiveBitrate, st.FrameRate = d.sendBps, d.recvBps, d.fps
	m.mu.Unlock()
	return st
}
