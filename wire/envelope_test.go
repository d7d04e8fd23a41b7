package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const validEnvelope = `{"type":"call_offer","to":"u12345678","from":"u87654321","call_id":"c-1_A","crypto_v":2,"payload":"AAAA","id":"m1"}`

func TestDecodeEnvelope(t *testing.T) {
	e, err := DecodeEnvelope([]byte(validEnvelope))
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{Type: TypeCallOffer, To: "u12345678", From: "u87654321", CallID: "c-1_A", CryptoV: 2, Payload: "AAAA", ID: "m1"}
	if *e != want {
		t.Fatalf("DecodeEnvelope = %+v, want %+v", *e, want)
	}
	enc, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeEnvelope(enc)
	if err != nil || *again != want {
		t.Fatalf("DecodeEnvelope(Encode) = %+v, %v", again, err)
	}

	// Whitespace, member order and an absent id are fine; so is a type the
	// relay does not know (it answers unknown_type).
	e, err = DecodeEnvelope([]byte(" {\"payload\":\"AAAA\", \"crypto_v\":2,\n\"call_id\":\"x\",\"from\":\"u00000001\",\"to\":\"u00000002\",\"type\":\"chat\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "" || e.Type != "chat" || e.Type.IsCall() {
		t.Fatalf("got %+v", e)
	}
}

// TestDecodeEnvelopeRejects covers every rejection: each case edits one
// thing in a valid envelope.
func TestDecodeEnvelopeRejects(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(validEnvelope, old) {
			t.Fatalf("test bug: %q not in the valid envelope", old)
		}
		return strings.Replace(validEnvelope, old, new, 1)
	}
	long := strings.Repeat("a", MaxIDLen+1)
	for _, tc := range []struct {
		name, in    string
		cryptoVErr  bool // must also wrap ErrCryptoVersion
		mustContain string
	}{
		{name: "empty", in: ""},
		{name: "not JSON", in: "hello"},
		{name: "array", in: "[" + validEnvelope + "]"},
		{name: "null", in: "null"},
		{name: "string", in: `"x"`},
		{name: "trailing data", in: validEnvelope + "{}"},
		{name: "truncated", in: validEnvelope[:len(validEnvelope)-1]},
		{name: "too large", in: edit(`"AAAA"`, `"`+strings.Repeat("A", MaxEnvelopeSize)+`"`), mustContain: "limit"},
		{name: "unknown field", in: edit(`"id":"m1"`, `"id":"m1","extra":1`), mustContain: "unknown field"},
		{name: "field name in another case", in: edit(`"to"`, `"To"`), mustContain: "unknown field"},
		{name: "duplicate field", in: edit(`"id":"m1"`, `"id":"m1","to":"u12345678"`), mustContain: "duplicate"},
		{name: "type not a string", in: edit(`"call_offer"`, `7`)},
		{name: "to null", in: edit(`"u12345678"`, `null`)},
		{name: "payload object", in: edit(`"AAAA"`, `{}`)},
		{name: "id number", in: edit(`"m1"`, `1`)},
		{name: "crypto_v string", in: edit(`"crypto_v":2`, `"crypto_v":"2"`)},
		{name: "crypto_v float", in: edit(`"crypto_v":2`, `"crypto_v":2.0`)},
		{name: "crypto_v 1", in: edit(`"crypto_v":2`, `"crypto_v":1`), cryptoVErr: true},
		{name: "crypto_v 3", in: edit(`"crypto_v":2`, `"crypto_v":3`), cryptoVErr: true},
		{name: "crypto_v missing", in: edit(`"crypto_v":2,`, ``), cryptoVErr: true},
		{name: "type missing", in: edit(`"type":"call_offer",`, ``), mustContain: "missing type"},
		{name: "type empty", in: edit(`"call_offer"`, `""`)},
		{name: "type too long", in: edit(`"call_offer"`, `"`+long+`"`)},
		{name: "to missing", in: edit(`"to":"u12345678",`, ``), mustContain: "to:"},
		{name: "to invalid", in: edit(`"u12345678"`, `"bob"`), mustContain: "to:"},
		{name: "from missing", in: edit(`"from":"u87654321",`, ``), mustContain: "from:"},
		{name: "from invalid", in: edit(`"u87654321"`, `"u8765432"`), mustContain: "from:"},
		{name: "call_id missing", in: edit(`"call_id":"c-1_A",`, ``), mustContain: "call_id"},
		{name: "call_id bad character", in: edit(`"c-1_A"`, `"c 1"`), mustContain: "call_id"},
		{name: "call_id too long", in: edit(`"c-1_A"`, `"`+long+`"`), mustContain: "call_id"},
		{name: "id empty", in: edit(`"m1"`, `""`), mustContain: "id"},
		{name: "id bad character", in: edit(`"m1"`, `"m/1"`), mustContain: "id"},
		{name: "id too long", in: edit(`"m1"`, `"`+long+`"`), mustContain: "id"},
		{name: "payload missing", in: edit(`"payload":"AAAA",`, ``), mustContain: "payload"},
		{name: "payload empty", in: edit(`"AAAA"`, `""`), mustContain: "payload"},
		{name: "payload too long", in: edit(`"AAAA"`, `"`+strings.Repeat("A", MaxPayloadSize+1)+`"`), mustContain: "payload"},
		{name: "invalid UTF-8", in: edit(`"m1"`, "\"m\xff\"")},
		{name: "float elsewhere", in: edit(`"id":"m1"`, `"id":"m1","x":0.5`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := DecodeEnvelope([]byte(tc.in))
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("DecodeEnvelope = %+v, %v; want ErrEnvelope", e, err)
			}
			if e != nil {
				t.Errorf("DecodeEnvelope returned an envelope with its error")
			}
			if got := errors.Is(err, ErrCryptoVersion); got != tc.cryptoVErr {
				t.Errorf("errors.Is(%v, ErrCryptoVersion) = %v, want %v", err, got, tc.cryptoVErr)
			}
			if !strings.Contains(err.Error(), tc.mustContain) {
				t.Errorf("error %q does not mention %q", err, tc.mustContain)
			}
		})
	}
}

func TestEnvelopeEncodeValidates(t *testing.T) {
	e := Envelope{Type: TypeCallHangup, To: "u12345678", From: "u87654321", CallID: "c", CryptoV: 1, Payload: "AAAA"}
	if _, err := e.Encode(); !errors.Is(err, ErrCryptoVersion) {
		t.Fatalf("Encode with crypto_v 1: %v, want ErrCryptoVersion", err)
	}
	e.CryptoV = 2
	e.From = "nobody"
	if _, err := e.Encode(); !errors.Is(err, ErrEnvelope) {
		t.Fatalf("Encode with an invalid from: %v, want ErrEnvelope", err)
	}
}

// TestDecodeEnvelopeBorrowed: the borrowed decoding's payload is data's own
// bytes (not a copy); every other field is a copy.
func TestDecodeEnvelopeBorrowed(t *testing.T) {
	data := []byte(`{"type":"call_offer","to":"u12345678","from":"u87654321","call_id":"c1","crypto_v":2,"payload":"AAAA","id":"m1"}`)
	e, err := DecodeEnvelopeBorrowed(data)
	if err != nil {
		t.Fatal(err)
	}
	want := *e
	want.Payload = "BAAA"
	copy(data[bytes.Index(data, []byte(`"AAAA"`))+1:], "B")
	copy(data, bytes.Repeat([]byte{' '}, bytes.Index(data, []byte(`"payload"`))))
	if *e != want {
		t.Fatalf("after changing data: %+v, want %+v", *e, want)
	}
}
