// Package ice answers GET /api/v1/calls/ice-config (docs/PROTOCOL.md §9.4):
// the ICE servers, with ephemeral credentials, that a client's peer
// connection uses. It is the relay's single point of TURN injection.
//
// A [Resolver] tries the configured providers in a fixed order and the first
// that answers wins; a failing provider falls back to the next (logged, and
// counted in duet_ice_config_requests_total):
//
//  1. Cloudflare Realtime TURN (key id + API token): one shared answer,
//     cached 9 minutes, concurrent misses collapsed into one upstream call.
//  2. coturn with a REST secret (TURN_HOST + TURN_SECRET): credentials
//     "<expiry>:<alias>" minted locally, no network call.
//  3. Twilio Network Traversal Service (account SID + auth token), cached.
//  4. Metered (app + API key), cached.
//  5. The embedded TURN server (relay/turnserver), same REST scheme as coturn
//     with its own secret.
//  6. Public STUN only, when nothing else is configured or everything failed
//     (not with ForceRelay).
//
// Whatever a provider returns is sanitised before clients see it: URLs
// normalised to arrays, URLs that violate the W3C RTCIceServer rules or use
// port 53 dropped, turn URLs without credentials dropped. The answer's ttl
// never exceeds the remaining lifetime of its credentials.
package ice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay/turnserver"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for [Options].
const (
	DefaultCloudflareBaseURL = "https://rtc.live.cloudflare.com"
	DefaultTwilioBaseURL     = "https://api.twilio.com"
	DefaultCredentialTTL     = time.Hour
	DefaultUpstreamTimeout   = 5 * time.Second
	DefaultEmbeddedPort      = 3478
)

// DefaultSTUNURLs are served when no TURN provider is available.
var DefaultSTUNURLs = []string{"stun:stun.cloudflare.com:3478"}

// Lifetimes and limits.
const (
	// MinCredentialTTL is the shortest Options.CredentialTTL accepted.
	MinCredentialTTL = 2 * minRemaining
	// cloudflareMaxTTL is Cloudflare's limit on a credential's lifetime.
	cloudflareMaxTTL = 48 * time.Hour
	// twilioMaxTTL is Twilio's limit on a token's lifetime.
	twilioMaxTTL = 24 * time.Hour
	// meteredAssumedLifetime is how long Metered credentials are trusted
	// to keep working: Metered returns no lifetime, and its credentials
	// can be revoked or rotated in its dashboard at any time. Ten minutes
	// keeps the cache (half of it: 5 min) and client caches short.
	meteredAssumedLifetime = 10 * time.Minute
	// stunTTL is the ttl of a STUN-only answer when it is the configured
	// mode (STUN URLs carry no credentials that expire).
	stunTTL = 10 * time.Minute
	// degradedTTL is the ttl of a STUN-only answer given because every
	// TURN provider failed: clients come back soon and get TURN again.
	degradedTTL = time.Minute
)

var (
	// ErrOptions is returned (wrapped) by New for unusable Options.
	ErrOptions = errors.New("ice: invalid options")
	// ErrInvalidUser is returned (wrapped) by Get for a malformed alias.
	ErrInvalidUser = errors.New("ice: invalid user")
	// ErrUnavailable is returned (wrapped) by Get when no provider could
	// answer; only possible with ForceRelay, since STUN-only never fails.
	ErrUnavailable = errors.New("ice: no ICE servers available")
	// ErrUpstream is returned (wrapped) for a provider request that failed
	// or got an unexpected answer.
	ErrUpstream = errors.New("ice: upstream provider error")
	// ErrNoUsableServers is returned (wrapped) when a provider's answer
	// holds no usable TURN server after sanitising.
	ErrNoUsableServers = errors.New("ice: no usable TURN server in provider answer")
	// ErrInvalidConfig is returned (wrapped) by Config.Validate.
	ErrInvalidConfig = errors.New("ice: invalid ICE config")

	errBackoff = errors.New("skipped after a recent failure")
)

