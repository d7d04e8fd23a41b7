package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/vectors"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

const testSTUN = "stun:stun.duet.test:3478"

// startRelayNode starts a relay node with an embedded NATS under dataDir
// and a STUN-only ICE config.
func startRelayNode(t *testing.T, dataDir string) *relay.Server {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	resolver, err := ice.New(ice.Options{STUNURLs: []string{testSTUN}, Logger: logger})
	if err != nil {
		t.Fatalf("ice.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := relay.New(ctx, relay.Options{DataDir: dataDir, ICE: resolver, Logger: logger})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { shutdownRelay(t, srv) })
	return srv
}

func shutdownRelay(t *testing.T, srv *relay.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && err != relay.ErrClosed {
		t.Errorf("relay shutdown: %v", err)
	}
}

// page is one browser tab driving sdktest/relay.js.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
	log  *consoleLog
}

// openPages opens a browser with one tab per name, each at base's
// sdktest page with its console captured (printed when the test fails).
func openPages(t *testing.T, base string, names ...string) []*page {
	t.Helper()
	browser := newBrowser(t)
	var pages []*page
	for i, name := range names {
		ctx := browser
		if i > 0 {
			ctx = newTab(t, browser)
		}
		l, stop := captureConsole(ctx, name+": ")
		t.Cleanup(stop)
		pages = append(pages, &page{t: t, name: name, ctx: ctx, log: l})
		navigate(t, ctx, base+"/sdktest/index.html")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range pages {
				for _, line := range p.log.Lines() {
					t.Log(line)
				}
			}
		}
	})
	return pages
}

// call evaluates m.<expr> with m the relay.js module, failing the test with
// the JS error and the tab's console.
func call[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := evalJS[T](p.ctx, 25*time.Second, `import('/sdktest/relay.js').then(m => m.`+expr+`)`)
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, expr, err)
	}
	return v
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

type opened struct {
	Message map[string]any `json:"message"`
	ID      string         `json:"id"`
	Error   string         `json:"error"`
}

type notice struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	Code   string `json:"code"`
}

