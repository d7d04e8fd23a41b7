package call

import (
	"errors"
	"fmt"
	"io"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/media"
)

// streamID is the media stream (msid) of the tracks a module sends.
const streamID = "duet"

// Frame assembler windows, in RTP packets: a 1280x720 VP8 key frame at
// 1.5 Mbps is about 50 packets.
const (
	maxLateVideo = 512
	maxLateAudio = 32
)

// sender is one outgoing track and the paced media it sends.
type sender struct {
	kind  Kind
	track *webrtc.TrackLocalStaticSample
	src   *media.PacedSource
	ssrc  uint32
	rtp   *webrtc.RTPSender // for RemoveTrack (a downgrade)
}

// addTracks opens the call's media sources and adds one track per kind to
// pc: audio always, video when the call is a video call. On the callee the
// tracks attach to the transceivers of the offer. It starts a goroutine per
// sender that reads RTCP (which the NACK and report interceptors need).
func (s *session) addTracks(pc *webrtc.PeerConnection, video bool) error {
	kinds := []Kind{KindAudio}
	if video {
		kinds = append(kinds, KindVideo)
	}
	var senders []sender
	var local Tracks
	for _, k := range kinds {
		src, err := s.openSource(k)
		if err != nil {
			for _, sn := range senders {
				_ = sn.src.Close()
			}
			return err
		}
		codec := opusCodec.RTPCodecCapability
		if k == KindVideo {
			codec = vp8Codec.RTPCodecCapability
		}
		var ssrc uint32
		var rs *webrtc.RTPSender
		track, err := webrtc.NewTrackLocalStaticSample(codec, string(k), streamID)
		if err == nil {
			if rs, err = pc.AddTrack(track); err == nil {
				if enc := rs.GetParameters().Encodings; len(enc) > 0 {
					ssrc = uint32(enc[0].SSRC)
				}
				s.spawn(func() { drainRTCP(rs) })
			}
		}
		if err != nil {
			_ = src.Close()
			for _, sn := range senders {
				_ = sn.src.Close()
			}
			return fmt.Errorf("%w: adding the %s track: %w", ErrMediaSetup, k, err)
		}
		senders = append(senders, sender{kind: k, track: track, src: src, ssrc: ssrc, rtp: rs})
		t := &Track{Kind: k, Codec: codecOf(k), ID: string(k), StreamID: streamID}
		if k == KindVideo {
			local.Video = t
		} else {
			local.Audio = t
		}
	}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closing { // the teardown already closed what it knew of
		for _, sn := range senders {
			_ = sn.src.Close()
		}
		return fmt.Errorf("%w while adding tracks", ErrCallEnded)
	}
	for _, sn := range senders {
		s.sources = append(s.sources, sn.src)
	}
	s.senders = senders
	s.localTracks = local
	if !s.ending {
		m.local.Set(local)
	}
	return nil
}

// openSource opens the paced, looping source of kind k and checks its codec.
func (s *session) openSource(k Kind) (*media.PacedSource, error) {
	open := s.m.opts.Audio
	fixture := media.AudioFixture
	if k == KindVideo {
		open, fixture = s.m.opts.Video, media.VideoFixture
	}
	if open == nil {
		open = media.BytesOpener(fixture())
	}
	src, err := media.NewPacedSource(open, media.PacedOptions{Loop: true})
	if err != nil {
		return nil, fmt.Errorf("%w: opening the %s source: %w", ErrMediaSetup, k, err)
	}
	if want := codecOf(k); src.Codec() != want {
		_ = src.Close()
		return nil, fmt.Errorf("%w: the %s source is %s; want %s", ErrMediaSetup, k, src.Codec(), want)
	}
	return src, nil
}

// drainRTCP reads a sender's RTCP until the peer connection closes.
func drainRTCP(rs *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := rs.Read(buf); err != nil {
			return
		}
	}
}

// startMediaLocked starts the senders, the media watchdog and the Diag
// loop; it runs once, when the call first connects; m.mu is held.
func (s *session) startMediaLocked() {
	for _, sn := range s.senders {
		s.goLocked(func() { s.sendLoop(sn) })
	}
	s.goLocked(s.watchdog)
	s.goLocked(s.mediaLoop)
	s.goLocked(s.diagLoop)
	s.goLocked(s.watchNetwork)
}

