package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
)

const (
	mnemonicA = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
	mnemonicB = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"
)

// Public keys of mnemonicA and mnemonicB, computed once by this package and
// cross-checked in TestFromMnemonicSpec against the §1.2 formulas.
var fixedKeys = []struct{ mnemonic, ed, x string }{
	{mnemonicA, "68cd575eae2a940a3c9b1baf817285213faf9d90fa8e2bb4a69f54ed9182caff", "cb605368c0e8825ef2190633af796a531fd06966117f7a0eecad25fc31d9d867"},
	{mnemonicB, "5e34e3f0a4937ea40b15b8fc0358b78df5f569aa4d931e763254c5f5c9a4d82b", "fd11cb3a85758e2c410f7fe2f02ac28dc9e76ad87ac780cbde3ea8323db9c870"},
}

func mustIdentity(t testing.TB, m string) *Identity {
	t.Helper()
	id, err := FromMnemonic(m)
	if err != nil {
		t.Fatalf("FromMnemonic(%q): %v", m, err)
	}
	return id
}

func TestFromMnemonicFixed(t *testing.T) {
	for _, k := range fixedKeys {
		for range 2 { // deterministic
			pk := mustIdentity(t, k.mnemonic).PublicKeys()
			if got := hex.EncodeToString(pk.Signing); got != k.ed {
				t.Errorf("Ed25519 public key = %s; want %s", got, k.ed)
			}
			if got := hex.EncodeToString(pk.Agreement); got != k.x {
				t.Errorf("X25519 public key = %s; want %s", got, k.x)
			}
		}
	}
}

// TestFromMnemonicSpec recomputes the keys straight from the formulas of
// docs/PROTOCOL.md §1.1 and §1.2.
func TestFromMnemonicSpec(t *testing.T) {
	for _, k := range fixedKeys {
		seed, err := pbkdf2.Key(sha512.New, k.mnemonic, []byte("mnemonic"), 2048, 64)
		if err != nil {
			t.Fatal(err)
		}
		edSeed, _ := hkdf.Key(sha256.New, seed, nil, "duet/v1/identity/ed25519", 32)
		xPriv, _ := hkdf.Key(sha256.New, seed, nil, "duet/v1/identity/x25519", 32)
		// An empty salt is the same as 32 zero bytes (RFC 5869 §2.2).
		if zs, _ := hkdf.Key(sha256.New, seed, make([]byte, 32), "duet/v1/identity/ed25519", 32); !bytes.Equal(zs, edSeed) {
			t.Fatal("HKDF with empty salt differs from 32 zero bytes")
		}
		wantEd := ed25519.NewKeyFromSeed(edSeed).Public().(ed25519.PublicKey)
		xk, err := ecdh.X25519().NewPrivateKey(xPriv)
		if err != nil {
			t.Fatal(err)
		}
		wantX := xk.PublicKey().Bytes()
		if hex.EncodeToString(wantEd) != k.ed || hex.EncodeToString(wantX) != k.x {
			t.Fatalf("spec derivation gives %x / %x; fixed values are %s / %s", wantEd, wantX, k.ed, k.x)
		}

		id := mustIdentity(t, k.mnemonic)
		if !bytes.Equal(id.SigningKey.Seed(), edSeed) {
			t.Errorf("SigningKey seed = %x; want %x", id.SigningKey.Seed(), edSeed)
		}
		if !bytes.Equal(id.AgreementKey.Bytes(), xPriv) {
			t.Errorf("AgreementKey = %x; want %x", id.AgreementKey.Bytes(), xPriv)
		}
		if id.Mnemonic != k.mnemonic {
			t.Errorf("Mnemonic = %q; want %q", id.Mnemonic, k.mnemonic)
		}
		// The keys work: a signature verifies; both sides agree on X25519.
		msg := []byte("hello")
		if !ed25519.Verify(id.PublicKeys().Signing, msg, ed25519.Sign(id.SigningKey, msg)) {
			t.Error("signature does not verify under PublicKeys().Signing")
		}
	}
	a, b := mustIdentity(t, mnemonicA), mustIdentity(t, mnemonicB)
	pa, _ := ecdh.X25519().NewPublicKey(a.PublicKeys().Agreement)
	pb, _ := ecdh.X25519().NewPublicKey(b.PublicKeys().Agreement)
	s1, err1 := a.AgreementKey.ECDH(pb)
	s2, err2 := b.AgreementKey.ECDH(pa)
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("X25519 shared secrets differ: %x %v / %x %v", s1, err1, s2, err2)
	}
}

