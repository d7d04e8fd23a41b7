package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

var safetyFormat = regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`)

func randomKeys(t testing.TB) PublicKeys {
	t.Helper()
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return PublicKeys{Signing: ed, Agreement: x.PublicKey().Bytes()}
}

// safetyNumberSpec is §1.4 written independently: the digest as one big
// integer per 5-byte group, formatted with %05d.
func safetyNumberSpec(a, b PublicKeys) string {
	ba := append(bytes.Clone(a.Signing), a.Agreement...)
	bb := append(bytes.Clone(b.Signing), b.Agreement...)
	if string(ba) > string(bb) {
		ba, bb = bb, ba
	}
	d := sha512.Sum512(append(append([]byte("duet/v1/safety-number"), ba...), bb...))
	groups := make([]string, 12)
	for i := range groups {
		n := new(big.Int).SetBytes(d[5*i : 5*i+5])
		groups[i] = fmt.Sprintf("%05d", n.Mod(n, big.NewInt(100000)).Int64())
	}
	return strings.Join(groups, " ")
}

func TestSafetyNumberFixed(t *testing.T) {
	a := mustIdentity(t, mnemonicA).PublicKeys()
	b := mustIdentity(t, mnemonicB).PublicKeys()
	const want = "60199 01408 38581 38675 81469 68659 09679 45682 97640 97609 28688 00979"
	if got := SafetyNumber(a, b); got != want {
		t.Fatalf("SafetyNumber = %q; want %q", got, want)
	}
	if got := safetyNumberSpec(a, b); got != want {
		t.Fatalf("spec re-implementation = %q; want %q", got, want)
	}
}

func TestSafetyNumberProperties(t *testing.T) {
	for range 50 {
		a, b := randomKeys(t), randomKeys(t)
		ab, ba := SafetyNumber(a, b), SafetyNumber(b, a)
		if ab != ba {
			t.Fatalf("not symmetric: %q vs %q", ab, ba)
		}
		if len(ab) != 71 || !safetyFormat.MatchString(ab) {
			t.Fatalf("bad format %q", ab)
		}
		if spec := safetyNumberSpec(a, b); ab != spec {
			t.Fatalf("SafetyNumber = %q; spec gives %q", ab, spec)
		}
		// Substituting either key of either party changes the number.
		c := randomKeys(t)
		for _, sub := range []PublicKeys{
			{c.Signing, a.Agreement}, {a.Signing, c.Agreement},
		} {
			if SafetyNumber(sub, b) == ab || SafetyNumber(b, sub) == ab {
				t.Fatal("substituted key gives the same safety number")
			}
		}
	}
	a := randomKeys(t)
	if s := SafetyNumber(a, a); !safetyFormat.MatchString(s) {
		t.Fatalf("SafetyNumber(a, a) = %q", s)
	}
	// Swapping a party's two keys is a different block.
	b := randomKeys(t)
	if SafetyNumber(a, b) == SafetyNumber(PublicKeys{a.Agreement, a.Signing}, b) {
		t.Fatal("key order inside a block does not matter")
	}
}

func TestSafetyNumberInvalidKeys(t *testing.T) {
	a := randomKeys(t)
	for _, bad := range []PublicKeys{
		{},
		{Signing: a.Signing},
		{Agreement: a.Agreement},
		{a.Signing[:31], append(bytes.Clone(a.Agreement), 0)}, // 64 bytes in all, split wrongly
	} {
		if s := SafetyNumber(a, bad); s != "" {
			t.Errorf("SafetyNumber with %d/%d-byte keys = %q; want empty", len(bad.Signing), len(bad.Agreement), s)
		}
		if s := SafetyNumber(bad, a); s != "" {
			t.Errorf("SafetyNumber(bad, a) = %q; want empty", s)
		}
	}
}

func ExampleSafetyNumber() {
	alice, _ := FromMnemonic("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	bob, _ := FromMnemonic("legal winner thank year wave sausage worth useful legal winner thank yellow")
	fmt.Println(SafetyNumber(alice.PublicKeys(), bob.PublicKeys()))
	fmt.Println(SafetyNumber(bob.PublicKeys(), alice.PublicKeys()))
	// Output:
	// 01014 11610 38212 60242 30680 42454 86729 77532 46115 73070 72814 39386
	// 01014 11610 38212 60242 30680 42454 86729 77532 46115 73070 72814 39386
}