// sendLoop encrypts every frame of a source and writes it to its track.
// Nothing is written unencrypted: a frame that does not encrypt is dropped.
func (s *session) sendLoop(sn sender) {
	m := s.m
	m.mu.Lock()
	enc := s.enc
	m.mu.Unlock()
	if enc == nil {
		return
	}
	kind := e2ee.KindOpus
	if sn.kind == KindVideo {
		kind = e2ee.KindVP8
	}
	var buf []byte
	waitKey := false // the camera was off: video resumes at a key frame
	for {
		f, err := sn.src.Next(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, media.ErrClosed) {
				s.log.Warn("call: media source failed; no more "+string(sn.kind)+" is sent", "err", err)
			}
			return
		}
		// Muted and camera-off (PROTOCOL §10.9): the source keeps its pace;
		// a muted microphone sends Opus silence in its place, a camera that
		// is off sends nothing until on again and at a key frame.
		if sn.kind == KindVideo {
			if s.videoOff.Load() {
				waitKey = true
				continue
			}
			if waitKey {
				if key, _, _, ok := media.VP8FrameInfo(f.Data); !key || !ok {
					continue
				}
				waitKey = false
			}
		} else if s.audioMuted.Load() {
			f.Data = opusSilence
		}
		out, err := enc.Encrypt(buf[:0], f.Data, kind)
		if err != nil {
			s.st.encryptErrors.Add(1)
			s.log.Debug("call: frame not encrypted; dropped", "kind", sn.kind, "err", err)
			continue
		}
		buf = out
		// WriteSample packetises into fresh packets (the VP8 and Opus
		// payloaders copy), so buf can be reused.
		if err := sn.track.WriteSample(pmedia.Sample{Data: out, Duration: f.Duration}); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return
			}
			s.st.writeErrors.Add(1)
			continue
		}
		if sn.kind == KindVideo {
			s.st.videoFramesSent.Add(1)
			s.st.videoBytesSent.Add(uint64(len(f.Data)))
			if key, w, h, ok := media.VP8FrameInfo(f.Data); key && ok {
				s.st.width.Store(int32(w))
				s.st.height.Store(int32(h))
			}
		} else {
			s.st.audioFramesSent.Add(1)
			s.st.audioBytesSent.Add(uint64(len(f.Data)))
		}
	}
}

// onTrack starts the receive loop of a remote track on a session goroutine.
func (s *session) onTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	s.spawn(func() { s.recvLoop(track) })
}

// recvLoop reads a remote track's RTP, rebuilds whole frames with a
// frameAssembler, decrypts them and hands them to the sink. The VP8
// depacketizer sees encrypted frames, whose first 10 (key) or 3 (delta)
// bytes are the clear VP8 header, so its partition-head logic still works.
func (s *session) recvLoop(track *webrtc.TrackRemote) {
	m := s.m
	k := mimeKind(track.Codec().MimeType)
	if k == "" {
		s.log.Warn("call: remote track with an unexpected codec; ignored", "codec", track.Codec().MimeType)
		return
	}
	var (
		dep     rtp.Depacketizer
		kind    e2ee.FrameKind
		maxLate uint16
	)
	if k == KindVideo {
		dep, kind, maxLate = &codecs.VP8Packet{}, e2ee.KindVP8, maxLateVideo
	} else {
		dep, kind, maxLate = &codecs.OpusPacket{}, e2ee.KindOpus, maxLateAudio
	}
	fa := newFrameAssembler(maxLate, dep, track.Codec().ClockRate)

	t := &Track{Kind: k, Codec: codecOf(k), ID: track.ID(), StreamID: track.StreamID(), SSRC: uint32(track.SSRC())}
	m.mu.Lock()
	s.diag.remoteSSRCs = append(s.diag.remoteSSRCs, t.SSRC)
	if k == KindVideo {
		s.remTracks.Video = t
	} else {
		s.remTracks.Audio = t
	}
	if !s.ending {
		m.remote.Set(s.remTracks)
	}
	dec, sinks := s.dec, s.sinks
	m.mu.Unlock()
	sink := sinks.Audio
	if k == KindVideo {
		sink = sinks.Video
		if sink == nil {
			sink = s.upgradeSink() // a call that gained video (§10.10)
		}
	}
	s.log.Debug("call: receiving", "kind", k, "ssrc", t.SSRC)

	tap := m.hooks.rtpTap
	sinkFailed := false
	// deliver decrypts a rebuilt frame and hands it to the sink. smp.Data is
	// the assembler's buffer, valid until the next Pop: Decrypt copies the
	// frame out of it.
	deliver := func(smp assembledFrame) {
		if dec == nil {
			s.st.decryptErrors.Add(1)
			return
		}
		ctr, _ := e2ee.FrameCounter(smp.Data, kind)
		frame, err := dec.Decrypt(nil, smp.Data, kind)
		if err != nil {
			s.st.decryptErrors.Add(1)
			s.log.Debug("call: frame does not decrypt; dropped", "kind", k, "err", err)
			return
		}
		s.sawEpoch(ctr.Epoch())
		if k == KindVideo {
			s.st.videoFramesRecv.Add(1)
			s.st.videoBytesRecv.Add(uint64(len(frame)))
		} else {
			s.st.audioFramesRecv.Add(1)
			s.st.audioBytesRecv.Add(uint64(len(frame)))
		}
		if sink == nil || sinkFailed {
			return
		}
		f := media.Frame{Data: frame, Duration: smp.Duration, Keyframe: k == KindVideo && frame[0]&1 == 0}
		if err := sink.WriteFrame(f); err != nil && !errors.Is(err, media.ErrInvalidFrame) {
			sinkFailed = true
			s.st.sinkErrors.Add(1)
			s.log.Warn("call: the "+string(k)+" sink failed; no more frames are written to it", "err", err)
		}
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			// The track ended (the call is closing; the sinks close
			// after this loop): the last complete frames go out too.
			for smp, ok := fa.Flush(); ok; smp, ok = fa.Flush() {
				deliver(smp)
			}
			c := fa.counters()
			s.log.Debug("call: track ended", "kind", k, "frames", c.Frames, "dropped", c.Dropped,
				"lost", c.Lost, "late", c.Late, "dup", c.Duplicates)
			return
		}
		if tap != nil {
			tap(k, pkt)
		}
		fa.Push(pkt)
		for smp, ok := fa.Pop(); ok; smp, ok = fa.Pop() {
			deliver(smp)
		}
	}
}
