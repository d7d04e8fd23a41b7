package vectors

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

const dir = "../../testdata/vectors"

// TestCommittedVectorsAreCurrent fails when the Go implementation and the
// committed vectors disagree; `make vectors` regenerates them after an
// intended protocol change (which also changes PROTOCOL.md and the JS SDK).
func TestCommittedVectorsAreCurrent(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (run make vectors)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the Go implementation generates; if the protocol changed on purpose, run make vectors and update PROTOCOL.md and web/sdk", name)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(files) {
		t.Errorf("%s holds %d files, the generator makes %d", dir, len(entries), len(files))
	}
}

func load(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdentityVectors(t *testing.T) {
	var f IdentityFile
	load(t, "identity.json", &f)
	if len(f.Identities) < 3 {
		t.Fatalf("want at least 3 identities, got %d", len(f.Identities))
	}
	for _, v := range f.Identities {
		id, err := identity.FromMnemonic(v.Mnemonic)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := identity.Seed(v.Mnemonic)
		pub := id.PublicKeys()
		for _, c := range []struct {
			name, want string
			got        []byte
		}{
			{"bip39_seed", v.BIP39Seed, seed},
			{"ed25519_seed", v.Ed25519Seed, id.SigningKey.Seed()},
			{"ed25519_public", v.Ed25519Public, pub.Signing},
			{"x25519_private", v.X25519Private, id.AgreementKey.Bytes()},
			{"x25519_public", v.X25519Public, pub.Agreement},
		} {
			if !bytes.Equal(unhex(t, c.want), c.got) {
				t.Errorf("%q: %s mismatch", v.Mnemonic[:20], c.name)
			}
		}
	}
	a, _ := identity.FromMnemonic(f.SafetyNumber.A)
	b, _ := identity.FromMnemonic(f.SafetyNumber.B)
	if got := identity.SafetyNumber(a.PublicKeys(), b.PublicKeys()); got != f.SafetyNumber.Number {
		t.Errorf("safety number %q, want %q", got, f.SafetyNumber.Number)
	}
	if got := identity.SafetyNumber(b.PublicKeys(), a.PublicKeys()); got != f.SafetyNumber.Number {
		t.Errorf("safety number from the other side %q, want %q", got, f.SafetyNumber.Number)
	}
	want := map[string]error{"word_count": identity.ErrWordCount, "unknown_word": identity.ErrUnknownWord, "checksum": identity.ErrChecksum}
	for _, m := range f.InvalidMnemonics {
		if err := identity.ValidateMnemonic(m.Mnemonic); !errors.Is(err, want[m.Why]) {
			t.Errorf("ValidateMnemonic(%q) = %v, want %s", m.Mnemonic, err, m.Why)
		}
	}
}

func TestSessionKeyVector(t *testing.T) {
	var f SessionKeyFile
	load(t, "session_key.json", &f)
	a, _ := identity.FromMnemonic(f.A)
	b, _ := identity.FromMnemonic(f.B)
	pa, pb := a.PublicKeys(), b.PublicKeys()
	ka, err := wire.SessionKey(a.AgreementKey, pa.Signing, pb.Signing, pb.Agreement)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := wire.SessionKey(b.AgreementKey, pb.Signing, pa.Signing, pa.Agreement)
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, f.SessionKey)
	if !bytes.Equal(ka[:], want) || !bytes.Equal(kb[:], want) {
		t.Errorf("session keys %x / %x, want %x from both sides", ka, kb, want)
	}
}

func TestCanonicalVectors(t *testing.T) {
	var f CanonicalFile
	load(t, "canonical_json.json", &f)
	for _, c := range f.Cases {
		got, err := wire.Canonicalize([]byte(c.Input))
		if c.Invalid {
			if err == nil {
				t.Errorf("%s: accepted %q, want an error", c.Name, c.Input)
			}
			continue
		}
		if err != nil || string(got) != c.Canonical {
			t.Errorf("%s: got %q, %v; want %q", c.Name, got, err, c.Canonical)
		}
		// Canonical output is a fixed point.
		again, err := wire.Canonicalize(got)
		if err != nil || !bytes.Equal(again, got) {
			t.Errorf("%s: canonical form is not stable: %q", c.Name, again)
		}
	}
}

