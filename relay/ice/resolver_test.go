package ice

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
)

const alice identity.Alias = "u12345678"

func newResolver(t *testing.T, opts Options) *Resolver {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func get(t *testing.T, r *Resolver) Config {
	t.Helper()
	cfg, err := r.Get(context.Background(), alice)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Get returned an invalid config: %v", err)
	}
	return cfg
}

func cloudflareOpts(f *fakeProvider, clock *fakeClock) Options {
	return Options{
		CloudflareKeyID: cfKeyID, CloudflareAPIToken: cfToken, CloudflareBaseURL: f.URL,
		HTTPClient: f.Client(), Now: clock.Now,
	}
}

func TestCloudflare(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	r := newResolver(t, cloudflareOpts(cf, clock))

	cfg := get(t, r)
	want := Config{TTL: 3600, ICETransportPolicy: PolicyAll, ICEServers: []Server{
		{URLs: []string{"stun:stun.cloudflare.com:3478"}},
		{URLs: []string{
			"turn:turn.cloudflare.com:3478?transport=udp", "turn:turn.cloudflare.com:3478?transport=tcp",
			"turns:turn.cloudflare.com:5349?transport=tcp", "turns:turn.cloudflare.com:443?transport=tcp",
		}, Username: cfTURNUser, Credential: cfTURNCred},
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config =\n%+v\nwant (port-53 URLs dropped)\n%+v", cfg, want)
	}
	if cf.gotTTL != 3600 {
		t.Errorf("requested ttl %d, want 3600", cf.gotTTL)
	}

	// Cached for 9 minutes; ttl is what remains of the credentials.
	clock.Advance(5 * time.Minute)
	if cfg := get(t, r); cfg.TTL != 3300 {
		t.Errorf("ttl after 5 min = %d, want 3300", cfg.TTL)
	}
	clock.Advance(4*time.Minute - time.Second)
	if cfg := get(t, r); cfg.TTL != 3061 {
		t.Errorf("ttl after 8:59 = %d, want 3061", cfg.TTL)
	}
	if n := cf.requests.Load(); n != 1 {
		t.Fatalf("upstream requests within 9 min = %d, want 1", n)
	}
	clock.Advance(time.Second)
	if cfg := get(t, r); cfg.TTL != 3600 {
		t.Errorf("ttl after refresh = %d, want 3600", cfg.TTL)
	}
	if n := cf.requests.Load(); n != 2 {
		t.Fatalf("upstream requests after 9 min = %d, want 2", n)
	}
	if ok, cached := count(t, r, "cloudflare", "ok"), count(t, r, "cloudflare", "cached"); ok != 2 || cached != 2 {
		t.Errorf("metrics ok=%v cached=%v, want 2 and 2", ok, cached)
	}
	if n := upstreamCalls(t, r, "cloudflare", "ok"); n != 2 {
		t.Errorf("upstream duration observations = %d, want 2", n)
	}
}

func TestCloudflareLegacyShapeAndClamp(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	cf.setMode("legacy")
	opts := cloudflareOpts(cf, clock)
	opts.CredentialTTL = 72 * time.Hour
	r := newResolver(t, opts)
	cfg := get(t, r)
	if cf.gotTTL != 172800 || cfg.TTL != 172800 {
		t.Errorf("requested ttl %d, answered ttl %d; want both clamped to 172800 (48 h)", cf.gotTTL, cfg.TTL)
	}
	want := []Server{{URLs: []string{
		"stun:stun.cloudflare.com:3478", "turn:turn.cloudflare.com:3478?transport=udp",
		"turns:turn.cloudflare.com:443?transport=tcp",
	}, Username: cfTURNUser, Credential: cfTURNCred}}
	if !reflect.DeepEqual(cfg.ICEServers, want) {
		t.Errorf("servers = %+v, want %+v", cfg.ICEServers, want)
	}
}

func TestCloudflareConcurrentMissesCollapse(t *testing.T) {
	const n = 32
	clock := newClock()
	cf := newCloudflare(t)
	cf.entered, cf.release = make(chan struct{}, n), make(chan struct{})
	r := newResolver(t, cloudflareOpts(cf, clock))
	cache := r.providers[0].(*cachedProvider).cache

	var wg sync.WaitGroup
	results := make([]Config, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = r.Get(context.Background(), alice) })
		if i == 0 {
			<-cf.entered // the first caller's request is upstream and held there
		}
	}
	// Wait until every other caller has joined the in-flight request.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cache.mu.Lock()
		joined := cache.joined
		cache.mu.Unlock()
		if joined == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d callers joined the upstream request", joined, n-1)
		}
		time.Sleep(time.Millisecond)
	}
	close(cf.release)
	wg.Wait()

	if got := cf.requests.Load(); got != 1 {
		t.Fatalf("%d concurrent Gets made %d upstream requests, want 1", n, got)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Get %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(results[i], results[0]) {
			t.Fatalf("Get %d answered differently", i)
		}
	}
	if ok, cached := count(t, r, "cloudflare", "ok"), count(t, r, "cloudflare", "cached"); ok != 1 || cached != n-1 {
		t.Errorf("metrics ok=%v cached=%v, want 1 and %d", ok, cached, n-1)
	}
}

