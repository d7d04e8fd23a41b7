package wire

import (
	"fmt"
	"strings"
	"testing"
)

// chromeSDP is an SDP offer of a realistic size (about 4 KB) for an audio
// and video call.
var chromeSDP = func() string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n")
	for mid, kind := range []string{"audio", "video"} {
		fmt.Fprintf(&b, "m=%s 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n", kind)
		b.WriteString("a=ice-ufrag:F7gI\r\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\na=ice-options:trickle\r\n")
		b.WriteString("a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n")
		fmt.Fprintf(&b, "a=setup:actpass\r\na=mid:%d\r\na=sendrecv\r\na=msid:stream track%d\r\na=rtcp-mux\r\na=rtcp-rsize\r\n", mid, mid)
		for pt := 96; pt < 108; pt++ {
			fmt.Fprintf(&b, "a=rtpmap:%d VP8/90000\r\na=rtcp-fb:%d goog-remb\r\na=rtcp-fb:%d transport-cc\r\na=rtcp-fb:%d nack pli\r\n", pt, pt, pt, pt)
		}
	}
	return b.String()
}()

func benchBodies() map[string]Body {
	return map[string]Body{
		"offer": OfferPayload{SDP: chromeSDP, EPK: testEPK},
		"ice":   ICEPayload{Candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0", SDPMid: ptr("0"), SDPMLine: ptr(0)},
	}
}

func BenchmarkSeal(b *testing.B) {
	for name, body := range benchBodies() {
		b.Run(name, func(b *testing.B) {
			p := newPair(b)
			m := p.msg(body)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.a.Seal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen opens distinct sealed frames (each nonce once), with a fresh
// session and replay guard every batch so the guard stays below its cap.
func BenchmarkOpen(b *testing.B) {
	for name, body := range benchBodies() {
		b.Run(name, func(b *testing.B) {
			p := newPair(b)
			const batch = 1024
			envs := make([]*Envelope, batch)
			for i := range envs {
				envs[i] = p.seal(b, p.msg(body))
			}
			s := p.bob.session(b, p.alice, p.clock, nil)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == batch {
					i = 0
					s = p.bob.session(b, p.alice, p.clock, nil)
				}
				if _, err := s.Open(envs[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	data := []byte(`{"type":"call_ice","from":"u11111111","to":"u22222222","call_id":"call-1","candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx","sdpMid":"0","sdpMLineIndex":0,"_ts":1780000000000,"_nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonicalize(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEnvelope is the relay's per-frame decode of an envelope (a
// call_ice with its id).
func BenchmarkDecodeEnvelope(b *testing.B) {
	data := []byte(`{"type":"call_ice","to":"u22222222","from":"u11111111","call_id":"call-1","crypto_v":2,"id":"m-1","payload":"` + strings.Repeat("QUJD", 60) + `"}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEnvelope(data); err != nil {
			b.Fatal(err)
		}
	}
}
