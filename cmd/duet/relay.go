package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/duetcall/duet/internal/dotenv"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/relay/turnserver"
	"github.com/duetcall/duet/web"
)

const relayUsage = `Usage: duet relay [flags]

Runs the duet relay: the HTTP API, the WebSocket, the browser SDK (/sdk/) and
the demo app (/, open it in a browser) on --addr, an embedded NATS with JetStream on disk under --data-dir (or an
external NATS with --nats-url), and the embedded STUN/TURN server on
--turn-listen.

Configuration: flags win over environment variables, which win over a .env
file in the working directory, which wins over the defaults.

Flags (environment variable in brackets):
  --addr ADDR               HTTP and WebSocket address [DUET_ADDR] (default :8080, :443 with TLS)
  --tls-cert FILE           serve HTTPS and WSS with this certificate (PEM, chain after the leaf)
                            [DUET_TLS_CERT]; with --tls-key [DUET_TLS_KEY]
  --acme-domain NAMES       get and renew certificates for these comma-separated names by ACME
                            (Let's Encrypt) [DUET_ACME_DOMAIN]; needs :80 for HTTP-01 challenges
                            (--http-addr) and caches certificates under DATA-DIR/acme
  --acme-email EMAIL        contact address for the ACME account [DUET_ACME_EMAIL]
  --acme-directory URL      ACME directory [DUET_ACME_DIRECTORY] (default Let's Encrypt)
  --http-addr ADDR          plain HTTP: ACME challenges, everything else redirected to https
                            [DUET_HTTP_ADDR] (default :80 with --acme-domain, else off)
  --turn-tls-listen ADDRS   TURN over TLS (turns:) with the relay's certificate, comma-separated
                            [DUET_TURN_TLS_LISTEN] (default :5349 with TLS; off: none). When
                            --addr is port 443, TURN over TLS shares it too (turns:HOST:443)
  --turn-tls-host HOST      the name in turns: URLs, which the certificate must cover
                            [DUET_TURN_TLS_HOST] (default the ACME domain or the certificate's
                            first DNS name, else --turn-public-host)
  --data-dir DIR            data directory: JetStream store, TURN secret [DUET_DATA_DIR] (default ./duet-data)
  --nats-url URL            join this NATS (JetStream enabled) instead of the embedded one [DUET_NATS_URL]
  --kv-replicas N           replicas of the directory's JetStream KV buckets, 1 to 5, applied
                            at start; above 1 needs --nats-url to a cluster of at least N
                            servers [DUET_KV_REPLICAS] (default: keep the buckets' count,
                            1 for a new directory); never lowers the buckets' count
                            (warns and keeps it) without --kv-replicas-lower
  --kv-replicas-lower       let --kv-replicas lower the buckets' replica count [DUET_KV_REPLICAS_LOWER]
  --turn-listen ADDR        embedded TURN address, UDP [DUET_TURN_LISTEN] (default :3478)
  --no-turn-tcp             embedded TURN on UDP only; by default it listens on TCP too, same
                            port, so that networks blocking UDP still get relayed calls
                            [DUET_NO_TURN_TCP] (--turn-tcp=false does the same)
  --turn-public-host HOST   host clients reach the embedded TURN at [DUET_TURN_PUBLIC_HOST]
                            (default: the --turn-listen IP when it names one, else the
                            first non-loopback IPv4 address, else 127.0.0.1)
  --no-turn                 do not run the embedded TURN server [DUET_NO_TURN]
  --turn-allow-peers CIDRS  comma-separated peers the embedded TURN may relay to although
                            private/loopback (e.g. 127.0.0.0/8 for local tests) [DUET_TURN_ALLOW_PEERS]
  --turn-user-allocations N  live TURN allocations per user (alias) [DUET_TURN_USER_ALLOCATIONS]
                            (default 16)
  --turn-allocations N      live TURN allocations in all [DUET_TURN_ALLOCATIONS] (default 4096)
  --force-relay             answer ice_transport_policy "relay" (TURN only) [DUET_FORCE_RELAY]
  --ws-ping-interval D      ping a WebSocket session after D without a frame from it;
                            0 sends none [DUET_WS_PING_INTERVAL] (default 20s)
  --ws-ping-timeout D       drop a pinged session that sends nothing within D, so a client
                            whose network died is offline within interval+timeout
                            [DUET_WS_PING_TIMEOUT] (default 10s)
  --max-sessions-per-alias N  concurrent sessions of one alias on all the relay's nodes
                            (set it alike on every node); the newest past it is
                            refused (1013 too_many_sessions)
                            [DUET_MAX_SESSIONS_PER_ALIAS] (default 8)
  --queue-budget SIZE       bytes queued for all sessions of this node, e.g. 256MiB; past it
                            envelopes are dropped and senders told recipient_busy
                            [DUET_QUEUE_BUDGET] (default: an eighth of the memory, 32 MiB-512 MiB)
  --trusted-proxies CIDRS   comma-separated reverse proxies whose X-Forwarded-For names the
                            client for the HTTP rate limits [DUET_TRUSTED_PROXIES] (default
                            none: X-Forwarded-For is ignored; loopback clients are not limited)
  --register-pow BITS       registration costs a proof of work of BITS (1-28; 16 is about
                            0.5 s in a browser) [DUET_REGISTER_POW] (default 0: off)
  --metrics-addr ADDR       serve /metrics on ADDR only, not on --addr [DUET_METRICS_ADDR]
                            (default: /metrics on --addr)
  --pprof-addr ADDR         serve Go's profiles (/debug/pprof/) on ADDR, e.g. 127.0.0.1:6060;
                            keep it private: a profile costs CPU [DUET_PPROF_ADDR] (default: off)
  --log-level LEVEL         debug, info, warn or error [DUET_LOG_LEVEL] (default info)

TURN providers (environment or .env only), first configured wins:
  CF_TURN_KEY_ID, CF_TURN_API_TOKEN       Cloudflare Realtime TURN
  TURN_HOST, TURN_SECRET                  coturn with a REST (static-auth) secret
  TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN   Twilio Network Traversal Service
  METERED_APP, METERED_API_KEY            Metered
  then the embedded TURN server (unless --no-turn), then public STUN only
  (stun:stun.cloudflare.com:3478). STUN only is the answer when nothing above
  is configured (--no-turn and no provider), and the fallback, with a 60 s ttl,
  when every provider above fails; with --force-relay there is no STUN
  fallback and a failure answers 503.

Examples:
  duet relay
      everything on one machine: :8080, embedded NATS and TURN, ./duet-data
  duet relay --addr :9000 --data-dir /var/lib/duet --turn-public-host turn.example.com
  CF_TURN_KEY_ID=... CF_TURN_API_TOKEN=... duet relay --no-turn
  duet relay --nats-url nats://nats-1:4222 --addr :8081
      one of several relay nodes sharing a NATS cluster with JetStream
  duet relay --turn-listen 127.0.0.1:3478 --turn-allow-peers 127.0.0.0/8
      local development with calls relayed over loopback
`

