package ice

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseICEURL(t *testing.T) {
	valid := map[string]iceURL{
		"stun:stun.l.google.com:19302":              {"stun", "stun.l.google.com", 19302, ""},
		"stun:stun.example.org":                     {"stun", "stun.example.org", 3478, ""},
		"stuns:stun.example.org":                    {"stuns", "stun.example.org", 5349, ""},
		"stun:192.0.2.1:3478":                       {"stun", "192.0.2.1", 3478, ""},
		"stun:[2001:db8::1]:3478":                   {"stun", "2001:db8::1", 3478, ""},
		"stun:[2001:db8::1]":                        {"stun", "2001:db8::1", 3478, ""},
		"turn:turn.example.org":                     {"turn", "turn.example.org", 3478, ""},
		"turn:turn.example.org:80?transport=udp":    {"turn", "turn.example.org", 80, "udp"},
		"turn:turn.example.org:443?transport=tcp":   {"turn", "turn.example.org", 443, "tcp"},
		"turns:turn.example.org?transport=tcp":      {"turns", "turn.example.org", 5349, "tcp"},
		"turns:[2001:db8::2]:443?transport=tcp":     {"turns", "2001:db8::2", 443, "tcp"},
		"turn:turn.cloudflare.com:53?transport=udp": {"turn", "turn.cloudflare.com", 53, "udp"}, // valid; dropped by sanitize
		"turn:a-b_c.example:65535":                  {"turn", "a-b_c.example", 65535, ""},
	}
	for s, want := range valid {
		got, err := parseICEURL(s)
		if err != nil || got != want {
			t.Errorf("parseICEURL(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{
		"", "stun", "stun:", "http://example.org", "STUN:example.org", "stun://example.org",
		"stun:example.org?transport=udp", "stun:example.org?", "stuns:example.org?x=1",
		"turn:example.org?transport=sctp", "turn:example.org?transport=udp&x=1", "turn:example.org?",
		"turn:example.org?Transport=udp", "turn:example.org:0", "turn:example.org:65536", "turn:example.org:",
		"turn:example.org:+80", "turn:example.org:123456", "turn:user@example.org", "turn:example.org/path",
		"turn:example.org#frag", "turn:2001:db8::1", "turn:[2001:db8::1", "turn:[192.0.2.1]", "turn:[fe80::1%eth0]",
		"turn:[2001:db8::1]x", "turn:[2001:db8::1]:", "turn:exa mple.org", "turn:example..org", "turn:.example.org",
		"turn:" + strings.Repeat("a", 64) + ".org", "turn:" + strings.Repeat("a.", 300) + "org",
	} {
		if u, err := parseICEURL(s); err == nil {
			t.Errorf("parseICEURL(%q) = %+v, want an error", s, u)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{TTL: 600, ICETransportPolicy: PolicyAll, ICEServers: []Server{
		{URLs: []string{"stun:stun.example.org:3478"}},
		{URLs: []string{"turn:turn.example.org:3478?transport=udp"}, Username: "u", Credential: "c"},
	}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	mutate := func(f func(*Config)) Config {
		c := ok.clone()
		f(&c)
		return c
	}
	for name, c := range map[string]Config{
		"zero ttl":         mutate(func(c *Config) { c.TTL = 0 }),
		"negative ttl":     mutate(func(c *Config) { c.TTL = -1 }),
		"unknown policy":   mutate(func(c *Config) { c.ICETransportPolicy = "none" }),
		"empty policy":     mutate(func(c *Config) { c.ICETransportPolicy = "" }),
		"no servers":       mutate(func(c *Config) { c.ICEServers = nil }),
		"server no urls":   mutate(func(c *Config) { c.ICEServers[0].URLs = nil }),
		"stun with query":  mutate(func(c *Config) { c.ICEServers[0].URLs[0] = "stun:stun.example.org?transport=udp" }),
		"turn bad query":   mutate(func(c *Config) { c.ICEServers[1].URLs[0] = "turn:turn.example.org?transport=tls" }),
		"turn no username": mutate(func(c *Config) { c.ICEServers[1].Username = "" }),
		"turn no cred":     mutate(func(c *Config) { c.ICEServers[1].Credential = "" }),
		"turn beside stun": mutate(func(c *Config) { c.ICEServers[0].URLs = append(c.ICEServers[0].URLs, "turn:t.example.org") }),
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
	}
	relay := mutate(func(c *Config) { c.ICETransportPolicy = PolicyRelay })
	if err := relay.Validate(); err != nil {
		t.Errorf("Validate(relay) = %v", err)
	}
}

func TestConfigJSON(t *testing.T) {
	c := Config{TTL: 600, ICETransportPolicy: PolicyAll, ICEServers: []Server{
		{URLs: []string{"stun:host:3478"}},
		{URLs: []string{"turn:host:3478?transport=udp"}, Username: "1:u12345678", Credential: "x"},
	}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ttl":600,"ice_transport_policy":"all","ice_servers":[{"urls":["stun:host:3478"]},` +
		`{"urls":["turn:host:3478?transport=udp"],"username":"1:u12345678","credential":"x"}]}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
}

func TestSanitize(t *testing.T) {
	in := `[
		{"urls": "stun:a.example:3478", "username": "ignored", "credential": "ignored"},
		{"url": "turn:b.example:3478?transport=udp", "urls": "turn:b.example:3478?transport=udp", "username": "u", "credential": "c"},
		{"urls": ["turn:c.example:53?transport=udp", "turn:c.example:3478?transport=udp", 42, "stun:c.example:3478?x=1",
		          "turn:c.example:3478?transport=sctp", "turns:c.example:443?transport=tcp"], "username": "u", "credential": "c"},
		{"urls": ["turn:d.example:3478", "stun:d.example:3478"]},
		{"urls": ["turn:e.example:3478"], "username": "u", "credential": {"accessToken": "x"}},
		{"urls": ["turn:f.example:3478"], "username": "u", "credential": ""},
		{"urls": null},
		{"urls": {"x": 1}},
		{"urls": ["turn:g.example:3478"], "username": 12345, "credential": "c"},
		{"unknown": true}
	]`
	var entries []upstreamServer
	if err := json.Unmarshal([]byte(in), &entries); err != nil {
		t.Fatal(err)
	}
	got, err := sanitize(entries)
	if err != nil {
		t.Fatal(err)
	}
	want := []Server{
		{URLs: []string{"stun:a.example:3478"}},
		{URLs: []string{"turn:b.example:3478?transport=udp"}, Username: "u", Credential: "c"},
		{URLs: []string{"turn:c.example:3478?transport=udp", "turns:c.example:443?transport=tcp"}, Username: "u", Credential: "c"},
		{URLs: []string{"stun:d.example:3478"}},
		{URLs: []string{"turn:g.example:3478"}, Username: "12345", Credential: "c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sanitize =\n%+v\nwant\n%+v", got, want)
	}

	// Bounds.
	var many []upstreamServer
	for range 40 {
		e := upstreamServer{Username: "u", Credential: "c"}
		for j := range 40 {
			e.URLs = append(e.URLs, "turn:x.example:"+itoa(1000+j))
		}
		many = append(many, e)
	}
	got, err = sanitize(many)
	if err != nil || len(got) != maxServers || len(got[0].URLs) != maxURLsPerServer {
		t.Errorf("sanitize(40x40) = %d servers of %d URLs, %v; want %dx%d", len(got), len(got[0].URLs), err, maxServers, maxURLsPerServer)
	}

	// Nothing usable: STUN only, or nothing at all.
	for _, in := range []string{`[]`, `[{"urls":"stun:a.example"}]`, `[{"urls":"turn:a.example:53","username":"u","credential":"c"}]`} {
		var entries []upstreamServer
		json.Unmarshal([]byte(in), &entries)
		if _, err := sanitize(entries); !errors.Is(err, ErrNoUsableServers) {
			t.Errorf("sanitize(%s) = %v, want ErrNoUsableServers", in, err)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestParsers(t *testing.T) {
	turn := `{"urls":"turn:t.example:3478","username":"u","credential":"c"}`
	for name, tt := range map[string]struct {
		parse func([]byte) error
		body  string
		ok    bool
	}{
		"cloudflare array":      {cfParse, `{"iceServers":[` + turn + `]}`, true},
		"cloudflare object":     {cfParse, `{"iceServers":` + turn + `}`, true},
		"cloudflare null":       {cfParse, `{"iceServers":null}`, false},
		"cloudflare string":     {cfParse, `{"iceServers":"turn:x"}`, false},
		"cloudflare missing":    {cfParse, `{}`, false},
		"cloudflare not json":   {cfParse, `<html>`, false},
		"cloudflare bare array": {cfParse, `[` + turn + `]`, false},
		"twilio":                {twParse, `{"ttl":"86400","date_created":"Mon, 23 Nov 2026 19:00:00 +0000","ice_servers":[` + turn + `]}`, true},
		"twilio numeric ttl":    {twParse, `{"ttl":86400,"ice_servers":[` + turn + `]}`, true},
		"twilio no servers":     {twParse, `{"ttl":"86400"}`, false},
		"twilio servers object": {twParse, `{"ice_servers":` + turn + `}`, false},
		"metered":               {meParse, `[` + turn + `]`, true},
		"metered object":        {meParse, turn, false},
		"metered wrapped":       {meParse, `{"iceServers":[` + turn + `]}`, false},
	} {
		if err := tt.parse([]byte(tt.body)); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", name, err, tt.ok)
		}
	}

	tok, err := parseTwilio([]byte(`{"ttl":"3600","date_created":"Mon, 23 Nov 2026 19:00:00 +0000","ice_servers":[` + turn + `]}`))
	if err != nil || tok.ttl.Seconds() != 3600 || tok.created.Unix() != 1795460400 {
		t.Errorf("parseTwilio = ttl %v created %v (%d), %v", tok.ttl, tok.created, tok.created.Unix(), err)
	}
	tok, _ = parseTwilio([]byte(`{"ttl":"-5","date_created":"yesterday","ice_servers":[` + turn + `]}`))
	if tok.ttl != 0 || !tok.created.IsZero() {
		t.Errorf("parseTwilio(bad ttl and date) = %v %v, want zero values", tok.ttl, tok.created)
	}
}

func cfParse(b []byte) error { _, err := parseCloudflare(b); return err }
func twParse(b []byte) error { _, err := parseTwilio(b); return err }
func meParse(b []byte) error { _, err := parseMetered(b); return err }
