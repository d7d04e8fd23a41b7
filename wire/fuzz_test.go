package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/duetcall/duet/identity"
)

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(validEnvelope))
	f.Add([]byte(`{"type":"call_ice","to":"u00000000","from":"u99999999","call_id":"a","crypto_v":2,"payload":"x"}`))
	f.Add([]byte(`{"type":"call_offer","to":"u12345678","from":"u87654321","call_id":"c","crypto_v":1,"payload":"AAAA"}`))
	f.Add([]byte(`{"type":"x","type":"y"}`))
	f.Add([]byte(`{"crypto_v":2.0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		// The borrowed decoding decides and decodes the same.
		b, berr := DecodeEnvelopeBorrowed(slices.Clone(data))
		if (err == nil) != (berr == nil) || err != nil && err.Error() != berr.Error() || err == nil && *b != *e {
			t.Fatalf("DecodeEnvelopeBorrowed = %+v, %v; DecodeEnvelope = %+v, %v", b, berr, e, err)
		}
		if err != nil {
			if e != nil || !errors.Is(err, ErrEnvelope) {
				t.Fatalf("DecodeEnvelope = %+v, %v", e, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		enc, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded envelope: %v", err)
		}
		again, err := DecodeEnvelope(enc)
		if err != nil || *again != *e {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, e)
		}
	})
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{"b":[1,{"d":null,"c":true}],"a":"x"}`,
		`{"\u20ac":1,"\ud83d\ude00":2,"\ue000":3,"\r":4}`,
		`"\u0000\u001f\"\\\/\b\f\n\r\t é"`,
		`[9007199254740991,-9007199254740991,0]`,
		`{"a":1,"a":2}`, `1.5`, `-0`, `1e3`, `"\ud800"`, "\"\xff\"",
		strings.Repeat("[", 40),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Canonicalize(data)
		if err != nil {
			if out != nil || !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("Canonicalize = %q, %v", out, err)
			}
			return
		}
		if !json.Valid(data) || !utf8.Valid(out) {
			t.Fatalf("accepted %q", data)
		}
		again, err := Canonicalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", data, out, again, err)
		}
		// Same JSON value as encoding/json reads it.
		var in, canon any
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("encoding/json rejects accepted input %q: %v", data, err)
		}
		if err := json.Unmarshal(out, &canon); err != nil {
			t.Fatalf("encoding/json rejects output %q: %v", out, err)
		}
		if !reflect.DeepEqual(in, canon) {
			t.Fatalf("value changed: %q -> %q", data, out)
		}
		checkKeyOrder(t, out)
	})
}

// checkKeyOrder checks with encoding/json's tokenizer that every object's
// keys are strictly increasing as UTF-16 code units.
func checkKeyOrder(t *testing.T, data []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object   bool
		wantKey  bool
		last     []uint16
		haveLast bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("tokenizing %q: %v", data, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if s, ok := tok.(string); ok {
				k := utf16.Encode([]rune(s))
				if top.haveLast && slices.Compare(top.last, k) >= 0 {
					t.Fatalf("keys out of order in %q", data)
				}
				top.last, top.haveLast, top.wantKey = k, true, false
				continue
			}
		}
		if top != nil && top.object {
			top.wantKey = true // a value completes a member
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].wantKey = true
			}
		}
	}
}