// relayConfig is the resolved configuration of `duet relay`.
type relayConfig struct {
	addr, dataDir, natsURL      string
	kvReplicas                  int
	kvReplicasLower             bool
	turnListen, turnPublicHost  string
	turnTCP, noTURN, forceRelay bool
	turnAllowPeers              []netip.Prefix
	logLevel                    slog.Level
	pingInterval, pingTimeout   time.Duration
	tls                         tlsConfig
	maxSessions                 int
	queueBudget                 int64
	trustedProxies              []netip.Prefix
	turnUserAllocs, turnAllocs  int
	registerPoW                 int
	metricsAddr                 string
	pprofAddr                   string
	cfKeyID, cfToken            string
	turnHost, turnSecret        string
	twilioSID, twilioToken      string
	meteredApp, meteredKey      string
	// publicHostSource says where turnPublicHost came from: "configured"
	// (flag or environment), "turn-listen" or "machine".
	publicHostSource string
}

// Sources of relayConfig.turnPublicHost.
const (
	publicHostConfigured = "configured"
	publicHostListen     = "turn-listen"
	publicHostMachine    = "machine"
)

// maxKVReplicas is JetStream's largest replica count.
const maxKVReplicas = 5

// errUsage marks configuration errors and misused subcommands (exit status
// 2).
var errUsage = errors.New("usage")

// lookupFunc finds a configuration variable: the environment, then .env.
type lookupFunc func(key string) (string, bool)

