package wire

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSessionKeyAgrees(t *testing.T) {
	alice, bob, carol := newParty(t, 1, "u11111111"), newParty(t, 2, "u22222222"), newParty(t, 3, "u33333333")
	ab, err := SessionKey(alice.agree, alice.signPub(), bob.signPub(), bob.agreePub())
	if err != nil {
		t.Fatal(err)
	}
	ba, err := SessionKey(bob.agree, bob.signPub(), alice.signPub(), alice.agreePub())
	if err != nil {
		t.Fatal(err)
	}
	if ab != ba {
		t.Fatalf("Alice and Bob derive different keys:\n%x\n%x", ab, ba)
	}
	ac, err := SessionKey(alice.agree, alice.signPub(), carol.signPub(), carol.agreePub())
	if err != nil {
		t.Fatal(err)
	}
	if ac == ab {
		t.Fatal("Alice-Carol key equals Alice-Bob key")
	}

	// The key is bound to the signing keys: the same X25519 exchange with
	// another claimed signing key gives another key.
	other, err := SessionKey(alice.agree, alice.signPub(), carol.signPub(), bob.agreePub())
	if err != nil {
		t.Fatal(err)
	}
	if other == ab {
		t.Fatal("session key does not depend on the peer's signing key")
	}

	// Recompute §4.1 step by step, with A the smaller Ed25519 key.
	shared, err := alice.agree.ECDH(bob.agree.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	a, b := alice, bob
	if bytes.Compare(a.signPub(), b.signPub()) > 0 {
		a, b = b, a
	}
	transcript := bytes.Join([][]byte{a.signPub(), a.agreePub(), b.signPub(), b.agreePub()}, nil)
	want, err := hkdf.Key(sha256.New, shared, transcript, "duet/v2/signaling-key", 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab[:], want) {
		t.Fatalf("SessionKey = %x, want %x", ab, want)
	}
	// The wrong order gives another key, so the order above is what is tested.
	wrong, _ := hkdf.Key(sha256.New, shared, bytes.Join([][]byte{b.signPub(), b.agreePub(), a.signPub(), a.agreePub()}, nil), "duet/v2/signaling-key", 32)
	if bytes.Equal(wrong, want) {
		t.Fatal("transcript order does not matter; the test proves nothing")
	}
}

func TestSessionKeyRejects(t *testing.T) {
	alice, bob := newParty(t, 1, "u11111111"), newParty(t, 2, "u22222222")
	p256, err := ecdh.P256().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	lowOrder := []string{
		"0000000000000000000000000000000000000000000000000000000000000000", // 0
		"0100000000000000000000000000000000000000000000000000000000000000", // 1
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
	}
	for _, h := range lowOrder {
		pub, _ := hex.DecodeString(h)
		if _, err := SessionKey(alice.agree, alice.signPub(), bob.signPub(), pub); !errors.Is(err, ErrKey) {
			t.Errorf("low-order peer key %s: err = %v, want ErrKey", h[:8], err)
		}
	}
	for name, f := range map[string]func() error{
		"short peer agreement key": func() error {
			_, err := SessionKey(alice.agree, alice.signPub(), bob.signPub(), bob.agreePub()[:31])
			return err
		},
		"nil agreement key": func() error {
			_, err := SessionKey(nil, alice.signPub(), bob.signPub(), bob.agreePub())
			return err
		},
		"P-256 agreement key": func() error {
			_, err := SessionKey(p256, alice.signPub(), bob.signPub(), bob.agreePub())
			return err
		},
		"short own signing key": func() error {
			_, err := SessionKey(alice.agree, alice.signPub()[:31], bob.signPub(), bob.agreePub())
			return err
		},
		"long peer signing key": func() error {
			_, err := SessionKey(alice.agree, alice.signPub(), append(bob.signPub(), 0), bob.agreePub())
			return err
		},
	} {
		if err := f(); !errors.Is(err, ErrKey) {
			t.Errorf("%s: err = %v, want ErrKey", name, err)
		}
	}
}

func TestNewSessionRejects(t *testing.T) {
	alice, bob := newParty(t, 1, "u11111111"), newParty(t, 2, "u22222222")
	key := [32]byte{1}
	for name, cfg := range map[string]SessionConfig{
		"zero key":         {SigningKey: alice.sign, PeerSigningKey: bob.signPub()},
		"short signing":    {SigningKey: alice.sign[:32], PeerSigningKey: bob.signPub(), Key: key},
		"no peer key":      {SigningKey: alice.sign, Key: key},
		"short peer key":   {SigningKey: alice.sign, PeerSigningKey: bob.signPub()[:16], Key: key},
		"private as peer":  {SigningKey: alice.sign, PeerSigningKey: ed25519.PublicKey(bob.sign), Key: key},
		"nil signing key":  {PeerSigningKey: bob.signPub(), Key: key},
		"public as signer": {SigningKey: ed25519.PrivateKey(alice.signPub()), PeerSigningKey: bob.signPub(), Key: key},
	} {
		if s, err := NewSession(cfg); !errors.Is(err, ErrKey) || s != nil {
			t.Errorf("%s: NewSession = %v, %v; want ErrKey", name, s, err)
		}
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	p := newPair(t)
	for _, body := range []Body{
		OfferPayload{SDP: testSDP, EPK: testEPK},
		OfferPayload{SDP: "m=audio 9 RTP/AVP 0\r\n", EPK: testEPK, ICERestart: true},
		AnswerPayload{SDP: testSDP, EPK: testEPK},
		ICEPayload{Candidate: "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host", SDPMid: ptr("0"), SDPMLine: ptr(0)},
		ICEPayload{Candidate: "", SDPMid: nil, SDPMLine: nil},
		ICEPayload{Candidate: "c", SDPMid: ptr("vidéo \"1\"\n"), SDPMLine: ptr(MaxSDPMLine)},
		RejectPayload{Reason: ReasonBusy},
		HangupPayload{Reason: ReasonUserHangup},
		RekeyPayload{Epoch: 1, EPK: testEPK},
		RekeyPayload{Epoch: MaxEpoch, EPK: testEPK},
	} {
		t.Run(string(body.MessageType()), func(t *testing.T) {
			m := p.msg(body)
			env := p.seal(t, m)
			if env.Type != m.Type || env.From != m.From || env.To != m.To || env.CallID != m.CallID || env.CryptoV != 2 || env.ID != "" {
				t.Fatalf("envelope route %+v does not match %+v", env, m)
			}
			// Through the wire: encode, strict decode, open.
			data, err := env.Encode()
			if err != nil {
				t.Fatal(err)
			}
			dec, err := DecodeEnvelope(data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.b.Open(dec)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("Open =\n%#v\nwant\n%#v", got, m)
			}
			// Alice cannot open her own message: it is signed by her, not Bob.
			if _, err := p.a.Open(env); !errors.Is(err, ErrSignature) {
				t.Fatalf("reflected message: err = %v, want ErrSignature", err)
			}
		})
	}
}

// TestSealFormat checks a sealed payload against §4.3 with encoding/json and
// the standard library only, independently of this package's JSON code.
func TestSealFormat(t *testing.T) {
	p := newPair(t)
	m := p.msg(OfferPayload{SDP: "v=0\r\nm=video 9 <&> \"é\"\r\n", EPK: testEPK})
	ts := time.UnixMilli(1_780_000_000_123)
	nonce := [16]byte{0: 0xaa, 15: 0xbb}
	iv := [12]byte{0: 1, 11: 2}
	env, err := p.a.SealWith(m, ts, nonce, iv)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.a.SealWith(m, ts, nonce, iv)
	if err != nil || *again != *env {
		t.Fatalf("SealWith is not deterministic: %+v vs %+v (%v)", again, env, err)
	}

	sealed, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sealed[:12], iv[:]) {
		t.Fatalf("payload does not start with the IV")
	}
	key, _ := SessionKey(p.bob.agree, p.bob.signPub(), p.alice.signPub(), p.alice.agreePub())
	block, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(block)
	blob, err := gcm.Open(nil, sealed[:12], sealed[12:], nil)
	if err != nil {
		t.Fatalf("AES-GCM with the session key, empty AAD: %v", err)
	}
	// The blob is JCS: sorted keys, no whitespace, literal non-ASCII and <&>.
	const wantPrefix = `{"_nonce":"qgAAAAAAAAAAAAAAAAAAuw==","_sig":"`
	if !strings.HasPrefix(string(blob), wantPrefix) {
		t.Fatalf("blob = %s\nwant prefix %s", blob, wantPrefix)
	}
	wantSuffix := `","_ts":1780000000123,"call_id":"call-1","epk":"` + base64.StdEncoding.EncodeToString(testEPK) +
		`","from":"u11111111","sdp":"v=0\r\nm=video 9 <&> \"é\"\r\n","to":"u22222222","type":"call_offer"}`
	if !strings.HasSuffix(string(blob), wantSuffix) {
		t.Fatalf("blob = %s\nwant suffix %s", blob, wantSuffix)
	}
	var obj map[string]any
	if err := json.Unmarshal(blob, &obj); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(obj["_sig"].(string))
	if err != nil || len(sig) != 64 {
		t.Fatalf("_sig: %d bytes, %v", len(sig), err)
	}
	// Signed bytes: the blob without its _sig member.
	sigMember := `"_sig":"` + obj["_sig"].(string) + `",`
	signed := strings.Replace(string(blob), sigMember, "", 1)
	if !ed25519.Verify(p.alice.signPub(), []byte(signed), sig) {
		t.Fatalf("signature does not verify over %s", signed)
	}
}

func TestSealRejectsInvalidMessages(t *testing.T) {
	p := newPair(t)
	ok := p.offer()
	for name, edit := range map[string]func(m *Message){
		"unknown type":       func(m *Message) { m.Type = "chat" },
		"type/body mismatch": func(m *Message) { m.Type = TypeCallAnswer },
		"nil body":           func(m *Message) { m.Body = nil },
		"nil pointer body":   func(m *Message) { m.Body = (*OfferPayload)(nil) },
		"bad from":           func(m *Message) { m.From = "alice" },
		"bad to":             func(m *Message) { m.To = "u1" },
		"empty call_id":      func(m *Message) { m.CallID = "" },
		"bad call_id":        func(m *Message) { m.CallID = "a b" },
		"short epk":          func(m *Message) { m.Body = OfferPayload{SDP: "x", EPK: testEPK[:31]} },
		"empty sdp":          func(m *Message) { m.Body = OfferPayload{EPK: testEPK} },
		"non-UTF-8 sdp":      func(m *Message) { m.Body = OfferPayload{SDP: "\xff", EPK: testEPK} },
		"answer nil epk":     func(m *Message) { m.Type, m.Body = TypeCallAnswer, AnswerPayload{SDP: "x"} },
		"bad reason":         func(m *Message) { m.Type, m.Body = TypeCallHangup, HangupPayload{Reason: "bored"} },
		"empty reason":       func(m *Message) { m.Type, m.Body = TypeCallReject, RejectPayload{} },
		"epoch 0":            func(m *Message) { m.Type, m.Body = TypeCallRekey, RekeyPayload{EPK: testEPK} },
		"epoch too large":    func(m *Message) { m.Type, m.Body = TypeCallRekey, RekeyPayload{Epoch: MaxEpoch + 1, EPK: testEPK} },
		"sdp_mline -1":       func(m *Message) { m.Type, m.Body = TypeCallICE, ICEPayload{SDPMLine: ptr(-1)} },
		"sdp_mline 65536":    func(m *Message) { m.Type, m.Body = TypeCallICE, ICEPayload{SDPMLine: ptr(65536)} },
		"non-UTF-8 sdp_mid":  func(m *Message) { m.Type, m.Body = TypeCallICE, ICEPayload{SDPMid: ptr("\xc3")} },
		"non-UTF-8 cand.":    func(m *Message) { m.Type, m.Body = TypeCallICE, ICEPayload{Candidate: "\xc3"} },
		"too large": func(m *Message) {
			m.Body = OfferPayload{SDP: strings.Repeat("a", MaxPayloadSize*3/4), EPK: testEPK}
		},
	} {
		m := ok
		edit(&m)
		if env, err := p.a.Seal(m); !errors.Is(err, ErrMalformed) || env != nil {
			t.Errorf("%s: Seal = %v, %v; want ErrMalformed", name, env, err)
		}
	}
	if _, err := p.a.Seal(ok); err != nil {
		t.Fatalf("the unedited message: %v", err)
	}
	// A pointer body works too; Open returns the value.
	m := ok
	m.Body = &OfferPayload{SDP: testSDP, EPK: testEPK}
	got, err := p.b.Open(must(p.a.Seal(m)))
	if err != nil || !reflect.DeepEqual(got, ok) {
		t.Fatalf("pointer body: %+v, %v", got, err)
	}
}

// TestOpenRejects covers each check of §4.4 with its sentinel.
func TestOpenRejects(t *testing.T) {
	type tc struct {
		name string
		env  func(t *testing.T, p *pair) *Envelope
		want error
	}
	sealed := func(t *testing.T, p *pair) *Envelope { return p.seal(t, p.offer()) }
	editEnv := func(edit func(e *Envelope)) func(t *testing.T, p *pair) *Envelope {
		return func(t *testing.T, p *pair) *Envelope {
			e := sealed(t, p)
			edit(e)
			return e
		}
	}
	editSealed := func(edit func(b []byte)) func(t *testing.T, p *pair) *Envelope {
		return editEnv(func(e *Envelope) {
			b, _ := base64.StdEncoding.DecodeString(e.Payload)
			edit(b)
			e.Payload = base64.StdEncoding.EncodeToString(b)
		})
	}
	blob := func(s string) func(t *testing.T, p *pair) *Envelope {
		return func(t *testing.T, p *pair) *Envelope { return p.sealBlob(t, s) }
	}
	// raw seals Alice's inner payload after edit, correctly signed.
	raw := func(edit func(m map[string]any)) func(t *testing.T, p *pair) *Envelope {
		return func(t *testing.T, p *pair) *Envelope {
			m := p.inner()
			edit(m)
			return p.sealRaw(t, p.a, m)
		}
	}
	// resigned decrypts a valid blob, edits it as text, re-signs and re-seals it.
	resigned := func(old, new string) func(t *testing.T, p *pair) *Envelope {
		return func(t *testing.T, p *pair) *Envelope {
			m := p.inner()
			data, _ := json.Marshal(m)
			s := string(data)
			if !strings.Contains(s, old) {
				t.Fatalf("test bug: %q not in %s", old, s)
			}
			v, err := parseJSON([]byte(strings.Replace(s, old, new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			env, err := p.a.sealMembers(TypeCallOffer, p.alice.alias, p.bob.alias, "call-1", v.obj, randIV())
			if err != nil {
				t.Fatal(err)
			}
			return env
		}
	}
	validBlobWith := func(p *pair, edit func(s string) string) string {
		m := p.inner()
		v, _ := parseJSON(must(json.Marshal(m)))
		sig := ed25519.Sign(p.alice.sign, appendObject(nil, v.obj))
		m["_sig"] = base64.StdEncoding.EncodeToString(sig)
		return edit(string(must(json.Marshal(m))))
	}

	cases := []tc{
		// Step 1.
		{"crypto_v 1", editEnv(func(e *Envelope) { e.CryptoV = 1 }), ErrCryptoVersion},
		{"crypto_v 0", editEnv(func(e *Envelope) { e.CryptoV = 0 }), ErrCryptoVersion},
		// Envelope fields and step 2.
		{"invalid envelope to", editEnv(func(e *Envelope) { e.To = "bob" }), ErrMalformed},
		{"oversized payload", editEnv(func(e *Envelope) { e.Payload = strings.Repeat("A", MaxPayloadSize+4) }), ErrMalformed},
		{"payload not base64", editEnv(func(e *Envelope) { e.Payload = "!!" + e.Payload[2:] }), ErrMalformed},
		{"payload unpadded", editEnv(func(e *Envelope) {
			b, _ := base64.StdEncoding.DecodeString(e.Payload)
			for len(b)%3 == 0 {
				b = append(b, 0)
			}
			e.Payload = base64.RawStdEncoding.EncodeToString(b)
		}), ErrMalformed},
		{"payload with a line break", editEnv(func(e *Envelope) { e.Payload = e.Payload[:8] + "\n" + e.Payload[8:] }), ErrMalformed},
		{"payload URL-safe base64", editEnv(func(e *Envelope) {
			b, _ := base64.StdEncoding.DecodeString(e.Payload)
			e.Payload = base64.URLEncoding.EncodeToString(append(b, 0xfb, 0xff, 0xfe)) // forces - and _
		}), ErrMalformed},
		{"payload shorter than IV and tag", editEnv(func(e *Envelope) { e.Payload = base64.StdEncoding.EncodeToString(make([]byte, 27)) }), ErrMalformed},
		// Step 3.
		{"tampered ciphertext", editSealed(func(b []byte) { b[40] ^= 1 }), ErrDecrypt},
		{"tampered tag", editSealed(func(b []byte) { b[len(b)-1] ^= 0x80 }), ErrDecrypt},
		{"tampered IV", editSealed(func(b []byte) { b[0] ^= 1 }), ErrDecrypt},
		{"IV and tag only", editEnv(func(e *Envelope) { e.Payload = base64.StdEncoding.EncodeToString(make([]byte, 28)) }), ErrDecrypt},
		{"another session key", func(t *testing.T, p *pair) *Envelope {
			carol := newParty(t, 3, "u33333333")
			return carol.session(t, p.bob, p.clock, nil).sealOffer(t, p)
		}, ErrDecrypt},
		// Step 4.
		{"blob not JSON", blob("hello"), ErrMalformed},
		{"blob empty", blob(""), ErrMalformed},
		{"blob an array", blob(`[1,2]`), ErrMalformed},
		{"blob with a float", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"_ts":`, `"x":1.5,"_ts":`, 1) }))
		}, ErrMalformed},
		{"blob with an exponent", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"_ts":`, `"x":1e2,"_ts":`, 1) }))
		}, ErrMalformed},
		{"blob with a duplicate key", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"to":`, `"to":"u22222222","to":`, 1) }))
		}, ErrMalformed},
		{"blob with invalid UTF-8", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"to":`, "\"x\":\"\xff\",\"to\":", 1) }))
		}, ErrMalformed},
		{"_sig missing", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"_sig"`, `"_sag"`, 1) }))
		}, ErrMalformed},
		{"_sig short", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"_sig":"`, `"_sig":"AAAA`, 1) }))
		}, ErrMalformed},
		{"_sig not a string", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, `"_sig":"`, `"_sig":1,"y":"`, 1) }))
		}, ErrMalformed},
		{"_ts missing", raw(func(m map[string]any) { delete(m, "_ts") }), ErrMalformed},
		{"_ts a string", raw(func(m map[string]any) { m["_ts"] = fmt.Sprint(m["_ts"]) }), ErrMalformed},
		{"_nonce missing", raw(func(m map[string]any) { delete(m, "_nonce") }), ErrMalformed},
		{"_nonce 15 bytes", raw(func(m map[string]any) { m["_nonce"] = base64.StdEncoding.EncodeToString(make([]byte, 15)) }), ErrMalformed},
		{"_nonce not base64", raw(func(m map[string]any) { m["_nonce"] = "????????????????????????" }), ErrMalformed},
		// Step 5.
		{"wrong signer", func(t *testing.T, p *pair) *Envelope {
			mallory := newParty(t, 9, "u99999999")
			key, _ := SessionKey(p.alice.agree, p.alice.signPub(), p.bob.signPub(), p.bob.agreePub())
			s, err := NewSession(SessionConfig{SigningKey: mallory.sign, PeerSigningKey: p.bob.signPub(), Key: key, Now: p.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			return s.sealOffer(t, p)
		}, ErrSignature},
		{"signed content altered", func(t *testing.T, p *pair) *Envelope {
			return p.sealBlob(t, validBlobWith(p, func(s string) string { return strings.Replace(s, "v=0", "v=1", 1) }))
		}, ErrSignature},
		{"signature over non-canonical bytes", func(t *testing.T, p *pair) *Envelope {
			m := p.inner()
			data := must(json.Marshal(m)) // sorted but HTML-escaped and \r\n escaped differently: not JCS
			data = bytes.Replace(data, []byte(`"call_id"`), []byte(` "call_id"`), 1)
			m["_sig"] = base64.StdEncoding.EncodeToString(ed25519.Sign(p.alice.sign, data))
			return p.sealBlob(t, string(must(json.Marshal(m))))
		}, ErrSignature},
		// Steps 6 and 7.
		{"stale by the window", raw(func(m map[string]any) { m["_ts"] = m["_ts"].(int64) - 60_000 }), ErrStale},
		{"stale by an hour", raw(func(m map[string]any) { m["_ts"] = m["_ts"].(int64) - 3_600_000 }), ErrStale},
		{"_ts negative", raw(func(m map[string]any) { m["_ts"] = -1 }), ErrStale},
		{"future by the window", raw(func(m map[string]any) { m["_ts"] = m["_ts"].(int64) + 60_000 }), ErrFuture},
		{"future at the integer limit", raw(func(m map[string]any) { m["_ts"] = MaxSafeInteger }), ErrFuture},
		// Step 9.
		{"envelope type swapped", editEnv(func(e *Envelope) { e.Type = TypeCallAnswer }), ErrRouteMismatch},
		{"envelope from swapped", editEnv(func(e *Envelope) { e.From = "u33333333" }), ErrRouteMismatch},
		{"envelope to swapped", editEnv(func(e *Envelope) { e.To = "u33333333" }), ErrRouteMismatch},
		{"envelope call_id swapped", editEnv(func(e *Envelope) { e.CallID = "call-2" }), ErrRouteMismatch},
		{"envelope from and to exchanged", editEnv(func(e *Envelope) { e.From, e.To = e.To, e.From }), ErrRouteMismatch},
		{"inner to missing", raw(func(m map[string]any) { delete(m, "to") }), ErrRouteMismatch},
		{"inner type missing", raw(func(m map[string]any) { delete(m, "type") }), ErrRouteMismatch},
		{"inner call_id not a string", raw(func(m map[string]any) { m["call_id"] = 1 }), ErrRouteMismatch},
		{"inner from null", raw(func(m map[string]any) { m["from"] = nil }), ErrRouteMismatch},
		// Step 10.
		{"sdp missing", raw(func(m map[string]any) { delete(m, "sdp") }), ErrMalformed},
		{"sdp empty", raw(func(m map[string]any) { m["sdp"] = "" }), ErrMalformed},
		{"sdp a number", raw(func(m map[string]any) { m["sdp"] = 5 }), ErrMalformed},
		{"epk missing", raw(func(m map[string]any) { delete(m, "epk") }), ErrMalformed},
		{"epk 31 bytes", raw(func(m map[string]any) { m["epk"] = base64.StdEncoding.EncodeToString(testEPK[:31]) }), ErrMalformed},
		{"epk unpadded", raw(func(m map[string]any) { m["epk"] = strings.TrimRight(m["epk"].(string), "=") }), ErrMalformed},
		{"ice_restart a string", raw(func(m map[string]any) { m["ice_restart"] = "true" }), ErrMalformed},
		{"unknown field", raw(func(m map[string]any) { m["video"] = true }), ErrMalformed},
		{"another type's field", raw(func(m map[string]any) { m["reason"] = "busy" }), ErrMalformed},
		{"nested object field", raw(func(m map[string]any) { m["x"] = map[string]any{"y": 1} }), ErrMalformed},
		{"sdp_mid in an offer", resigned(`"sdp":`, `"sdp_mid":"0","sdp":`), ErrMalformed},
	}
	// body replaces the offer fields with a message of type typ and fields.
	body := func(typ Type, fields map[string]any) func(t *testing.T, p *pair) *Envelope {
		return raw(func(m map[string]any) {
			delete(m, "sdp")
			delete(m, "epk")
			m["type"] = string(typ)
			for k, v := range fields {
				m[k] = v
			}
		})
	}
	epk := base64.StdEncoding.EncodeToString(testEPK)
	cases = append(cases,
		tc{"answer with ice_restart", body(TypeCallAnswer, map[string]any{"sdp": "v=0", "epk": epk, "ice_restart": false}), ErrMalformed},
		tc{"answer without epk", body(TypeCallAnswer, map[string]any{"sdp": "v=0"}), ErrMalformed},
		tc{"answer without sdp", body(TypeCallAnswer, map[string]any{"epk": epk}), ErrMalformed},
		tc{"answer epk a number", body(TypeCallAnswer, map[string]any{"sdp": "v=0", "epk": 1}), ErrMalformed},
		tc{"reject without reason", body(TypeCallReject, nil), ErrMalformed},
		tc{"reject reason a number", body(TypeCallReject, map[string]any{"reason": 1}), ErrMalformed},
		tc{"reject unknown reason", body(TypeCallReject, map[string]any{"reason": "nope"}), ErrMalformed},
		tc{"hangup extra field", body(TypeCallHangup, map[string]any{"reason": "busy", "sdp": "v=0"}), ErrMalformed},
		tc{"rekey epoch 0", body(TypeCallRekey, map[string]any{"epoch": 0, "epk": epk}), ErrMalformed},
		tc{"rekey epoch 2^32", body(TypeCallRekey, map[string]any{"epoch": int64(MaxEpoch) + 1, "epk": epk}), ErrMalformed},
		tc{"rekey epoch a string", body(TypeCallRekey, map[string]any{"epoch": "1", "epk": epk}), ErrMalformed},
		tc{"rekey without epoch", body(TypeCallRekey, map[string]any{"epk": epk}), ErrMalformed},
		tc{"rekey without epk", body(TypeCallRekey, map[string]any{"epoch": 1}), ErrMalformed},
		tc{"rekey extra field", body(TypeCallRekey, map[string]any{"epoch": 1, "epk": epk, "reason": "busy"}), ErrMalformed},
		tc{"ice with sdp", body(TypeCallICE, map[string]any{"candidate": "c", "sdp": "v=0"}), ErrMalformed},
		tc{"ice sdp_mline too large", body(TypeCallICE, map[string]any{"candidate": "c", "sdp_mline": 70000}), ErrMalformed},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			env := c.env(t, p)
			got, err := p.b.Open(env)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %+v, %v; want %v", got, err, c.want)
			}
			if !reflect.DeepEqual(got, Message{}) {
				t.Errorf("Open returned a message with its error: %+v", got)
			}
			if p.b.replay.Len() != 0 {
				t.Errorf("a refused message's nonce was remembered")
			}
			for _, other := range []error{ErrCryptoVersion, ErrMalformed, ErrDecrypt, ErrSignature, ErrStale, ErrFuture, ErrReplay, ErrReplayCacheFull, ErrRouteMismatch} {
				if other != c.want && errors.Is(err, other) {
					t.Errorf("error %v also wraps %v", err, other)
				}
			}
		})
	}
}

