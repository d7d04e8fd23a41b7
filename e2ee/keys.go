package e2ee

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// InfoPrefix starts the HKDF info string of every media frame key
// (docs/PROTOCOL.md §5.1, §7).
const InfoPrefix = "duet/v2/media-frame"

// MaxCallIDLen is the longest call ID the key derivation accepts (its length
// is encoded in one byte).
const MaxCallIDLen = 255

// DirectionKey is the key material of one direction (sender to receiver) for
// one epoch: the AES-256 key and the base IV.
//
// Its String and GoString methods redact the key, so logging one is safe.
type DirectionKey struct {
	Epoch  uint32
	Key    [KeySize]byte
	BaseIV [BaseIVSize]byte
}

// String describes k without its secret material.
func (k DirectionKey) String() string {
	return fmt.Sprintf("e2ee.DirectionKey{Epoch: %d, Key: <redacted>}", k.Epoch)
}

// GoString describes k without its secret material.
func (k DirectionKey) GoString() string { return k.String() }

func (k *DirectionKey) isZero() bool {
	var zero DirectionKey
	return subtle.ConstantTimeCompare(k.Key[:], zero.Key[:]) == 1
}

// DeriveKeys derives the epoch's media keys of a call (docs/PROTOCOL.md §5.1):
// send encrypts what this party sends (ed_S = selfSigning, ed_R =
// peerSigning) and recv decrypts what the peer sends (the reverse), from
//
//	e_shared = X25519(ephemeralSelf, ephemeralPeer)
//	info     = "duet/v2/media-frame" || u8(len(callID)) || callID || ed_S || ed_R || u32be(epoch)
//	material = HKDF-SHA256(ikm = e_shared, salt = empty, info, L = 44)
//	key, base_iv = material[0:32], material[32:44]
//
// The peer, calling DeriveKeys with the roles swapped, gets send and recv
// swapped. It refuses a malformed or low-order peer key (all-zero shared
// secret), an empty call ID or one longer than MaxCallIDLen bytes, and equal
// signing keys, for which both directions would share one key and IV
// sequence.
func DeriveKeys(ephemeralSelf *ecdh.PrivateKey, ephemeralPeer []byte, callID string,
	selfSigning, peerSigning ed25519.PublicKey, epoch uint32) (send, recv DirectionKey, err error) {
	if ephemeralSelf == nil || ephemeralSelf.Curve() != ecdh.X25519() {
		return send, recv, fmt.Errorf("e2ee: derive keys: own ephemeral key must be an X25519 private key")
	}
	if len(callID) == 0 || len(callID) > MaxCallIDLen {
		return send, recv, fmt.Errorf("%w: got %d bytes", ErrCallID, len(callID))
	}
	if len(selfSigning) != ed25519.PublicKeySize || len(peerSigning) != ed25519.PublicKeySize {
		return send, recv, fmt.Errorf("%w: need %d bytes each, got %d and %d",
			ErrIdentityKey, ed25519.PublicKeySize, len(selfSigning), len(peerSigning))
	}
	if subtle.ConstantTimeCompare(selfSigning, peerSigning) == 1 {
		return send, recv, fmt.Errorf("%w: both parties have the same signing key", ErrIdentityKey)
	}
	peer, err := ecdh.X25519().NewPublicKey(ephemeralPeer)
	if err != nil {
		return send, recv, fmt.Errorf("%w: %v", ErrPeerKey, err)
	}
	shared, err := ephemeralSelf.ECDH(peer)
	if err != nil { // crypto/ecdh refuses an all-zero X25519 output
		return send, recv, fmt.Errorf("%w: %v", ErrPeerKey, err)
	}
	defer clear(shared)
	if subtle.ConstantTimeCompare(shared, make([]byte, len(shared))) == 1 {
		return send, recv, fmt.Errorf("%w: all-zero shared secret", ErrPeerKey)
	}
	if send, err = deriveDirection(shared, callID, selfSigning, peerSigning, epoch); err != nil {
		return DirectionKey{}, DirectionKey{}, err
	}
	if recv, err = deriveDirection(shared, callID, peerSigning, selfSigning, epoch); err != nil {
		return DirectionKey{}, DirectionKey{}, err
	}
	return send, recv, nil
}

// deriveDirection runs the HKDF of §5.1 for the direction from edS to edR.
func deriveDirection(shared []byte, callID string, edS, edR []byte, epoch uint32) (DirectionKey, error) {
	info := make([]byte, 0, len(InfoPrefix)+1+len(callID)+2*ed25519.PublicKeySize+4)
	info = append(info, InfoPrefix...)
	info = append(info, byte(len(callID)))
	info = append(info, callID...)
	info = append(info, edS...)
	info = append(info, edR...)
	info = binary.BigEndian.AppendUint32(info, epoch)
	material, err := hkdf.Key(sha256.New, shared, nil, string(info), KeySize+BaseIVSize)
	if err != nil {
		return DirectionKey{}, fmt.Errorf("e2ee: derive keys: %w", err)
	}
	defer clear(material)
	k := DirectionKey{Epoch: epoch}
	copy(k.Key[:], material[:KeySize])
	copy(k.BaseIV[:], material[KeySize:])
	return k, nil
}