// envLookup returns a lookupFunc over the process environment and the .env
// file at path (missing is fine).
func envLookup(path string) (lookupFunc, error) {
	file, err := dotenv.Load(path)
	if err != nil {
		return nil, err
	}
	return func(k string) (string, bool) {
		if v, ok := os.LookupEnv(k); ok {
			return v, true
		}
		v, ok := file[k]
		return v, ok
	}, nil
}

// parseRelayConfig resolves flags over lookup over defaults.
func parseRelayConfig(args []string, lookup lookupFunc) (relayConfig, error) {
	str := func(key, def string) string {
		if v, ok := lookup(key); ok && v != "" {
			return v
		}
		return def
	}
	var envErr error
	boolean := func(key string) bool {
		v, ok := lookup(key)
		if !ok || v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil && envErr == nil {
			envErr = fmt.Errorf("%w: %s=%q is not a boolean", errUsage, key, v)
		}
		return b
	}
	var c relayConfig
	var allowPeers, logLevel, kvReplicas, pingInterval, pingTimeout, maxSessions, queueBudget, trusted, pow, turnUser, turnAll string
	fs := flag.NewFlagSet("duet relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", str("DUET_ADDR", ":8080"), "")
	fs.StringVar(&c.dataDir, "data-dir", str("DUET_DATA_DIR", "./duet-data"), "")
	fs.StringVar(&c.natsURL, "nats-url", str("DUET_NATS_URL", ""), "")
	fs.StringVar(&kvReplicas, "kv-replicas", str("DUET_KV_REPLICAS", ""), "")
	fs.BoolVar(&c.kvReplicasLower, "kv-replicas-lower", boolean("DUET_KV_REPLICAS_LOWER"), "")
	fs.StringVar(&c.turnListen, "turn-listen", str("DUET_TURN_LISTEN", ":3478"), "")
	noTURNTCP := boolean("DUET_NO_TURN_TCP")
	turnTCPEnv := !noTURNTCP
	if v, ok := lookup("DUET_TURN_TCP"); ok && v != "" {
		turnTCPEnv = boolean("DUET_TURN_TCP") && !noTURNTCP
	}
	fs.BoolVar(&c.turnTCP, "turn-tcp", turnTCPEnv, "")
	fs.BoolVar(&noTURNTCP, "no-turn-tcp", noTURNTCP, "")
	fs.StringVar(&c.turnPublicHost, "turn-public-host", str("DUET_TURN_PUBLIC_HOST", ""), "")
	fs.BoolVar(&c.noTURN, "no-turn", boolean("DUET_NO_TURN"), "")
	fs.StringVar(&allowPeers, "turn-allow-peers", str("DUET_TURN_ALLOW_PEERS", ""), "")
	fs.BoolVar(&c.forceRelay, "force-relay", boolean("DUET_FORCE_RELAY"), "")
	fs.StringVar(&logLevel, "log-level", str("DUET_LOG_LEVEL", "info"), "")
	var acmeDomains, turnTLSListen string
	fs.StringVar(&c.tls.certFile, "tls-cert", str("DUET_TLS_CERT", ""), "")
	fs.StringVar(&c.tls.keyFile, "tls-key", str("DUET_TLS_KEY", ""), "")
	fs.StringVar(&acmeDomains, "acme-domain", str("DUET_ACME_DOMAIN", ""), "")
	fs.StringVar(&c.tls.acmeEmail, "acme-email", str("DUET_ACME_EMAIL", ""), "")
	fs.StringVar(&c.tls.acmeDirectory, "acme-directory", str("DUET_ACME_DIRECTORY", ""), "")
	fs.StringVar(&c.tls.httpAddr, "http-addr", str("DUET_HTTP_ADDR", ""), "")
	fs.StringVar(&turnTLSListen, "turn-tls-listen", str("DUET_TURN_TLS_LISTEN", ""), "")
	fs.StringVar(&c.tls.turnHost, "turn-tls-host", str("DUET_TURN_TLS_HOST", ""), "")
	fs.StringVar(&pingInterval, "ws-ping-interval", str("DUET_WS_PING_INTERVAL", relay.DefaultPingInterval.String()), "")
	fs.StringVar(&pingTimeout, "ws-ping-timeout", str("DUET_WS_PING_TIMEOUT", relay.DefaultPingTimeout.String()), "")
	fs.StringVar(&maxSessions, "max-sessions-per-alias", str("DUET_MAX_SESSIONS_PER_ALIAS", ""), "")
	fs.StringVar(&queueBudget, "queue-budget", str("DUET_QUEUE_BUDGET", ""), "")
	fs.StringVar(&trusted, "trusted-proxies", str("DUET_TRUSTED_PROXIES", ""), "")
	fs.StringVar(&turnUser, "turn-user-allocations", str("DUET_TURN_USER_ALLOCATIONS", ""), "")
	fs.StringVar(&turnAll, "turn-allocations", str("DUET_TURN_ALLOCATIONS", ""), "")
	fs.StringVar(&pow, "register-pow", str("DUET_REGISTER_POW", ""), "")
	fs.StringVar(&c.metricsAddr, "metrics-addr", str("DUET_METRICS_ADDR", ""), "")
	fs.StringVar(&c.pprofAddr, "pprof-addr", str("DUET_PPROF_ADDR", ""), "")
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, flag.ErrHelp
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if noTURNTCP {
		c.turnTCP = false
	}
	addrSet := false
	fs.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
	if v, ok := lookup("DUET_ADDR"); ok && v != "" {
		addrSet = true
	}
	if err := parseTLSFlags(&c, addrSet, acmeDomains, turnTLSListen); err != nil {
		return c, err
	}
	var err error
	if err := c.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return c, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, logLevel)
	}
	if c.pingInterval, err = time.ParseDuration(pingInterval); err != nil || c.pingInterval < 0 {
		return c, fmt.Errorf("%w: --ws-ping-interval %q: want a duration such as 15s (0 for no pings)", errUsage, pingInterval)
	}
	if c.pingTimeout, err = time.ParseDuration(pingTimeout); err != nil || c.pingTimeout <= 0 {
		return c, fmt.Errorf("%w: --ws-ping-timeout %q: want a positive duration such as 10s", errUsage, pingTimeout)
	}
	if kvReplicas != "" {
		n, err := strconv.Atoi(kvReplicas)
		if err != nil || n < 1 || n > maxKVReplicas {
			return c, fmt.Errorf("%w: --kv-replicas %q: want a number from 1 to %d", errUsage, kvReplicas, maxKVReplicas)
		}
		if n > 1 && c.natsURL == "" {
			return c, fmt.Errorf("%w: --kv-replicas %d needs --nats-url: the embedded NATS is a single server", errUsage, n)
		}
		c.kvReplicas = n
	}
	if maxSessions != "" {
		n, err := strconv.Atoi(maxSessions)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%w: --max-sessions-per-alias %q: want a number of at least 1", errUsage, maxSessions)
		}
		c.maxSessions = n
	}
	if queueBudget != "" {
		n, err := parseSize(queueBudget)
		if err != nil || n < 1<<20 {
			return c, fmt.Errorf("%w: --queue-budget %q: want a size of at least 1MiB, e.g. 256MiB", errUsage, queueBudget)
		}
		c.queueBudget = n
	}
	if pow != "" {
		n, err := strconv.Atoi(pow)
		if err != nil || n < 0 || n > relay.MaxRegisterPoWBits {
			return c, fmt.Errorf("%w: --register-pow %q: want a number of bits from 0 (off) to %d", errUsage, pow, relay.MaxRegisterPoWBits)
		}
		c.registerPoW = n
	}
	for _, f := range []struct {
		name, v string
		dst     *int
	}{{"--turn-user-allocations", turnUser, &c.turnUserAllocs}, {"--turn-allocations", turnAll, &c.turnAllocs}} {
		if f.v == "" {
			continue
		}
		n, err := strconv.Atoi(f.v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%w: %s %q: want a number of at least 1", errUsage, f.name, f.v)
		}
		*f.dst = n
	}
	if c.trustedProxies, err = parsePrefixes("--trusted-proxies", trusted); err != nil {
		return c, err
	}
	for _, p := range strings.Split(allowPeers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return c, fmt.Errorf("%w: --turn-allow-peers: %q is not a CIDR prefix or an IP", errUsage, p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		c.turnAllowPeers = append(c.turnAllowPeers, prefix.Masked())
	}
	listenIP, err := parseTURNListen(c.turnListen)
	if err != nil && !c.noTURN {
		return c, err
	}
	switch {
	case c.turnPublicHost != "":
		c.publicHostSource = publicHostConfigured
	case listenIP.IsValid() && !listenIP.IsUnspecified() && listenIP.Zone() == "":
		// The server answers on that address only: advertise it, not an
		// address of the machine it does not listen on.
		c.turnPublicHost, c.publicHostSource = listenIP.String(), publicHostListen
	default:
		c.turnPublicHost, c.publicHostSource = machinePublicHost(), publicHostMachine
	}
	c.cfKeyID, c.cfToken = str("CF_TURN_KEY_ID", ""), str("CF_TURN_API_TOKEN", "")
	c.turnHost, c.turnSecret = str("TURN_HOST", ""), str("TURN_SECRET", "")
	c.twilioSID, c.twilioToken = str("TWILIO_ACCOUNT_SID", ""), str("TWILIO_AUTH_TOKEN", "")
	c.meteredApp, c.meteredKey = str("METERED_APP", ""), str("METERED_API_KEY", "")
	return c, nil
}