// Options configure a Resolver. A provider is configured when all of its
// credentials are set; setting only some of them is an error.
type Options struct {
	// Cloudflare Realtime TURN: CF_TURN_KEY_ID, CF_TURN_API_TOKEN. Base
	// default DefaultCloudflareBaseURL.
	CloudflareKeyID, CloudflareAPIToken, CloudflareBaseURL string
	// coturn with static-auth-secret: TURN_HOST (a name or IP, no port),
	// TURN_SECRET.
	TURNHost, TURNSecret string
	// Twilio NTS. Base default DefaultTwilioBaseURL.
	TwilioAccountSID, TwilioAuthToken, TwilioBaseURL string
	// Metered. Base default https://{MeteredApp}.metered.live.
	MeteredApp, MeteredAPIKey, MeteredBaseURL string
	// Embedded is the embedded TURN server; nil when switched off.
	Embedded *Embedded
	// STUNURLs are served when nothing else is available; default
	// DefaultSTUNURLs.
	STUNURLs []string
	// ForceRelay answers ice_transport_policy "relay".
	ForceRelay bool
	// CredentialTTL is the credential lifetime requested from providers
	// (clamped to 48 h for Cloudflare, 24 h for Twilio); default 1 h, at
	// least MinCredentialTTL.
	CredentialTTL time.Duration
	// UpstreamTimeout bounds one upstream HTTP call; default 5 s.
	UpstreamTimeout time.Duration
	// HTTPClient makes upstream calls; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger; nil means slog.Default(). Tokens, secrets and credentials are
	// never logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Embedded describes the embedded TURN server to clients.
type Embedded struct {
	Host   string // what clients dial: IP or name (no port)
	Port   int    // UDP (and TCP) port; default 3478
	TCP    bool   // also advertise turn:...?transport=tcp
	Secret []byte // the server's REST secret (turnserver.Config.Secret)
	// TLSHost and TLSPorts advertise TURN over TLS, turns:TLSHost:port
	// for each port, after the udp and tcp URLs. TLSHost must be a name
	// the server's certificate covers; default Host.
	TLSHost  string
	TLSPorts []int
}

// provider is one source of ICE servers.
type provider interface {
	name() string
	// get answers for user. served says how (for metrics).
	get(ctx context.Context, user identity.Alias) (fetched, served, error)
}

// Resolver answers ice-config requests. It is safe for concurrent use.
type Resolver struct {
	providers  []provider
	forceRelay bool
	log        *slog.Logger
	now        func() time.Time

	requests *prometheus.CounterVec
	upstream *prometheus.HistogramVec
}

// New checks opts and returns a Resolver. It makes no network call.
func New(opts Options) (*Resolver, error) {
	r := &Resolver{forceRelay: opts.ForceRelay, log: opts.Logger, now: opts.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_ice_config_requests_total",
		Help: "ICE config answers by provider and outcome: ok, cached, stale (upstream failing, older credentials still valid), " +
			"fallback (served after an earlier provider failed), error (provider failed), backoff (skipped after a recent failure).",
	}, []string{"provider", "outcome"})
	r.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "duet_ice_upstream_request_duration_seconds",
		Help:    "Duration of upstream ICE provider calls by provider and result (ok, error).",
		Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"provider", "result"})

	ttl := opts.CredentialTTL
	switch {
	case ttl == 0:
		ttl = DefaultCredentialTTL
	case ttl < MinCredentialTTL:
		return nil, fmt.Errorf("%w: CredentialTTL %v, want at least %v", ErrOptions, ttl, MinCredentialTTL)
	}
	timeout := opts.UpstreamTimeout
	if timeout <= 0 {
		timeout = DefaultUpstreamTimeout
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	up := upstreamDeps{client: hc, now: r.now}

	if set, err := pair("Cloudflare key id and API token", opts.CloudflareKeyID, opts.CloudflareAPIToken); err != nil {
		return nil, err
	} else if set {
		base, err := baseURL("CloudflareBaseURL", opts.CloudflareBaseURL, DefaultCloudflareBaseURL)
		if err != nil {
			return nil, err
		}
		cf := &cloudflare{upstreamDeps: up, base: base, keyID: opts.CloudflareKeyID, token: opts.CloudflareAPIToken, ttl: min(ttl, cloudflareMaxTTL)}
		r.providers = append(r.providers, r.cached("cloudflare", cf.fetch, timeout))
	}
	if set, err := pair("TURN host and secret", opts.TURNHost, opts.TURNSecret); err != nil {
		return nil, err
	} else if set {
		host, err := checkHost(opts.TURNHost)
		if err != nil {
			return nil, fmt.Errorf("%w: TURN host: %w", ErrOptions, err)
		}
		h := hostForURL(host)
		r.providers = append(r.providers, &restProvider{
			provider: "coturn", secret: []byte(opts.TURNSecret), ttl: ttl, now: r.now,
			stun: []string{"stun:" + h + ":3478"},
			turn: []string{
				"turn:" + h + ":3478?transport=udp",
				"turn:" + h + ":3478?transport=tcp",
				"turns:" + h + ":5349?transport=tcp",
			},
		})
	}
	if set, err := pair("Twilio account SID and auth token", opts.TwilioAccountSID, opts.TwilioAuthToken); err != nil {
		return nil, err
	} else if set {
		base, err := baseURL("TwilioBaseURL", opts.TwilioBaseURL, DefaultTwilioBaseURL)
		if err != nil {
			return nil, err
		}
		tw := &twilio{upstreamDeps: up, base: base, sid: opts.TwilioAccountSID, token: opts.TwilioAuthToken, ttl: min(ttl, twilioMaxTTL)}
		r.providers = append(r.providers, r.cached("twilio", tw.fetch, timeout))
	}
	if set, err := pair("Metered app and API key", opts.MeteredApp, opts.MeteredAPIKey); err != nil {
		return nil, err
	} else if set {
		def := ""
		if validLabel(opts.MeteredApp) {
			def = "https://" + opts.MeteredApp + ".metered.live"
		} else if opts.MeteredBaseURL == "" {
			return nil, fmt.Errorf("%w: Metered app %q is not a DNS label", ErrOptions, opts.MeteredApp)
		}
		base, err := baseURL("MeteredBaseURL", opts.MeteredBaseURL, def)
		if err != nil {
			return nil, err
		}
		m := &metered{upstreamDeps: up, base: base, apiKey: opts.MeteredAPIKey}
		r.providers = append(r.providers, r.cached("metered", m.fetch, timeout))
	}
	if e := opts.Embedded; e != nil {
		host, err := checkHost(e.Host)
		if err != nil {
			return nil, fmt.Errorf("%w: embedded TURN host: %w", ErrOptions, err)
		}
		port := e.Port
		if port == 0 {
			port = DefaultEmbeddedPort
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: embedded TURN port %d", ErrOptions, e.Port)
		}
		if len(e.Secret) < turnserver.MinSecretSize {
			return nil, fmt.Errorf("%w: embedded TURN secret is %d bytes, want at least %d",
				ErrOptions, len(e.Secret), turnserver.MinSecretSize)
		}
		hp := fmt.Sprintf("%s:%d", hostForURL(host), port)
		p := &restProvider{
			provider: "embedded", secret: append([]byte(nil), e.Secret...), ttl: ttl, now: r.now,
			stun: []string{"stun:" + hp},
			turn: []string{"turn:" + hp + "?transport=udp"},
		}
		if e.TCP {
			p.turn = append(p.turn, "turn:"+hp+"?transport=tcp")
		}
		tlsHost := host
		if e.TLSHost != "" {
			if tlsHost, err = checkHost(e.TLSHost); err != nil {
				return nil, fmt.Errorf("%w: embedded TURN TLS host: %w", ErrOptions, err)
			}
		}
		for _, tp := range e.TLSPorts {
			if tp < 1 || tp > 65535 {
				return nil, fmt.Errorf("%w: embedded TURN TLS port %d", ErrOptions, tp)
			}
			p.turn = append(p.turn, fmt.Sprintf("turns:%s:%d?transport=tcp", hostForURL(tlsHost), tp))
		}
		r.providers = append(r.providers, p)
	}
	if opts.ForceRelay {
		if len(r.providers) == 0 {
			return nil, fmt.Errorf("%w: ForceRelay needs a TURN provider (Cloudflare, TURN_HOST, Twilio, Metered or the embedded server)", ErrOptions)
		}
	} else {
		urls := opts.STUNURLs
		if len(urls) == 0 {
			urls = DefaultSTUNURLs
		}
		for _, raw := range urls {
			u, err := parseICEURL(raw)
			if err != nil || u.isTURN() {
				return nil, fmt.Errorf("%w: STUN URL %q: want stun:host[:port] or stuns:host[:port]", ErrOptions, raw)
			}
		}
		r.providers = append(r.providers, stunOnly{urls: append([]string(nil), urls...)})
	}
	names := make([]string, len(r.providers))
	for i, p := range r.providers {
		names[i] = p.name()
		for _, o := range []string{"ok", "cached", "stale", "fallback", "error", "backoff"} {
			r.requests.WithLabelValues(p.name(), o)
		}
	}
	r.log.Info("ice: providers configured", "order", strings.Join(names, ","), "force_relay", opts.ForceRelay,
		"credential_ttl", ttl)
	return r, nil
}

