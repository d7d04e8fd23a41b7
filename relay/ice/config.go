package ice

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Transport policies (RTCIceTransportPolicy).
const (
	PolicyAll   = "all"   // host, server-reflexive and relay candidates
	PolicyRelay = "relay" // relay candidates only (operator-forced TURN)
)

// Server is one W3C RTCIceServer as sent to clients.
type Server struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Config is the body of GET /api/v1/calls/ice-config (docs/PROTOCOL.md §9.4).
type Config struct {
	// TTL is how long, in seconds, clients may cache this answer; it never
	// exceeds the remaining lifetime of the credentials in ICEServers.
	TTL int `json:"ttl"`
	// ICETransportPolicy is PolicyAll or PolicyRelay.
	ICETransportPolicy string `json:"ice_transport_policy"`
	// ICEServers is never empty.
	ICEServers []Server `json:"ice_servers"`
}

// Validate checks c against docs/PROTOCOL.md §9.4: a positive ttl, a known
// policy, at least one server, every server with at least one URL, stun(s)
// URLs without query, turn(s) URLs with at most transport=udp|tcp, and every
// server holding a turn(s) URL with a username and a credential.
func (c Config) Validate() error {
	if c.TTL <= 0 {
		return fmt.Errorf("%w: ttl %d, want > 0", ErrInvalidConfig, c.TTL)
	}
	if c.ICETransportPolicy != PolicyAll && c.ICETransportPolicy != PolicyRelay {
		return fmt.Errorf("%w: ice_transport_policy %q, want %q or %q",
			ErrInvalidConfig, c.ICETransportPolicy, PolicyAll, PolicyRelay)
	}
	if len(c.ICEServers) == 0 {
		return fmt.Errorf("%w: no ice_servers", ErrInvalidConfig)
	}
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			return fmt.Errorf("%w: ice_servers[%d] has no urls", ErrInvalidConfig, i)
		}
		for _, raw := range s.URLs {
			u, err := parseICEURL(raw)
			if err != nil {
				return fmt.Errorf("%w: ice_servers[%d]: %w", ErrInvalidConfig, i, err)
			}
			if u.isTURN() && (s.Username == "" || s.Credential == "") {
				return fmt.Errorf("%w: ice_servers[%d]: %s needs a username and a credential",
					ErrInvalidConfig, i, u.scheme)
			}
		}
	}
	return nil
}

func (c Config) clone() Config {
	c.ICEServers = cloneServers(c.ICEServers)
	return c
}

func cloneServers(in []Server) []Server {
	out := make([]Server, len(in))
	for i, s := range in {
		out[i] = s
		out[i].URLs = slices.Clone(s.URLs)
	}
	return out
}

func hasTURN(servers []Server) bool {
	for _, s := range servers {
		for _, raw := range s.URLs {
			if u, err := parseICEURL(raw); err == nil && u.isTURN() {
				return true
			}
		}
	}
	return false
}

// Bounds applied to what an upstream provider returns.
const (
	maxServers       = 16  // entries kept
	maxURLsPerServer = 16  // URLs kept per entry
	maxUsernameLen   = 509 // STUN USERNAME limit (RFC 8489 §14.3)
	maxCredentialLen = 1024
	maxUpstreamBody  = 1 << 20
	blockedPort      = 53 // browsers time out on TURN over port 53
)

// upstreamServer is an RTCIceServer as providers send it: "urls" a string or
// an array, sometimes a legacy "url" beside it (Twilio), fields of unexpected
// types tolerated and dropped during sanitising.
type upstreamServer struct {
	URLs       looseStrings `json:"urls"`
	URL        looseStrings `json:"url"`
	Username   looseString  `json:"username"`
	Credential looseString  `json:"credential"`
}

// looseStrings decodes a JSON string or array of strings; any other value
// (and non-string array elements) decode to nothing.
type looseStrings []string

func (l *looseStrings) UnmarshalJSON(b []byte) error {
	*l = nil
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = looseStrings{one}
		return nil
	}
	var many []json.RawMessage
	if json.Unmarshal(b, &many) == nil {
		for _, raw := range many {
			if json.Unmarshal(raw, &one) == nil {
				*l = append(*l, one)
			}
		}
	}
	return nil
}

// looseString decodes a JSON string, or a number as its literal text; any
// other value decodes to "".
type looseString string

func (l *looseString) UnmarshalJSON(b []byte) error {
	*l = ""
	var s string
	if json.Unmarshal(b, &s) == nil {
		*l = looseString(s)
		return nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&n) == nil {
		*l = looseString(n.String())
	}
	return nil
}

// sanitize turns upstream entries into servers clients can use: URLs
// normalised to arrays (with "url" merged into "urls"), invalid URLs and
// port-53 URLs dropped, turn(s) URLs dropped from entries lacking a username
// or credential, credentials dropped from stun-only entries, empty entries
// dropped, and the result bounded. It fails with ErrNoUsableServers when no
// turn(s) URL survives: every upstream provider is a TURN provider.
func sanitize(in []upstreamServer) ([]Server, error) {
	var out []Server
	dropped := 0
	for _, e := range in {
		if len(out) == maxServers {
			dropped++
			continue
		}
		user, cred := string(e.Username), string(e.Credential)
		hasCreds := user != "" && cred != "" && len(user) <= maxUsernameLen && len(cred) <= maxCredentialLen
		var urls []string
		anyTURN := false
		for _, raw := range slices.Concat(e.URLs, e.URL) {
			u, err := parseICEURL(raw)
			switch {
			case err != nil, u.port == blockedPort, u.isTURN() && !hasCreds,
				slices.Contains(urls, raw), len(urls) == maxURLsPerServer:
				dropped++
				continue
			}
			anyTURN = anyTURN || u.isTURN()
			urls = append(urls, raw)
		}
		if len(urls) == 0 {
			continue
		}
		s := Server{URLs: urls}
		if anyTURN {
			s.Username, s.Credential = user, cred
		}
		out = append(out, s)
	}
	if !hasTURN(out) {
		return nil, fmt.Errorf("%w (%d entries, %d URLs dropped)", ErrNoUsableServers, len(in), dropped)
	}
	return out, nil
}