// parsePrefixes reads comma-separated CIDR prefixes or IPs.
func parsePrefixes(flag, v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, err2 := netip.ParseAddr(p)
			if err2 != nil {
				return nil, fmt.Errorf("%w: %s: %q is not a CIDR prefix or an IP", errUsage, flag, p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, prefix.Masked())
	}
	return out, nil
}

// parseSize reads a byte count: digits with an optional KiB, MiB or GiB
// (or K, M, G) suffix.
func parseSize(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size: %q", v)
	}
	return n * mult, nil
}

// parseTURNListen checks --turn-listen (an IP literal or no host, and a
// port) and returns its IP, the zero Addr for no host.
func parseTURNListen(listen string) (netip.Addr, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: --turn-listen %q: want IP:PORT or :PORT (%v)", errUsage, listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return netip.Addr{}, fmt.Errorf("%w: --turn-listen %q: port %q is not a number from 0 to 65535", errUsage, listen, port)
	}
	if host == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: --turn-listen %q: want an IP address, not a name (use :%s for every interface)", errUsage, listen, port)
	}
	return ip.Unmap(), nil
}

// machinePublicHost is the first non-loopback IPv4 address of the machine,
// else 127.0.0.1.
func machinePublicHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
					return ip4.String()
				}
			}
		}
	}
	return "127.0.0.1"
}