func (s *Session) sealOffer(t *testing.T, p *pair) *Envelope {
	t.Helper()
	env, err := s.Seal(p.offer())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOpenTimestampWindowEdges(t *testing.T) {
	p := newPair(t)
	for _, d := range []time.Duration{-TimestampWindow + time.Millisecond, 0, TimestampWindow - time.Millisecond} {
		m := p.inner()
		m["_ts"] = p.clock.Now().Add(d).UnixMilli()
		if _, err := p.b.Open(p.sealRaw(t, p.a, m)); err != nil {
			t.Errorf("_ts now%+v: %v; want accepted", d, err)
		}
	}
	// The sender's clock is ahead: Seal stamps with its own clock.
	ahead := &fakeClock{now: p.clock.Now().Add(59 * time.Second)}
	a := p.alice.session(t, p.bob, ahead, nil)
	if _, err := p.b.Open(must(a.Seal(p.offer()))); err != nil {
		t.Errorf("sender 59 s ahead: %v", err)
	}
	ahead.Advance(time.Second)
	if _, err := p.b.Open(must(a.Seal(p.offer()))); !errors.Is(err, ErrFuture) {
		t.Errorf("sender 60 s ahead: %v, want ErrFuture", err)
	}
}

func TestOpenReplay(t *testing.T) {
	p := newPair(t)
	env := p.seal(t, p.offer())
	if _, err := p.b.Open(env); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Open(env); !errors.Is(err, ErrReplay) {
		t.Fatalf("second Open: %v, want ErrReplay", err)
	}
	// A later replay of the same frame is stale before it is a replay (step 6
	// comes before step 8).
	p.clock.Advance(TimestampWindow)
	if _, err := p.b.Open(env); !errors.Is(err, ErrStale) {
		t.Fatalf("Open after the window: %v, want ErrStale", err)
	}
}

func TestOpenNonceReuse(t *testing.T) {
	p := newPair(t)
	nonce := [16]byte{1, 2, 3}
	first, err := p.a.SealWith(p.offer(), p.clock.Now(), nonce, randIV())
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.a.SealWith(p.msg(HangupPayload{Reason: ReasonUserHangup}), p.clock.Now(), nonce, randIV())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Open(first); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Open(second); !errors.Is(err, ErrReplay) {
		t.Fatalf("another message with a used nonce: %v, want ErrReplay", err)
	}
}

// TestOpenRefusedNonceNotRemembered: a frame that fails a late check does
// not burn its nonce, so the genuine frame is still accepted.
func TestOpenRefusedNonceNotRemembered(t *testing.T) {
	p := newPair(t)
	env := p.seal(t, p.offer())
	forged := *env
	forged.CallID = "other"
	if _, err := p.b.Open(&forged); !errors.Is(err, ErrRouteMismatch) {
		t.Fatalf("forged route: %v", err)
	}
	if _, err := p.b.Open(env); err != nil {
		t.Fatalf("genuine frame after a refused copy: %v", err)
	}
}

func TestOpenCheckOrder(t *testing.T) {
	p := newPair(t)
	// Bad signature and stale: the signature is checked first.
	mallory := newParty(t, 9, "u99999999")
	key, _ := SessionKey(p.alice.agree, p.alice.signPub(), p.bob.signPub(), p.bob.agreePub())
	forger := must(NewSession(SessionConfig{SigningKey: mallory.sign, PeerSigningKey: p.bob.signPub(), Key: key, Now: p.clock.Now}))
	env := forger.sealOffer(t, p)
	p.clock.Advance(time.Hour)
	if _, err := p.b.Open(env); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged and stale: %v, want ErrSignature", err)
	}
	// Route mismatch and a malformed body: the route is checked first.
	m := p.inner()
	m["call_id"] = "call-2"
	delete(m, "sdp")
	if _, err := p.b.Open(p.sealRaw(t, p.a, m)); !errors.Is(err, ErrRouteMismatch) {
		t.Fatalf("route mismatch and malformed body: %v, want ErrRouteMismatch", err)
	}
	// crypto_v is checked before anything else.
	bad := p.seal(t, p.offer())
	bad.CryptoV, bad.Payload = 1, "%%%"
	if _, err := p.b.Open(bad); !errors.Is(err, ErrCryptoVersion) {
		t.Fatalf("crypto_v 1 with a bad payload: %v, want ErrCryptoVersion", err)
	}
	if _, err := p.b.Open(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil envelope: %v, want ErrMalformed", err)
	}
}

