package wire

import (
	"errors"
	"fmt"
)

// Open's errors, one per check of docs/PROTOCOL.md §4.4 (ErrCryptoVersion,
// step 1, is declared with the envelope). Every error Open returns wraps
// exactly one of them; DropReason maps them to metric labels.
var (
	// ErrMalformed: the payload does not decode (step 2), the decrypted blob
	// is not a §4.2 JSON object with well-formed seal fields (step 4), or the
	// type fields are missing or invalid (step 10). Seal and Message.Validate
	// wrap it for an invalid message.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrDecrypt: AES-GCM authentication failed: wrong session key or a
	// tampered payload (step 3).
	ErrDecrypt = errors.New("wire: payload does not decrypt with the session key")
	// ErrSignature: the Ed25519 signature does not verify with the peer's
	// pinned signing key (step 5).
	ErrSignature = errors.New("wire: signature does not verify with the peer's signing key")
	// ErrStale: _ts is 60 s or more in the past (step 6).
	ErrStale = errors.New("wire: message timestamp too old")
	// ErrFuture: _ts is 60 s or more in the future (step 7).
	ErrFuture = errors.New("wire: message timestamp in the future")
	// ErrReplay: the nonce was already accepted within the nonce window (step 8).
	ErrReplay = errors.New("wire: replayed nonce")
	// ErrReplayCacheFull: the replay cache is full of nonces that could still
	// be replayed, so the message is refused rather than growing memory.
	ErrReplayCacheFull = errors.New("wire: replay cache full")
	// ErrRouteMismatch: the signed inner type, from, to or call_id differs from
	// the envelope's (step 9).
	ErrRouteMismatch = errors.New("wire: inner route fields differ from the envelope's")
	// ErrKey: a key given to SessionKey or NewSession is unusable.
	ErrKey = errors.New("wire: unusable key")
)

// DropReason maps an error from Open to a short label for drop counters:
// "crypto_version", "malformed", "decrypt", "signature", "stale", "future",
// "replay", "replay_cache_full" or "route_mismatch"; "other" for any other
// error and "" for nil.
func DropReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrCryptoVersion):
		return "crypto_version"
	case errors.Is(err, ErrDecrypt):
		return "decrypt"
	case errors.Is(err, ErrSignature):
		return "signature"
	case errors.Is(err, ErrStale):
		return "stale"
	case errors.Is(err, ErrFuture):
		return "future"
	case errors.Is(err, ErrReplayCacheFull):
		return "replay_cache_full"
	case errors.Is(err, ErrReplay):
		return "replay"
	case errors.Is(err, ErrRouteMismatch):
		return "route_mismatch"
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrEnvelope), errors.Is(err, ErrInvalidJSON):
		return "malformed"
	}
	return "other"
}

// malformedf returns an error wrapping ErrMalformed.
func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
