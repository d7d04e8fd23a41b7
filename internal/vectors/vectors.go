// Package vectors generates duet's protocol test vectors (testdata/vectors,
// docs/PROTOCOL.md) from the Go implementation, deterministically: fixed
// mnemonics, timestamps, nonces, IVs and ephemeral keys. The Go tests check
// that the committed files are exactly what Generate produces and verify each
// file independently; the browser SDK verifies the same files.
package vectors

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// Fixed inputs. Alice calls Bob.
const (
	AliceMnemonic = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
	BobMnemonic   = "legal winner thank year wave sausage worth useful legal winner thank yellow"
	Mnemonic24    = "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless"
	AliceAlias    = identity.Alias("u10000001")
	BobAlias      = identity.Alias("u20000002")
	CallID        = "c0ffee-7e57-ca11"
	// SealTime is the _ts of every sealed vector (2026-11-23T00:00:00Z).
	SealTimeMillis = 1795392000000
)

// Identity is one mnemonic's derived material (all hex).
type Identity struct {
	Mnemonic      string `json:"mnemonic"`
	BIP39Seed     string `json:"bip39_seed"`
	Ed25519Seed   string `json:"ed25519_seed"`
	Ed25519Public string `json:"ed25519_public"`
	X25519Private string `json:"x25519_private"`
	X25519Public  string `json:"x25519_public"`
	PKCS8Ed25519  string `json:"pkcs8_ed25519"`
	PKCS8X25519   string `json:"pkcs8_x25519"`
}

// IdentityFile is identity.json.
type IdentityFile struct {
	Description  string     `json:"description"`
	Identities   []Identity `json:"identities"`
	SafetyNumber struct {
		A      string `json:"a_mnemonic"`
		B      string `json:"b_mnemonic"`
		Number string `json:"safety_number"`
	} `json:"safety_number"`
	InvalidMnemonics  []InvalidMnemonic   `json:"invalid_mnemonics"`
	Normalisation     []NormalisationCase `json:"normalisation"`
	InvalidPublicKeys []InvalidPublicKey  `json:"invalid_public_keys"`
}

// InvalidMnemonic is a mnemonic every implementation refuses.
type InvalidMnemonic struct {
	Mnemonic string `json:"mnemonic"`
	Why      string `json:"why"` // word_count, unknown_word, checksum
}

// SessionKeyFile is session_key.json.
type SessionKeyFile struct {
	Description string `json:"description"`
	A           string `json:"a_mnemonic"`
	B           string `json:"b_mnemonic"`
	Shared      string `json:"x25519_shared"`
	Transcript  string `json:"transcript"`
	SessionKey  string `json:"session_key"`
}

// CanonicalCase is one canonical JSON case.
type CanonicalCase struct {
	Name      string `json:"name"`
	Input     string `json:"input"`
	Canonical string `json:"canonical,omitempty"`
	Invalid   bool   `json:"invalid,omitempty"`
}

// CanonicalFile is canonical_json.json.
type CanonicalFile struct {
	Description string          `json:"description"`
	Cases       []CanonicalCase `json:"cases"`
}

// SealedCase is one sealed envelope.
type SealedCase struct {
	Name     string          `json:"name"`
	Type     string          `json:"type"`
	Sender   string          `json:"sender_mnemonic"`
	Receiver string          `json:"receiver_mnemonic"`
	Nonce    string          `json:"nonce"`
	IV       string          `json:"iv"`
	Blob     string          `json:"signed_blob"` // the canonical JSON that was encrypted
	Envelope json.RawMessage `json:"envelope"`
	OpenAtMs int64           `json:"open_at_ms"` // receiver clock for Open
}

// EnvelopeFile is envelopes.json.
type EnvelopeFile struct {
	Description string       `json:"description"`
	SessionKey  string       `json:"session_key"`
	Cases       []SealedCase `json:"cases"`
}

// Frame is one encrypted media frame.
type Frame struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // vp8, opus, other
	Direction string `json:"direction"`
	Epoch     uint32 `json:"epoch"`
	Seq       uint32 `json:"seq"`
	Plain     string `json:"plaintext"`
	Encrypted string `json:"encrypted"`
}

// DirectionKeys is one direction's derived material.
type DirectionKeys struct {
	Key    string `json:"key"`
	BaseIV string `json:"base_iv"`
}