func TestCloudflareStaleAndBackoff(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	r := newResolver(t, cloudflareOpts(cf, clock))
	get(t, r)

	// Upstream fails after the cache went stale: the older credentials are
	// still valid for 50 minutes and are served, with their real ttl.
	cf.setMode("500")
	clock.Advance(10 * time.Minute)
	if cfg := get(t, r); cfg.TTL != 3000 || cfg.ICEServers[1].Credential != cfTURNCred {
		t.Fatalf("stale answer ttl=%d, want 3000 with the cached credentials", cfg.TTL)
	}
	// Within the backoff no new upstream call is made.
	clock.Advance(errorBackoff - time.Second)
	get(t, r)
	if n := cf.requests.Load(); n != 2 {
		t.Fatalf("upstream requests = %d, want 2 (one ok, one failed, none during backoff)", n)
	}
	if n := count(t, r, "cloudflare", "stale"); n != 2 {
		t.Errorf("stale answers = %v, want 2", n)
	}
	if n := upstreamCalls(t, r, "cloudflare", "error"); n != 1 {
		t.Errorf("failed upstream calls observed = %d, want 1", n)
	}
	// After the backoff, a recovered upstream is asked again.
	cf.setMode("")
	clock.Advance(time.Second)
	if cfg := get(t, r); cfg.TTL != 3600 {
		t.Errorf("ttl after recovery = %d, want 3600", cfg.TTL)
	}
}

