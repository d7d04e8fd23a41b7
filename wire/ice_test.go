package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestNormalizeICE(t *testing.T) {
	const cand = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"
	full := ICEPayload{Candidate: cand, SDPMid: ptr("0"), SDPMLine: ptr(0)}
	for _, tc := range []struct {
		name, in string
		want     ICEPayload
	}{
		{"browser", `{"candidate":"` + cand + `","sdpMid":"0","sdpMLineIndex":0}`, full},
		{"canonical", `{"candidate":"` + cand + `","sdp_mid":"0","sdp_mline":0}`, full},
		{"both spellings agreeing", `{"candidate":"` + cand + `","sdp_mid":"0","sdpMid":"0","sdp_mline":0,"sdpMLineIndex":0}`, full},
		{"mixed spellings", `{"candidate":"` + cand + `","sdpMid":"0","sdp_mline":0}`, full},
		{"nulls", `{"candidate":"c","sdpMid":null,"sdpMLineIndex":null}`, ICEPayload{Candidate: "c"}},
		{"both null", `{"candidate":"c","sdp_mid":null,"sdpMid":null}`, ICEPayload{Candidate: "c"}},
		{"absent", `{"candidate":"c"}`, ICEPayload{Candidate: "c"}},
		{"end of candidates", `{"candidate":"","sdpMid":"1","sdpMLineIndex":1}`, ICEPayload{SDPMid: ptr("1"), SDPMLine: ptr(1)}},
		{"mid only", `{"candidate":"c","sdp_mid":"audio"}`, ICEPayload{Candidate: "c", SDPMid: ptr("audio")}},
		{"largest line index", `{"candidate":"c","sdp_mline":65535}`, ICEPayload{Candidate: "c", SDPMLine: ptr(65535)}},
		{"whitespace and escapes", " {\"candidate\" : \"a\\u0062\" }\n", ICEPayload{Candidate: "ab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeICE([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("NormalizeICE = %#v, want %#v", got, tc.want)
			}
			// Emitted canonically, and stable.
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(out, &keys); err != nil {
				t.Fatal(err)
			}
			if len(keys) != 3 || keys["candidate"] == nil || keys["sdp_mid"] == nil || keys["sdp_mline"] == nil {
				t.Fatalf("emitted %s, want exactly candidate, sdp_mid and sdp_mline", out)
			}
			again, err := NormalizeICE(out)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("NormalizeICE(%s) = %#v, %v", out, again, err)
			}
		})
	}
}

func TestNormalizeICERejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not JSON", `candidate`},
		{"array", `["c"]`},
		{"null", `null`},
		{"missing candidate", `{"sdpMid":"0","sdpMLineIndex":0}`},
		{"candidate null", `{"candidate":null}`},
		{"candidate number", `{"candidate":1}`},
		{"mid disagrees", `{"candidate":"c","sdp_mid":"0","sdpMid":"1"}`},
		{"mid null vs value", `{"candidate":"c","sdp_mid":null,"sdpMid":"0"}`},
		{"mid value vs null", `{"candidate":"c","sdp_mid":"0","sdpMid":null}`},
		{"line disagrees", `{"candidate":"c","sdp_mline":0,"sdpMLineIndex":1}`},
		{"line null vs value", `{"candidate":"c","sdp_mline":null,"sdpMLineIndex":0}`},
		{"mid number", `{"candidate":"c","sdpMid":0}`},
		{"mid number in canonical", `{"candidate":"c","sdp_mid":0}`},
		{"line string", `{"candidate":"c","sdpMLineIndex":"0"}`},
		{"line negative", `{"candidate":"c","sdp_mline":-1}`},
		{"line too large", `{"candidate":"c","sdpMLineIndex":65536}`},
		{"line fraction", `{"candidate":"c","sdpMLineIndex":0.5}`},
		{"line boolean", `{"candidate":"c","sdp_mline":true}`},
		{"unknown key", `{"candidate":"c","usernameFragment":"abcd"}`},
		{"other case", `{"candidate":"c","SDPMid":"0"}`},
		{"duplicate key", `{"candidate":"c","candidate":"d"}`},
		{"invalid UTF-8", "{\"candidate\":\"\xff\"}"},
		{"trailing data", `{"candidate":"c"}x`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeICE([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("NormalizeICE(%s) = %+v, %v; want ErrMalformed", tc.in, got, err)
			}
			if !reflect.DeepEqual(got, ICEPayload{}) {
				t.Errorf("NormalizeICE returned %+v with its error", got)
			}
		})
	}
}
