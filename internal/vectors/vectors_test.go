package vectors

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay"
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
		if string(msg.Type) != c.Type || msg.From != env.From || msg.To != env.To {
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

// envelopeErrors maps envelope_errors.json's error names to the Go sentinels.
var envelopeErrors = map[string]error{
	"ErrEnvelope": wire.ErrEnvelope, "ErrCryptoVersion": wire.ErrCryptoVersion, "ErrMalformed": wire.ErrMalformed,
	"ErrDecrypt": wire.ErrDecrypt, "ErrSignature": wire.ErrSignature, "ErrStale": wire.ErrStale, "ErrFuture": wire.ErrFuture,
	"ErrReplay": wire.ErrReplay, "ErrReplayCacheFull": wire.ErrReplayCacheFull, "ErrRouteMismatch": wire.ErrRouteMismatch,
}

// openStep decodes and opens one envelope and checks the outcome: exactly
// the named error (not another sentinel that errors.Is also matches).
func openStep(t *testing.T, name string, s *wire.Session, now *time.Time, st OpenStep) {
	t.Helper()
	*now = time.UnixMilli(st.OpenAtMs)
	env, err := wire.DecodeEnvelope([]byte(st.Envelope))
	if err == nil {
		_, err = s.Open(env)
	}
	if st.Error == "" {
		if err != nil {
			t.Errorf("%s: %v, want it opened", name, err)
		}
		return
	}
	want, ok := envelopeErrors[st.Error]
	if !ok {
		t.Fatalf("%s: unknown error name %q", name, st.Error)
	}
	if !errors.Is(err, want) {
		t.Errorf("%s: %v, want %s", name, err, st.Error)
		return
	}
	for other, e := range envelopeErrors {
		if other == st.Error || other == "ErrEnvelope" && st.Error == "ErrCryptoVersion" || other == "ErrReplay" && st.Error == "ErrReplayCacheFull" {
			continue // Go's decoder wraps both; a full cache is a kind of replay refusal
		}
		if errors.Is(err, e) {
			t.Errorf("%s: %v is also %s, want only %s", name, err, other, st.Error)
		}
	}
}

func TestEnvelopeErrorVectors(t *testing.T) {
	var f EnvelopeErrorFile
	load(t, "envelope_errors.json", &f)
	sender, err := identity.FromMnemonic(f.SenderMnemonic)
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := identity.FromMnemonic(f.ReceiverMnemonic)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[int]bool{}
	for _, c := range f.Cases {
		steps[c.Step] = true
		var now time.Time
		ps := sender.PublicKeys()
		key, err := wire.SessionKey(receiver.AgreementKey, receiver.PublicKeys().Signing, ps.Signing, ps.Agreement)
		if err != nil {
			t.Fatal(err)
		}
		cfg := wire.SessionConfig{SigningKey: receiver.SigningKey, PeerSigningKey: ps.Signing, Key: key, Now: func() time.Time { return now }}
		if c.ReplayCapacity > 0 {
			cfg.Replay = wire.NewReplayGuard(c.ReplayCapacity)
		}
		s, err := wire.NewSession(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range c.Before {
			openStep(t, fmt.Sprintf("%s: before[%d]", c.Name, i), s, &now, b)
		}
		openStep(t, c.Name, s, &now, c.OpenStep)
	}
	for step := 0; step <= 11; step++ {
		if !steps[step] {
			t.Errorf("no case is decided at step %d", step)
		}
	}
}

func TestFrameSequenceVectors(t *testing.T) {
	var f FrameSequenceFile
	load(t, "frame_sequences.json", &f)
	keys := map[uint32]e2ee.DirectionKey{}
	for _, k := range f.Keys {
		var dk e2ee.DirectionKey
		dk.Epoch = k.Epoch
		copy(dk.Key[:], unhex(t, k.Key))
		copy(dk.BaseIV[:], unhex(t, k.BaseIV))
		keys[k.Epoch] = dk
		cs, _, err := CallKeys(k.Epoch)
		if err != nil || cs != dk {
			t.Errorf("epoch %d key differs from frames.json's derivation", k.Epoch)
		}
	}
	l := f.Limits
	if l.Overhead != e2ee.Overhead || l.ReplayWindow != e2ee.ReplayWindow || l.MaxFramesPerKey != e2ee.MaxFramesPerKey ||
		l.RekeyFrames != e2ee.RekeyFrames || l.MaxBytesPerKey != e2ee.MaxBytesPerKey || l.RekeyBytes != e2ee.RekeyBytes ||
		l.RekeyGraceMs != e2ee.RekeyGrace.Milliseconds() {
		t.Errorf("limits %+v differ from the e2ee constants", l)
	}
	for _, sq := range f.Sequences {
		var now time.Time
		d, err := e2ee.NewDecryptor(keys[0], &e2ee.DecryptorOptions{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range sq.Steps {
			now = time.UnixMilli(st.AtMs)
			var got []byte
			switch st.Op {
			case "add_key":
				err = d.AddKey(keys[st.Epoch])
			case "decrypt":
				got, err = d.Decrypt(nil, unhex(t, st.Frame), KindOf(st.Kind))
			default:
				t.Fatalf("%s step %d: unknown op %q", sq.Name, i, st.Op)
			}
			if st.Error == "" {
				if err != nil || st.Op == "decrypt" && hex.EncodeToString(got) != st.Plain {
					t.Errorf("%s step %d (%s): %x, %v; want %s", sq.Name, i, st.Note, got, err, st.Plain)
				}
			} else if !errors.Is(err, E2EEErrors[st.Error]) {
				t.Errorf("%s step %d (%s): %v, want %s", sq.Name, i, st.Note, err, st.Error)
			}
		}
	}
	for _, c := range f.EncryptLimits {
		e, err := e2ee.NewEncryptor(keys[0], &e2ee.EncryptorOptions{FirstSeq: c.FirstSeq})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range c.Steps {
			out, err := e.Encrypt(nil, unhex(t, st.Plain), KindOf(st.Kind))
			switch {
			case st.Error == "" && (err != nil || hex.EncodeToString(out) != st.Encrypted):
				t.Errorf("%s step %d: %x, %v; want %s", c.Name, i, out, err, st.Encrypted)
			case st.Error != "" && !errors.Is(err, E2EEErrors[st.Error]):
				t.Errorf("%s step %d: %v, want %s", c.Name, i, err, st.Error)
			}
			if e.Usage().RekeyNeeded != st.RekeyNeeded {
				t.Errorf("%s step %d: rekey needed %v, want %v", c.Name, i, e.Usage().RekeyNeeded, st.RekeyNeeded)
			}
		}
	}
}

func TestRelayAuthVectors(t *testing.T) {
	var f RelayAuthFile
	load(t, "relay_auth.json", &f)
	id, err := identity.FromMnemonic(f.Mnemonic)
	if err != nil {
		t.Fatal(err)
	}
	pub := id.PublicKeys()
	if hex.EncodeToString(pub.Signing) != f.Ed25519Public || hex.EncodeToString(pub.Agreement) != f.X25519Public {
		t.Fatal("public keys differ from the mnemonic's")
	}
	for _, c := range []struct {
		name string
		sc   SignedChallenge
		msg  []byte
	}{
		{"register", f.Register, relay.RegisterMessage(unhex(t, f.Register.Challenge), pub.Agreement)},
		{"ws_auth", f.WSAuth, relay.WSAuthMessage(unhex(t, f.WSAuth.Challenge))},
	} {
		if hex.EncodeToString(c.msg) != c.sc.Message {
			t.Errorf("%s: the relay's message %x, want %s", c.name, c.msg, c.sc.Message)
		}
		if !bytes.HasPrefix(c.msg, []byte(c.sc.Domain)) {
			t.Errorf("%s: message does not start with %q", c.name, c.sc.Domain)
		}
		if sig := ed25519.Sign(id.SigningKey, c.msg); hex.EncodeToString(sig) != c.sc.Signature {
			t.Errorf("%s: signature %x, want %s", c.name, sig, c.sc.Signature)
		}
	}

	// The proof of work: the vector's nonce is the first counter that
	// solves it, and client.Register sends exactly the vector's request to
	// a relay answering pow_bits (a fake: it records the body).
	pw := f.RegisterPoW
	chal := unhex(t, f.Register.Challenge)
	if nonce, hash := FirstPoW(pw.Domain, chal, pw.Bits); hex.EncodeToString(nonce) != pw.Nonce || hex.EncodeToString(hash) != pw.Hash {
		t.Errorf("register_pow: first nonce %x (hash %x), want %s (%s)", nonce, hash, pw.Nonce, pw.Hash)
	}
	var body map[string]string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/challenge":
			json.NewEncoder(w).Encode(map[string]any{"challenge": chal, "expires_in": 60, "pow_bits": pw.Bits})
		case "/api/v1/register":
			json.NewDecoder(r.Body).Decode(&body)
			json.NewEncoder(w).Encode(map[string]any{"alias": "u10000001", "created": true})
		}
	}))
	defer fake.Close()
	if _, _, err := client.Register(context.Background(), fake.Client(), fake.URL, id); err != nil {
		t.Fatalf("register_pow: client.Register: %v", err)
	}
	if !maps.Equal(body, pw.Body) {
		t.Errorf("register_pow: client.Register sent %v, want %v", body, pw.Body)
	}
}