// cmdRelay is `duet relay`: it runs until SIGINT or SIGTERM.
func cmdRelay(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lookup, err := envLookup(".env")
	if err != nil {
		fmt.Fprintf(stderr, "duet relay: %v\n", err)
		return 2
	}
	return runRelay(ctx, args, stdout, stderr, lookup)
}

// runRelay runs the relay until ctx ends, then shuts down gracefully.
func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer, lookup lookupFunc) int {
	cfg, err := parseRelayConfig(args, lookup)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, relayUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "duet relay: %v\n\n%s", strings.TrimPrefix(err.Error(), "usage: "), relayUsage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	if err := serveRelay(ctx, cfg, log); err != nil {
		log.Error("duet relay: stopped", "err", err)
		return 1
	}
	return 0
}

func serveRelay(ctx context.Context, cfg relayConfig, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	setMemoryLimit(cfg, log)

	var rtls *relayTLS
	if cfg.tls.enabled() {
		var err error
		if rtls, err = buildTLS(cfg, log); err != nil {
			return err
		}
	}
	ln, turnShared, err := rtls.listen(cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	var turn *turnserver.Server
	var embedded *ice.Embedded
	if !cfg.noTURN {
		t, e, err := startTURN(ctx, cfg, rtls, turnShared, log)
		if err != nil {
			return err
		}
		turn, embedded = t, e
		defer turn.Close()
		reg.MustRegister(turn.Collectors()...)
	}
	resolver, err := ice.New(ice.Options{
		CloudflareKeyID: cfg.cfKeyID, CloudflareAPIToken: cfg.cfToken,
		TURNHost: cfg.turnHost, TURNSecret: cfg.turnSecret,
		TwilioAccountSID: cfg.twilioSID, TwilioAuthToken: cfg.twilioToken,
		MeteredApp: cfg.meteredApp, MeteredAPIKey: cfg.meteredKey,
		Embedded:   embedded,
		ForceRelay: cfg.forceRelay,
		Logger:     log.With("component", "ice"),
	})
	if err != nil {
		return fmt.Errorf("ICE configuration: %w", err)
	}
	reg.MustRegister(resolver.Collectors()...)

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	srv, err := relay.New(startCtx, relay.Options{
		NATSURL:         cfg.natsURL,
		DataDir:         cfg.dataDir,
		KVReplicas:      cfg.kvReplicas,
		KVReplicasLower: cfg.kvReplicasLower,
		ICE:             resolver,
		Logger:          log,
		Registry:        reg,
		PingInterval: func() time.Duration {
			if cfg.pingInterval == 0 {
				return -1 // no pings
			}
			return cfg.pingInterval
		}(),
		PingTimeout: cfg.pingTimeout,

		MaxSessionsPerAlias: cfg.maxSessions,
		QueueBudget:         cfg.queueBudget,
		TrustedProxies:      cfg.trustedProxies,
		RegisterPoWBits:     cfg.registerPoW,
		SeparateMetrics:     cfg.metricsAddr != "",
	})
	cancel()
	if err != nil {
		return err
	}
	if srv.Embedded() {
		log.Info("nats: embedded server with JetStream (no network port)", "store", filepath.Join(cfg.dataDir, "nats"))
	} else {
		log.Info("nats: joined external server", "url", redactURL(cfg.natsURL), "kv_replicas", srv.KVReplicas())
	}

	hs := newHTTPServer(web.Handler(srv.Handler()), log)
	serveErr := make(chan error, 3) // hs, the metrics and the pprof servers
	var stopAside []*http.Server
	go func() { serveErr <- hs.Serve(ln) }()
	// serveAside serves h on addr (a flag's), beside hs, until the relay
	// stops; it returns the listener's address.
	serveAside := func(flagName, addr string, h http.Handler, writeTimeout time.Duration) (string, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			_ = hs.Close()
			_ = srv.Shutdown(context.Background())
			return "", fmt.Errorf("listen %s: %w", flagName, err)
		}
		as := newHTTPServer(h, log)
		as.WriteTimeout = writeTimeout
		go func() { serveErr <- as.Serve(l) }()
		stopAside = append(stopAside, as)
		return l.Addr().String(), nil
	}
	defer func() {
		for _, as := range stopAside {
			_ = as.Close()
		}
	}()
	metrics := "/metrics"
	if cfg.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		a, err := serveAside("--metrics-addr", cfg.metricsAddr, mux, hs.WriteTimeout)
		if err != nil {
			return err
		}
		metrics = "http://" + a + "/metrics"
	}
	if cfg.pprofAddr != "" {
		// No write timeout: a CPU profile or trace streams for as long as asked.
		a, err := serveAside("--pprof-addr", cfg.pprofAddr, pprofMux(), 0)
		if err != nil {
			return err
		}
		log.Info("relay: serving profiles", "pprof", "http://"+a+"/debug/pprof/")
	}
	scheme := "http"
	if rtls != nil {
		scheme = "https"
		if cfg.tls.httpAddr != "" {
			rs, rln, err := rtls.redirectServer(cfg.tls.httpAddr, ln.Addr().String(), log)
			if err != nil {
				_ = hs.Close()
				_ = srv.Shutdown(context.Background())
				return err
			}
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			go func() {
				if err := serveHTTP(rctx, rs, rln); err != nil {
					log.Warn("http: redirect server", "err", err)
				}
			}()
			log.Info("relay: plain HTTP for ACME challenges and the redirect to https", "addr", rln.Addr().String())
		}
	}
	log.Info("relay: listening", "addr", ln.Addr().String(), "scheme", scheme, "app", "/", "websocket", "/api/v1/ws", "browser_sdk", "/sdk/duet.js", "metrics", metrics, "data_dir", cfg.dataDir)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("relay: signal received, shutting down")
	case err := <-serveErr:
		runErr = fmt.Errorf("http: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		log.Warn("http: shutdown", "err", err)
	}
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("relay: shutdown", "err", err)
	}
	log.Info("relay: stopped")
	return runErr
}