func TestEnvelopeVectors(t *testing.T) {
	var f EnvelopeFile
	load(t, "envelopes.json", &f)
	for _, c := range f.Cases {
		sender, _ := identity.FromMnemonic(c.Sender)
		receiver, _ := identity.FromMnemonic(c.Receiver)
		now := time.UnixMilli(c.OpenAtMs)
		s, err := SessionFor(receiver, sender, func() time.Time { return now })
		if err != nil {
			t.Fatal(err)
		}
		env, err := wire.DecodeEnvelope(c.Envelope)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		msg, err := s.Open(env)
		if err != nil {
			t.Fatalf("%s: Open: %v", c.Name, err)
		}
		if string(msg.Type) != c.Name || msg.From != env.From || msg.To != env.To {
			t.Errorf("%s: opened %+v", c.Name, msg)
		}
		// The same envelope a second time is a replay.
		if _, err := s.Open(env); !errors.Is(err, wire.ErrReplay) {
			t.Errorf("%s: second Open = %v, want ErrReplay", c.Name, err)
		}
		// The blob is canonical JSON.
		if canon, err := wire.Canonicalize([]byte(c.Blob)); err != nil || string(canon) != c.Blob {
			t.Errorf("%s: signed_blob is not canonical: %v", c.Name, err)
		}
	}
}

func TestFrameVectors(t *testing.T) {
	var f FrameFile
	load(t, "frames.json", &f)
	// The keys come from the file's own inputs (mnemonics, ephemeral
	// private keys, call_id), derived on both sides, not from the generator.
	caller, err := identity.FromMnemonic(f.CallerMnemonic)
	if err != nil {
		t.Fatal(err)
	}
	callee, err := identity.FromMnemonic(f.CalleeMnemonic)
	if err != nil {
		t.Fatal(err)
	}
	callerEph, err := ecdh.X25519().NewPrivateKey(unhex(t, f.CallerEphemeral))
	if err != nil {
		t.Fatal(err)
	}
	calleeEph, err := ecdh.X25519().NewPrivateKey(unhex(t, f.CalleeEphemeral))
	if err != nil {
		t.Fatal(err)
	}
	cs, cr := caller.PublicKeys().Signing, callee.PublicKeys().Signing
	callerSend, callerRecv, err := e2ee.DeriveKeys(callerEph, calleeEph.PublicKey().Bytes(), f.CallID, cs, cr, 0)
	if err != nil {
		t.Fatal(err)
	}
	calleeSend, calleeRecv, err := e2ee.DeriveKeys(calleeEph, callerEph.PublicKey().Bytes(), f.CallID, cr, cs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if callerSend != calleeRecv || calleeSend != callerRecv {
		t.Fatal("the two sides derive different media keys")
	}
	for _, c := range []struct {
		name string
		got  e2ee.DirectionKey
		want DirectionKeys
	}{{"caller_to_callee", callerSend, f.CallerToCallee}, {"callee_to_caller", calleeSend, f.CalleeToCaller}} {
		if hex.EncodeToString(c.got.Key[:]) != c.want.Key || hex.EncodeToString(c.got.BaseIV[:]) != c.want.BaseIV {
			t.Errorf("%s: derived key/base IV %x/%x, frames.json has %s/%s", c.name, c.got.Key, c.got.BaseIV, c.want.Key, c.want.BaseIV)
		}
	}
	kinds := map[string]e2ee.FrameKind{"vp8": e2ee.KindVP8, "opus": e2ee.KindOpus, "other": e2ee.KindOther}
	for _, fr := range f.Frames {
		key := callerSend
		if fr.Direction == "callee_to_caller" {
			key = calleeSend
		}
		d, err := e2ee.NewDecryptor(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		enc := unhex(t, fr.Encrypted)
		got, err := d.Decrypt(nil, enc, kinds[fr.Kind])
		if err != nil || !bytes.Equal(got, unhex(t, fr.Plain)) {
			t.Errorf("%s: Decrypt = %x, %v; want %s", fr.Name, got, err, fr.Plain)
		}
		if c, err := e2ee.FrameCounter(enc, kinds[fr.Kind]); err != nil || c != e2ee.MakeCounter(fr.Epoch, fr.Seq) {
			t.Errorf("%s: counter %d, %v; want epoch %d seq %d", fr.Name, c, err, fr.Epoch, fr.Seq)
		}
		enc[len(enc)-1] ^= 1
		if _, err := d.Decrypt(nil, enc, kinds[fr.Kind]); err == nil {
			t.Errorf("%s: a flipped tag bit decrypted", fr.Name)
		}
	}
}