// FrameFile is frames.json.
type FrameFile struct {
	Description     string        `json:"description"`
	CallID          string        `json:"call_id"`
	CallerMnemonic  string        `json:"caller_mnemonic"`
	CalleeMnemonic  string        `json:"callee_mnemonic"`
	CallerEphemeral string        `json:"caller_ephemeral_private"`
	CalleeEphemeral string        `json:"callee_ephemeral_private"`
	CallerToCallee  DirectionKeys `json:"caller_to_callee"`
	CalleeToCaller  DirectionKeys `json:"callee_to_caller"`
	Frames          []Frame       `json:"frames"`
	Rekeys          []Rekey       `json:"rekeys"`
}

// Rekey is one call_rekey exchange of frames.json: both sides' fresh
// ephemeral keys for the epoch, the keys derived from them and frames
// encrypted under them.
type Rekey struct {
	Epoch           uint32        `json:"epoch"`
	CallerEphemeral string        `json:"caller_ephemeral_private"`
	CalleeEphemeral string        `json:"callee_ephemeral_private"`
	CallerToCallee  DirectionKeys `json:"caller_to_callee"`
	CalleeToCaller  DirectionKeys `json:"callee_to_caller"`
	Frames          []Frame       `json:"frames"`
}

// Generate returns every vector file by name, encoded as committed.
func Generate() (map[string][]byte, error) {
	out := map[string][]byte{}
	gens := []struct {
		name string
		fn   func() (any, error)
	}{
		{"identity.json", genIdentity},
		{"session_key.json", genSessionKey},
		{"canonical_json.json", genCanonical},
		{"envelopes.json", genEnvelopes},
		{"frames.json", genFrames},
		{"envelope_errors.json", genEnvelopeErrors},
		{"frame_sequences.json", genFrameSequences},
		{"relay_auth.json", genRelayAuth},
	}
	for _, g := range gens {
		v, err := g.fn()
		if err != nil {
			return nil, fmt.Errorf("vectors: %s: %w", g.name, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("vectors: %s: %w", g.name, err)
		}
		out[g.name] = buf.Bytes()
	}
	return out, nil
}

func mustIdentity(m string) *identity.Identity {
	id, err := identity.FromMnemonic(m)
	if err != nil {
		panic("vectors: fixed mnemonic invalid: " + err.Error())
	}
	return id
}

const (
	pkcs8Ed25519Prefix = "302e020100300506032b657004220420"
	pkcs8X25519Prefix  = "302e020100300506032b656e04220420"
)

func genIdentity() (any, error) {
	f := IdentityFile{Description: "PROTOCOL.md §1: mnemonic → BIP39 seed → Ed25519/X25519 keys (HKDF-SHA256, empty salt); PKCS8 forms for WebCrypto import; safety number; mnemonics that must be refused (§1.1: only 12 and 24 words; errors checked in the order unknown_word, word_count, checksum); normalisation of typed input; peer public keys that must be refused (§1.2, ErrInvalidPublicKey). All bytes hex."}
	for _, m := range []string{AliceMnemonic, BobMnemonic, Mnemonic24} {
		id := mustIdentity(m)
		seed, err := identity.Seed(m)
		if err != nil {
			return nil, err
		}
		edSeed, err := hkdf.Key(sha256.New, seed, nil, "duet/v1/identity/ed25519", 32)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(edSeed, id.SigningKey.Seed()) {
			return nil, fmt.Errorf("identity.FromMnemonic disagrees with PROTOCOL.md §1.2 for the Ed25519 seed")
		}
		pub := id.PublicKeys()
		xPriv := id.AgreementKey.Bytes()
		f.Identities = append(f.Identities, Identity{
			Mnemonic:      m,
			BIP39Seed:     hex.EncodeToString(seed),
			Ed25519Seed:   hex.EncodeToString(edSeed),
			Ed25519Public: hex.EncodeToString(pub.Signing),
			X25519Private: hex.EncodeToString(xPriv),
			X25519Public:  hex.EncodeToString(pub.Agreement),
			PKCS8Ed25519:  pkcs8Ed25519Prefix + hex.EncodeToString(edSeed),
			PKCS8X25519:   pkcs8X25519Prefix + hex.EncodeToString(xPriv),
		})
	}
	f.SafetyNumber.A, f.SafetyNumber.B = AliceMnemonic, BobMnemonic
	f.SafetyNumber.Number = identity.SafetyNumber(mustIdentity(AliceMnemonic).PublicKeys(), mustIdentity(BobMnemonic).PublicKeys())
	f.InvalidMnemonics = []InvalidMnemonic{
		{"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon", "word_count"},
		{"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandonx", "unknown_word"},
		{"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon", "checksum"},
	}
	f.InvalidMnemonics = append(f.InvalidMnemonics, moreInvalidMnemonics()...)
	want := map[string]error{"word_count": identity.ErrWordCount, "unknown_word": identity.ErrUnknownWord, "checksum": identity.ErrChecksum}
	for _, m := range f.InvalidMnemonics {
		if err := identity.ValidateMnemonic(m.Mnemonic); !errors.Is(err, want[m.Why]) {
			return nil, fmt.Errorf("invalid mnemonic %q: Go gives %v, want %s", m.Mnemonic, err, m.Why)
		}
	}
	f.Normalisation = normalisationCases()
	for _, c := range f.Normalisation {
		if got := identity.NormalizeMnemonic(c.Input); got != c.Normalised {
			return nil, fmt.Errorf("normalisation %q: Go gives %q, want %q", c.Name, got, c.Normalised)
		}
		err := identity.ValidateMnemonic(c.Input)
		if c.Error == "" && err != nil || c.Error != "" && !errors.Is(err, want[c.Error]) {
			return nil, fmt.Errorf("normalisation %q: Go gives %v, want %q", c.Name, err, c.Error)
		}
	}
	f.InvalidPublicKeys = invalidPublicKeys()
	for _, k := range f.InvalidPublicKeys {
		ed, _ := hex.DecodeString(k.Ed25519)
		x, _ := hex.DecodeString(k.X25519)
		if _, err := identity.ParsePublicKeys(ed, x); !errors.Is(err, identity.ErrInvalidPublicKey) {
			return nil, fmt.Errorf("public keys %q: Go gives %v, want ErrInvalidPublicKey", k.Name, err)
		}
	}
	return f, nil
}

func genSessionKey() (any, error) {
	a, b := mustIdentity(AliceMnemonic), mustIdentity(BobMnemonic)
	pa, pb := a.PublicKeys(), b.PublicKeys()
	shared, err := a.AgreementKey.ECDH(mustX25519Public(pb.Agreement))
	if err != nil {
		return nil, err
	}
	first, second := pa, pb
	if bytes.Compare(pa.Signing, pb.Signing) > 0 {
		first, second = pb, pa
	}
	transcript := bytes.Join([][]byte{first.Signing, first.Agreement, second.Signing, second.Agreement}, nil)
	key, err := wire.SessionKey(a.AgreementKey, pa.Signing, pb.Signing, pb.Agreement)
	if err != nil {
		return nil, err
	}
	return SessionKeyFile{
		Description: "PROTOCOL.md §4.1: session_key = HKDF-SHA256(ikm = X25519 shared, salt = transcript, info = \"duet/v2/signaling-key\", 32). The transcript orders the parties by Ed25519 public key. Hex.",
		A:           AliceMnemonic, B: BobMnemonic,
		Shared:     hex.EncodeToString(shared),
		Transcript: hex.EncodeToString(transcript),
		SessionKey: hex.EncodeToString(key[:]),
	}, nil
}

func mustX25519Public(b []byte) *ecdh.PublicKey {
	k, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		panic(err)
	}
	return k
}