func TestOpenUnknownType(t *testing.T) {
	p := newPair(t)
	m := p.inner()
	m["type"] = "chat"
	v, _ := parseJSON(must(json.Marshal(m)))
	env, err := p.a.sealMembers("chat", p.alice.alias, p.bob.alias, "call-1", v.obj, randIV())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Open(env); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signed message of an unknown type: %v, want ErrMalformed", err)
	}
}

func TestOpenICEBothShapes(t *testing.T) {
	p := newPair(t)
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   ICEPayload
		err    error
	}{
		{"browser", map[string]any{"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}, ICEPayload{Candidate: "c", SDPMid: ptr("0"), SDPMLine: ptr(0)}, nil},
		{"canonical", map[string]any{"candidate": "c", "sdp_mid": "1", "sdp_mline": 1}, ICEPayload{Candidate: "c", SDPMid: ptr("1"), SDPMLine: ptr(1)}, nil},
		{"both agreeing", map[string]any{"candidate": "c", "sdp_mid": "1", "sdpMid": "1", "sdp_mline": nil, "sdpMLineIndex": nil}, ICEPayload{Candidate: "c", SDPMid: ptr("1")}, nil},
		{"absent", map[string]any{"candidate": ""}, ICEPayload{}, nil},
		{"disagreeing", map[string]any{"candidate": "c", "sdp_mid": "1", "sdpMid": "0"}, ICEPayload{}, ErrMalformed},
		{"no candidate", map[string]any{"sdp_mid": "1"}, ICEPayload{}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.inner()
			delete(m, "sdp")
			delete(m, "epk")
			m["type"] = "call_ice"
			for k, v := range tc.fields {
				m[k] = v
			}
			v, _ := parseJSON(must(json.Marshal(m)))
			env := must(p.a.sealMembers(TypeCallICE, p.alice.alias, p.bob.alias, "call-1", v.obj, randIV()))
			got, err := p.b.Open(env)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Open: %v, want %v", err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(got.Body, tc.want) {
				t.Fatalf("body = %#v, want %#v", got.Body, tc.want)
			}
		})
	}
}

