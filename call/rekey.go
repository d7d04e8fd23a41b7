package call

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/wire"
)

// Media rekey (docs/PROTOCOL.md §5.4). The side whose Encryptor signals
// rekey-needed sends call_rekey{epoch: current+1, epk}; the peer answers with
// its own fresh epk for the same epoch. Both derive the epoch's keys and
// install the receive key at once (the previous one stays valid for the
// rekey grace). The initiator switches sending when the reply arrives: the
// responder installed its receive key before replying. The responder
// switches sending when the first frame of the new epoch arrives from the
// initiator (proof that the initiator holds the new keys), or once
// rekeySwitchWait has passed without any frame of the old epoch from it, so
// that no frame is sent under a key the peer does not have yet: an
// initiator still sending under the old key has not had the reply (it was
// lost; the initiator's retry gets it again).

// rekeyState is a call_rekey we sent and whose reply we wait for.
type rekeyState struct {
	epoch uint32
	priv  *ecdh.PrivateKey
	sent  time.Time
}

const (
	// rekeyRetry is how long an unanswered call_rekey waits before it may
	// be sent again.
	rekeyRetry = 10 * time.Second
	// rekeySwitchWait is how long the responder keeps sending under the
	// old key when no frame of either epoch arrives from the peer.
	rekeySwitchWait = 2 * time.Second
)

// onRekeyNeeded is the Encryptor's rekey-needed signal (80 % of the key's
// budget used) for the key of epoch. It runs on a sender goroutine and only
// starts the rekey.
func (s *session) onRekeyNeeded(epoch uint32) {
	s.log.Info("call: media key nearly used up; rekeying", "epoch", epoch)
	s.spawn(func() { s.startRekey(epoch) })
}

// startRekey sends call_rekey for the epoch after from with a fresh
// ephemeral key, or sends the pending one again once rekeyRetry has passed.
// It does nothing once the call agreed on a newer epoch than from (the peer's
// call_rekey came first, e.g. both keys ran out together), nor while the
// switch to it is pending: that epoch's key, with its whole budget, replaces
// from's.
func (s *session) startRekey(from uint32) {
	m := s.m
	m.mu.Lock()
	if s.ending || s.enc == nil || s.epoch != from || s.pendingSend != nil ||
		s.rekey != nil && time.Since(s.rekey.sent) < s.m.tm.rekeyRetry {
		m.mu.Unlock()
		return
	}
	if s.rekey == nil {
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			m.mu.Unlock()
			s.log.Warn("call: rekey: ephemeral key", "err", err)
			return
		}
		s.rekey = &rekeyState{epoch: s.epoch + 1, priv: priv}
	}
	s.rekey.sent = time.Now()
	r := *s.rekey
	stopTimer(&s.rekeyTimer)
	s.rekeyTimer = time.AfterFunc(s.m.tm.rekeyRetry, func() { s.spawn(func() { s.startRekey(from) }) })
	m.mu.Unlock()

	if err := s.send(s.ctx, wire.RekeyPayload{Epoch: int(r.epoch), EPK: r.priv.PublicKey().Bytes()}); err != nil {
		s.log.Warn("call: sending call_rekey failed", "epoch", r.epoch, "err", err)
	}
}