func TestFallbackOrder(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	tw := newTwilio(t, clock)
	me := newMetered(t)
	opts := Options{
		CloudflareKeyID: cfKeyID, CloudflareAPIToken: cfToken, CloudflareBaseURL: cf.URL,
		TwilioAccountSID: twSID, TwilioAuthToken: twToken, TwilioBaseURL: tw.URL,
		MeteredApp: "duet", MeteredAPIKey: meteredKey, MeteredBaseURL: me.URL,
		Embedded: &Embedded{Host: "198.51.100.7", Secret: []byte("embedded-secret-0123456789")},
		Now:      clock.Now,
	}
	r := newResolver(t, opts)
	names := func() []string {
		var out []string
		for _, p := range r.providers {
			out = append(out, p.name())
		}
		return out
	}
	if got := names(); !reflect.DeepEqual(got, []string{"cloudflare", "twilio", "metered", "embedded", "stun"}) {
		t.Fatalf("provider order = %v", got)
	}

	// servedBy reports the provider whose credential the answer carries.
	servedBy := func(cfg Config) string {
		for _, s := range cfg.ICEServers {
			switch {
			case s.Credential == cfTURNCred:
				return "cloudflare"
			case s.Credential == twTURNCred:
				return "twilio"
			case s.Credential == meteredCred:
				return "metered"
			case s.Credential != "":
				return "embedded"
			}
		}
		return "stun"
	}
	steps := []struct {
		broken []*fakeProvider
		want   string
		ttl    int
	}{
		{nil, "cloudflare", 3600},
		{[]*fakeProvider{cf}, "twilio", 3600},
		{[]*fakeProvider{cf, tw}, "metered", 600},
		{[]*fakeProvider{cf, tw, me}, "embedded", 3600},
	}
	for _, step := range steps {
		for _, f := range []*fakeProvider{cf, tw, me} {
			f.setMode("")
		}
		for _, f := range step.broken {
			f.setMode("500")
		}
		clock.Advance(time.Hour) // past every cache and backoff
		cfg := get(t, r)
		if got := servedBy(cfg); got != step.want || cfg.TTL != step.ttl {
			t.Errorf("with %d broken: served by %s ttl %d, want %s ttl %d", len(step.broken), got, cfg.TTL, step.want, step.ttl)
		}
	}
	for provider, want := range map[string][2]float64{ // {error, fallback}
		"cloudflare": {3, 0},
		"twilio":     {2, 1},
		"metered":    {1, 1},
		"embedded":   {0, 1},
	} {
		if e, f := count(t, r, provider, "error"), count(t, r, provider, "fallback"); e != want[0] || f != want[1] {
			t.Errorf("%s: error=%v fallback=%v, want %v", provider, e, f, want)
		}
	}
	// Within the backoff the broken providers are skipped without a call.
	before := cf.requests.Load()
	get(t, r)
	if cf.requests.Load() != before || count(t, r, "cloudflare", "backoff") != 1 {
		t.Errorf("cloudflare asked again within the backoff")
	}
}

func TestFallbackToSTUNIsShortLived(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	cf.setMode("500")
	r := newResolver(t, cloudflareOpts(cf, clock))
	cfg := get(t, r)
	want := Config{TTL: 60, ICETransportPolicy: PolicyAll, ICEServers: []Server{{URLs: DefaultSTUNURLs}}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config = %+v, want %+v", cfg, want)
	}
	if count(t, r, "stun", "fallback") != 1 {
		t.Error("stun fallback not counted")
	}
}

func TestUnusableAnswersFallBack(t *testing.T) {
	for _, mode := range []string{"500", "huge", "garbage", "stun-only"} {
		t.Run(mode, func(t *testing.T) {
			clock := newClock()
			cf := newCloudflare(t)
			cf.setMode(mode)
			opts := cloudflareOpts(cf, clock)
			opts.TURNHost, opts.TURNSecret = "turn.example.com", coturnKey
			r := newResolver(t, opts)
			cfg := get(t, r)
			if !strings.Contains(cfg.ICEServers[1].URLs[0], "turn.example.com") {
				t.Fatalf("served %+v, want the coturn fallback", cfg)
			}
			if count(t, r, "cloudflare", "error") != 1 || count(t, r, "coturn", "fallback") != 1 {
				t.Error("error/fallback not counted")
			}
		})
	}
}

func TestCoturnREST(t *testing.T) {
	clock := newClock()
	r := newResolver(t, Options{TURNHost: "turn.example.com", TURNSecret: coturnKey, Now: clock.Now, CredentialTTL: 30 * time.Minute})
	cfg := get(t, r)
	expiry := clock.Now().Add(30 * time.Minute).Unix()
	wantUser := strconv.FormatInt(expiry, 10) + ":" + string(alice)
	mac := hmac.New(sha1.New, []byte(coturnKey))
	mac.Write([]byte(wantUser))
	want := Config{TTL: 1800, ICETransportPolicy: PolicyAll, ICEServers: []Server{
		{URLs: []string{"stun:turn.example.com:3478"}},
		{URLs: []string{
			"turn:turn.example.com:3478?transport=udp",
			"turn:turn.example.com:3478?transport=tcp",
			"turns:turn.example.com:5349?transport=tcp",
		}, Username: wantUser, Credential: base64.StdEncoding.EncodeToString(mac.Sum(nil))},
	}}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config =\n%+v\nwant\n%+v", cfg, want)
	}

	// IPv6 hosts are bracketed.
	r = newResolver(t, Options{TURNHost: "2001:db8::1", TURNSecret: coturnKey, Now: clock.Now})
	if u := get(t, r).ICEServers[0].URLs[0]; u != "stun:[2001:db8::1]:3478" {
		t.Errorf("IPv6 STUN URL = %q", u)
	}
}

