package call

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/media"
)

// Payload types and codec parameters. Only VP8 and Opus are registered: the
// H.264 packetisers parse the frame and break on ciphertext, and both SDKs
// negotiate these two explicitly (docs/PROTOCOL.md §8).
const (
	ptVP8  = 96
	ptOpus = 111
)

// dtlsRetransmit is the initial DTLS retransmission interval.
const dtlsRetransmit = 100 * time.Millisecond

// relayAcceptWait is how long pion's controlling agent waits, from the
// start of the checks, before it nominates a relayed pair when the policy
// is all (pion's default is 2 s). pion only ever nominates the best pair
// that has succeeded: a relayed pair is taken only when no direct pair has
// succeeded by then, and a peer-reflexive direct pair (1 s wait) is still
// preferred once it has. 1 s gives hole punching the time a peer-reflexive
// pair gets, and a call through symmetric NATs connects about 1 s sooner.
const relayAcceptWait = time.Second

// ICE timeouts of pion's agent: the first two are pion's defaults (the
// connection goes disconnected after 5 s without a packet from the peer,
// failed 25 s later). The agent checks the selected pair once per keepalive
// interval, 2 s by default, so a dead peer was noticed 5 to 7 s after its
// last packet; every second, 5 to 6 s, which keeps the disconnected path
// (then the 8 s timer) clear of the 15 s media timeout for a peer that
// vanished. pion's deadline for a call's first connectivity checks is their
// sum, 30 s: the call module uses its own, iceCheckDeadline (icediag.go).
const (
	iceDisconnected = 5 * time.Second
	iceFailed       = 25 * time.Second
	iceKeepalive    = time.Second
)

var (
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:  webrtc.MimeTypeVP8,
			ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{
				{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"},
				{Type: "nack"}, {Type: "nack", Parameter: "pli"},
			},
		},
		PayloadType: ptVP8,
	}
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:    webrtc.MimeTypeOpus,
			ClockRate:   48000,
			Channels:    2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: ptOpus,
	}
)

