package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/duetcall/duet/identity"
)

// Sizes in signaling crypto v2 (docs/PROTOCOL.md §4).
const (
	SessionKeySize = 32 // AES-256 key
	IVSize         = 12 // AES-GCM nonce, first in the sealed payload
	TagSize        = 16 // AES-GCM tag, last in the sealed payload
)

// SessionKeyInfo is the HKDF info string of the signaling session key.
const SessionKeyInfo = "duet/v2/signaling-key"

// SessionKey derives the signaling session key shared by self and a peer
// (docs/PROTOCOL.md §4.1) from self's X25519 private key and both parties'
// long-term public keys. Both parties derive the same key. A peer agreement
// key that is not 32 bytes, or that yields an all-zero shared secret (a
// low-order point), is refused with an error wrapping ErrKey.
func SessionKey(selfAgreement *ecdh.PrivateKey, selfSigning, peerSigning ed25519.PublicKey, peerAgreement []byte) ([SessionKeySize]byte, error) {
	var key [SessionKeySize]byte
	switch {
	case selfAgreement == nil || selfAgreement.Curve() != ecdh.X25519():
		return key, fmt.Errorf("%w: the agreement private key must be an X25519 key", ErrKey)
	case len(selfSigning) != ed25519.PublicKeySize:
		return key, fmt.Errorf("%w: own signing public key is %d bytes, want %d", ErrKey, len(selfSigning), ed25519.PublicKeySize)
	case len(peerSigning) != ed25519.PublicKeySize:
		return key, fmt.Errorf("%w: peer signing public key is %d bytes, want %d", ErrKey, len(peerSigning), ed25519.PublicKeySize)
	}
	peerPub, err := ecdh.X25519().NewPublicKey(peerAgreement)
	if err != nil {
		return key, fmt.Errorf("%w: peer agreement public key: %w", ErrKey, err)
	}
	shared, err := selfAgreement.ECDH(peerPub)
	if err != nil { // crypto/ecdh refuses an all-zero X25519 result
		return key, fmt.Errorf("%w: X25519 with the peer's agreement key: %w", ErrKey, err)
	}
	if subtle.ConstantTimeCompare(shared, make([]byte, len(shared))) == 1 {
		return key, fmt.Errorf("%w: all-zero X25519 shared secret (low-order peer key)", ErrKey)
	}
	selfX := selfAgreement.PublicKey().Bytes()
	// A is the party with the smaller Ed25519 key (then X25519 key, which
	// only matters if both signing keys are equal).
	transcript := make([]byte, 0, 4*32)
	if c := bytes.Compare(selfSigning, peerSigning); c < 0 || c == 0 && bytes.Compare(selfX, peerAgreement) <= 0 {
		transcript = append(append(append(append(transcript, selfSigning...), selfX...), peerSigning...), peerAgreement...)
	} else {
		transcript = append(append(append(append(transcript, peerSigning...), peerAgreement...), selfSigning...), selfX...)
	}
	k, err := hkdf.Key(sha256.New, shared, transcript, SessionKeyInfo, SessionKeySize)
	if err != nil {
		return key, fmt.Errorf("%w: HKDF: %w", ErrKey, err)
	}
	copy(key[:], k)
	return key, nil
}

