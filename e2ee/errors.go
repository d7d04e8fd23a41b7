package e2ee

import "errors"

// Errors returned by this package. They are wrapped with context; test for
// them with [errors.Is].
var (
	// ErrCallID: the call ID is empty or longer than MaxCallIDLen bytes.
	ErrCallID = errors.New("e2ee: call ID must be 1..255 bytes")
	// ErrIdentityKey: a signing public key is not 32 bytes, or both parties
	// have the same one (both directions would share a key).
	ErrIdentityKey = errors.New("e2ee: invalid identity public key")
	// ErrPeerKey: the peer's ephemeral X25519 key is malformed or of low
	// order (all-zero shared secret).
	ErrPeerKey = errors.New("e2ee: invalid peer ephemeral key")
	// ErrInvalidKey: a DirectionKey is all zeros (never derived).
	ErrInvalidKey = errors.New("e2ee: invalid direction key")
	// ErrEpochOrder: a key was installed whose epoch is not newer than the
	// current one; reusing an epoch would reuse IVs.
	ErrEpochOrder = errors.New("e2ee: key epoch is not newer than the current epoch")
	// ErrInvalidKind: the FrameKind is not one of the defined kinds.
	ErrInvalidKind = errors.New("e2ee: invalid frame kind")

	// ErrClosed: the Encryptor or Decryptor was closed (its call ended and
	// its keys were dropped).
	ErrClosed = errors.New("e2ee: closed; its keys were wiped")

	// ErrEmptyFrame: Encrypt was given a zero-length frame.
	ErrEmptyFrame = errors.New("e2ee: empty frame")
	// ErrKeyExhausted: the frame would take the key past its usage limit;
	// install the next epoch's key with SetKey.
	ErrKeyExhausted = errors.New("e2ee: key usage limit reached, rekey required")

	// ErrShortFrame: an encrypted frame is too short to hold a counter, a
	// non-empty body and a tag.
	ErrShortFrame = errors.New("e2ee: encrypted frame too short")
	// ErrUnknownEpoch: the frame's epoch is neither the current one nor the
	// previous one within its rekey grace.
	ErrUnknownEpoch = errors.New("e2ee: unknown key epoch")
	// ErrAuth: the frame failed AES-GCM authentication (tampered, wrong key
	// or wrong frame kind).
	ErrAuth = errors.New("e2ee: frame authentication failed")
	// ErrReplay: the frame's counter was already accepted.
	ErrReplay = errors.New("e2ee: replayed frame")
	// ErrTooOld: the frame's counter is older than the replay window.
	ErrTooOld = errors.New("e2ee: frame older than the replay window")
)