func TestTwilio(t *testing.T) {
	clock := newClock()
	tw := newTwilio(t, clock)
	opts := Options{TwilioAccountSID: twSID, TwilioAuthToken: twToken, TwilioBaseURL: tw.URL, Now: clock.Now, CredentialTTL: 48 * time.Hour}
	r := newResolver(t, opts)

	// Twilio's clock is 30 s behind: expiry = date_created + ttl.
	tw.created = clock.Now().Add(-30 * time.Second)
	cfg := get(t, r)
	if tw.gotTTL != 86400 {
		t.Errorf("requested Ttl %d, want 86400 (Twilio's maximum)", tw.gotTTL)
	}
	if cfg.TTL != 86400-30 {
		t.Errorf("ttl = %d, want %d", cfg.TTL, 86400-30)
	}
	want := []Server{
		{URLs: []string{"stun:global.stun.twilio.com:3478"}},
		{URLs: []string{"turn:global.turn.twilio.com:3478?transport=udp"}, Username: "tw-user", Credential: twTURNCred},
		{URLs: []string{"turn:global.turn.twilio.com:443?transport=tcp"}, Username: "tw-user", Credential: twTURNCred},
	}
	if !reflect.DeepEqual(cfg.ICEServers, want) {
		t.Errorf("servers = %+v, want %+v", cfg.ICEServers, want)
	}

	// Twilio's clock is ahead: our send time bounds the lifetime.
	tw2 := newTwilio(t, clock)
	tw2.created = clock.Now().Add(time.Hour)
	opts.TwilioBaseURL, opts.CredentialTTL = tw2.URL, time.Hour
	if cfg := get(t, newResolver(t, opts)); cfg.TTL != 3600 {
		t.Errorf("ttl with Twilio clock ahead = %d, want 3600", cfg.TTL)
	}
}

func TestMetered(t *testing.T) {
	clock := newClock()
	me := newMetered(t)
	r := newResolver(t, Options{MeteredApp: "duet", MeteredAPIKey: meteredKey, MeteredBaseURL: me.URL, Now: clock.Now})
	cfg := get(t, r)
	if cfg.TTL != int(meteredAssumedLifetime/time.Second) {
		t.Errorf("ttl = %d, want the assumed lifetime %v", cfg.TTL, meteredAssumedLifetime)
	}
	want := []Server{
		{URLs: []string{"stun:stun.relay.metered.ca:80"}},
		{URLs: []string{"turn:global.relay.metered.ca:80"}, Username: "m-user", Credential: meteredCred},
		{URLs: []string{"turn:global.relay.metered.ca:80?transport=tcp"}, Username: "m-user", Credential: meteredCred},
		{URLs: []string{"turn:global.relay.metered.ca:443"}, Username: "m-user", Credential: meteredCred},
		{URLs: []string{"turns:global.relay.metered.ca:443?transport=tcp"}, Username: "m-user", Credential: meteredCred},
	}
	if !reflect.DeepEqual(cfg.ICEServers, want) {
		t.Errorf("servers = %+v, want %+v", cfg.ICEServers, want)
	}
	// Cached for half the assumed lifetime, then asked again.
	clock.Advance(meteredAssumedLifetime/2 - time.Second)
	if cfg := get(t, r); cfg.TTL != 301 || me.requests.Load() != 1 {
		t.Errorf("ttl %d after %d requests, want 301 after 1", cfg.TTL, me.requests.Load())
	}
	clock.Advance(time.Second)
	if cfg := get(t, r); cfg.TTL != 600 || me.requests.Load() != 2 {
		t.Errorf("ttl %d after %d requests, want 600 after 2", cfg.TTL, me.requests.Load())
	}
}

