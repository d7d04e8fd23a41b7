package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestIsVideoOffer(t *testing.T) {
	for sdp, want := range map[string]bool{
		testSDP:                              true,
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n": true,
		"v=0\nm=video 9 RTP/AVP 96":          true,
		"v=0\r\nm=audio 9 RTP/AVP 111\r\n":   false,
		"":                                   false,
		"m=video":                            false, // no space: not an m-line for video
		"v=0\r\na=x:m=video 9\r\n":           false, // not at a line start
		" m=video 9":                         false,
		"v=0\r\nm=videox 9\r\n":              false,
		"v=0\r\nM=video 9\r\n":               false,
	} {
		if got := IsVideoOffer(sdp); got != want {
			t.Errorf("IsVideoOffer(%q) = %v, want %v", sdp, got, want)
		}
	}
}

func TestReasonValid(t *testing.T) {
	if len(Reasons) != 8 {
		t.Fatalf("%d reasons, want 8", len(Reasons))
	}
	want := []string{"user_hangup", "declined", "busy", "no_answer", "ice_failed", "media_timeout", "disconnected", "error"}
	for i, r := range Reasons {
		if string(r) != want[i] || !r.Valid() {
			t.Errorf("reason %d = %q (valid %v), want %q", i, r, r.Valid(), want[i])
		}
	}
	for _, r := range []Reason{"", "Busy", "hangup", "busy ", "timeout"} {
		if r.Valid() {
			t.Errorf("Reason(%q).Valid() = true", r)
		}
		if err := (HangupPayload{Reason: r}).Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("HangupPayload{%q}.Validate() = %v", r, err)
		}
	}
}

func TestBodyMessageTypes(t *testing.T) {
	bodies := []Body{OfferPayload{}, AnswerPayload{}, ICEPayload{}, RejectPayload{}, HangupPayload{}, RekeyPayload{}}
	for i, b := range bodies {
		if got, want := b.MessageType(), CallTypes[i]; got != want {
			t.Errorf("%T.MessageType() = %s, want %s", b, got, want)
		}
	}
}

// TestPayloadJSON: the payload types' encoding/json form is the §3 one.
func TestPayloadJSON(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{OfferPayload{SDP: "s", EPK: []byte{0xff, 0xfe}}, `{"epk":"//4=","sdp":"s"}`},
		{OfferPayload{SDP: "s", EPK: []byte{1}, ICERestart: true}, `{"epk":"AQ==","ice_restart":true,"sdp":"s"}`},
		{AnswerPayload{SDP: "s", EPK: []byte{1}}, `{"epk":"AQ==","sdp":"s"}`},
		{ICEPayload{Candidate: "c"}, `{"candidate":"c","sdp_mid":null,"sdp_mline":null}`},
		{ICEPayload{Candidate: "c", SDPMid: ptr("0"), SDPMLine: ptr(0)}, `{"candidate":"c","sdp_mid":"0","sdp_mline":0}`},
		{RejectPayload{Reason: ReasonDeclined}, `{"reason":"declined"}`},
		{HangupPayload{Reason: ReasonMediaTimeout}, `{"reason":"media_timeout"}`},
		{RekeyPayload{Epoch: 3, EPK: []byte{1}}, `{"epk":"AQ==","epoch":3}`},
	} {
		got, err := CanonicalMarshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("CanonicalMarshal(%+v) = %s, %v; want %s", tc.v, got, err, tc.want)
		}
	}
	// ICEPayload decodes either shape through encoding/json.
	var p struct{ ICE ICEPayload }
	if err := json.Unmarshal([]byte(`{"ICE":{"candidate":"c","sdpMid":"a","sdpMLineIndex":2}}`), &p); err != nil {
		t.Fatal(err)
	}
	if want := (ICEPayload{Candidate: "c", SDPMid: ptr("a"), SDPMLine: ptr(2)}); !reflect.DeepEqual(p.ICE, want) {
		t.Fatalf("json.Unmarshal = %+v", p.ICE)
	}
	if err := json.Unmarshal([]byte(`{"ICE":{"candidate":"c","bogus":1}}`), &p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("json.Unmarshal with an unknown key: %v", err)
	}
}

func TestOfferSendsVideo(t *testing.T) {
	for _, c := range []struct {
		sdp  string
		want bool
	}{
		{"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n", false},
		{"v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=mid:1\r\n", true},
		{"v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=sendrecv\r\n", true},
		{"v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=sendonly\r\n", true},
		{"v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=recvonly\r\n", false},
		{"v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\na=inactive\r\nm=audio 9 X 111\r\n", false},
		{"v=0\r\nm=video 0 X 96\r\na=sendrecv\r\n", false},
		{"v=0\nm=video 9 X 96\na=recvonly\nm=video 9 X 97\na=sendonly\n", true},
	} {
		if got := OfferSendsVideo(c.sdp); got != c.want {
			t.Errorf("OfferSendsVideo(%q) = %v, want %v", c.sdp, got, c.want)
		}
	}
}