func TestFrameRekeyVectors(t *testing.T) {
	var f FrameFile
	load(t, "frames.json", &f)
	caller, _ := identity.FromMnemonic(f.CallerMnemonic)
	callee, _ := identity.FromMnemonic(f.CalleeMnemonic)
	cs, cr := caller.PublicKeys().Signing, callee.PublicKeys().Signing
	if len(f.Rekeys) == 0 {
		t.Fatal("frames.json has no rekey")
	}
	for _, r := range f.Rekeys {
		ce, err := ecdh.X25519().NewPrivateKey(unhex(t, r.CallerEphemeral))
		if err != nil {
			t.Fatal(err)
		}
		ee, err := ecdh.X25519().NewPrivateKey(unhex(t, r.CalleeEphemeral))
		if err != nil {
			t.Fatal(err)
		}
		callerSend, callerRecv, err := e2ee.DeriveKeys(ce, ee.PublicKey().Bytes(), f.CallID, cs, cr, r.Epoch)
		if err != nil {
			t.Fatal(err)
		}
		calleeSend, calleeRecv, err := e2ee.DeriveKeys(ee, ce.PublicKey().Bytes(), f.CallID, cr, cs, r.Epoch)
		if err != nil {
			t.Fatal(err)
		}
		if callerSend != calleeRecv || calleeSend != callerRecv {
			t.Fatalf("epoch %d: the two sides derive different keys", r.Epoch)
		}
		if hex.EncodeToString(callerSend.Key[:]) != r.CallerToCallee.Key || hex.EncodeToString(callerSend.BaseIV[:]) != r.CallerToCallee.BaseIV ||
			hex.EncodeToString(calleeSend.Key[:]) != r.CalleeToCaller.Key || hex.EncodeToString(calleeSend.BaseIV[:]) != r.CalleeToCaller.BaseIV {
			t.Errorf("epoch %d: derived keys differ from the file", r.Epoch)
		}
		for _, fr := range r.Frames {
			key := callerSend
			if fr.Direction == "callee_to_caller" {
				key = calleeSend
			}
			if fr.Epoch != r.Epoch {
				t.Errorf("%s: epoch %d in rekey %d", fr.Name, fr.Epoch, r.Epoch)
			}
			d, err := e2ee.NewDecryptor(key, nil)
			if err != nil {
				t.Fatal(err)
			}
			enc := unhex(t, fr.Encrypted)
			if got, err := d.Decrypt(nil, enc, KindOf(fr.Kind)); err != nil || hex.EncodeToString(got) != fr.Plain {
				t.Errorf("%s: %x, %v", fr.Name, got, err)
			}
			if c, err := e2ee.FrameCounter(enc, KindOf(fr.Kind)); err != nil || c != e2ee.MakeCounter(fr.Epoch, fr.Seq) {
				t.Errorf("%s: counter %v, %v", fr.Name, c, err)
			}
			e, err := e2ee.NewEncryptor(key, &e2ee.EncryptorOptions{FirstSeq: fr.Seq})
			if err != nil {
				t.Fatal(err)
			}
			if out, err := e.Encrypt(nil, unhex(t, fr.Plain), KindOf(fr.Kind)); err != nil || !bytes.Equal(out, enc) {
				t.Errorf("%s: re-encryption differs", fr.Name)
			}
		}
	}
}

