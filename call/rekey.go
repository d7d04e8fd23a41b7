package call

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/wire"
)

// rekeyState is a call_rekey we sent and whose reply we wait for.
type rekeyState struct {
	epoch uint32
	priv  *ecdh.PrivateKey
	sent  time.Time
}

// rekeyRetry is how long an unanswered call_rekey waits before a new
// rekey-needed signal may send it again.
const rekeyRetry = 10 * time.Second

// onRekeyNeeded is the Encryptor's rekey-needed signal (80 % of the key's
// budget used). It runs on a sender goroutine and only starts the rekey.
func (s *session) onRekeyNeeded(epoch uint32) {
	s.log.Info("call: media key nearly used up; rekeying", "epoch", epoch)
	s.spawn(s.startRekey)
}

// startRekey sends call_rekey for the next epoch with a fresh ephemeral key
// (docs/PROTOCOL.md §5.4).
func (s *session) startRekey() {
	m := s.m
	m.mu.Lock()
	if s.ending || s.enc == nil || s.rekey != nil && time.Since(s.rekey.sent) < rekeyRetry {
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
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	if err := s.send(ctx, wire.RekeyPayload{Epoch: int(r.epoch), EPK: r.priv.PublicKey().Bytes()}); err != nil {
		s.log.Warn("call: sending call_rekey failed", "epoch", r.epoch, "err", err)
	}
}

// onRekey handles the peer's call_rekey: the reply to ours (or theirs for
// the same epoch sent concurrently: each side uses the other's key), or a
// request for the next epoch, which we answer with our own fresh key.
func (s *session) onRekey(p wire.RekeyPayload) {
	m := s.m
	epoch := uint32(p.Epoch)
	m.mu.Lock()
	if s.ending || s.enc == nil {
		m.mu.Unlock()
		m.countDrop("unexpected")
		return
	}
	var priv *ecdh.PrivateKey
	reply := false
	switch {
	case s.rekey != nil && s.rekey.epoch == epoch:
		priv = s.rekey.priv
		s.rekey = nil
	case epoch == s.epoch+1:
		var err error
		if priv, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			m.mu.Unlock()
			s.log.Warn("call: rekey: ephemeral key", "err", err)
			return
		}
		reply = true
	default:
		cur := s.epoch
		m.mu.Unlock()
		m.countDrop("rekey_epoch")
		s.log.Debug("call: call_rekey for an unexpected epoch; dropped", "epoch", epoch, "current", cur)
		return
	}
	enc, dec := s.enc, s.dec
	m.mu.Unlock()

	if err := s.installEpoch(enc, dec, priv, p.EPK, epoch); err != nil {
		m.fail(s, err)
		return
	}
	s.log.Info("call: media keys rotated", "epoch", epoch)
	if reply {
		ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
		defer cancel()
		if err := s.send(ctx, wire.RekeyPayload{Epoch: int(epoch), EPK: priv.PublicKey().Bytes()}); err != nil {
			s.log.Warn("call: replying to call_rekey failed", "epoch", epoch, "err", err)
		}
	}
}

// installEpoch derives the epoch's keys, installs the receive key first (the
// previous one stays valid for the rekey grace) and then switches sending.
func (s *session) installEpoch(enc *e2ee.Encryptor, dec *e2ee.Decryptor, priv *ecdh.PrivateKey, peerEPK []byte, epoch uint32) error {
	m := s.m
	self := m.sig.Identity().PublicKeys()
	m.mu.Lock()
	peer := s.ps.keys.Signing
	m.mu.Unlock()
	send, recv, err := e2ee.DeriveKeys(priv, peerEPK, s.id, self.Signing, peer, epoch)
	if err != nil {
		return fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, epoch, err)
	}
	if err := dec.AddKey(recv); err != nil {
		return fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, epoch, err)
	}
	if err := enc.SetKey(send); err != nil {
		return fmt.Errorf("%w: rekey to epoch %d: %w", ErrMediaSetup, epoch, err)
	}
	m.mu.Lock()
	s.epoch = epoch
	m.mu.Unlock()
	return nil
}
