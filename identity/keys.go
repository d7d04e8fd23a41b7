package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
)

// HKDF info strings for the long-term keys (docs/PROTOCOL.md §1.2, §7).
const (
	InfoSigningKey   = "duet/v1/identity/ed25519"
	InfoAgreementKey = "duet/v1/identity/x25519"
)

// PublicKeySize is the size of both public keys: Ed25519 and X25519.
const PublicKeySize = 32

// Identity is a user's long-term identity: the mnemonic and the two key
// pairs derived from it. It holds secrets: String, GoString and LogValue
// print only the public signing key, never the mnemonic or private keys.
type Identity struct {
	// Mnemonic is the normalised BIP39 mnemonic the keys come from.
	Mnemonic string
	// SigningKey signs signaling envelopes and relay challenges.
	SigningKey ed25519.PrivateKey
	// AgreementKey is the X25519 key for the signaling session key.
	AgreementKey *ecdh.PrivateKey
}

// FromMnemonic validates m (see ValidateMnemonic) and derives the identity
// keys from its BIP39 seed (docs/PROTOCOL.md §1.2):
//
//	ed25519_seed = HKDF-SHA256(ikm = seed, salt = empty, info = "duet/v1/identity/ed25519", L = 32)
//	x25519_priv  = HKDF-SHA256(ikm = seed, salt = empty, info = "duet/v1/identity/x25519",  L = 32)
//
// The same mnemonic always gives the same keys.
func FromMnemonic(m string) (*Identity, error) {
	seed, err := Seed(m)
	if err != nil {
		return nil, err
	}
	edSeed, err := hkdf.Key(sha256.New, seed, nil, InfoSigningKey, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("identity: deriving the signing key: %w", err)
	}
	xPriv, err := hkdf.Key(sha256.New, seed, nil, InfoAgreementKey, 32)
	if err != nil {
		return nil, fmt.Errorf("identity: deriving the agreement key: %w", err)
	}
	agree, err := ecdh.X25519().NewPrivateKey(xPriv)
	if err != nil {
		return nil, fmt.Errorf("identity: deriving the agreement key: %w", err)
	}
	return &Identity{
		Mnemonic:     NormalizeMnemonic(m),
		SigningKey:   ed25519.NewKeyFromSeed(edSeed),
		AgreementKey: agree,
	}, nil
}

// PublicKeys returns the identity's public keys.
func (id *Identity) PublicKeys() PublicKeys {
	return PublicKeys{
		Signing:   bytes.Clone(id.SigningKey.Public().(ed25519.PublicKey)),
		Agreement: id.AgreementKey.PublicKey().Bytes(),
	}
}

// String identifies the identity by its public signing key; it never
// includes secrets.
func (id Identity) String() string {
	if len(id.SigningKey) != ed25519.PrivateKeySize {
		return "identity(none)"
	}
	return "identity(ed25519:" + hex.EncodeToString(id.SigningKey[ed25519.SeedSize:]) + ")"
}

// GoString is String, so that %#v does not print secrets either.
func (id Identity) GoString() string { return id.String() }

// LogValue keeps secrets out of slog output.
func (id Identity) LogValue() slog.Value { return slog.StringValue(id.String()) }

// PublicKeys are a party's long-term public keys, 32 bytes each. The block
// ed || x is what the relay directory publishes and what safety numbers and
// the signaling session key bind to.
type PublicKeys struct {
	Signing   ed25519.PublicKey // Ed25519, RFC 8032 encoding
	Agreement []byte            // X25519, RFC 7748 u-coordinate
}

// ParsePublicKeys checks and copies a peer's public keys: each must be 32
// bytes; the Ed25519 key must be a canonical encoding of a curve point that
// does not have small order; the X25519 key must not be a low-order point
// (which includes all zeros). Failures wrap ErrInvalidPublicKey. It does
// not check that the Ed25519 point is in the prime-order subgroup (a point
// with a torsion component passes); crypto/ed25519 verification copes.
func ParsePublicKeys(sign, agree []byte) (PublicKeys, error) {
	if len(sign) != PublicKeySize {
		return PublicKeys{}, newError(fmt.Sprintf("identity: Ed25519 public key is %d bytes; want %d", len(sign), PublicKeySize), ErrInvalidPublicKey)
	}
	if len(agree) != PublicKeySize {
		return PublicKeys{}, newError(fmt.Sprintf("identity: X25519 public key is %d bytes; want %d", len(agree), PublicKeySize), ErrInvalidPublicKey)
	}
	if reason := checkEd25519Public(sign); reason != "" {
		return PublicKeys{}, newError("identity: Ed25519 public key "+reason+"; the peer's key is broken or forged", ErrInvalidPublicKey)
	}
	if reason := checkX25519Public(agree); reason != "" {
		return PublicKeys{}, newError("identity: X25519 public key "+reason+"; the peer's key is broken or forged", ErrInvalidPublicKey)
	}
	return PublicKeys{Signing: bytes.Clone(sign), Agreement: bytes.Clone(agree)}, nil
}