// pprofMux serves net/http/pprof's handlers (--pprof-addr).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// setMemoryLimit gives the Go runtime a soft memory limit of the queue
// budget plus 128 MiB (unless GOMEMLIMIT is set): the send queues and the
// routing shards together hold at most about a budget, and near the limit
// the garbage collector runs more often instead of letting the heap double.
func setMemoryLimit(cfg relayConfig, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	budget := cfg.queueBudget
	if budget <= 0 {
		budget = relay.DefaultQueueBudget()
	}
	limit := budget + 128<<20
	debug.SetMemoryLimit(limit)
	log.Debug("relay: soft memory limit", "bytes", limit)
}

// newHTTPServer is an http.Server with timeouts on every phase: a request's
// header within 10 s, the whole request (body included) within 30 s, the
// answer within 60 s, an idle keep-alive connection closed after 2 min.
// WebSockets are not affected: the relay clears the deadlines of a
// connection it takes over.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// startTURN starts the embedded TURN server and describes it for ice.
func startTURN(ctx context.Context, cfg relayConfig, rtls *relayTLS, shared net.Listener, log *slog.Logger) (*turnserver.Server, *ice.Embedded, error) {
	secretPath := filepath.Join(cfg.dataDir, "turn-secret")
	secret, err := turnserver.LoadOrCreateSecret(secretPath)
	if err != nil {
		return nil, nil, fmt.Errorf("TURN secret: %w", err)
	}
	var relayIP net.IP
	if ip := net.ParseIP(cfg.turnPublicHost); ip != nil {
		relayIP = ip
	} else if ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", cfg.turnPublicHost); err == nil && len(ips) > 0 {
		relayIP = ips[0]
	} else {
		log.Warn("turn: cannot resolve the public host; relayed addresses use the default", "host", cfg.turnPublicHost)
	}
	tc := turnserver.Config{
		ListenAddr:            cfg.turnListen,
		TCP:                   cfg.turnTCP,
		RelayIP:               relayIP,
		Secret:                secret,
		AllowPeers:            cfg.turnAllowPeers,
		MaxAllocationsPerUser: cfg.turnUserAllocs,
		MaxAllocations:        cfg.turnAllocs,
		Logger:                log.With("component", "turn"),
	}
	if rtls != nil && len(cfg.tls.turnListen) > 0 {
		tc.TLS, tc.TLSListenAddrs = rtls.cfg, cfg.tls.turnListen
	}
	if shared != nil {
		tc.Listeners = []net.Listener{shared}
	}
	t, err := turnserver.Start(ctx, tc)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded TURN: %w", err)
	}
	port := 3478
	if ap, err := netip.ParseAddrPort(t.Addr().String()); err == nil {
		port = int(ap.Port())
	}
	log.Info("turn: embedded STUN/TURN server", "listen", t.Addr().String(), "tcp", cfg.turnTCP,
		"public_host", cfg.turnPublicHost, "public_host_from", cfg.publicHostSource,
		"relay_ip", t.RelayIP().String(), "allow_peers", fmt.Sprint(cfg.turnAllowPeers), "secret_file", secretPath)
	e := &ice.Embedded{Host: cfg.turnPublicHost, Port: port, TCP: cfg.turnTCP, Secret: secret}
	if rtls != nil {
		e.TLSHost, e.TLSPorts = rtls.turnHost, tlsPorts(t.TLSAddrs())
		log.Info("turn: TURN over TLS", "host", e.TLSHost, "ports", fmt.Sprint(e.TLSPorts))
	}
	return t, e, nil
}

// redactURL hides the credentials of a URL, or of each URL of a
// comma-separated list (--nats-url), for logs.
func redactURL(u string) string {
	urls := strings.Split(u, ",")
	for k, u := range urls {
		if i := strings.LastIndex(u, "@"); i >= 0 {
			if j := strings.Index(u, "://"); j >= 0 && j < i {
				urls[k] = u[:j+3] + "[redacted]" + u[i:]
			} else {
				urls[k] = "[redacted]" + u[i:]
			}
		}
	}
	return strings.Join(urls, ",")
}
