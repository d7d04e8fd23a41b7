package e2ee

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"
)

// Frame layout and limits (docs/PROTOCOL.md §5, §6). Not configurable.
const (
	// KeySize is the AES-256 key length.
	KeySize = 32
	// BaseIVSize is the length of a direction's base IV (the GCM nonce size).
	BaseIVSize = 12
	// CounterSize is the length of the big-endian counter after the clear header.
	CounterSize = 8
	// TagSize is the AES-GCM tag length.
	TagSize = 16
	// Overhead is how many bytes encryption adds to a frame.
	Overhead = CounterSize + TagSize

	// VP8KeyHeaderLen, VP8DeltaHeaderLen and OpusHeaderLen are the clear
	// header lengths per frame kind.
	VP8KeyHeaderLen   = 10
	VP8DeltaHeaderLen = 3
	OpusHeaderLen     = 1

	// ReplayWindow is the number of counters the receiver's sliding window
	// covers, anchored at the highest counter accepted.
	ReplayWindow = 2048

	// MaxFramesPerKey and MaxBytesPerKey bound what one key may encrypt;
	// the frame that would pass either is refused with ErrKeyExhausted.
	MaxFramesPerKey = 1 << 24
	MaxBytesPerKey  = 16 << 30
	// RekeyFrames and RekeyBytes (80 % of the limits, rounded down) are the
	// usage at which the Encryptor signals that a rekey is needed.
	RekeyFrames = MaxFramesPerKey * 8 / 10 // 13 421 772
	RekeyBytes  = MaxBytesPerKey * 8 / 10  // 13 743 895 347

	// RekeyGrace is how long a Decryptor keeps accepting the previous
	// epoch's key after the first frame under the new one authenticates.
	RekeyGrace = 10 * time.Second
)

// FrameKind says how many leading bytes of a frame stay in the clear. The zero
// value is invalid, so a forgotten kind is an error rather than a silently
// different frame layout.
type FrameKind int

// Frame kinds.
const (
	// KindVP8 leaves 10 bytes clear for a key frame and 3 for a delta frame,
	// read from the VP8 P bit (bit 0 of byte 0: 0 = key frame).
	KindVP8 FrameKind = iota + 1
	// KindOpus leaves the 1-byte TOC clear.
	KindOpus
	// KindOther encrypts the whole frame.
	KindOther
)

// String returns the kind's name.
func (k FrameKind) String() string {
	switch k {
	case KindVP8:
		return "vp8"
	case KindOpus:
		return "opus"
	case KindOther:
		return "other"
	}
	return fmt.Sprintf("FrameKind(%d)", int(k))
}

// kindHeaderLen is the clear header length for kind given the first byte of
// a non-empty frame, before clamping to the frame length; -1 if kind is
// invalid.
func kindHeaderLen(kind FrameKind, first byte) int {
	switch kind {
	case KindVP8:
		if first&1 == 0 {
			return VP8KeyHeaderLen
		}
		return VP8DeltaHeaderLen
	case KindOpus:
		return OpusHeaderLen
	case KindOther:
		return 0
	}
	return -1
}

// ClearHeaderLen returns how many leading bytes of the unencrypted frame
// stay in the clear: the kind's header length, or the frame length if the
// frame is shorter.
func ClearHeaderLen(frame []byte, kind FrameKind) (int, error) {
	if len(frame) == 0 {
		return 0, ErrEmptyFrame
	}
	h := kindHeaderLen(kind, frame[0])
	if h < 0 {
		return 0, fmt.Errorf("%w: %d", ErrInvalidKind, int(kind))
	}
	return min(h, len(frame)), nil
}

// encryptedHeaderLen returns the clear header length of an encrypted frame:
// the kind's header length, or what precedes the counter and tag when the
// original frame was shorter than that (its body is then empty).
func encryptedHeaderLen(frame []byte, kind FrameKind) (int, error) {
	if len(frame) <= Overhead {
		return 0, fmt.Errorf("%w: %d bytes, need more than %d", ErrShortFrame, len(frame), Overhead)
	}
	h := kindHeaderLen(kind, frame[0])
	if h < 0 {
		return 0, fmt.Errorf("%w: %d", ErrInvalidKind, int(kind))
	}
	return min(h, len(frame)-Overhead), nil
}

// Counter is a frame counter: epoch<<32 | seq, sent big-endian after the
// clear header and mixed into the IV.
type Counter uint64

// MakeCounter returns the counter of frame seq under epoch.
func MakeCounter(epoch, seq uint32) Counter { return Counter(uint64(epoch)<<32 | uint64(seq)) }

// Epoch returns the key epoch in the counter's high 32 bits.
func (c Counter) Epoch() uint32 { return uint32(c >> 32) }

// Seq returns the per-key frame number in the counter's low 32 bits.
func (c Counter) Seq() uint32 { return uint32(c) }

// String formats the counter as epoch:seq.
func (c Counter) String() string { return fmt.Sprintf("%d:%d", c.Epoch(), c.Seq()) }

// FrameCounter reads the counter of an encrypted frame without decrypting or
// authenticating it, e.g. to count drops per epoch.
func FrameCounter(frame []byte, kind FrameKind) (Counter, error) {
	h, err := encryptedHeaderLen(frame, kind)
	if err != nil {
		return 0, err
	}
	return Counter(binary.BigEndian.Uint64(frame[h:])), nil
}

// nonce writes base XOR u64le(c) (in bytes 0..7) to iv.
func nonce(iv *[BaseIVSize]byte, base *[BaseIVSize]byte, c Counter) {
	*iv = *base
	binary.LittleEndian.PutUint64(iv[:8], binary.LittleEndian.Uint64(base[:8])^uint64(c))
}

// overlaps reports whether the memory of x (up to its capacity) and y
// share any byte, as crypto/internal/alias.AnyOverlap does. Encrypt and
// Decrypt use it to fall back to a fresh buffer instead of corrupting the
// input (and panicking in crypto/cipher) when dst aliases frame.
func overlaps(x, y []byte) bool {
	x = x[:cap(x)]
	return len(x) > 0 && len(y) > 0 &&
		uintptr(unsafe.Pointer(&x[0])) <= uintptr(unsafe.Pointer(&y[len(y)-1])) &&
		uintptr(unsafe.Pointer(&y[0])) <= uintptr(unsafe.Pointer(&x[len(x)-1]))
}