// onRekey handles the peer's call_rekey.
func (s *session) onRekey(p wire.RekeyPayload) {
	m := s.m
	epoch := uint32(p.Epoch)
	m.mu.Lock()
	if s.ending || s.enc == nil {
		m.mu.Unlock()
		m.countDrop("unexpected")
		return
	}
	var (
		priv      *ecdh.PrivateKey
		initiator bool
	)
	switch {
	case s.rekey != nil && s.rekey.epoch == epoch:
		// The reply to ours (or the peer's own request for the same epoch,
		// sent concurrently: each side uses the other's key).
		priv, initiator = s.rekey.priv, true
		s.rekey = nil
		stopTimer(&s.rekeyTimer)
		// Should it have been the peer's request and ours was lost, the
		// peer sends its request again: it is answered with our key for
		// this epoch, the one we derived with.
		s.lastReply = &wire.RekeyPayload{Epoch: int(epoch), EPK: priv.PublicKey().Bytes()}
	case epoch == s.epoch+1:
		var err error
		if priv, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			m.mu.Unlock()
			s.log.Warn("call: rekey: ephemeral key", "err", err)
			return
		}
	case epoch == s.epoch && s.lastReply != nil && uint32(s.lastReply.Epoch) == epoch:
		// The initiator sent its request again: our reply was lost.
		reply := *s.lastReply
		m.mu.Unlock()
		if err := s.send(s.ctx, reply); err != nil {
			s.log.Warn("call: replying to call_rekey failed", "epoch", epoch, "err", err)
		}
		return
	default:
		cur := s.epoch
		m.mu.Unlock()
		m.countDrop("rekey_epoch")
		s.log.Debug("call: call_rekey for an unexpected epoch; dropped", "epoch", epoch, "current", cur)
		return
	}
	// The epoch is agreed from here on, before the lock is released: a
	// rekey-needed signal of the old key handled meanwhile must not start
	// a call_rekey of its own for this epoch (the peer would get two keys
	// for it) nor one for the next (sending would move past the key the
	// pending switch installs).
	s.epoch = epoch
	enc, dec, peer := s.enc, s.dec, s.ps.keys.Signing
	m.mu.Unlock()

	self := m.sig.Identity().PublicKeys()
	send, recv, err := e2ee.DeriveKeys(priv, p.EPK, s.id, self.Signing, peer, epoch)
	if err == nil {
		err = dec.AddKey(recv)
	}
	if err != nil {
		m.failCall(s, fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, epoch, err))
		return
	}
	if initiator {
		if err := enc.SetKey(send); err != nil {
			m.failCall(s, fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, epoch, err))
			return
		}
		s.log.Info("call: media keys rotated", "epoch", epoch)
		return
	}

	reply := wire.RekeyPayload{Epoch: int(epoch), EPK: priv.PublicKey().Bytes()}
	m.mu.Lock()
	if s.ending {
		// The teardown may have wiped the keys already: this one would
		// outlive the call.
		m.mu.Unlock()
		clear(send.Key[:])
		clear(send.BaseIV[:])
		return
	}
	s.lastReply = &reply
	s.pendingSend = &send
	s.pendingEpoch.Store(epoch)
	s.oldFrameAt.Store(0)
	stopTimer(&s.switchTimer)
	s.switchTimer = time.AfterFunc(s.m.tm.rekeySwitch, s.switchWaitOver)
	m.mu.Unlock()
	if err := s.send(s.ctx, reply); err != nil {
		s.log.Warn("call: replying to call_rekey failed", "epoch", epoch, "err", err)
	}
}

// sawEpoch is called by the receive loops for every frame that decrypted:
// a frame of the pending epoch switches our sending to it; one of an older
// epoch is noted (the peer has not switched).
func (s *session) sawEpoch(epoch uint32) {
	switch p := s.pendingEpoch.Load(); {
	case p == 0:
	case epoch >= p:
		s.switchSend()
	default:
		s.oldFrameAt.Store(time.Now().UnixNano())
	}
}

// switchWaitOver is the responder's switch wait running out: it switches
// sending to the pending key unless a frame of the old epoch arrived less
// than rekeySwitchWait ago, in which case it waits that long again after
// that frame.
func (s *session) switchWaitOver() {
	m := s.m
	m.mu.Lock()
	if s.pendingSend == nil || s.ending {
		m.mu.Unlock()
		return
	}
	if at := s.oldFrameAt.Load(); at != 0 {
		if left := s.m.tm.rekeySwitch - time.Since(time.Unix(0, at)); left > 0 {
			s.switchTimer = time.AfterFunc(left, s.switchWaitOver)
			m.mu.Unlock()
			return
		}
	}
	m.mu.Unlock()
	s.switchSend()
}

// switchSend switches sending to the pending epoch's key, once.
func (s *session) switchSend() {
	m := s.m
	m.mu.Lock()
	k, enc := s.pendingSend, s.enc
	s.pendingSend = nil
	s.pendingEpoch.Store(0)
	stopTimer(&s.switchTimer)
	ending := s.ending
	m.mu.Unlock()
	if k == nil || ending {
		return
	}
	if err := enc.SetKey(*k); err != nil {
		m.failCall(s, fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, k.Epoch, err))
		return
	}
	s.log.Info("call: media keys rotated", "epoch", k.Epoch)
}