// SessionConfig configures a Session.
type SessionConfig struct {
	// SigningKey is our Ed25519 private key; Seal signs with it.
	SigningKey ed25519.PrivateKey
	// PeerSigningKey is the peer's pinned Ed25519 public key; Open verifies
	// with it.
	PeerSigningKey ed25519.PublicKey
	// Key is the session key from SessionKey.
	Key [SessionKeySize]byte
	// Replay is the nonce cache; nil means a new guard of
	// DefaultReplayCapacity. Share one guard across a peer set to bound
	// memory across all of it.
	Replay *ReplayGuard
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Session seals messages to one peer and opens the peer's messages
// (docs/PROTOCOL.md §4.3–§4.4). It is safe for concurrent use.
type Session struct {
	priv   ed25519.PrivateKey
	peer   ed25519.PublicKey
	aead   cipher.AEAD
	replay *ReplayGuard
	now    func() time.Time
}

// NewSession returns a session for cfg. Keys of the wrong size and an
// all-zero session key are refused with an error wrapping ErrKey.
func NewSession(cfg SessionConfig) (*Session, error) {
	switch {
	case len(cfg.SigningKey) != ed25519.PrivateKeySize:
		return nil, fmt.Errorf("%w: signing private key is %d bytes, want %d", ErrKey, len(cfg.SigningKey), ed25519.PrivateKeySize)
	case len(cfg.PeerSigningKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: peer signing public key is %d bytes, want %d", ErrKey, len(cfg.PeerSigningKey), ed25519.PublicKeySize)
	case cfg.Key == [SessionKeySize]byte{}:
		return nil, fmt.Errorf("%w: all-zero session key; derive it with SessionKey", ErrKey)
	}
	block, err := aes.NewCipher(cfg.Key[:])
	if err != nil {
		return nil, fmt.Errorf("%w: AES: %w", ErrKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: AES-GCM: %w", ErrKey, err)
	}
	s := &Session{
		priv:   slices.Clone(cfg.SigningKey),
		peer:   slices.Clone(cfg.PeerSigningKey),
		aead:   aead,
		replay: cfg.Replay,
		now:    cfg.Now,
	}
	if s.replay == nil {
		s.replay = NewReplayGuard(DefaultReplayCapacity)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Seal signs and encrypts msg with the current time, a fresh random nonce
// and a fresh random IV, and returns its envelope (without an id). An invalid
// message, or one whose sealed payload would exceed MaxPayloadSize, is an
// error wrapping ErrMalformed.
func (s *Session) Seal(msg Message) (*Envelope, error) {
	var nonce [NonceSize]byte
	var iv [IVSize]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	_, _ = rand.Read(iv[:])
	return s.SealWith(msg, s.now(), nonce, iv)
}

// SealWith is Seal with the timestamp, nonce and IV given: the deterministic
// hook for test vectors. Outside tests, use Seal: reusing a nonce makes the
// peer drop the message, and reusing an IV under the same key breaks AES-GCM.
func (s *Session) SealWith(msg Message, ts time.Time, nonce [NonceSize]byte, iv [IVSize]byte) (*Envelope, error) {
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	tsMS := ts.UnixMilli()
	if tsMS < -MaxSafeInteger || tsMS > MaxSafeInteger {
		return nil, malformedf("timestamp %v out of range", ts)
	}
	m := make([]member, 0, 12)
	m = append(m,
		member{keyType, stringValue(string(msg.Type))},
		member{keyFrom, stringValue(string(msg.From))},
		member{keyTo, stringValue(string(msg.To))},
		member{keyCallID, stringValue(msg.CallID)},
	)
	if msg.Device != "" {
		m = append(m, member{keyDevice, stringValue(msg.Device)})
	}
	m = msg.Body.appendMembers(m)
	m = append(m, member{keyTS, numberValue(tsMS)}, member{keyNonce, b64Value(nonce[:])})
	return s.sealMembers(msg.Type, msg.From, msg.To, msg.CallID, m, iv)
}

// sealMembers signs the inner object m (route, type and seal fields but
// _sig), adds _sig, encrypts it and builds the envelope.
func (s *Session) sealMembers(t Type, from, to identity.Alias, callID string, m []member, iv [IVSize]byte) (*Envelope, error) {
	sortMembers(m)
	signed := appendObject(nil, m)
	sig := ed25519.Sign(s.priv, signed)
	m = append(m, member{keySig, b64Value(sig)})
	sortMembers(m)
	blob := appendObject(signed[:0], m)
	return s.sealBlob(t, from, to, callID, blob, iv)
}

// sealBlob encrypts blob and builds the envelope.
func (s *Session) sealBlob(t Type, from, to identity.Alias, callID string, blob []byte, iv [IVSize]byte) (*Envelope, error) {
	sealed := make([]byte, IVSize, IVSize+len(blob)+TagSize)
	copy(sealed, iv[:])
	sealed = s.aead.Seal(sealed, iv[:], blob, nil)
	if n := base64.StdEncoding.EncodedLen(len(sealed)); n > MaxPayloadSize {
		return nil, malformedf("sealed payload of %d base64 characters exceeds the %d-character limit; shorten the SDP", n, MaxPayloadSize)
	}
	return &Envelope{
		Type:    t,
		From:    from,
		To:      to,
		CallID:  callID,
		CryptoV: CryptoV2,
		Payload: base64.StdEncoding.EncodeToString(sealed),
	}, nil
}

// Open decrypts and verifies an envelope from the peer and returns its
// message, running the checks of docs/PROTOCOL.md §4.4 in order. The first
// failure is returned wrapping its sentinel: ErrCryptoVersion, ErrMalformed,
// ErrDecrypt, ErrSignature, ErrStale, ErrFuture, ErrReplay,
// ErrRouteMismatch, or ErrReplayCacheFull when the nonce cannot be
// remembered. The nonce is remembered only when every check passes. Inside
// call_ice either candidate shape is accepted (§3.1). It never panics.
func (s *Session) Open(env *Envelope) (Message, error) {
	if env == nil {
		return Message{}, malformedf("nil envelope")
	}
	// 1. crypto_v.
	if env.CryptoV != CryptoV2 {
		return Message{}, fmt.Errorf("%w: got %d", ErrCryptoVersion, env.CryptoV)
	}
	if err := env.Validate(); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// 2. Payload decodes and holds an IV and a tag.
	sealed, err := decodeBase64(env.Payload, -1)
	if err != nil {
		return Message{}, malformedf("payload: %v", err)
	}
	if len(sealed) < IVSize+TagSize {
		return Message{}, malformedf("payload is %d bytes, shorter than IV and tag (%d)", len(sealed), IVSize+TagSize)
	}
	// 3. AES-GCM.
	blob, err := s.aead.Open(sealed[IVSize:IVSize], sealed[:IVSize], sealed[IVSize:], nil)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %s from %s", ErrDecrypt, env.Type, env.From)
	}
	// 4. A §4.2 JSON object with well-formed seal fields.
	obj, sig, ts, nonce, err := parseInner(blob)
	if err != nil {
		return Message{}, err
	}
	// 5. Signature over the canonical object without _sig.
	if !ed25519.Verify(s.peer, appendObject(blob[:0], obj), sig) {
		return Message{}, fmt.Errorf("%w: %s from %s", ErrSignature, env.Type, env.From)
	}
	// 6, 7. Timestamp window.
	now := s.now()
	nowMS := now.UnixMilli()
	if age := nowMS - ts; age >= TimestampWindow.Milliseconds() {
		return Message{}, fmt.Errorf("%w: _ts is %d ms old, the limit is %d ms", ErrStale, age, TimestampWindow.Milliseconds())
	}
	if ahead := ts - nowMS; ahead >= TimestampWindow.Milliseconds() {
		return Message{}, fmt.Errorf("%w: _ts is %d ms ahead of this clock, the limit is %d ms", ErrFuture, ahead, TimestampWindow.Milliseconds())
	}
	// 8. Nonce not seen.
	if s.replay.Seen(nonce, now) {
		return Message{}, fmt.Errorf("%w: nonce %x already accepted", ErrReplay, nonce)
	}
	// 9. Route fields, then 10. type fields.
	msg, err := decodeMessage(env, obj)
	if err != nil {
		return Message{}, err
	}
	if err := s.replay.Add(nonce, time.UnixMilli(ts), now); err != nil {
		return Message{}, err
	}
	return msg, nil
}

// parseInner is Open's step 4: blob must be a §4.2 JSON object with _sig
// (base64 of 64 bytes), _ts (an integer) and _nonce (base64 of 16 bytes).
// It returns the members without _sig.
func parseInner(blob []byte) (obj []member, sig []byte, ts int64, nonce [NonceSize]byte, err error) {
	v, err := parseJSON(blob)
	if err != nil {
		return nil, nil, 0, nonce, fmt.Errorf("%w: inner payload: %w", ErrMalformed, err)
	}
	if v.kind != kindObject {
		return nil, nil, 0, nonce, malformedf("inner payload is a JSON %s, want an object", v.kind)
	}
	obj = v.obj
	var haveSig, haveTS, haveNonce bool
	sigAt := -1
	for i := range obj {
		f := &obj[i]
		var ferr error
		switch f.key {
		case keySig:
			sigAt, haveSig = i, true
			var s string
			if s, ferr = fieldString(f); ferr == nil {
				if sig, ferr = decodeBase64(s, ed25519.SignatureSize); ferr != nil {
					ferr = malformedf("_sig: %v", ferr)
				}
			}
		case keyTS:
			haveTS = true
			ts, ferr = fieldInt(f)
		case keyNonce:
			haveNonce = true
			var s string
			var b []byte
			if s, ferr = fieldString(f); ferr == nil {
				if b, ferr = decodeBase64(s, NonceSize); ferr != nil {
					ferr = malformedf("_nonce: %v", ferr)
				}
			}
			copy(nonce[:], b)
		}
		if ferr != nil {
			return nil, nil, 0, nonce, ferr
		}
	}
	switch {
	case !haveSig:
		return nil, nil, 0, nonce, malformedf("missing field _sig")
	case !haveTS:
		return nil, nil, 0, nonce, malformedf("missing field _ts")
	case !haveNonce:
		return nil, nil, 0, nonce, malformedf("missing field _nonce")
	}
	return slices.Delete(obj, sigAt, sigAt+1), sig, ts, nonce, nil
}

// decodeMessage is Open's steps 9 and 10: the inner route fields must equal
// the envelope's, then the type fields must be valid for the type.
func decodeMessage(env *Envelope, obj []member) (Message, error) {
	msg := Message{Type: env.Type, From: env.From, To: env.To, CallID: env.CallID}
	want := [...]struct{ key, val string }{
		{keyType, string(env.Type)},
		{keyFrom, string(env.From)},
		{keyTo, string(env.To)},
		{keyCallID, env.CallID},
	}
	var found [len(want)]bool
	var device *member // checked with the type's fields, after the route (step 10)
	fields := make([]member, 0, len(obj))
	for i := range obj {
		f := &obj[i]
		switch f.key {
		case keyTS, keyNonce:
			continue
		case keyDevice:
			device = f
			continue
		}
		route := false
		for j, w := range want {
			if f.key != w.key {
				continue
			}
			route, found[j] = true, true
			if f.val.kind != kindString || f.val.str != w.val {
				return Message{}, fmt.Errorf("%w: inner %s differs from the envelope's %q", ErrRouteMismatch, w.key, truncate(w.val, 64))
			}
		}
		if !route {
			fields = append(fields, *f)
		}
	}
	for j, ok := range found {
		if !ok {
			return Message{}, fmt.Errorf("%w: inner payload has no %s", ErrRouteMismatch, want[j].key)
		}
	}
	if device != nil {
		d, err := fieldString(device)
		if err == nil && !ValidDevice(d) {
			err = malformedf("device must be 1..%d characters of [A-Za-z0-9_-]", MaxIDLen)
		}
		if err != nil {
			return Message{}, fmt.Errorf("%s: %w", env.Type, err)
		}
		msg.Device = d
	}
	body, err := decodeBody(env.Type, fields)
	if err != nil {
		return Message{}, err
	}
	msg.Body = body
	return msg, nil
}