func FuzzNormalizeICE(f *testing.F) {
	for _, s := range []string{
		`{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}`,
		`{"candidate":"c","sdp_mid":"0","sdp_mline":0}`,
		`{"candidate":"","sdp_mid":null,"sdpMid":null,"sdp_mline":null,"sdpMLineIndex":null}`,
		`{"candidate":"c","sdp_mid":"0","sdpMid":"1"}`,
		`{"candidate":"c","usernameFragment":"x"}`,
		`{"candidate":"c","sdp_mline":65536}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := NormalizeICE(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !reflect.DeepEqual(p, ICEPayload{}) {
				t.Fatalf("NormalizeICE = %+v, %v", p, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("NormalizeICE returned an invalid payload: %v", err)
		}
		out, err := CanonicalMarshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte(`"sdp_mid":`)) || !bytes.Contains(out, []byte(`"sdp_mline":`)) ||
			bytes.Contains(out, []byte(`"sdpMid"`)) || bytes.Contains(out, []byte(`"sdpMLineIndex"`)) {
			t.Fatalf("not canonical: %s", out)
		}
		again, err := NormalizeICE(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("re-normalizing %s: %+v, %v; want %+v", out, again, err, p)
		}
	})
}

// fuzzPair is the fixed session of FuzzOpen: keys are derived once; each
// input gets fresh sessions (and so a fresh replay guard) on a fixed clock.
type fuzzPair struct {
	*pair
	key [SessionKeySize]byte
}

func (fp *fuzzPair) fresh(t testing.TB) (a, b *Session) {
	a = must(NewSession(SessionConfig{SigningKey: fp.alice.sign, PeerSigningKey: fp.bob.signPub(), Key: fp.key, Now: fp.clock.Now}))
	b = must(NewSession(SessionConfig{SigningKey: fp.bob.sign, PeerSigningKey: fp.alice.signPub(), Key: fp.key, Now: fp.clock.Now}))
	return a, b
}

// FuzzOpen fuzzes Open three ways with a fixed session: as envelope bytes,
// as a decrypted blob (reaching the JSON parser), and as a blob that is
// signed before sealing (reaching the timestamp, route and type checks).
func FuzzOpen(f *testing.F) {
	fp := &fuzzPair{pair: newPair(f)}
	fp.key = must(SessionKey(fp.alice.agree, fp.alice.signPub(), fp.bob.signPub(), fp.bob.agreePub()))
	seedBodies := []Body{
		OfferPayload{SDP: testSDP, EPK: testEPK, ICERestart: true},
		AnswerPayload{SDP: "v=0\r\n", EPK: testEPK},
		ICEPayload{Candidate: "c", SDPMid: ptr("0"), SDPMLine: ptr(0)},
		RejectPayload{Reason: ReasonBusy},
		HangupPayload{Reason: ReasonError},
		RekeyPayload{Epoch: 2, EPK: testEPK},
		SelectPayload{Selected: "dev-1", Outcome: OutcomeAnswered},
		MediaPayload{AudioMuted: true, Screen: true},
	}
	for i, b := range seedBodies {
		env := must(fp.a.SealWith(fp.msg(b), fp.clock.Now(), [16]byte{byte(i)}, [12]byte{byte(i)}))
		f.Add(must(env.Encode()), []byte(nil))
		// The blob of the same message, as the fuzzer's second input.
		m := fp.msg(b)
		members := append([]member{
			{keyType, stringValue(string(m.Type))}, {keyFrom, stringValue(string(m.From))},
			{keyTo, stringValue(string(m.To))}, {keyCallID, stringValue(m.CallID)},
			{keyTS, numberValue(fp.clock.Now().UnixMilli())}, {keyNonce, b64Value(make([]byte, 16))},
		}, b.appendMembers(nil)...)
		sortMembers(members)
		f.Add([]byte(nil), appendObject(nil, members))
	}
	f.Add([]byte(nil), []byte(`{"type":"call_ice","from":"u11111111","to":"u22222222","call_id":"call-1","candidate":"c","sdpMid":"0","sdpMLineIndex":0,"_ts":1780000000000,"_nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}`))

	f.Fuzz(func(t *testing.T, envBytes, blob []byte) {
		a, b := fp.fresh(t)
		check := func(env *Envelope) {
			msg, err := b.Open(env)
			if err != nil {
				if DropReason(err) == "other" || !reflect.DeepEqual(msg, Message{}) {
					t.Fatalf("Open = %+v, %v (reason %q)", msg, err, DropReason(err))
				}
				return
			}
			// An accepted message re-seals and opens to itself.
			if err := msg.Validate(); err != nil {
				t.Fatalf("Open returned an invalid message: %v", err)
			}
			a2, b2 := fp.fresh(t)
			got, err := b2.Open(must(a2.Seal(msg)))
			if err != nil || !reflect.DeepEqual(got, msg) {
				t.Fatalf("re-sealed message: %+v, %v; want %+v", got, err, msg)
			}
		}
		if env, err := DecodeEnvelope(envBytes); err == nil {
			check(env)
		}
		if len(blob) == 0 {
			return
		}
		env, err := a.sealBlob(TypeCallOffer, fp.alice.alias, fp.bob.alias, "call-1", blob, [12]byte{})
		if err != nil {
			return // too large
		}
		check(env)
		// Sign the blob's object, with the envelope route taken from it.
		v, err := parseJSON(blob)
		if err != nil || v.kind != kindObject {
			return
		}
		route := Envelope{Type: TypeCallOffer, From: fp.alice.alias, To: fp.bob.alias, CallID: "call-1"}
		obj := v.obj[:0:0]
		for _, m := range v.obj {
			if m.val.kind == kindString {
				switch m.key {
				case keyType:
					route.Type = Type(m.val.str)
				case keyFrom:
					route.From = identity.Alias(m.val.str)
				case keyTo:
					route.To = identity.Alias(m.val.str)
				case keyCallID:
					route.CallID = m.val.str
				}
			}
			if m.key != keySig {
				obj = append(obj, m)
			}
		}
		route.CryptoV, route.Payload = CryptoV2, "AAAA"
		if route.Validate() != nil {
			return
		}
		env, err = a.sealMembers(route.Type, route.From, route.To, route.CallID, obj, [12]byte{1})
		if err != nil {
			return
		}
		check(env)
	})
}

// FuzzAppendJSON checks that AppendJSON writes what json.Marshal does, for
// any field values (escapes, HTML characters, invalid UTF-8 included).
func FuzzAppendJSON(f *testing.F) {
	f.Add("call_ice", "u12345678", "u87654321", "c1", 2, "AAAA+/==", "")
	f.Add("t", "", "<a>&", "\u2028\x00\"\\", -7, "é\xff\x7f", "id-1")
	f.Fuzz(func(t *testing.T, typ, to, from, callID string, cryptoV int, payload, id string) {
		e := Envelope{Type: Type(typ), To: identity.Alias(to), From: identity.Alias(from), CallID: callID, CryptoV: cryptoV, Payload: payload, ID: id}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Fatalf("AppendJSON = %q, json.Marshal = %q", got[1:], want)
		}
	})
}
