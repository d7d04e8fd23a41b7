package call

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
)

// testTimings holds the timings setTimings gave each test, for the
// modules newPeer makes in it: per test, never the package's constants.
var testTimings sync.Map // testing.TB → timings

// setTimings shortens the timings of the modules the test t makes from now
// on (zero fields keep the constants).
func setTimings(t testing.TB, tm timings) {
	t.Helper()
	testTimings.Store(t, tm)
	t.Cleanup(func() { testTimings.Delete(t) })
}

// timingsFor returns the timings setTimings gave t, if any.
func timingsFor(t testing.TB) (timings, bool) {
	v, ok := testTimings.Load(t)
	if !ok {
		return timings{}, false
	}
	return v.(timings), true
}

// testHooks are the module's test hooks.
type testHooks struct {
	settingEngine func(*webrtc.SettingEngine)
	rtpTap        func(Kind, *rtp.Packet)
	onRestart     func(callID string)
	firstSeq      uint32
	callID        func() string
	localAddrs    func() []string
	timings       *timings // non-zero fields replace the module's
}

// setHooks installs hooks on m; call it before the first call.
func (m *Module) setHooks(h testHooks) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tm := h.timings; tm != nil {
		set := func(dst *time.Duration, v time.Duration) {
			if v != 0 {
				*dst = v
			}
		}
		set(&m.tm.answer, tm.answer)
		set(&m.tm.ring, tm.ring)
		set(&m.tm.disconnected, tm.disconnected)
		set(&m.tm.media, tm.media)
		set(&m.tm.mediaCheck, tm.mediaCheck)
		set(&m.tm.diag, tm.diag)
		set(&m.tm.restartDelay, tm.restartDelay)
		set(&m.tm.restartWait, tm.restartWait)
		set(&m.tm.rekeyRetry, tm.rekeyRetry)
		set(&m.tm.rekeySwitch, tm.rekeySwitch)
		set(&m.tm.netCheck, tm.netCheck)
		set(&m.tm.offerRetry, tm.offerRetry)
		m.machine = fsm.New(m.device, m.tm.machine())
	}
	h.timings = nil
	m.hooks = hooks{settingEngine: h.settingEngine, rtpTap: h.rtpTap, onRestart: h.onRestart,
		firstSeq: h.firstSeq, callID: h.callID, localAddrs: h.localAddrs}
}

// forceRekey starts a media rekey of the current call, as the Encryptor's
// rekey-needed signal would.
func (m *Module) forceRekey() bool {
	m.mu.Lock()
	s := m.cur
	var epoch uint32
	if s != nil {
		epoch = s.epoch
	}
	m.mu.Unlock()
	if s == nil {
		return false
	}
	s.startRekey(epoch)
	return true
}

// rekeyNeeded is the Encryptor's rekey-needed signal for the key of epoch,
// handled synchronously: when it returns, the call_rekey it starts (if any)
// was sent.
func (m *Module) rekeyNeeded(epoch uint32) bool {
	m.mu.Lock()
	s := m.cur
	m.mu.Unlock()
	if s == nil {
		return false
	}
	s.startRekey(epoch)
	return true
}

// pcOf returns the current call's peer connection (nil if none).
func (m *Module) pcOf() *webrtc.PeerConnection {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil
	}
	return m.cur.pc
}

// disconnectTimerArmed reports whether the current call's disconnected
// timer is running.
func (m *Module) disconnectTimerArmed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur != nil && m.cur.timers[fsm.TimerDisconnected] != nil
}

// curSession returns the current call's session.
func (m *Module) curSession() *session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// heldKeys reports what key material s still references.
func (s *session) heldKeys() []string {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	var held []string
	if s.enc != nil {
		held = append(held, "media send key")
	}
	if s.dec != nil {
		held = append(held, "media receive key")
	}
	if s.ephem != nil {
		held = append(held, "ephemeral private key")
	}
	if s.rekey != nil || s.pendingSend != nil {
		held = append(held, "rekey key")
	}
	return held
}