func TestIdentityExtraVectors(t *testing.T) {
	var f IdentityFile
	load(t, "identity.json", &f)
	want := map[string]error{"word_count": identity.ErrWordCount, "unknown_word": identity.ErrUnknownWord, "checksum": identity.ErrChecksum}
	counts := map[int]bool{}
	for _, m := range f.InvalidMnemonics {
		counts[len(strings.Fields(m.Mnemonic))] = true
	}
	for _, n := range []int{15, 18, 21} {
		if !counts[n] {
			t.Errorf("no %d-word mnemonic among the refused ones", n)
		}
	}
	for _, c := range f.Normalisation {
		if got := identity.NormalizeMnemonic(c.Input); got != c.Normalised {
			t.Errorf("%s: normalised %q, want %q", c.Name, got, c.Normalised)
		}
		err := identity.ValidateMnemonic(c.Input)
		if c.Error == "" && err != nil || c.Error != "" && !errors.Is(err, want[c.Error]) {
			t.Errorf("%s: %v, want %q", c.Name, err, c.Error)
		}
	}
	self, _ := identity.FromMnemonic(AliceMnemonic)
	for _, k := range f.InvalidPublicKeys {
		ed, x := unhex(t, k.Ed25519), unhex(t, k.X25519)
		if _, err := identity.ParsePublicKeys(ed, x); !errors.Is(err, identity.ErrInvalidPublicKey) {
			t.Errorf("%s: ParsePublicKeys = %v, want ErrInvalidPublicKey", k.Name, err)
		}
	}
	// A low-order X25519 key gives no session key and no media keys.
	eph, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	other, _ := identity.FromMnemonic(BobMnemonic)
	for _, k := range LowOrderX25519 {
		if _, err := wire.SessionKey(self.AgreementKey, self.PublicKeys().Signing, other.PublicKeys().Signing, unhex(t, k.Hex)); !errors.Is(err, wire.ErrKey) {
			t.Errorf("%s: SessionKey = %v, want ErrKey", k.Name, err)
		}
		if _, _, err := e2ee.DeriveKeys(eph, unhex(t, k.Hex), CallID, self.PublicKeys().Signing, other.PublicKeys().Signing, 0); !errors.Is(err, e2ee.ErrPeerKey) {
			t.Errorf("%s: DeriveKeys = %v, want ErrPeerKey", k.Name, err)
		}
	}
}