// recordingTransport answers every request 503 and records its URL.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.urls = append(rt.urls, req.Method+" "+req.URL.String())
	rt.mu.Unlock()
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Request: req}, nil
}

func TestDefaultBaseURLs(t *testing.T) {
	rt := &recordingTransport{}
	r := newResolver(t, Options{
		CloudflareKeyID: "key1", CloudflareAPIToken: "t",
		TwilioAccountSID: "AC1", TwilioAuthToken: "t",
		MeteredApp: "myapp", MeteredAPIKey: "k",
		HTTPClient: &http.Client{Transport: rt},
	})
	get(t, r)
	want := []string{
		"POST https://rtc.live.cloudflare.com/v1/turn/keys/key1/credentials/generate-ice-servers",
		"POST https://api.twilio.com/2010-04-01/Accounts/AC1/Tokens.json",
		"GET https://myapp.metered.live/api/v1/turn/credentials?apiKey=k",
	}
	if !reflect.DeepEqual(rt.urls, want) {
		t.Errorf("requests =\n%s\nwant\n%s", strings.Join(rt.urls, "\n"), strings.Join(want, "\n"))
	}
}

func TestSTUNOnly(t *testing.T) {
	r := newResolver(t, Options{})
	want := Config{TTL: 600, ICETransportPolicy: PolicyAll, ICEServers: []Server{{URLs: []string{"stun:stun.cloudflare.com:3478"}}}}
	if cfg := get(t, r); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config = %+v, want %+v", cfg, want)
	}
	r = newResolver(t, Options{STUNURLs: []string{"stun:stun.example.org", "stuns:stun.example.org:443"}})
	if cfg := get(t, r); len(cfg.ICEServers[0].URLs) != 2 {
		t.Fatalf("custom STUN URLs not served: %+v", cfg)
	}
}

func TestForceRelay(t *testing.T) {
	clock := newClock()
	cf := newCloudflare(t)
	opts := cloudflareOpts(cf, clock)
	opts.ForceRelay = true
	r := newResolver(t, opts)
	if cfg := get(t, r); cfg.ICETransportPolicy != PolicyRelay {
		t.Fatalf("policy = %q, want relay", cfg.ICETransportPolicy)
	}
	// No STUN-only fallback under ForceRelay.
	cf.setMode("500")
	clock.Advance(time.Hour)
	if _, err := r.Get(context.Background(), alice); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with every TURN provider down = %v, want ErrUnavailable", err)
	}
	if _, err := New(Options{ForceRelay: true}); !errors.Is(err, ErrOptions) {
		t.Fatalf("New(ForceRelay, no TURN) = %v, want ErrOptions", err)
	}
}