// TestClientThroughRelay runs two browser clients against a real
// in-process relay: registration, authentication, sealed envelopes both
// ways, safety numbers, relay notices, the ICE config cache, reconnecting
// after the relay node restarts, and key pinning.
func TestClientThroughRelay(t *testing.T) {
	dataDir := t.TempDir()
	var node atomic.Pointer[relay.Server]
	node.Store(startRelayNode(t, dataDir))
	mux := sdkMux()
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node.Load().Handler().ServeHTTP(w, r)
	}))
	srv := startServer(t, mux)

	pages := openPages(t, srv.URL, "alice", "bob")
	alice, bob := pages[0], pages[1]

	// Register (twice: the second gives the same alias) and connect.
	a := call[string](alice, fmt.Sprintf("setup(%s, 'alice')", jsString(vectors.AliceMnemonic)))
	b := call[string](bob, fmt.Sprintf("setup(%s, 'bob')", jsString(vectors.BobMnemonic)))
	if !identity.Alias(a).Valid() || !identity.Alias(b).Valid() || a == b {
		t.Fatalf("aliases %q and %q: want two distinct valid aliases", a, b)
	}

	// A video offer from Alice to Bob, and Bob's answer.
	sdp := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
	call[bool](alice, fmt.Sprintf("send({type: 'call_offer', to: %q, call_id: 'call-1', sdp: %s, epk: 'fresh'}, 'm1')", b, jsString(sdp)))
	got := call[opened](bob, "next(10000)")
	if got.Error != "" {
		t.Fatalf("bob could not open alice's offer: %s", got.Error)
	}
	want := map[string]any{"type": "call_offer", "from": a, "to": b, "call_id": "call-1", "sdp": sdp, "ice_restart": false}
	for k, v := range want {
		if got.Message[k] != v {
			t.Errorf("offer field %s = %#v, want %#v", k, got.Message[k], v)
		}
	}
	if epk, _ := got.Message["epk"].(string); len(epk) != 44 || got.ID != "m1" {
		t.Errorf("offer epk %q (want base64 of 32 bytes), id %q (want m1)", epk, got.ID)
	}
	call[bool](bob, fmt.Sprintf("send({type: 'call_answer', to: %q, call_id: 'call-1', sdp: 'v=0\\r\\n', epk: 'fresh'})", a))
	if got := call[opened](alice, "next(10000)"); got.Error != "" || got.Message["type"] != "call_answer" || got.Message["from"] != b {
		t.Fatalf("alice got %+v, want bob's call_answer", got)
	}

	// Both see the same safety number, and it is the Go SDK's.
	snA, snB := call[string](alice, fmt.Sprintf("safety(%q)", b)), call[string](bob, fmt.Sprintf("safety(%q)", a))
	goSN := identity.SafetyNumber(mustIdentity(t, vectors.AliceMnemonic).PublicKeys(), mustIdentity(t, vectors.BobMnemonic).PublicKeys())
	if snA != goSN || snB != goSN {
		t.Errorf("safety numbers: alice %q, bob %q, Go %q", snA, snB, goSN)
	}

	// The ICE config, fetched once and then served from the cache.
	iceRes := call[iceResult](alice, "ice()")
	if iceRes.Cfg.Policy != "all" || iceRes.Cfg.TTL <= 0 || len(iceRes.Cfg.Servers) == 0 || !strings.Contains(strings.Join(iceRes.Cfg.Servers[0].URLs, " "), testSTUN) {
		t.Errorf("ICE config %+v: want policy all, a ttl and %s", iceRes.Cfg, testSTUN)
	}
	if !iceRes.Same || iceRes.Requests != 1 {
		t.Errorf("ICE config: second call same=%v after %d requests; want it cached after 1", iceRes.Same, iceRes.Requests)
	}
	// Expiry: the config is kept for its ttl less a margin (a tenth, at most
	// a minute), then fetched again; the cache's clock is moved forward
	// through the internal test hook.
	ttlMS := iceRes.Cfg.TTL * 1000
	keep := ttlMS - min(ttlMS/10, 60_000)
	if keep <= 2000 {
		t.Fatalf("ICE config ttl %d s is too short for the expiry check", iceRes.Cfg.TTL)
	}
	type iceAt struct {
		Same     bool `json:"same"`
		Requests int  `json:"requests"`
	}
	if r := call[iceAt](alice, fmt.Sprintf("iceAt(%d)", keep-1000)); !r.Same || r.Requests != 1 {
		t.Errorf("ICE config a second before its cache expires: same=%v after %d requests; want the cached one", r.Same, r.Requests)
	}
	if r := call[iceAt](alice, fmt.Sprintf("iceAt(%d)", keep+1000)); r.Same || r.Requests != 2 {
		t.Errorf("ICE config a second after its cache expired (ttl %d s): same=%v after %d requests; want a second fetch", iceRes.Cfg.TTL, r.Same, r.Requests)
	}
	if iceRes.RTC.Policy != "relay" {
		t.Errorf("rtcConfiguration with alwaysRelay: iceTransportPolicy %q, want relay", iceRes.RTC.Policy)
	}

	// Relay notices: an offline recipient and a refused frame.
	offline := call[string](alice, "registerOffline()")
	call[bool](alice, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'call-2', reason: 'user_hangup'}, 'm9')", offline))
	if n := call[notice](alice, "nextNotice(10000)"); n.Kind != "undeliverable" || n.ID != "m9" || n.To != offline || n.Reason != "offline" {
		t.Errorf("notice %+v: want undeliverable m9 to %s (offline)", n, offline)
	}
	call[bool](alice, fmt.Sprintf("sendUnknownType(%q, 'bad1')", b))
	if n := call[notice](alice, "nextNotice(10000)"); n.Kind != "error" || n.Code != "unknown_type" || n.ID != "bad1" {
		t.Errorf("notice %+v: want error unknown_type for bad1", n)
	}

	// The relay node restarts: both clients reconnect by themselves, and
	// envelopes flow again.
	old := node.Load()
	shutdownRelay(t, old)
	node.Store(startRelayNode(t, dataDir))
	for _, p := range []*page{alice, bob} {
		states := call[string](p, "connectedCount(2, 20000)")
		t.Logf("%s reconnected: %s", p.name, states)
	}
	call[bool](alice, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'call-1', reason: 'user_hangup'})", b))
	if got := call[opened](bob, "next(10000)"); got.Error != "" || got.Message["type"] != "call_hangup" || got.Message["reason"] != "user_hangup" {
		t.Fatalf("after the restart bob got %+v, want alice's call_hangup", got)
	}

	// A key lookup that fails for a network reason (a call's fresh check)
	// keeps the session Bob holds for Alice.
	type lookupFails struct {
		Error string `json:"error"`
		Kept  bool   `json:"kept"`
	}
	if r := call[lookupFails](bob, fmt.Sprintf("keyLookupFails(%q)", a)); r.Error == "" || !r.Kept {
		t.Errorf("a failed fresh key lookup: %+v; want an error and the held session kept", r)
	}

	// Alice's signing key registers a new X25519 key: Bob's pin refuses the
	// changed key until he accepts it.
	if alias := call[string](alice, fmt.Sprintf("replaceAgreementKey(%s)", jsString(vectors.AliceMnemonic))); alias != a {
		t.Fatalf("re-registering alice's signing key gave %q, want %q", alias, a)
	}
	keys := call[keysResult](bob, fmt.Sprintf("peerKeys(%q)", a))
	if keys.OK || keys.Error != "ErrKeyChanged" {
		t.Fatalf("peerKeys after alice's key changed: %+v, want ErrKeyChanged", keys)
	}
	accepted := call[string](bob, fmt.Sprintf("acceptKey(%q)", a))
	if keys = call[keysResult](bob, fmt.Sprintf("peerKeys(%q)", a)); !keys.OK || keys.X25519 != accepted {
		t.Fatalf("peerKeys after acceptKey: %+v, want the accepted key %s", keys, accepted)
	}

	for _, p := range pages {
		if s := call[string](p, "close()"); s != "closed" {
			t.Errorf("%s: state after close %q", p.name, s)
		}
	}
}

type iceResult struct {
	Cfg struct {
		TTL     int    `json:"ttl"`
		Policy  string `json:"ice_transport_policy"`
		Servers []struct {
			URLs []string `json:"urls"`
		} `json:"ice_servers"`
	} `json:"cfg"`
	Same     bool `json:"same"`
	Requests int  `json:"requests"`
	RTC      struct {
		Policy string `json:"iceTransportPolicy"`
	} `json:"rtc"`
}

type keysResult struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Message string `json:"message"`
	X25519  string `json:"x25519"`
}

func mustIdentity(t *testing.T, m string) *identity.Identity {
	t.Helper()
	id, err := identity.FromMnemonic(m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
