package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/internal/testnats"
	"github.com/duetcall/duet/relay"
)

func mapLookup(m map[string]string) lookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseRelayConfig(t *testing.T) {
	c, err := parseRelayConfig(nil, mapLookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != ":8080" || c.dataDir != "./duet-data" || c.natsURL != "" || c.kvReplicas != 0 || c.turnListen != ":3478" ||
		c.noTURN || c.forceRelay || !c.turnTCP || c.turnPublicHost == "" || c.publicHostSource != publicHostMachine {
		t.Errorf("defaults: %+v", c)
	}
	if ip, err := netip.ParseAddr(c.turnPublicHost); err != nil || !ip.Is4() || (ip.IsLoopback() && c.turnPublicHost != "127.0.0.1") {
		t.Errorf("default public host %q", c.turnPublicHost)
	}

	env := mapLookup(map[string]string{
		"DUET_ADDR": ":9000", "DUET_DATA_DIR": "/env", "DUET_NATS_URL": "nats://env:4222", "DUET_FORCE_RELAY": "true",
		"DUET_TURN_PUBLIC_HOST": "turn.example.com", "DUET_TURN_ALLOW_PEERS": "127.0.0.0/8, 10.1.2.3",
		"CF_TURN_KEY_ID": "k", "CF_TURN_API_TOKEN": "t", "TURN_HOST": "h", "TURN_SECRET": "s",
		"TWILIO_ACCOUNT_SID": "AC", "TWILIO_AUTH_TOKEN": "tw", "METERED_APP": "app", "METERED_API_KEY": "mk",
		"DUET_LOG_LEVEL": "debug", "DUET_KV_REPLICAS": "5",
	})
	c, err = parseRelayConfig([]string{"--addr", "127.0.0.1:1", "--force-relay=false", "--no-turn", "--kv-replicas", "3"}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := relayConfig{addr: "127.0.0.1:1", dataDir: "/env", natsURL: "nats://env:4222", turnListen: ":3478",
		turnPublicHost: "turn.example.com", noTURN: true,
		turnAllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.2.3/32")},
		logLevel:       -4, cfKeyID: "k", cfToken: "t", turnHost: "h", turnSecret: "s",
		twilioSID: "AC", twilioToken: "tw", meteredApp: "app", meteredKey: "mk"}
	if c.addr != want.addr || c.dataDir != want.dataDir || c.natsURL != want.natsURL || c.kvReplicas != 3 || c.turnPublicHost != want.turnPublicHost ||
		!c.noTURN || c.forceRelay || c.logLevel != want.logLevel || len(c.turnAllowPeers) != 2 ||
		c.turnAllowPeers[0] != want.turnAllowPeers[0] || c.turnAllowPeers[1] != want.turnAllowPeers[1] ||
		c.cfKeyID != "k" || c.cfToken != "t" || c.turnHost != "h" || c.turnSecret != "s" ||
		c.twilioSID != "AC" || c.twilioToken != "tw" || c.meteredApp != "app" || c.meteredKey != "mk" {
		t.Errorf("flags over env:\n got %+v\nwant %+v", c, want)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--bogus"}, nil},
		{[]string{"extra"}, nil},
		{[]string{"--turn-allow-peers", "10.0.0.0/33"}, nil},
		{[]string{"--turn-allow-peers", "nope"}, nil},
		{[]string{"--log-level", "loud"}, nil},
		{nil, map[string]string{"DUET_FORCE_RELAY": "maybe"}},
		{[]string{"--turn-listen", "localhost:3478"}, nil},
		{[]string{"--nats-url", "nats://n:4222", "--kv-replicas", "0"}, nil},
		{[]string{"--nats-url", "nats://n:4222", "--kv-replicas", "6"}, nil},
		{[]string{"--nats-url", "nats://n:4222", "--kv-replicas", "two"}, nil},
		{nil, map[string]string{"DUET_NATS_URL": "nats://n:4222", "DUET_KV_REPLICAS": "-1"}},
		{[]string{"--kv-replicas", "3"}, nil}, // the embedded NATS is one server
		{[]string{"--turn-listen", "127.0.0.1"}, nil},
		{[]string{"--turn-listen", "127.0.0.1:port"}, nil},
		{[]string{"--turn-listen", ":70000"}, nil},
	} {
		if _, err := parseRelayConfig(tc.args, mapLookup(tc.env)); !errors.Is(err, errUsage) {
			t.Errorf("parseRelayConfig(%q, %v) = %v, want a usage error", tc.args, tc.env, err)
		}
	}
	// TURN over TCP is on by default; each of these turns it off.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		tcp  bool
	}{
		{nil, nil, true},
		{[]string{"--no-turn-tcp"}, nil, false},
		{[]string{"--turn-tcp=false"}, nil, false},
		{nil, map[string]string{"DUET_NO_TURN_TCP": "1"}, false},
		{nil, map[string]string{"DUET_TURN_TCP": "false"}, false},
		{[]string{"--turn-tcp"}, map[string]string{"DUET_TURN_TCP": "false"}, true},
	} {
		c, err := parseRelayConfig(tc.args, mapLookup(tc.env))
		if err != nil || c.turnTCP != tc.tcp {
			t.Errorf("parseRelayConfig(%q, %v): turnTCP %v, %v; want %v", tc.args, tc.env, c.turnTCP, err, tc.tcp)
		}
	}
	for _, v := range []string{"--ws-ping-interval=-1s", "--ws-ping-timeout=0", "--ws-ping-interval=soon"} {
		if _, err := parseRelayConfig([]string{v}, mapLookup(nil)); !errors.Is(err, errUsage) {
			t.Errorf("%s: %v, want a usage error", v, err)
		}
	}
	if c, err := parseRelayConfig([]string{"--ws-ping-interval=5s", "--ws-ping-timeout=2s"}, mapLookup(nil)); err != nil || c.pingInterval != 5*time.Second || c.pingTimeout != 2*time.Second {
		t.Errorf("ping flags: %v %v %v", c.pingInterval, c.pingTimeout, err)
	}
	if _, err := parseRelayConfig([]string{"--help"}, mapLookup(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

// TestTURNPublicHostDefault: without --turn-public-host, a --turn-listen on
// a specific IP is what clients are told to reach; a listen on every
// interface advertises the machine's address.
// TestRedactURL: the credentials of every URL of a --nats-url list are
// hidden, and every server is still named.
func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://duet:s3cret@nats-1:4222", "nats://[redacted]@nats-1:4222"},
		{"nats://duet:p@ss@nats-1:4222", "nats://[redacted]@nats-1:4222"},
		{"duet:s3cret@nats-1:4222", "[redacted]@nats-1:4222"},
		{"nats://duet:a@nats-1:4222,nats://duet:b@nats-2:4222,nats://nats-3:4222",
			"nats://[redacted]@nats-1:4222,nats://[redacted]@nats-2:4222,nats://nats-3:4222"},
	} {
		if got := redactURL(c.in); got != c.want {
			t.Errorf("redactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTURNPublicHostDefault(t *testing.T) {
	machine := machinePublicHost()
	for _, tc := range []struct {
		args       []string
		env        map[string]string
		host, from string
	}{
		{nil, nil, machine, publicHostMachine},
		{[]string{"--turn-listen", ":3478"}, nil, machine, publicHostMachine},
		{[]string{"--turn-listen", "0.0.0.0:3478"}, nil, machine, publicHostMachine},
		{[]string{"--turn-listen", "[::]:3478"}, nil, machine, publicHostMachine},
		{[]string{"--turn-listen", "127.0.0.1:3478"}, nil, "127.0.0.1", publicHostListen},
		{[]string{"--turn-listen", "10.1.2.3:0"}, nil, "10.1.2.3", publicHostListen},
		{[]string{"--turn-listen", "[::ffff:10.1.2.3]:3478"}, nil, "10.1.2.3", publicHostListen},
		{[]string{"--turn-listen", "[2001:db8::1]:3478"}, nil, "2001:db8::1", publicHostListen},
		{nil, map[string]string{"DUET_TURN_LISTEN": "192.0.2.7:3478"}, "192.0.2.7", publicHostListen},
		{[]string{"--turn-listen", "127.0.0.1:3478", "--turn-public-host", "turn.example.com"}, nil, "turn.example.com", publicHostConfigured},
		{[]string{"--turn-listen", "127.0.0.1:3478"}, map[string]string{"DUET_TURN_PUBLIC_HOST": "192.0.2.9"}, "192.0.2.9", publicHostConfigured},
	} {
		c, err := parseRelayConfig(tc.args, mapLookup(tc.env))
		if err != nil {
			t.Errorf("parseRelayConfig(%q, %v): %v", tc.args, tc.env, err)
			continue
		}
		if c.turnPublicHost != tc.host || c.publicHostSource != tc.from {
			t.Errorf("parseRelayConfig(%q, %v): public host %q from %s, want %q from %s",
				tc.args, tc.env, c.turnPublicHost, c.publicHostSource, tc.host, tc.from)
		}
	}
	// --turn-listen is not used with --no-turn: not checked either.
	if _, err := parseRelayConfig([]string{"--no-turn", "--turn-listen", "nope"}, mapLookup(nil)); err != nil {
		t.Errorf("--no-turn with an unused --turn-listen: %v", err)
	}
}

func TestKVReplicas(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, 0}, // keep the buckets' count
		{[]string{"--kv-replicas", "1"}, nil, 1},
		{[]string{"--nats-url", "nats://n:4222", "--kv-replicas", "3"}, nil, 3},
		{nil, map[string]string{"DUET_NATS_URL": "nats://n:4222", "DUET_KV_REPLICAS": "5"}, 5},
		{[]string{"--kv-replicas", "2"}, map[string]string{"DUET_NATS_URL": "nats://n:4222", "DUET_KV_REPLICAS": "5"}, 2},
	} {
		c, err := parseRelayConfig(tc.args, mapLookup(tc.env))
		if err != nil || c.kvReplicas != tc.want {
			t.Errorf("parseRelayConfig(%q, %v): replicas %d, %v; want %d", tc.args, tc.env, c.kvReplicas, err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"--kv-replicas-lower"}, nil, true},
		{nil, map[string]string{"DUET_KV_REPLICAS_LOWER": "true"}, true},
	} {
		c, err := parseRelayConfig(tc.args, mapLookup(tc.env))
		if err != nil || c.kvReplicasLower != tc.want {
			t.Errorf("parseRelayConfig(%q, %v): lower %v, %v; want %v", tc.args, tc.env, c.kvReplicasLower, err, tc.want)
		}
	}
	_, err := parseRelayConfig([]string{"--kv-replicas", "3"}, mapLookup(nil))
	if err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Errorf("--kv-replicas 3 with the embedded NATS: %v, want an error naming --nats-url", err)
	}
}

func TestEnvLookupDotenv(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile(".env", []byte("DUET_ADDR=:1111\nDUET_DATA_DIR=/from-file\nCF_TURN_KEY_ID=file-key\n"), 0o600)
	t.Setenv("DUET_ADDR", ":2222")
	lookup, err := envLookup(".env")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseRelayConfig([]string{"--data-dir", "/from-flag"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != ":2222" || c.dataDir != "/from-flag" || c.cfKeyID != "file-key" {
		t.Errorf("precedence: addr %q (env), data dir %q (flag), CF key %q (.env)", c.addr, c.dataDir, c.cfKeyID)
	}
	os.WriteFile(".env", []byte("not valid\n"), 0o600)
	if _, err := envLookup(".env"); err == nil {
		t.Error("bad .env accepted")
	}
}

func TestRelayHelpAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"relay", "--help"}, strings.NewReader(""), &out, &errb); code != 0 || !strings.Contains(out.String(), "Examples:") ||
		!strings.Contains(out.String(), "CF_TURN_KEY_ID") || !strings.Contains(out.String(), "DUET_KV_REPLICAS") {
		t.Errorf("relay --help: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"relay", "--nope"}, strings.NewReader(""), &out, &errb); code != 2 || !strings.Contains(errb.String(), "nope") {
		t.Errorf("relay --nope: %d %q", code, errb.String())
	}
	out.Reset()
	run([]string{"help"}, strings.NewReader(""), &out, &errb)
	if !strings.Contains(out.String(), "duet relay") {
		t.Errorf("help does not list relay: %q", out.String())
	}
}

// TestRunRelay runs `duet relay` with the embedded NATS and TURN, registers
// a user, authenticates over the WebSocket, fetches its ICE configuration
// (the embedded TURN advertised at its --turn-listen IP) and stops the relay with a cancelled context (as a signal does).
func TestRunRelay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	r := startRunRelay(t, "--addr", "127.0.0.1:0", "--data-dir", dir, "--turn-listen", "127.0.0.1:0",
		"--turn-allow-peers", "127.0.0.0/8")
	defer r.stop() // before the leak check, if the test ends early
	base := "http://" + r.waitLog(t, regexp.MustCompile(`msg="relay: listening" addr=(\S+)`))[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	get := func(method, path, token string, body any, out any) int {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if s, ok := out.(*string); ok {
			*s = string(b)
		} else if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s: %s", path, b)
			}
		}
		return resp.StatusCode
	}
	if code := get("GET", "/readyz", "", nil, nil); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	if code := get("GET", "/api/v1/calls/ice-config", "", nil, nil); code != 401 {
		t.Errorf("ice-config without a token: %d", code)
	}

	// Register and authenticate.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	x := make([]byte, 32)
	rand.Read(x)
	var ch struct{ Challenge []byte }
	get("POST", "/api/v1/challenge", "", nil, &ch)
	b64 := base64.StdEncoding.EncodeToString
	var reg struct{ Alias string }
	if code := get("POST", "/api/v1/register", "", map[string]string{"ed25519": b64(pub), "x25519": b64(x),
		"challenge": b64(ch.Challenge), "signature": b64(ed25519.Sign(priv, relay.RegisterMessage(ch.Challenge, x)))}, &reg); code != 200 {
		t.Fatalf("register: %d", code)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	conn, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(base, "http")+"/api/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	var wsCh struct{ Challenge []byte }
	_, b, _ := conn.Read(wctx)
	json.Unmarshal(b, &wsCh)
	auth, _ := json.Marshal(map[string]string{"type": "auth", "alias": reg.Alias, "signature": b64(ed25519.Sign(priv, relay.WSAuthMessage(wsCh.Challenge)))})
	conn.Write(wctx, websocket.MessageText, auth)
	var ready struct{ Type, Token string }
	_, b, _ = conn.Read(wctx)
	json.Unmarshal(b, &ready)
	if ready.Type != "ready" || ready.Token == "" {
		t.Fatalf("ready: %s", b)
	}
	reconnect := make(chan string, 1)
	go func() {
		_, b, _ := conn.Read(context.Background())
		reconnect <- string(b)
	}()

	var cfg struct {
		TTL                int    `json:"ttl"`
		ICETransportPolicy string `json:"ice_transport_policy"`
		ICEServers         []struct {
			URLs                 []string
			Username, Credential string
		} `json:"ice_servers"`
	}
	if code := get("GET", "/api/v1/calls/ice-config", ready.Token, nil, &cfg); code != 200 {
		t.Fatalf("ice-config: %d", code)
	}
	turnRE := regexp.MustCompile(`^turn:127\.0\.0\.1:\d+\?transport=udp$`)
	found := false
	for _, s := range cfg.ICEServers {
		for _, u := range s.URLs {
			if turnRE.MatchString(u) && strings.HasSuffix(s.Username, ":"+reg.Alias) && s.Credential != "" {
				found = true
			}
		}
	}
	if !found || cfg.TTL <= 0 || cfg.ICETransportPolicy != "all" {
		t.Errorf("ice-config has no embedded TURN entry: %+v", cfg)
	}

	var js string
	if code := get("GET", "/sdk/duet.js", "", nil, &js); code != 200 || !strings.Contains(js, "export") {
		t.Errorf("/sdk/duet.js: %d %.80q", code, js)
	}
	var metrics string
	get("GET", "/metrics", "", nil, &metrics)
	for _, name := range []string{"duet_relay_sessions 1", "duet_turn_allocations_active", `duet_turn_dropped_total{reason="queue_full"} 0`, "duet_ice_config_requests_total", "go_goroutines"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	if code := r.stop(); code != 0 {
		t.Errorf("exit %d: %s", code, r.stderr.String())
	}
	if got := <-reconnect; got != `{"type":"reconnect"}` {
		t.Errorf("session got %q at shutdown, want reconnect", got)
	}
	logs := r.stderr.String()
	secretHex, _ := os.ReadFile(filepath.Join(dir, "turn-secret"))
	for _, secret := range []string{ready.Token, strings.TrimSpace(string(secretHex)), hex.EncodeToString(pub), cfg.ICEServers[len(cfg.ICEServers)-1].Credential} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret %q", secret)
		}
	}
	for _, want := range []string{"embedded STUN/TURN server", "nats: embedded server", "relay: listening", "relay: stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if testing.Verbose() {
		t.Log(logs)
	}
}

// TestRelayKVReplicasReachJetStream: --kv-replicas is what the directory
// buckets are created with: 3 on a single nats-server is refused by
// JetStream, and the relay says so and exits 1.
func TestRelayKVReplicasReachJetStream(t *testing.T) {
	ns := testnats.Start(t)
	var stdout, stderr syncbuf.Buffer
	code := runRelay(context.Background(), []string{"--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--no-turn",
		"--nats-url", ns.ClientURL(), "--kv-replicas", "3"}, &stdout, &stderr, mapLookup(nil))
	if code != 1 || !strings.Contains(stderr.String(), "replicas") {
		t.Errorf("exit %d, want 1 with a JetStream error about replicas: %s", code, stderr.String())
	}
}