func TestFromMnemonicNormalisesAndRejects(t *testing.T) {
	id := mustIdentity(t, "  "+strings.ToUpper(mnemonicA)+"\n")
	if id.Mnemonic != mnemonicA {
		t.Fatalf("Mnemonic = %q; want the normalised %q", id.Mnemonic, mnemonicA)
	}
	if !id.PublicKeys().Equal(mustIdentity(t, mnemonicA).PublicKeys()) {
		t.Fatal("messy and clean spellings of one mnemonic give different keys")
	}
	for m, want := range map[string]error{
		"": ErrWordCount,
		strings.Replace(mnemonicA, "about", "abuot", 1): ErrUnknownWord,
		strings.Replace(mnemonicA, "about", "zoo", 1):   ErrChecksum,
	} {
		if id, err := FromMnemonic(m); !errors.Is(err, want) || id != nil {
			t.Errorf("FromMnemonic(%q) = %v, %v; want %v", m, id, err, want)
		}
	}
	if mustIdentity(t, mnemonicA).PublicKeys().Equal(mustIdentity(t, mnemonicB).PublicKeys()) {
		t.Fatal("different mnemonics give equal keys")
	}
}

func TestIdentityDoesNotPrintSecrets(t *testing.T) {
	id := mustIdentity(t, mnemonicB)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "id", id, "idv", *id)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "id", id, "idv", *id)
	out := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", id, id, id, id, *id, *id, *id) + logged.String()
	for _, secret := range []string{"sausage", hex.EncodeToString(id.SigningKey.Seed()), hex.EncodeToString(id.AgreementKey.Bytes())} {
		if strings.Contains(out, secret) {
			t.Fatalf("output contains secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, fixedKeys[1].ed) {
		t.Fatalf("output does not identify the key:\n%s", out)
	}
	if got := (Identity{}).String(); got != "identity(none)" {
		t.Fatalf("zero Identity String = %q", got)
	}
}

func TestPublicKeys(t *testing.T) {
	pk := mustIdentity(t, mnemonicA).PublicKeys()
	got, err := ParsePublicKeys(pk.Signing, pk.Agreement)
	if err != nil || !got.Equal(pk) {
		t.Fatalf("ParsePublicKeys(own keys) = %v, %v", got, err)
	}
	// ParsePublicKeys copies its input.
	sign, agree := bytes.Clone(pk.Signing), bytes.Clone(pk.Agreement)
	got, _ = ParsePublicKeys(sign, agree)
	sign[0] ^= 1
	agree[0] ^= 1
	if !got.Equal(pk) {
		t.Fatal("ParsePublicKeys result aliases its arguments")
	}
	// Equal compares both halves.
	other := mustIdentity(t, mnemonicB).PublicKeys()
	if pk.Equal(PublicKeys{pk.Signing, other.Agreement}) || pk.Equal(PublicKeys{other.Signing, pk.Agreement}) || !pk.Equal(pk) {
		t.Fatal("Equal is wrong")
	}
	if b := pk.Block(); len(b) != 64 || !bytes.Equal(b[:32], pk.Signing) || !bytes.Equal(b[32:], pk.Agreement) {
		t.Fatalf("Block = %x", b)
	}
}

func TestParsePublicKeysAcceptsRealKeys(t *testing.T) {
	for range 100 {
		edPub, _, _ := ed25519.GenerateKey(rand.Reader)
		x, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if _, err := ParsePublicKeys(edPub, x.PublicKey().Bytes()); err != nil {
			t.Fatalf("ParsePublicKeys(%x, %x): %v", edPub, x.PublicKey().Bytes(), err)
		}
	}
}

func TestParsePublicKeysRejects(t *testing.T) {
	good := mustIdentity(t, mnemonicA).PublicKeys()
	// Encodings of the small-order Edwards points (libsodium's
	// ge25519_has_small_order list), with and without the x sign bit, and
	// non-canonical encodings.
	badEd := map[string]string{
		"0000000000000000000000000000000000000000000000000000000000000000": "small-order", // y=0, order 4
		"0000000000000000000000000000000000000000000000000000000000000080": "small-order",
		"0100000000000000000000000000000000000000000000000000000000000000": "small-order", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "small-order", // y=-1, order 2
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05": "small-order", // order 8
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85": "small-order",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a": "small-order", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa": "small-order",
		"0100000000000000000000000000000000000000000000000000000000000080": "canonically", // x = -0
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "canonically", // y = p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "canonically", // y = p+1
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "canonically",
		"0200000000000000000000000000000000000000000000000000000000000000": "not a point", // y=2
	}
	for s, why := range badEd {
		_, err := ParsePublicKeys(mustHex(t, s), good.Agreement)
		if !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "Ed25519") {
			t.Errorf("Ed25519 %s: err = %v; want ErrInvalidPublicKey (%s)", s, err, why)
		}
	}
	// Low-order X25519 points (libsodium's blocklist) and their
	// non-canonical high-bit twins.
	for _, s := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000080",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
	} {
		_, err := ParsePublicKeys(good.Signing, mustHex(t, s))
		if !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "X25519 public key is a low-order point") {
			t.Errorf("X25519 %s: err = %v; want low-order ErrInvalidPublicKey", s, err)
		}
	}
	for _, tc := range []struct {
		sign, agree []byte
		msg         string
	}{
		{nil, good.Agreement, "identity: Ed25519 public key is 0 bytes; want 32"},
		{good.Signing[:31], good.Agreement, "identity: Ed25519 public key is 31 bytes; want 32"},
		{append(bytes.Clone(good.Signing), 0), good.Agreement, "identity: Ed25519 public key is 33 bytes; want 32"},
		{good.Signing, nil, "identity: X25519 public key is 0 bytes; want 32"},
		{good.Signing, make([]byte, 64), "identity: X25519 public key is 64 bytes; want 32"},
	} {
		if _, err := ParsePublicKeys(tc.sign, tc.agree); !errors.Is(err, ErrInvalidPublicKey) || err.Error() != tc.msg {
			t.Errorf("ParsePublicKeys(%d, %d bytes) = %v; want %q", len(tc.sign), len(tc.agree), err, tc.msg)
		}
	}
}