// Equal reports whether p and q hold the same keys.
func (p PublicKeys) Equal(q PublicKeys) bool {
	return bytes.Equal(p.Signing, q.Signing) && bytes.Equal(p.Agreement, q.Agreement)
}

// Block returns ed || x (64 bytes), the key block of docs/PROTOCOL.md §1.4.
func (p PublicKeys) Block() []byte {
	b := make([]byte, 0, len(p.Signing)+len(p.Agreement))
	return append(append(b, p.Signing...), p.Agreement...)
}

// valid reports whether both keys have the right size.
func (p PublicKeys) valid() bool {
	return len(p.Signing) == PublicKeySize && len(p.Agreement) == PublicKeySize
}

// X25519 low-order check: any fixed scalar works, because X25519 clamps it
// to a multiple of the cofactor 8, which sends every point of order 1, 2, 4
// or 8 (and nothing else) to the all-zero output that crypto/ecdh refuses.
var x25519Probe = func() *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		panic(err) // unreachable: 32 bytes is always a valid X25519 key
	}
	return k
}()

func checkX25519Public(b []byte) string {
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return "is malformed"
	}
	if _, err := x25519Probe.ECDH(pub); err != nil {
		return "is a low-order point"
	}
	return ""
}

// Curve25519 in Edwards form: p = 2^255 - 19, d = -121665/121666 mod p.
var (
	edP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	edD = func() *big.Int {
		d := new(big.Int).ModInverse(big.NewInt(121666), edP)
		d.Mul(d, big.NewInt(-121665))
		return d.Mod(d, edP)
	}()
	// y-coordinates of the 8 points of order dividing 8: 1 (identity),
	// p-1 (order 2), 0 (order 4) and ±edY8 (order 8, the four points whose
	// encodings start c7176a70... and 26e8958f...).
	edY8 = new(big.Int).SetBytes([]byte{
		0x7a, 0x03, 0xac, 0x92, 0x77, 0xfd, 0xc7, 0x4e, 0xc6, 0xcc, 0x39, 0x2c, 0xfa, 0x53, 0x20, 0x2a,
		0x0f, 0x67, 0x10, 0x0d, 0x76, 0x0b, 0x3c, 0xba, 0x4f, 0xd8, 0x4d, 0x3d, 0x70, 0x6a, 0x17, 0xc7,
	})
)

// checkEd25519Public decodes b as in RFC 8032 §5.1.3, rejecting non-canonical
// y (>= p) and the negative zero x, and then rejects small-order points,
// with which one signature can verify for many messages. It returns "" for
// a good key, else what is wrong.
func checkEd25519Public(b []byte) string {
	le := make([]byte, 32)
	for i := range le {
		le[i] = b[31-i]
	}
	xSign := le[0] >> 7
	le[0] &= 0x7f
	y := new(big.Int).SetBytes(le)
	if y.Cmp(edP) >= 0 {
		return "is not canonically encoded"
	}
	// x^2 = (y^2 - 1) / (d y^2 + 1); d is not a square, so the divisor is never 0.
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, edP)
	v := new(big.Int).Mul(edD, y2)
	v.Add(v, big.NewInt(1)).Mod(v, edP)
	if u.Sign() == 0 {
		if xSign == 1 {
			return "is not canonically encoded"
		}
	} else {
		x2 := u.Mul(u, v.ModInverse(v, edP))
		if big.Jacobi(x2.Mod(x2, edP), edP) != 1 {
			return "is not a point on the curve"
		}
	}
	negY8 := new(big.Int).Sub(edP, edY8)
	pm1 := new(big.Int).Sub(edP, big.NewInt(1))
	if y.Sign() == 0 || y.Cmp(big.NewInt(1)) == 0 || y.Cmp(pm1) == 0 || y.Cmp(edY8) == 0 || y.Cmp(negY8) == 0 {
		return "is a small-order point"
	}
	return ""
}
