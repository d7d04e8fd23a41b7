package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

var errNotInitialised = errors.New("e2ee: zero Encryptor or Decryptor; create it with NewEncryptor or NewDecryptor")

// limits are the per-key usage limits. Production code always uses
// defaultLimits; tests shrink them through the unexported Encryptor field so
// the limit paths run without 2^24 encryptions.
type limits struct {
	maxFrames, maxBytes     uint64
	rekeyFrames, rekeyBytes uint64
}

var defaultLimits = limits{
	maxFrames:   MaxFramesPerKey,
	maxBytes:    MaxBytesPerKey,
	rekeyFrames: RekeyFrames,
	rekeyBytes:  RekeyBytes,
}

// EncryptorOptions configures an Encryptor. The zero value (or nil) is the
// normal configuration.
type EncryptorOptions struct {
	// OnRekeyNeeded, if set, is called once per key, with the key's epoch,
	// right after the Encrypt call that brings the key's usage to
	// RekeyFrames frames or RekeyBytes body bytes. It runs synchronously on
	// the goroutine that called Encrypt, without the Encryptor's lock held
	// (it may call Usage or SetKey), so it should only start the rekey
	// (e.g. send on a buffered channel) and return. Usage().RekeyNeeded
	// reports the same condition for polling.
	OnRekeyNeeded func(epoch uint32)

	// FirstSeq is the sequence number of the first frame, normally 0. It
	// exists for test-vector generation; the frames before it count as
	// used, so a key never encrypts more than MaxFramesPerKey frames.
	FirstSeq uint32
}

// Usage is how much of its current key an Encryptor has used.
type Usage struct {
	Epoch  uint32
	Frames uint64 // frames encrypted under the key (the next frame's seq)
	Bytes  uint64 // body bytes (frame bytes after the clear header) encrypted
	// RekeyNeeded is true once Frames reached RekeyFrames or Bytes
	// reached RekeyBytes.
	RekeyNeeded bool
}

// Encryptor encrypts the frames of one sending direction
// (docs/PROTOCOL.md §5.2, §5.4).
//
// It is safe for concurrent use (e.g. by the audio and the video writer
// goroutines of one peer connection, which share the direction's counter);
// calls are serialized by a mutex.
type Encryptor struct {
	mu        sync.Mutex
	aead      cipher.AEAD
	baseIV    [BaseIVSize]byte
	iv        [BaseIVSize]byte // scratch; a local array would escape into the AEAD call
	epoch     uint32
	frames    uint64 // also the next seq
	bytes     uint64
	signalled bool
	closed    bool
	onRekey   func(epoch uint32)
	lim       limits
}

// Close drops the Encryptor's key and zeroes its IV material: the call is
// over, and what it encrypted must not be decryptable with anything this
// process still holds (forward secrecy). Encrypt and SetKey fail with
// ErrClosed afterwards; Usage keeps its figures.
func (e *Encryptor) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.aead, e.closed = nil, true
	clear(e.baseIV[:])
	clear(e.iv[:])
}

// NewEncryptor returns an Encryptor sending under k. opts may be nil.
func NewEncryptor(k DirectionKey, opts *EncryptorOptions) (*Encryptor, error) {
	if opts == nil {
		opts = &EncryptorOptions{}
	}
	aead, err := newAEAD(&k)
	if err != nil {
		return nil, err
	}
	if uint64(opts.FirstSeq) > MaxFramesPerKey {
		return nil, fmt.Errorf("e2ee: first seq %d is past the key limit of %d frames", opts.FirstSeq, MaxFramesPerKey)
	}
	return &Encryptor{
		aead:    aead,
		baseIV:  k.BaseIV,
		epoch:   k.Epoch,
		frames:  uint64(opts.FirstSeq),
		onRekey: opts.OnRekeyNeeded,
		lim:     defaultLimits,
	}, nil
}

func newAEAD(k *DirectionKey) (cipher.AEAD, error) {
	if k.isZero() {
		return nil, fmt.Errorf("%w: all-zero key for epoch %d", ErrInvalidKey, k.Epoch)
	}
	block, err := aes.NewCipher(k.Key[:])
	if err != nil {
		return nil, fmt.Errorf("e2ee: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("e2ee: %w", err)
	}
	return aead, nil
}

// SetKey switches sending to k, whose epoch must be newer than the current
// one, and resets the sequence number and usage counts. It also lifts an
// ErrKeyExhausted refusal.
func (e *Encryptor) SetKey(k DirectionKey) error {
	e.mu.Lock()
	cur := e.epoch
	e.mu.Unlock()
	if k.Epoch <= cur {
		return fmt.Errorf("%w: epoch %d, current %d", ErrEpochOrder, k.Epoch, cur)
	}
	aead, err := newAEAD(&k)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if k.Epoch <= e.epoch { // a concurrent SetKey won
		return fmt.Errorf("%w: epoch %d, current %d", ErrEpochOrder, k.Epoch, e.epoch)
	}
	e.aead, e.baseIV, e.epoch = aead, k.BaseIV, k.Epoch
	e.frames, e.bytes, e.signalled = 0, 0, false
	return nil
}

// Usage reports the usage of the current key.
func (e *Encryptor) Usage() Usage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Usage{Epoch: e.epoch, Frames: e.frames, Bytes: e.bytes, RekeyNeeded: e.signalled}
}

// Encrypt encrypts frame, a whole encoded frame of the given kind, and
// returns clear_header || counter || ciphertext || tag appended to dst[:0].
// With a dst of capacity len(frame)+Overhead it does not allocate. dst must
// not overlap frame; if it does, a new buffer is allocated instead.
//
// It refuses an empty frame (ErrEmptyFrame), an invalid kind
// (ErrInvalidKind) and a frame that would take the key past its usage limit
// (ErrKeyExhausted; the key stays exhausted until SetKey). On error it
// returns nil.
func (e *Encryptor) Encrypt(dst, frame []byte, kind FrameKind) ([]byte, error) {
	h, err := ClearHeaderLen(frame, kind)
	if err != nil {
		return nil, err
	}
	if overlaps(dst, frame) {
		dst = nil
	}
	body := uint64(len(frame) - h)

	e.mu.Lock()
	if e.aead == nil {
		e.mu.Unlock()
		if e.closed {
			return nil, ErrClosed
		}
		return nil, errNotInitialised
	}
	if e.frames+1 > e.lim.maxFrames || e.bytes+body > e.lim.maxBytes {
		frames, bytes, epoch := e.frames, e.bytes, e.epoch
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: epoch %d has encrypted %d frames and %d bytes", ErrKeyExhausted, epoch, frames, bytes)
	}
	ctr := MakeCounter(e.epoch, uint32(e.frames))
	nonce(&e.iv, &e.baseIV, ctr)
	out := append(dst[:0], frame[:h]...)
	out = binary.BigEndian.AppendUint64(out, uint64(ctr))
	// The additional data is the prefix of the output just written; only the
	// appended ciphertext must not overlap it (crypto/tls seals the same way).
	out = e.aead.Seal(out, e.iv[:], frame[h:], out[:h+CounterSize])
	e.frames++
	e.bytes += body
	fire := !e.signalled && (e.frames >= e.lim.rekeyFrames || e.bytes >= e.lim.rekeyBytes)
	if fire {
		e.signalled = true
	}
	epoch, cb := e.epoch, e.onRekey
	e.mu.Unlock()

	if fire && cb != nil {
		cb(epoch)
	}
	return out, nil
}