// TestEdwardsConstants checks the curve constants independently of the
// code that uses them.
func TestEdwardsConstants(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	if edP.Cmp(p) != 0 {
		t.Fatal("edP is not 2^255-19")
	}
	// d * 121666 == -121665 (mod p)
	lhs := new(big.Int).Mul(edD, big.NewInt(121666))
	if lhs.Mod(lhs, p).Cmp(new(big.Int).Sub(p, big.NewInt(121665))) != 0 {
		t.Fatal("edD is not -121665/121666")
	}
	// An order-8 point (x, y) doubles to (±sqrt(-1), 0), so x^2 = -y^2 and
	// d*y^4 + 2*y^2 - 1 == 0 (mod p).
	y2 := new(big.Int).Mul(edY8, edY8)
	v := new(big.Int).Mul(edD, new(big.Int).Mul(y2, y2))
	v.Add(v, new(big.Int).Lsh(y2, 1)).Sub(v, big.NewInt(1))
	if v.Mod(v, p).Sign() != 0 {
		t.Fatal("edY8 is not the y of an order-8 point")
	}
	// y = 2 is not on the curve: (y^2-1)/(d*y^2+1) is a non-square (Euler).
	x2 := new(big.Int).Mul(big.NewInt(3), new(big.Int).ModInverse(new(big.Int).Add(new(big.Int).Mul(edD, big.NewInt(4)), big.NewInt(1)), p))
	e := new(big.Int).Exp(x2.Mod(x2, p), new(big.Int).Rsh(new(big.Int).Sub(p, big.NewInt(1)), 1), p)
	if e.Cmp(new(big.Int).Sub(p, big.NewInt(1))) != 0 {
		t.Fatal("y=2 unexpectedly on the curve; fix the test key")
	}
}

func ExampleFromMnemonic() {
	id, err := FromMnemonic("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	if err != nil {
		panic(err)
	}
	pk := id.PublicKeys()
	fmt.Printf("ed25519 %x\nx25519  %x\n", pk.Signing, pk.Agreement)
	// Output:
	// ed25519 68cd575eae2a940a3c9b1baf817285213faf9d90fa8e2bb4a69f54ed9182caff
	// x25519  cb605368c0e8825ef2190633af796a531fd06966117f7a0eecad25fc31d9d867
}

func BenchmarkFromMnemonic(b *testing.B) {
	for b.Loop() {
		if _, err := FromMnemonic(mnemonicA); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePublicKeys(b *testing.B) {
	pk := mustIdentity(b, mnemonicA).PublicKeys()
	for b.Loop() {
		if _, err := ParsePublicKeys(pk.Signing, pk.Agreement); err != nil {
			b.Fatal(err)
		}
	}
}