// canonicalInputs are the canonical JSON cases; invalid ones have no output.
var canonicalInputs = []struct {
	name, input string
	invalid     bool
}{
	{"key order", `{"b":1,"a":2,"c":3}`, false},
	{"nested objects sorted recursively", `{"z":{"y":1,"x":{"b":true,"a":null}},"a":[{"d":1,"c":2}]}`, false},
	{"call_ice payload", `{"type":"call_ice","to":"u20000002","from":"u10000001","call_id":"c1","sdp_mline":0,"sdp_mid":"0","candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"}`, false},
	{"whitespace removed", "{ \"a\" : [ 1 , 2 ,\n 3 ] ,\t\"b\" : \"x\" }", false},
	{"string escapes", `{"s":"quote\" backslash\\ slash\/ tab\t nl\n cr\r bs\b ff\f ctl\u0001\u001f"}`, false},
	{"unicode stays literal", `{"s":"\u00e9t\u00e9 \u4e2d\u6587 \ud83d\ude00 é"}`, false},
	{"utf-16 key order", `{"\ue000":1,"\ud83d\ude00":2,"a":3,"é":4}`, false},
	{"integers", `{"max":9007199254740991,"min":-9007199254740991,"zero":0,"neg":-42}`, false},
	{"empty containers", `{"o":{},"a":[]}`, false},
	{"fraction refused", `{"a":1.5}`, true},
	{"exponent refused", `{"a":1e3}`, true},
	{"negative zero refused", `{"a":-0}`, true},
	{"out of range integer refused", `{"a":9007199254740992}`, true},
	{"duplicate key refused", `{"a":1,"a":2}`, true},
	{"lone surrogate refused", `{"a":"\ud800"}`, true},
	{"trailing data refused", `{"a":1} x`, true},
}

