package ice

import (
	"strings"
	"testing"
)

// Every parser must not panic on any input, and whatever it accepts must
// form a valid §9.4 config.

func checkServers(t *testing.T, servers []Server) {
	t.Helper()
	cfg := Config{TTL: 1, ICETransportPolicy: PolicyAll, ICEServers: servers}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("parser accepted servers that fail Validate: %v\n%+v", err, servers)
	}
	if !hasTURN(servers) {
		t.Fatalf("parser accepted an answer without TURN: %+v", servers)
	}
	for _, s := range servers {
		for _, raw := range s.URLs {
			if u, _ := parseICEURL(raw); u.port == blockedPort {
				t.Fatalf("port-53 URL kept: %q", raw)
			}
		}
	}
}

var upstreamSeeds = []string{
	`{"iceServers":[{"urls":["stun:stun.cloudflare.com:3478"]},{"urls":["turn:turn.cloudflare.com:3478?transport=udp","turn:turn.cloudflare.com:53?transport=udp"],"username":"u","credential":"c"}]}`,
	`{"iceServers":{"urls":["turns:turn.cloudflare.com:443?transport=tcp"],"username":"u","credential":"c"}}`,
	`{"ttl":"86400","date_created":"Mon, 23 Nov 2026 19:00:00 +0000","ice_servers":[{"url":"turn:global.turn.twilio.com:3478?transport=udp","urls":"turn:global.turn.twilio.com:3478?transport=udp","username":"u","credential":"c"}]}`,
	`[{"urls":"stun:stun.relay.metered.ca:80"},{"urls":"turn:global.relay.metered.ca:80","username":"u","credential":"c"}]`,
	`[{"urls":["turn:[2001:db8::1]:3478?transport=tcp",1,null],"username":7,"credential":{"a":1}}]`,
	`{"iceServers":null}`, `null`, `[]`, `{}`, `"x"`, `[{"urls":{"x":[1,2]}}]`,
}

func fuzzParser(f *testing.F, parse func([]byte) ([]Server, error)) {
	for _, s := range upstreamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		servers, err := parse(body)
		if err == nil {
			checkServers(t, servers)
		}
	})
}

func FuzzParseCloudflare(f *testing.F) { fuzzParser(f, parseCloudflare) }

func FuzzParseMetered(f *testing.F) { fuzzParser(f, parseMetered) }

func FuzzParseTwilio(f *testing.F) {
	fuzzParser(f, func(b []byte) ([]Server, error) {
		tok, err := parseTwilio(b)
		if err == nil && (tok.ttl < 0 || tok.ttl > twilioMaxTTL) {
			panic("ttl out of range")
		}
		return tok.servers, err
	})
}

func FuzzParseICEURL(f *testing.F) {
	for _, s := range []string{
		"stun:stun.l.google.com:19302", "turns:[2001:db8::1]:443?transport=tcp", "turn:a:1?transport=udp",
		"stun:[::1", "turn:x:99999", "turn:x?transport=", "stuns:1.2.3.4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseICEURL(s)
		if err != nil {
			return
		}
		if u.port < 1 || u.port > 65535 || u.host == "" {
			t.Fatalf("parseICEURL(%q) = %+v", s, u)
		}
		if !u.isTURN() && strings.Contains(s, "?") {
			t.Fatalf("stun URL with query accepted: %q", s)
		}
		// Re-serialising gives a URL that parses to the same thing.
		again := u.scheme + ":" + hostForURL(u.host) + ":" + itoa(u.port)
		if u.transport != "" {
			again += "?transport=" + u.transport
		}
		if v, err := parseICEURL(again); err != nil || v != u {
			t.Fatalf("parseICEURL(%q) = %+v, but %q gives %+v, %v", s, u, again, v, err)
		}
	})
}