func TestOpenOfferICERestartExplicitFalse(t *testing.T) {
	p := newPair(t)
	m := p.inner()
	m["ice_restart"] = false
	got, err := p.b.Open(p.sealRaw(t, p.a, m))
	if err != nil {
		t.Fatal(err)
	}
	if o := got.Body.(OfferPayload); o.ICERestart || !bytes.Equal(o.EPK, testEPK) || o.SDP != testSDP {
		t.Fatalf("body = %+v", o)
	}
}

func TestOpenConcurrentReplay(t *testing.T) {
	p := newPair(t)
	env := p.seal(t, p.offer())
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = p.b.Open(env) })
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, ErrReplay):
			t.Errorf("unexpected error %v", err)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d of %d concurrent opens of one frame accepted, want 1", accepted, n)
	}
}

func TestOpenReplayCacheFull(t *testing.T) {
	p := newPair(t)
	guard := NewReplayGuard(2)
	b := p.bob.session(t, p.alice, p.clock, guard)
	for range 2 {
		if _, err := b.Open(p.seal(t, p.offer())); err != nil {
			t.Fatal(err)
		}
	}
	env := p.seal(t, p.offer())
	_, err := b.Open(env)
	if !errors.Is(err, ErrReplayCacheFull) || errors.Is(err, ErrReplay) {
		t.Fatalf("third message in the window: %v, want ErrReplayCacheFull only", err)
	}
	if DropReason(err) != "replay_cache_full" {
		t.Fatalf("DropReason = %q", DropReason(err))
	}
	// Once the first two are past the timestamp window, their room is reused.
	p.clock.Advance(TimestampWindow)
	if _, err := b.Open(p.seal(t, p.offer())); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if guard.Len() != 2 {
		t.Fatalf("guard holds %d nonces, want 2", guard.Len())
	}
}

func TestDropReason(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                 "",
		ErrCryptoVersion:                    "crypto_version",
		fmt.Errorf("x: %w", ErrMalformed):   "malformed",
		ErrDecrypt:                          "decrypt",
		ErrSignature:                        "signature",
		ErrStale:                            "stale",
		ErrFuture:                           "future",
		ErrReplay:                           "replay",
		ErrReplayCacheFull:                  "replay_cache_full",
		ErrRouteMismatch:                    "route_mismatch",
		fmt.Errorf("%w: x", ErrEnvelope):    "malformed",
		fmt.Errorf("%w: x", ErrInvalidJSON): "malformed",
		errors.New("something else"):        "other",
		fmt.Errorf("%w: %w", ErrEnvelope, ErrCryptoVersion): "crypto_version",
	} {
		if got := DropReason(err); got != want {
			t.Errorf("DropReason(%v) = %q, want %q", err, got, want)
		}
	}
	p := newPair(t)
	env := p.seal(t, p.offer())
	env.CallID = "x"
	_, err := p.b.Open(env)
	if got := DropReason(err); got != "route_mismatch" {
		t.Errorf("DropReason(Open error %v) = %q", err, got)
	}
}