func genCanonical() (any, error) {
	f := CanonicalFile{Description: "PROTOCOL.md §4.2: RFC 8785 canonical JSON (integers only). input → canonical; invalid inputs must be refused."}
	for _, c := range canonicalInputs {
		out, err := wire.Canonicalize([]byte(c.input))
		if c.invalid {
			if err == nil {
				return nil, fmt.Errorf("canonical case %q: accepted, want refused", c.name)
			}
			f.Cases = append(f.Cases, CanonicalCase{Name: c.name, Input: c.input, Invalid: true})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("canonical case %q: %w", c.name, err)
		}
		f.Cases = append(f.Cases, CanonicalCase{Name: c.name, Input: c.input, Canonical: string(out)})
	}
	return f, nil
}

// SessionFor returns the signaling session of self towards peer; now is the
// session's clock.
func SessionFor(self, peer *identity.Identity, now func() time.Time) (*wire.Session, error) {
	ps := peer.PublicKeys()
	key, err := wire.SessionKey(self.AgreementKey, self.PublicKeys().Signing, ps.Signing, ps.Agreement)
	if err != nil {
		return nil, err
	}
	return wire.NewSession(wire.SessionConfig{SigningKey: self.SigningKey, PeerSigningKey: ps.Signing, Key: key, Now: now})
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func sealedMessages() []struct {
	name     string
	from, to identity.Alias
	device   string
	body     wire.Body
} {
	mid := "0"
	mline := 0
	ePub := mustEphemeral(0x11).PublicKey().Bytes()
	return []struct {
		name     string
		from, to identity.Alias
		device   string
		body     wire.Body
	}{
		{"call_offer", AliceAlias, BobAlias, "", wire.OfferPayload{SDP: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", EPK: ePub}},
		{"call_ice", AliceAlias, BobAlias, "", wire.ICEPayload{Candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host", SDPMid: &mid, SDPMLine: &mline}},
		{"call_hangup", BobAlias, AliceAlias, "", wire.HangupPayload{Reason: wire.ReasonUserHangup}},
		{"call_answer", BobAlias, AliceAlias, "bob-phone", wire.AnswerPayload{SDP: "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", EPK: mustEphemeral(0x51).PublicKey().Bytes()}},
		{"call_select", AliceAlias, BobAlias, "alice-laptop", wire.SelectPayload{Selected: "bob-phone", Outcome: wire.OutcomeAnswered}},
		{"call_reject", BobAlias, AliceAlias, "", wire.RejectPayload{Reason: wire.ReasonBusy}},
		{"call_rekey", AliceAlias, BobAlias, "", wire.RekeyPayload{Epoch: 1, EPK: mustEphemeral(0x21).PublicKey().Bytes()}},
		{"call_rekey (reply)", BobAlias, AliceAlias, "", wire.RekeyPayload{Epoch: 1, EPK: mustEphemeral(0x61).PublicKey().Bytes()}},
		{"call_offer (ice_restart)", AliceAlias, BobAlias, "", wire.OfferPayload{SDP: "v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", EPK: ePub, ICERestart: true}},
		{"call_ice (end of candidates)", AliceAlias, BobAlias, "", wire.ICEPayload{Candidate: ""}},
		{"call_hangup (no_answer)", AliceAlias, BobAlias, "", wire.HangupPayload{Reason: wire.ReasonNoAnswer}},
		{"call_media", BobAlias, AliceAlias, "bob-phone", wire.MediaPayload{AudioMuted: true, VideoOff: true}},
		{"call_media (screen)", AliceAlias, BobAlias, "alice-laptop", wire.MediaPayload{Screen: true}},
		{"call_offer (renegotiate)", BobAlias, AliceAlias, "bob-phone", wire.OfferPayload{SDP: "v=0\r\no=- 3 5 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", EPK: mustEphemeral(0x51).PublicKey().Bytes(), Renegotiate: true}},
	}
}

func genEnvelopes() (any, error) {
	alice, bob := mustIdentity(AliceMnemonic), mustIdentity(BobMnemonic)
	ts := time.UnixMilli(SealTimeMillis)
	f := EnvelopeFile{Description: "PROTOCOL.md §4.3: sealed envelopes with fixed _ts, _nonce and IV. Receivers open each with open_at_ms as their clock. signed_blob is the plaintext inside the AES-GCM payload. One case per message type (§3), plus an ICE restart offer, an end-of-candidates call_ice and a rekey reply. envelope_errors.json has the envelopes that must be refused."}
	key, err := wire.SessionKey(alice.AgreementKey, alice.PublicKeys().Signing, bob.PublicKeys().Signing, bob.PublicKeys().Agreement)
	if err != nil {
		return nil, err
	}
	f.SessionKey = hex.EncodeToString(key[:])
	for i, m := range sealedMessages() {
		sender, receiver := alice, bob
		sm, rm := AliceMnemonic, BobMnemonic
		if m.from == BobAlias {
			sender, receiver, sm, rm = bob, alice, BobMnemonic, AliceMnemonic
		}
		s, err := SessionFor(sender, receiver, func() time.Time { return ts })
		if err != nil {
			return nil, err
		}
		var nonce [wire.NonceSize]byte
		copy(nonce[:], seq(wire.NonceSize, byte(0x20+16*i)))
		var iv [wire.IVSize]byte
		copy(iv[:], seq(wire.IVSize, byte(0xa0+16*i)))
		env, err := s.SealWith(wire.Message{Type: m.body.MessageType(), From: m.from, To: m.to, CallID: CallID, Device: m.device, Body: m.body}, ts, nonce, iv)
		if err != nil {
			return nil, err
		}
		env.ID = fmt.Sprintf("m%d", i+1)
		raw, err := env.Encode()
		if err != nil {
			return nil, err
		}
		blob, err := decryptPayload(key, env.Payload)
		if err != nil {
			return nil, err
		}
		f.Cases = append(f.Cases, SealedCase{
			Name: m.name, Type: string(m.body.MessageType()), Sender: sm, Receiver: rm,
			Nonce: hex.EncodeToString(nonce[:]), IV: hex.EncodeToString(iv[:]),
			Blob: string(blob), Envelope: raw, OpenAtMs: SealTimeMillis + 1500,
		})
	}
	return f, nil
}

// mustEphemeral returns a fixed X25519 key whose private bytes are b, b+1, ...
func mustEphemeral(b byte) *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(seq(32, b))
	if err != nil {
		panic(err)
	}
	return k
}

// framePlaintexts are the media frames of frames.json.
func framePlaintexts() []struct {
	name string
	kind e2ee.FrameKind
	data []byte
} {
	vp8Key := append([]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, seq(40, 0x30)...) // P=0, 640x480
	vp8Delta := append([]byte{0x31, 0x05, 0x00}, seq(30, 0x60)...)                                         // P=1
	opus := append([]byte{0xfc}, seq(40, 0x80)...)
	return []struct {
		name string
		kind e2ee.FrameKind
		data []byte
	}{
		{"vp8 key frame (10 clear bytes)", e2ee.KindVP8, vp8Key},
		{"vp8 delta frame (3 clear bytes)", e2ee.KindVP8, vp8Delta},
		{"opus (1 clear byte)", e2ee.KindOpus, opus},
		{"other (0 clear bytes)", e2ee.KindOther, seq(20, 0x01)},
		{"vp8 delta shorter than its header", e2ee.KindVP8, []byte{0x01, 0x02}},
	}
}

// KindName is the vector name of a frame kind.
func KindName(k e2ee.FrameKind) string {
	switch k {
	case e2ee.KindVP8:
		return "vp8"
	case e2ee.KindOpus:
		return "opus"
	}
	return "other"
}

// CallKeys derives the frames.json keys: caller's send key and callee's
// send key, for epoch, from the ephemeral keys of that epoch (ephemerals).
func CallKeys(epoch uint32) (callerSend, calleeSend e2ee.DirectionKey, err error) {
	caller, callee := mustIdentity(AliceMnemonic), mustIdentity(BobMnemonic)
	ce, ee := ephemerals(epoch)
	callerSend, _, err = e2ee.DeriveKeys(ce, ee.PublicKey().Bytes(), CallID, caller.PublicKeys().Signing, callee.PublicKeys().Signing, epoch)
	if err != nil {
		return
	}
	calleeSend, _, err = e2ee.DeriveKeys(ee, ce.PublicKey().Bytes(), CallID, callee.PublicKeys().Signing, caller.PublicKeys().Signing, epoch)
	return
}

// RekeyEpochs are the epochs of frames.json's rekeys: the first rekey, and
// one whose four bytes differ, so that a byte-order mistake in u32be(n) or in
// the counter shows.
var RekeyEpochs = []uint32{1, 0x01020304}

// ephemerals returns the caller's and the callee's fixed ephemeral keys of
// an epoch: 0x11/0x51 for the offer and answer (epoch 0), 0x21/0x61 for the
// first rekey (as in envelopes.json's call_rekey cases), 0x31/0x71 after.
func ephemerals(epoch uint32) (caller, callee *ecdh.PrivateKey) {
	switch epoch {
	case 0:
		return mustEphemeral(0x11), mustEphemeral(0x51)
	case 1:
		return mustEphemeral(0x21), mustEphemeral(0x61)
	}
	return mustEphemeral(0x31), mustEphemeral(0x71)
}

func genFrames() (any, error) {
	callerSend, calleeSend, err := CallKeys(0)
	if err != nil {
		return nil, err
	}
	f := FrameFile{
		Description:     "PROTOCOL.md §5: media keys from the ephemeral X25519 exchange (caller epk in the offer, callee epk in the answer), frames = clear header || counter u64be || AES-256-GCM(body) || tag. frames are epoch 0; each of rekeys is a call_rekey epoch with its own fresh ephemeral keys (§5.1, §5.4) and frames under it. Hex.",
		CallID:          CallID,
		CallerMnemonic:  AliceMnemonic,
		CalleeMnemonic:  BobMnemonic,
		CallerEphemeral: hex.EncodeToString(mustEphemeral(0x11).Bytes()),
		CalleeEphemeral: hex.EncodeToString(mustEphemeral(0x51).Bytes()),
		CallerToCallee:  DirectionKeys{hex.EncodeToString(callerSend.Key[:]), hex.EncodeToString(callerSend.BaseIV[:])},
		CalleeToCaller:  DirectionKeys{hex.EncodeToString(calleeSend.Key[:]), hex.EncodeToString(calleeSend.BaseIV[:])},
	}
	for i, p := range framePlaintexts() {
		dir, key, name := "caller_to_callee", callerSend, p.name
		if i%2 == 1 {
			dir, key = "callee_to_caller", calleeSend
		}
		seqNo := uint32(1000 + 7*i)
		enc, err := e2ee.NewEncryptor(key, &e2ee.EncryptorOptions{FirstSeq: seqNo})
		if err != nil {
			return nil, err
		}
		out, err := enc.Encrypt(nil, p.data, p.kind)
		if err != nil {
			return nil, err
		}
		f.Frames = append(f.Frames, Frame{Name: name, Kind: KindName(p.kind), Direction: dir, Epoch: 0, Seq: seqNo, Plain: hex.EncodeToString(p.data), Encrypted: hex.EncodeToString(out)})
	}
	for _, epoch := range RekeyEpochs {
		cs, es, err := CallKeys(epoch)
		if err != nil {
			return nil, err
		}
		ce, ee := ephemerals(epoch)
		r := Rekey{
			Epoch:           epoch,
			CallerEphemeral: hex.EncodeToString(ce.Bytes()),
			CalleeEphemeral: hex.EncodeToString(ee.Bytes()),
			CallerToCallee:  DirectionKeys{hex.EncodeToString(cs.Key[:]), hex.EncodeToString(cs.BaseIV[:])},
			CalleeToCaller:  DirectionKeys{hex.EncodeToString(es.Key[:]), hex.EncodeToString(es.BaseIV[:])},
		}
		for i, p := range framePlaintexts()[:3] {
			dir, key := "caller_to_callee", cs
			if i%2 == 1 {
				dir, key = "callee_to_caller", es
			}
			seqNo := uint32(i * 70000) // 0, then past 16 bits
			enc, err := e2ee.NewEncryptor(key, &e2ee.EncryptorOptions{FirstSeq: seqNo})
			if err != nil {
				return nil, err
			}
			out, err := enc.Encrypt(nil, p.data, p.kind)
			if err != nil {
				return nil, err
			}
			r.Frames = append(r.Frames, Frame{Name: fmt.Sprintf("epoch %d: %s", epoch, p.name), Kind: KindName(p.kind), Direction: dir, Epoch: epoch, Seq: seqNo, Plain: hex.EncodeToString(p.data), Encrypted: hex.EncodeToString(out)})
		}
		f.Rekeys = append(f.Rekeys, r)
	}
	return f, nil
}