// newAPI builds the pion API of one call: a MediaEngine with VP8 and Opus
// only, the default interceptors (NACK, RTCP reports, stats, TWCC) and the
// SettingEngine (which tests adjust through a hook). A stats interceptor of
// our own, whose Getter goes to onGetter, provides the RTP figures of both
// directions (readPC; pion's GetStats is not used). relayOnly says the
// call's transport policy is relay.
func (m *Module) newAPI(n transport.Net, onGetter func(stats.Getter), relayOnly bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(vp8Codec, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("%w: registering VP8: %w", ErrMediaSetup, err)
	}
	if err := me.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("%w: registering Opus: %w", ErrMediaSetup, err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("%w: interceptors: %w", ErrMediaSetup, err)
	}
	sf, err := stats.NewInterceptor(stats.WithLoggerFactory(pionLogs{m.log}))
	if err != nil {
		return nil, fmt.Errorf("%w: stats interceptor: %w", ErrMediaSetup, err)
	}
	sf.OnNewPeerConnection(func(_ string, g stats.Getter) { onGetter(g) })
	ir.Add(sf)
	var se webrtc.SettingEngine
	se.LoggerFactory = pionLogs{m.log}
	if n != nil {
		se.SetNet(dialTimeoutNet{n}) // TCP dials to TURN bounded (tcpdial.go)
	}
	// pion retransmits a lost DTLS flight after 1 s; the first flight is
	// often lost when it arrives before the peer's ICE has selected the
	// pair, which made 1 s setup outliers. Chromium starts at 50 ms.
	se.SetDTLSRetransmissionInterval(dtlsRetransmit)
	// As DTLS server, answer the first ClientHello with the ServerHello,
	// without the HelloVerifyRequest cookie round trip: the cookie guards
	// against spoofed sources, but pion passes DTLS only from a candidate
	// pair that ICE checked with the credentials from the signaling (RFC
	// 9147 section 5.1 allows skipping it where ICE has established
	// bidirectional connectivity, as browsers' DTLS stacks do). A round trip
	// less on every call where this side is the DTLS server (the caller).
	se.SetDTLSInsecureSkipHelloVerify(true)
	se.SetICETimeouts(iceDisconnected, iceFailed, iceKeepalive)
	if relayOnly {
		// pion's controlling agent waits 2 s before it nominates a relayed
		// pair (1 s for a peer-reflexive one), in case a direct pair
		// succeeds meanwhile. With policy relay every local candidate is
		// relayed: there is nothing better to wait for (Chromium never
		// waits). A remote candidate first seen as a check's source is
		// peer-reflexive, here the peer's relayed address.
		se.SetRelayAcceptanceMinWait(0)
		se.SetPrflxAcceptanceMinWait(0)
	} else {
		se.SetRelayAcceptanceMinWait(relayAcceptWait)
	}
	// pion closes the whole connection on the peer's DTLS close_notify, on
	// a goroutine of its own, racing with the reads of its figures. The
	// module closes its connections itself: a peer that closed without its
	// call_hangup arriving is noticed the way a browser notices it, by ICE
	// going disconnected (then the 8 s timer).
	se.DisableCloseByDTLS(true)
	if m.hooks.settingEngine != nil {
		m.hooks.settingEngine(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// rtcConfig turns the relay's ICE configuration into a pion Configuration.
// The transport policy is relay when the module was built with AlwaysRelay
// or the relay forces it.
func (m *Module) rtcConfig(ice client.ICEConfig) webrtc.Configuration {
	cfg := webrtc.Configuration{
		ICETransportPolicy: webrtc.ICETransportPolicyAll,
		BundlePolicy:       webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy:      webrtc.RTCPMuxPolicyRequire,
	}
	if m.opts.AlwaysRelay || ice.ForceRelay() {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	// A TURN server reached over UDP answers STUN Binding requests too, and
	// pion gathers a server-reflexive candidate from every UDP TURN URL: a
	// STUN URL naming the same server would gather a second, identical one
	// (on a socket of its own), which doubles the candidate pairs that both
	// sides check during setup for nothing.
	turnUDP := make(map[string]bool)
	for _, s := range ice.ICEServers {
		for _, u := range s.URLs {
			if scheme, hp, udp := iceURLHostPort(u); scheme == "turn" && udp {
				turnUDP[hp] = true
			}
		}
	}
	for _, s := range ice.ICEServers {
		srv := webrtc.ICEServer{}
		for _, u := range s.URLs {
			if scheme, hp, _ := iceURLHostPort(u); scheme == "stun" && turnUDP[hp] {
				continue
			}
			srv.URLs = append(srv.URLs, u)
		}
		if len(srv.URLs) == 0 {
			continue
		}
		if s.Username != "" || s.Credential != "" {
			srv.Username = s.Username
			srv.Credential = s.Credential
			srv.CredentialType = webrtc.ICECredentialTypePassword
		}
		cfg.ICEServers = append(cfg.ICEServers, srv)
	}
	return cfg
}

// iceURLHostPort returns the lower-case scheme of a stun:, stuns:, turn: or
// turns: URL, its host:port (the port defaulting to 3478, or 5349 for the
// TLS schemes) and whether it is used over UDP. It returns an empty scheme
// for anything else.
func iceURLHostPort(u string) (scheme, hostPort string, udp bool) {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok {
		return "", "", false
	}
	scheme = strings.ToLower(scheme)
	rest, query, _ := strings.Cut(rest, "?")
	switch scheme {
	case "stun", "turn":
		udp = query == "" || strings.EqualFold(query, "transport=udp")
	case "stuns", "turns":
	default:
		return "", "", false
	}
	host, port := rest, ""
	if h, p, err := net.SplitHostPort(rest); err == nil {
		host, port = h, p
	}
	if port == "" {
		port = "3478"
		if scheme == "stuns" || scheme == "turns" {
			port = "5349"
		}
	}
	return scheme, net.JoinHostPort(strings.ToLower(strings.Trim(host, "[]")), port), udp
}

// mimeKind maps a negotiated codec to the media kind, "" for anything else.
func mimeKind(mime string) Kind {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return KindVideo
	case strings.EqualFold(mime, webrtc.MimeTypeOpus):
		return KindAudio
	}
	return ""
}

// codecOf returns the media package's codec name of kind.
func codecOf(k Kind) string {
	if k == KindVideo {
		return media.CodecVP8
	}
	return media.CodecOpus
}

// mLines returns the m= lines of an SDP with their direction, for the STEP
// logs (the seed's STEP 6.5 / ANSWER STEP 3.5 lines).
func mLines(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "m="):
			out = append(out, l)
		case l == "a=sendrecv" || l == "a=sendonly" || l == "a=recvonly" || l == "a=inactive":
			if len(out) > 0 {
				out[len(out)-1] += " " + l
			}
		}
	}
	return out
}