func TestGetErrors(t *testing.T) {
	r := newResolver(t, Options{})
	for _, bad := range []identity.Alias{"", "alice", "u1234567", "u12345678:x", "12345678:u"} {
		if _, err := r.Get(context.Background(), bad); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Get(%q) = %v, want ErrInvalidUser", bad, err)
		}
	}

	// A caller that gives up gets its context error, not a fallback answer.
	clock := newClock()
	cf := newCloudflare(t)
	cf.entered, cf.release = make(chan struct{}, 1), make(chan struct{})
	defer close(cf.release)
	r = newResolver(t, cloudflareOpts(cf, clock))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-cf.entered; cancel() }()
	if _, err := r.Get(ctx, alice); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestNewOptionErrors(t *testing.T) {
	emb := func(e Embedded) *Embedded { return &e }
	secret := []byte("embedded-secret-0123456789")
	for name, opts := range map[string]Options{
		"cloudflare id only":     {CloudflareKeyID: "k"},
		"cloudflare token only":  {CloudflareAPIToken: "t"},
		"turn host only":         {TURNHost: "turn.example.com"},
		"turn secret only":       {TURNSecret: "s"},
		"twilio sid only":        {TwilioAccountSID: "AC1"},
		"metered key only":       {MeteredAPIKey: "k"},
		"metered bad app":        {MeteredApp: "my.app", MeteredAPIKey: "k"},
		"bad cloudflare base":    {CloudflareKeyID: "k", CloudflareAPIToken: "t", CloudflareBaseURL: "ftp://x"},
		"base with query":        {TwilioAccountSID: "AC1", TwilioAuthToken: "t", TwilioBaseURL: "https://x/?a=b"},
		"turn host with port":    {TURNHost: "turn.example.com:3478", TURNSecret: "s"},
		"turn host with scheme":  {TURNHost: "turn:turn.example.com", TURNSecret: "s"},
		"short credential ttl":   {CredentialTTL: time.Minute},
		"stun URL with query":    {STUNURLs: []string{"stun:stun.example.org?transport=udp"}},
		"turn URL as STUN":       {STUNURLs: []string{"turn:turn.example.org"}},
		"embedded without host":  {Embedded: emb(Embedded{Secret: secret})},
		"embedded short secret":  {Embedded: emb(Embedded{Host: "198.51.100.7", Secret: []byte("short")})},
		"embedded bad port":      {Embedded: emb(Embedded{Host: "198.51.100.7", Port: 70000, Secret: secret})},
		"force relay, no turn":   {ForceRelay: true},
		"force relay, stun urls": {ForceRelay: true, STUNURLs: []string{"stun:stun.example.org"}},
	} {
		if _, err := New(opts); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: New = %v, want ErrOptions", name, err)
		}
	}
}

// TestSecretsNeverLogged drives every provider through success and failure
// with debug logging on and checks that no token, key, secret or credential
// shows up in the logs or in returned errors.
func TestSecretsNeverLogged(t *testing.T) {
	var logs logBuffer
	clock := newClock()
	cf, tw, me := newCloudflare(t), newTwilio(t, clock), newMetered(t)
	closed := newMetered(t)
	closed.Close() // connection refused: the error carries the request URL
	opts := Options{
		CloudflareKeyID: cfKeyID, CloudflareAPIToken: cfToken, CloudflareBaseURL: cf.URL,
		TURNHost: "turn.example.com", TURNSecret: coturnKey,
		TwilioAccountSID: twSID, TwilioAuthToken: twToken, TwilioBaseURL: tw.URL,
		MeteredApp: "duet", MeteredAPIKey: meteredKey, MeteredBaseURL: closed.URL,
		Embedded: &Embedded{Host: "198.51.100.7", Secret: []byte("embedded-SECRET-0123456789")},
		Logger:   logs.logger(), Now: clock.Now,
	}
	r := newResolver(t, opts)
	get(t, r)
	for _, f := range []*fakeProvider{cf, tw, me} {
		f.setMode("500")
	}
	clock.Advance(time.Hour)
	get(t, r)

	// Direct provider errors, including Metered's refused connection.
	m := &metered{upstreamDeps: upstreamDeps{client: http.DefaultClient, now: clock.Now}, base: closed.URL, apiKey: meteredKey}
	_, err := m.fetch(context.Background(), clock.Now())
	if err == nil {
		t.Fatal("fetch from a closed server succeeded")
	}
	cfBad := &cloudflare{upstreamDeps: upstreamDeps{client: http.DefaultClient, now: clock.Now}, base: cf.URL, keyID: cfKeyID, token: cfToken, ttl: time.Hour}
	_, err2 := cfBad.fetch(context.Background(), clock.Now())

	all := logs.String() + fmt.Sprint(err) + fmt.Sprint(err2)
	for _, secret := range []string{cfToken, cfTURNCred, twToken, twTURNCred, meteredKey, meteredCred, coturnKey, "embedded-SECRET", cfKeyID} {
		if strings.Contains(all, secret) {
			t.Errorf("%q leaked into logs or errors:\n%s", secret, all)
		}
	}
	if !strings.Contains(logs.String(), "upstream provider failed") {
		t.Errorf("upstream failures were not logged:\n%s", logs.String())
	}
}
