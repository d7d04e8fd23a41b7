package call

import (
	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/hot"
	"github.com/duetcall/duet/wire"
)

// MediaState is one side's media state in a call (docs/PROTOCOL.md §10.9):
// what the peer announces with call_media (PeerMedia) or what this side
// sends (SetMicrophoneEnabled, SetCameraEnabled). The zero MediaState is a
// microphone and camera that are on and no screen being shared.
type MediaState struct {
	// AudioMuted: the microphone is muted; silence is sent.
	AudioMuted bool
	// VideoOff: the camera is off; no picture is sent (apps show the
	// peer's avatar or alias instead of the last frame).
	VideoOff bool
	// Screen: the video is a shared screen, not a camera.
	Screen bool
}

func (ms MediaState) payload() wire.MediaPayload {
	return wire.MediaPayload{AudioMuted: ms.AudioMuted, VideoOff: ms.VideoOff, Screen: ms.Screen}
}

// opusSilence is one 20 ms Opus frame of silence (TOC 0xf8: CELT-only,
// full band, 20 ms, mono, one frame; then an empty range-coded frame): what
// a muted Go sender sends in place of its source's audio, 50 frames a
// second, so that the peer's media watchdog sees media go on
// (PROTOCOL §10.9).
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// PeerMedia returns the peer's media state in the current call as a hot
// value (docs/PROTOCOL.md §10.9): the zero MediaState when no call is in
// progress or the peer has announced nothing yet, then each call_media it
// sends. A change reaches subscribers as soon as the message arrives.
func (m *Module) PeerMedia() *hot.Value[MediaState] { return m.peerMedia }

// LocalMedia returns what the current call sends: muted microphone, camera
// off (the zero MediaState without a call).
func (m *Module) LocalMedia() MediaState {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.cur; s != nil {
		return s.media
	}
	return MediaState{}
}

// SetMicrophoneEnabled mutes (false) or unmutes (true) the microphone of
// the call in progress: while muted, Opus silence frames are sent in place
// of the source's audio (so the peer's media watchdog sees media), and the
// peer is told with call_media. It returns ErrNoCall without a call in
// progress; every call starts unmuted.
func (m *Module) SetMicrophoneEnabled(on bool) error {
	return m.setMedia(func(ms *MediaState) { ms.AudioMuted = !on })
}

// SetCameraEnabled turns the camera of the call in progress off (false) or
// on again (true): while off no video frame is sent (the audio, muted or
// not, goes on), and the peer is told with call_media; once on again,
// video resumes at the source's next key frame. It returns ErrNoCall
// without a call in progress; in an audio call it only changes what the
// peer is told.
func (m *Module) SetCameraEnabled(on bool) error {
	return m.setMedia(func(ms *MediaState) { ms.VideoOff = !on })
}

func (m *Module) setMedia(change func(*MediaState)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.cur
	if s == nil || s.ending {
		return ErrNoCall
	}
	before := s.media
	change(&s.media)
	if s.media == before {
		return nil
	}
	s.audioMuted.Store(s.media.AudioMuted)
	s.videoOff.Store(s.media.VideoOff)
	s.log.Info("call: local media", "audio_muted", s.media.AudioMuted, "video_off", s.media.VideoOff)
	select {
	case s.mediaKick <- struct{}{}:
	default: // a send is pending: it reads the latest state
	}
	return nil
}

// mediaLoop sends call_media once when the call connects and again after
// every change (docs/PROTOCOL.md §10.9); each send carries the state of
// that moment, so quick changes collapse into the last one.
func (s *session) mediaLoop() {
	m := s.m
	for {
		m.mu.Lock()
		ms, ps := s.media, s.ps
		m.mu.Unlock()
		if ps != nil {
			if err := m.sendTo(s.ctx, ps, s.id, ms.payload(), ""); err != nil && s.ctx.Err() == nil {
				s.log.Warn("call: sending call_media failed", "err", err)
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.mediaKick:
		}
	}
}

// peerMediaLocked publishes the peer's announced state (the machine's
// peer_media action); m.mu is held.
func (m *Module) peerMediaLocked(s *session, a fsm.Action) {
	if s == nil || s.ending || m.cur != s {
		return
	}
	ms := MediaState{AudioMuted: a.AudioMuted, VideoOff: a.VideoOff, Screen: a.Screen}
	s.log.Info("call: peer media", "audio_muted", ms.AudioMuted, "video_off", ms.VideoOff, "screen", ms.Screen)
	m.peerMedia.Set(ms)
}
