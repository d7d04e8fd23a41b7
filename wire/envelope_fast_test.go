package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// decodeEnvelopeTree is the decoder DecodeEnvelope replaced: it parses the
// whole JSON value, then looks at the members. FuzzDecodeEnvelopeSame checks
// that both accept and refuse the same inputs.
func decodeEnvelopeTree(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, ErrEnvelope
	}
	v, err := parseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	if v.kind != kindObject {
		return nil, ErrEnvelope
	}
	var e Envelope
	for i := range v.obj {
		f := &v.obj[i]
		var dst *string
		switch f.key {
		case "type":
			dst = (*string)(&e.Type)
		case "to":
			dst = (*string)(&e.To)
		case "from":
			dst = (*string)(&e.From)
		case "call_id":
			dst = &e.CallID
		case "payload":
			dst = &e.Payload
		case "id":
			dst = &e.ID
		case "crypto_v":
			if f.val.kind != kindNumber || f.val.num != CryptoV2 {
				return nil, ErrEnvelope
			}
			e.CryptoV = CryptoV2
			continue
		default:
			return nil, ErrEnvelope
		}
		if f.val.kind != kindString || f.key == "id" && f.val.str == "" {
			return nil, ErrEnvelope
		}
		*dst = f.val.str
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func FuzzDecodeEnvelopeSame(f *testing.F) {
	f.Add([]byte(validEnvelope))
	f.Add([]byte(`{"type":"call_ice","to":"u00000000","from":"u99999999","call_id":"a","crypto_v":2,"payload":"x","id":"i"}`))
	f.Add([]byte(`{"type":"call_ice","type":"call_ice"}`))
	f.Add([]byte(`{"type":{"a":1},"to":"u00000000"}`))
	f.Add([]byte(` {"crypto_v":02} `))
	f.Add([]byte(`{"payload":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeEnvelope(data)
		want, werr := decodeEnvelopeTree(data)
		if (err == nil) != (werr == nil) {
			t.Fatalf("DecodeEnvelope(%q) err %v, the tree decoder %v", data, err, werr)
		}
		if err != nil {
			if got != nil || !errors.Is(err, ErrEnvelope) {
				t.Fatalf("DecodeEnvelope = %+v, %v", got, err)
			}
			return
		}
		if *got != *want {
			t.Fatalf("DecodeEnvelope(%q) = %+v, the tree decoder %+v", data, got, want)
		}
	})
}

func TestDecodeEnvelopeFailsFast(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown first", `{"zz":` + strings.Repeat("[", 10000), `unknown field "zz"`},
		{"duplicate", `{"type":"call_ice","type":` + strings.Repeat("{", 100), `duplicate object key "type"`},
		{"object value", `{"type":{"a":` + strings.Repeat("[", 100), `type is a JSON object, want a string`},
		{"array", `[` + strings.Repeat(`"a",`, 100), `a JSON array, want an object`},
		{"crypto_v string", `{"crypto_v":"2"`, `crypto_v is a JSON string, want an integer`},
	} {
		_, err := DecodeEnvelope([]byte(tc.in))
		if err == nil || !errors.Is(err, ErrEnvelope) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestEnvelopeHead(t *testing.T) {
	for _, tc := range []struct {
		in      string
		typ, id string
		ok      bool
	}{
		{validEnvelope, "call_offer", "m1", true},
		{`{"a":[1,{"b":"}"}],"id":"x-1","type":"auth"}`, "auth", "x-1", true},
		{`{"type":7,"id":["a"],"c":{"d":{"e":[]}}}`, "", "", true},
		{`{"type":"call_ice"`, "", "", false},
		{`{"a":` + strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1) + `}`, "", "", false},
		{`[1]`, "", "", false},
		{`{} x`, "", "", false},
		{`{"type":"call_ice","id":"a","type":7,"id":null}`, "", "", true}, // the last counts
		{`{"tYpe":"call_ice","ID":"a"}`, "", "", true},                    // keys are exact
	} {
		h, ok := EnvelopeHead([]byte(tc.in))
		typ, id := h.Type, h.ID
		if string(typ) != tc.typ || id != tc.id || ok != tc.ok {
			t.Errorf("EnvelopeHead(%.40q) = %q, %q, %v; want %q, %q, %v", tc.in, typ, id, ok, tc.typ, tc.id, tc.ok)
		}
	}
}

func FuzzEnvelopeHead(f *testing.F) {
	f.Add([]byte(validEnvelope))
	f.Add([]byte(`{"a":[1,{"b":"}"}],"id":"x-1","type":"auth"}`))
	f.Add([]byte(`{"a":[[[{"x":[]}]]],"type":"t"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := EnvelopeHead(data)
		typ, id := h.Type, h.ID
		if !ok {
			return
		}
		// On a JSON object encoding/json accepts, EnvelopeHead finds what
		// it finds (the last of duplicate keys, as encoding/json does).
		if !json.Valid(data) {
			return
		}
		wantType, wantID, comparable := jsonHead(data)
		if !comparable {
			return
		}
		wt, isStr := wantType.(string)
		if isStr != h.HasType {
			t.Fatalf("EnvelopeHead(%q) HasType %v", data, h.HasType)
		}
		wid, _ := wantID.(string)
		if string(typ) != wt || id != wid {
			t.Fatalf("EnvelopeHead(%q) = %q, %q; encoding/json %q, %q", data, typ, id, wt, wid)
		}
	})
}

// jsonHead is FuzzEnvelopeHead's oracle: the last "type" and "id" members
// of a valid top-level JSON object, by encoding/json's tokens, with keys
// compared exactly (decoding into a struct would match "tYpe" too: the
// wire's keys are exact). comparable is false when a key spelled with
// escapes reads "type" or "id" (EnvelopeHead compares keys raw) and
// when data is not an object.
func jsonHead(data []byte) (typ, id any, comparable bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, false
	}
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, false
		}
		key, _ := tok.(string)
		raw := data[start:dec.InputOffset()]
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		if key != "type" && key != "id" {
			continue
		}
		if bytes.IndexByte(raw, '\\') >= 0 {
			return nil, nil, false
		}
		if key == "type" {
			typ = v
		} else {
			id = v
		}
	}
	return typ, id, true
}

// BenchmarkDecodeEnvelopeRefused is the cost of refusing hostile frames of
// 64 KiB: the object of ~10k keys (unknown keys, or a known key
// repeated), deep nesting, and an unknown key after a full payload (the
// worst case: the whole input is read). Compare ns/op with the bytes.
func BenchmarkDecodeEnvelopeRefused(b *testing.B) {
	keys := func(key func(i int) string) []byte {
		var sb strings.Builder
		sb.WriteByte('{')
		for i := 0; sb.Len() < MaxEnvelopeSize-20; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `"%s":0`, key(i))
		}
		sb.WriteByte('}')
		return []byte(sb.String())
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"10k-unknown-keys", keys(func(i int) string { return fmt.Sprintf("k%d", i) })},
		{"10k-keys-last-unknown", []byte(`{"type":"call_ice","to":"u22222222","from":"u11111111","call_id":"c","crypto_v":2,"payload":"` + strings.Repeat("A", MaxPayloadSize) + `","zz":1}`)},
		{"repeated-key", keys(func(int) string { return "type" })},
		{"nesting", []byte(`{"type":` + strings.Repeat("[", MaxEnvelopeSize-10) + `}`)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeEnvelope(c.data); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
	b.Run("tree-decoder-10k-unknown-keys", func(b *testing.B) { // the decoder before
		data := cases[0].data
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := decodeEnvelopeTree(data); err == nil {
				b.Fatal("accepted")
			}
		}
	})
	b.Run("head-10k-keys", func(b *testing.B) {
		data := cases[0].data
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			EnvelopeHead(data)
		}
	})
}
