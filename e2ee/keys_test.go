package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDeriveKeysDirections(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	aSend, aRecv := keysFor(t, alice, bob, 0)
	bSend, bRecv := keysFor(t, bob, alice, 0)

	if aSend != bRecv {
		t.Error("Alice's send key differs from Bob's receive key")
	}
	if bSend != aRecv {
		t.Error("Bob's send key differs from Alice's receive key")
	}
	if aSend.Key == aRecv.Key || aSend.BaseIV == aRecv.BaseIV {
		t.Error("the two directions share key material")
	}
	if aSend.Epoch != 0 || aRecv.Epoch != 0 {
		t.Errorf("epochs = %d, %d; want 0", aSend.Epoch, aRecv.Epoch)
	}

	next, _ := keysFor(t, alice, bob, 1)
	if next.Epoch != 1 || next.Key == aSend.Key || next.BaseIV == aSend.BaseIV {
		t.Error("epoch 1 key equals epoch 0 key or has the wrong epoch")
	}
	other, _, err := DeriveKeys(alice.eph, bob.eph.PublicKey().Bytes(), testCallID+"x", alice.ed, bob.ed, 0)
	if err != nil {
		t.Fatal(err)
	}
	if other.Key == aSend.Key {
		t.Error("a different call ID gives the same key")
	}
}

// hkdfSHA256 is RFC 5869 written out with HMAC, independent of crypto/hkdf.
func hkdfSHA256(ikm, info []byte, n int) []byte {
	ext := hmac.New(sha256.New, nil) // empty salt
	ext.Write(ikm)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

func TestDeriveKeysMatchesSpec(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	const epoch = 0x01020304
	send, recv, err := DeriveKeys(alice.eph, bob.eph.PublicKey().Bytes(), testCallID, alice.ed, bob.ed, epoch)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := alice.eph.ECDH(bob.eph.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	info := func(edS, edR []byte) []byte {
		var b bytes.Buffer
		b.WriteString("duet/v2/media-frame")
		b.WriteByte(byte(len(testCallID)))
		b.WriteString(testCallID)
		b.Write(edS)
		b.Write(edR)
		binary.Write(&b, binary.BigEndian, uint32(epoch))
		return b.Bytes()
	}
	for _, tc := range []struct {
		name     string
		got      DirectionKey
		edS, edR []byte
	}{
		{"send", send, alice.ed, bob.ed},
		{"recv", recv, bob.ed, alice.ed},
	} {
		m := hkdfSHA256(shared, info(tc.edS, tc.edR), 44)
		if !bytes.Equal(tc.got.Key[:], m[:32]) || !bytes.Equal(tc.got.BaseIV[:], m[32:]) {
			t.Errorf("%s key does not match HKDF(e_shared, info, 44)", tc.name)
		}
		if tc.got.Epoch != epoch {
			t.Errorf("%s epoch = %d, want %d", tc.name, tc.got.Epoch, epoch)
		}
	}
}

func TestDeriveKeysRefuses(t *testing.T) {
	alice, bob := newParty(t, 1), newParty(t, 2)
	peer := bob.eph.PublicKey().Bytes()
	p256, err := ecdh.P256().GenerateKey(strings.NewReader(strings.Repeat("x", 100)))
	if err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Low-order X25519 points (RFC 7748 §6.1 requires refusing the
	// all-zero output they produce).
	lowOrder := []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	}
	type args struct {
		self         *ecdh.PrivateKey
		peer         []byte
		callID       string
		edSelf, edPr []byte
	}
	ok := args{alice.eph, peer, testCallID, alice.ed, bob.ed}
	cases := []struct {
		name string
		mod  func(a *args)
		want error
	}{
		{"empty call ID", func(a *args) { a.callID = "" }, ErrCallID},
		{"call ID of 256 bytes", func(a *args) { a.callID = strings.Repeat("c", 256) }, ErrCallID},
		{"short peer key", func(a *args) { a.peer = peer[:31] }, ErrPeerKey},
		{"nil peer key", func(a *args) { a.peer = nil }, ErrPeerKey},
		{"short own signing key", func(a *args) { a.edSelf = a.edSelf[:31] }, ErrIdentityKey},
		{"short peer signing key", func(a *args) { a.edPr = nil }, ErrIdentityKey},
		{"same signing keys", func(a *args) { a.edPr = a.edSelf }, ErrIdentityKey},
		{"nil own key", func(a *args) { a.self = nil }, nil},
		{"P-256 own key", func(a *args) { a.self = p256 }, nil},
	}
	for i, lo := range lowOrder {
		cases = append(cases, struct {
			name string
			mod  func(a *args)
			want error
		}{fmt.Sprintf("low-order peer key %d", i), func(a *args) { a.peer = unhex(lo) }, ErrPeerKey})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.mod(&a)
			send, recv, err := DeriveKeys(a.self, a.peer, a.callID, a.edSelf, a.edPr, 0)
			if err == nil {
				t.Fatal("DeriveKeys succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if send != (DirectionKey{}) || recv != (DirectionKey{}) {
				t.Error("keys returned along with an error")
			}
		})
	}

	if _, _, err := DeriveKeys(alice.eph, peer, strings.Repeat("c", 255), alice.ed, bob.ed, 0); err != nil {
		t.Errorf("call ID of 255 bytes refused: %v", err)
	}
}

func TestDirectionKeyRedacted(t *testing.T) {
	k := DirectionKey{Epoch: 7}
	for i := range k.Key {
		k.Key[i] = 0xab
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, k)
		if strings.Contains(s, "ab") || strings.Contains(s, "171") || !strings.Contains(s, "redacted") {
			t.Errorf("%s formats key material: %q", format, s)
		}
	}
}
