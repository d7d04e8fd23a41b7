package e2ee

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// DecryptorOptions configures a Decryptor. The zero value (or nil) is the
// normal configuration.
type DecryptorOptions struct {
	// Now is the clock that times the rekey grace; nil means time.Now.
	Now func() time.Time
}

// recvKey is one epoch's receive key with its replay window.
type recvKey struct {
	epoch  uint32
	aead   cipher.AEAD
	baseIV [BaseIVSize]byte
	window replayWindow
}

// Decryptor decrypts the frames of one receiving direction
// (docs/PROTOCOL.md §5.2–§5.4). It holds the current epoch's key and the
// previous one, each with its own replay window; the previous one is
// dropped RekeyGrace after the first frame under the current one
// authenticates (the peer has switched; until then it may still be sending
// under the previous key, its new key's exchange delayed or lost).
//
// It is safe for concurrent use (e.g. by the audio and video reader
// goroutines); calls are serialized by a mutex.
type Decryptor struct {
	mu        sync.Mutex
	cur       *recvKey
	prev      *recvKey         // nil when there is none or its grace ended
	prevUntil time.Time        // the end of prev's grace; zero until it started
	iv        [BaseIVSize]byte // scratch; a local array would escape into the AEAD call
	now       func() time.Time
	closed    bool
}

// Close drops the Decryptor's keys (forward secrecy, like
// Encryptor.Close): Decrypt and AddKey fail with ErrClosed afterwards.
func (d *Decryptor) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range []*recvKey{d.cur, d.prev} {
		if k != nil {
			k.aead = nil
			clear(k.baseIV[:])
		}
	}
	d.cur, d.prev, d.closed = nil, nil, true
	clear(d.iv[:])
}

// NewDecryptor returns a Decryptor receiving under k. opts may be nil.
func NewDecryptor(k DirectionKey, opts *DecryptorOptions) (*Decryptor, error) {
	rk, err := newRecvKey(&k)
	if err != nil {
		return nil, err
	}
	d := &Decryptor{cur: rk, now: time.Now}
	if opts != nil && opts.Now != nil {
		d.now = opts.Now
	}
	return d, nil
}

func newRecvKey(k *DirectionKey) (*recvKey, error) {
	aead, err := newAEAD(k)
	if err != nil {
		return nil, err
	}
	return &recvKey{epoch: k.Epoch, aead: aead, baseIV: k.BaseIV}, nil
}

// AddKey installs k, whose epoch must be newer than the current one, as the
// current key. The key it replaces keeps decrypting its epoch's frames until
// RekeyGrace after the first frame under k; any older key is dropped.
func (d *Decryptor) AddKey(k DirectionKey) error {
	rk, err := newRecvKey(&k)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.cur == nil {
		return errNotInitialised
	}
	if k.Epoch <= d.cur.epoch {
		return fmt.Errorf("%w: epoch %d, current %d", ErrEpochOrder, k.Epoch, d.cur.epoch)
	}
	d.prev, d.cur = d.cur, rk
	d.prevUntil = time.Time{}
	return nil
}

// Epoch returns the current key's epoch.
func (d *Decryptor) Epoch() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return 0
	}
	return d.cur.epoch
}

// Decrypt authenticates and decrypts an encrypted frame of the given kind and
// returns the original frame (clear header || body) appended to dst[:0].
// With a dst of capacity len(frame)-Overhead it does not allocate. dst must
// not overlap frame; if it does, a new buffer is allocated instead.
//
// It never panics on any input. Errors: ErrShortFrame, ErrInvalidKind,
// ErrUnknownEpoch, ErrTooOld, ErrReplay and ErrAuth (wrapped; use
// errors.Is). The replay window only records frames that authenticate. On
// error it returns nil, and dst's contents up to its capacity may have been
// overwritten.
func (d *Decryptor) Decrypt(dst, frame []byte, kind FrameKind) ([]byte, error) {
	h, err := encryptedHeaderLen(frame, kind)
	if err != nil {
		return nil, err
	}
	if overlaps(dst, frame) {
		dst = nil
	}
	ctr := Counter(binary.BigEndian.Uint64(frame[h:]))
	seq := uint64(ctr.Seq())

	d.mu.Lock()
	defer d.mu.Unlock()
	k, err := d.key(ctr.Epoch())
	if err != nil {
		return nil, err
	}
	if err := k.window.check(seq); err != nil {
		return nil, fmt.Errorf("%w: counter %v, highest seq %d", err, ctr, k.window.highest)
	}
	nonce(&d.iv, &k.baseIV, ctr)
	out := append(dst[:0], frame[:h]...)
	out, err = k.aead.Open(out, d.iv[:], frame[h+CounterSize:], frame[:h+CounterSize])
	if err != nil {
		return nil, fmt.Errorf("%w: counter %v, %s frame of %d bytes", ErrAuth, ctr, kind, len(frame))
	}
	k.window.accept(seq)
	if k == d.cur && d.prev != nil && d.prevUntil.IsZero() {
		d.prevUntil = d.now().Add(RekeyGrace) // the peer switched: prev's grace starts
	}
	return out, nil
}

// key returns the key for epoch; d.mu is held.
func (d *Decryptor) key(epoch uint32) (*recvKey, error) {
	if d.closed {
		return nil, ErrClosed
	}
	if d.cur == nil {
		return nil, errNotInitialised
	}
	if epoch == d.cur.epoch {
		return d.cur, nil
	}
	if d.prev != nil && epoch == d.prev.epoch {
		if d.prevUntil.IsZero() || d.now().Before(d.prevUntil) {
			return d.prev, nil
		}
		d.prev = nil // grace over: forget the key
		return nil, fmt.Errorf("%w: epoch %d, its rekey grace ended (current epoch %d)", ErrUnknownEpoch, epoch, d.cur.epoch)
	}
	return nil, fmt.Errorf("%w: epoch %d (current epoch %d)", ErrUnknownEpoch, epoch, d.cur.epoch)
}