func (r *Resolver) cached(name string, fetch fetchFunc, timeout time.Duration) provider {
	return &cachedProvider{
		provider: name,
		cache: &sharedCache{
			name: name, fetch: fetch, timeout: timeout, now: r.now, log: r.log,
			observe: func(d time.Duration, err error) {
				result := "ok"
				if err != nil {
					result = "error"
				}
				r.upstream.WithLabelValues(name, result).Observe(d.Seconds())
			},
		},
	}
}

// pair reports whether both values are set, and fails when only one is.
func pair(what, a, b string) (bool, error) {
	if (a == "") != (b == "") {
		return false, fmt.Errorf("%w: %s must be set together", ErrOptions, what)
	}
	return a != "", nil
}

// baseURL checks an absolute http(s) base URL without query or fragment and
// returns it without a trailing slash.
func baseURL(field, v, def string) (string, error) {
	if v == "" {
		v = def
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: %s %q: want an http(s) URL without query", ErrOptions, field, v)
	}
	return strings.TrimSuffix(v, "/"), nil
}

// validLabel reports whether s is one DNS label.
func validLabel(s string) bool {
	return s != "" && len(s) <= 63 && !strings.Contains(s, ".") && !strings.Contains(s, "_") && validHost(s)
}

// Get returns the ICE config for user, an authenticated alias. It fails only
// for a malformed alias, a cancelled ctx, or (with ForceRelay) when every
// TURN provider fails.
func (r *Resolver) Get(ctx context.Context, user identity.Alias) (Config, error) {
	if !user.Valid() {
		return Config{}, fmt.Errorf("%w: %q is not an alias", ErrInvalidUser, truncate(string(user), 32))
	}
	policy := PolicyAll
	if r.forceRelay {
		policy = PolicyRelay
	}
	var failed []string
	for _, p := range r.providers {
		res, how, err := p.get(ctx, user)
		if err == nil {
			var cfg Config
			cfg, err = r.answer(policy, res, len(failed) > 0)
			if err == nil {
				outcome := [...]string{servedFetched: "ok", servedCached: "cached", servedStale: "stale"}[how]
				if len(failed) > 0 {
					outcome = "fallback"
					r.log.Debug("ice: served by fallback provider", "provider", p.name(), "failed", strings.Join(failed, ","), "user", user)
				}
				r.requests.WithLabelValues(p.name(), outcome).Inc()
				return cfg, nil
			}
			r.log.Error("ice: provider answer failed validation", "provider", p.name(), "err", err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Config{}, fmt.Errorf("ice: get config: %w", ctxErr)
		}
		outcome := "error"
		if errors.Is(err, errBackoff) {
			outcome = "backoff"
		}
		r.requests.WithLabelValues(p.name(), outcome).Inc()
		failed = append(failed, p.name())
	}
	return Config{}, fmt.Errorf("%w: tried %s", ErrUnavailable, strings.Join(failed, ", "))
}

// answer builds and checks the Config for a provider's result.
func (r *Resolver) answer(policy string, res fetched, degraded bool) (Config, error) {
	cfg := Config{ICETransportPolicy: policy, ICEServers: cloneServers(res.servers)}
	switch {
	case !res.expires.IsZero():
		cfg.TTL = int(res.expires.Sub(r.now()) / time.Second) // floor: never more than what remains
		if cfg.TTL <= 0 {
			return Config{}, fmt.Errorf("%w: credentials expired", ErrNoUsableServers)
		}
	case degraded:
		cfg.TTL = int(degradedTTL / time.Second)
	default:
		cfg.TTL = int(stunTTL / time.Second)
	}
	if policy == PolicyRelay && !hasTURN(cfg.ICEServers) {
		return Config{}, fmt.Errorf("%w: relay policy without a TURN server", ErrNoUsableServers)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Collectors returns the resolver's Prometheus metrics for the caller to
// register: duet_ice_config_requests_total{provider,outcome} and
// duet_ice_upstream_request_duration_seconds{provider,result}.
func (r *Resolver) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.requests, r.upstream}
}

// cachedProvider serves an upstream provider through a sharedCache.
type cachedProvider struct {
	provider string
	cache    *sharedCache
}

func (c *cachedProvider) name() string { return c.provider }

func (c *cachedProvider) get(ctx context.Context, _ identity.Alias) (fetched, served, error) {
	return c.cache.get(ctx)
}

// restProvider mints TURN REST credentials locally (coturn, embedded).
type restProvider struct {
	provider   string
	secret     []byte
	ttl        time.Duration
	now        func() time.Time
	stun, turn []string
}

func (p *restProvider) name() string { return p.provider }

func (p *restProvider) get(_ context.Context, user identity.Alias) (fetched, served, error) {
	// Whole seconds, as in the username: the advertised lifetime is exact.
	expiry := time.Unix(p.now().Add(p.ttl).Unix(), 0)
	username, password := turnserver.Credentials(p.secret, string(user), expiry)
	return fetched{
		servers: []Server{
			{URLs: p.stun},
			{URLs: p.turn, Username: username, Credential: password},
		},
		expires: expiry,
	}, servedFetched, nil
}

// stunOnly serves public STUN URLs.
type stunOnly struct{ urls []string }

func (stunOnly) name() string { return "stun" }

func (s stunOnly) get(context.Context, identity.Alias) (fetched, served, error) {
	return fetched{servers: []Server{{URLs: s.urls}}}, servedFetched, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
