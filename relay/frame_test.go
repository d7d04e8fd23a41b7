package relay

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

const self identity.Alias = "u12345678"

func TestDecodeFrame(t *testing.T) {
	tests := []struct {
		frame string
		code  errorCode // "" = accepted
		id    string
	}{
		{`{"type":"call_ice","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":2,"payload":"AA==","id":"i"}`, "", "i"},
		{`{"type":"call_ice","to":"u87654321","from":"u11111111","call_id":"c1","crypto_v":2,"payload":"AA==","id":"i"}`, codeSpoofedFrom, "i"},
		{`{"type":"call_ice","to":"u87654321","call_id":"c1","crypto_v":2,"payload":"AA=="}`, codeMalformed, ""},
		{`{"type":"call_ice","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":1,"payload":"AA==","id":"v"}`, codeCryptoVersion, "v"},
		{`{"type":"call_ice","to":"u87654321","from":"u12345678","call_id":"c1","payload":"AA=="}`, codeCryptoVersion, ""},
		{`{"type":"msg","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":2,"payload":"AA==","id":"m"}`, codeUnknownType, "m"},
		{`{"type":"hello","id":"bad id"}`, codeUnknownType, ""},
		{`{"type":"","id":"x"}`, codeUnknownType, "x"},
		{`{"id":"x"}`, codeMalformed, ""},
		{`null`, codeMalformed, ""},
		{`"call_ice"`, codeMalformed, ""},
		{`{"type":"call_ice"} {}`, codeMalformed, ""},
		{``, codeMalformed, ""},
		{`{"type":"call_ice","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":2,"payload":"AA==","id":"` + strings.Repeat("a", 65) + `"}`, codeMalformed, ""},
	}
	for _, tt := range tests {
		env, ferr := decodeFrame([]byte(tt.frame), self)
		switch {
		case tt.code == "" && ferr != nil:
			t.Errorf("%s: refused %v", tt.frame, ferr)
		case tt.code == "" && env.From != self:
			t.Errorf("%s: from %s", tt.frame, env.From)
		case tt.code != "" && (ferr == nil || ferr.Code != tt.code || ferr.ID != tt.id || ferr.Message == ""):
			t.Errorf("%s: got %v %+v, want %s id %q", tt.frame, env, ferr, tt.code, tt.id)
		}
	}
}

func TestDecodeAuth(t *testing.T) {
	sig := strings.Repeat("A", 86) + "=="
	good := `{"type":"auth","alias":"u12345678","signature":"` + sig + `"}`
	if a, s, err := decodeAuth([]byte(good)); err != nil || a != self || len(s) != 64 {
		t.Fatalf("decodeAuth(good) = %s %d %v", a, len(s), err)
	}
	for _, f := range []string{``, `{}`, `[]`, `{"type":"auth"}`, good + `{}`,
		`{"type":"auth","alias":"u1","signature":"` + sig + `"}`,
		`{"type":"auth","alias":"u12345678","signature":"AAAA"}`,
		`{"type":"auth","alias":"u12345678","signature":"` + sig + `","x":1}`,
		`{"type":"Auth","alias":"u12345678","signature":"` + sig + `"}`,
	} {
		if _, _, err := decodeAuth([]byte(f)); err == nil {
			t.Errorf("decodeAuth(%s) accepted", f)
		}
	}
}

// FuzzDecodeFrame checks that the frame decoders never panic, that an
// accepted envelope is a call envelope from the session's alias, and that
// what the relay forwards decodes to the same envelope.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"type":"call_offer","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":2,"payload":"AA==","id":"i"}`))
	f.Add([]byte(`{"type":"call_ice","to":"u87654321","from":"u12345678","call_id":"c1","crypto_v":1,"payload":"AA=="}`))
	f.Add([]byte(`{"type":"auth","alias":"u12345678","signature":"AAAA"}`))
	f.Add([]byte(`{"type":"x","id":5}`))
	f.Add([]byte(`{"type":"call_offer","from":"u12345678","from":"u87654321"}`))
	f.Add([]byte("\xff\x00{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, ferr := decodeFrame(data, self)
		if (env == nil) == (ferr == nil) {
			t.Fatalf("decodeFrame(%q) = %v, %v", data, env, ferr)
		}
		if ferr != nil {
			if ferr.ID != "" && !validNoticeID(ferr.ID) {
				t.Fatalf("notice echoes an invalid id %q", ferr.ID)
			}
			if b := encodeFrame(errorFrame{Type: "error", Code: ferr.Code, Message: ferr.Message, ID: ferr.ID}); !json.Valid(b) {
				t.Fatalf("notice %q is not JSON", b)
			}
		} else {
			if !env.Type.IsCall() || env.From != self || env.CryptoV != wire.CryptoV2 {
				t.Fatalf("accepted %+v", env)
			}
			out, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			again, err := wire.DecodeEnvelope(out)
			if err != nil || *again != *env {
				t.Fatalf("forwarded %q decodes to %+v, %v", out, again, err)
			}
		}
		if a, sig, err := decodeAuth(data); err == nil && (!a.Valid() || len(sig) != 64) {
			t.Fatalf("decodeAuth(%q) = %s %d", data, a, len(sig))
		}
		_ = frameID(data)
	})
}
