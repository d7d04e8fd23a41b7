package call

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/call/fsm"
)

// timings are the package's timing constants, which tests shorten here (and
// only here: they are not configurable through Options).
type timings struct {
	answer, ring, disconnected, media, mediaCheck, diag, restartDelay, restartWait, rekeyRetry, rekeySwitch time.Duration
}

// setTimings replaces the timing constants for one test and restores them
// when it ends. Tests that call it must not run in parallel.
func setTimings(t testing.TB, tm timings) {
	t.Helper()
	old := timings{answerTimeout, ringTimeout, disconnectedTimeout, mediaTimeout, mediaCheckInterval, diagInterval, restartDelay, restartWait, rekeyRetry, rekeySwitchWait}
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&answerTimeout, tm.answer)
	set(&ringTimeout, tm.ring)
	set(&disconnectedTimeout, tm.disconnected)
	set(&mediaTimeout, tm.media)
	set(&mediaCheckInterval, tm.mediaCheck)
	set(&diagInterval, tm.diag)
	set(&restartDelay, tm.restartDelay)
	set(&restartWait, tm.restartWait)
	set(&rekeyRetry, tm.rekeyRetry)
	set(&rekeySwitchWait, tm.rekeySwitch)
	t.Cleanup(func() {
		answerTimeout, ringTimeout, disconnectedTimeout = old.answer, old.ring, old.disconnected
		mediaTimeout, mediaCheckInterval, diagInterval, restartWait = old.media, old.mediaCheck, old.diag, old.restartWait
		restartDelay = old.restartDelay
		rekeyRetry, rekeySwitchWait = old.rekeyRetry, old.rekeySwitch
	})
}

// testHooks are the module's test hooks.
type testHooks struct {
	settingEngine func(*webrtc.SettingEngine)
	rtpTap        func(Kind, *rtp.Packet)
	onRestart     func(callID string)
	firstSeq      uint32
	callID        func() string
	localAddrs    func() []string
}

// setHooks installs hooks on m; call it before the first call.
func (m *Module) setHooks(h testHooks) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks = hooks(h)
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
