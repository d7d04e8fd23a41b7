// Package turnserver runs duet's embedded STUN/TURN server, built on
// pion/turn, with ephemeral credentials in the TURN REST scheme
// (draft-uberti-behave-turn-rest-00, as coturn's use-auth-secret): the relay
// hands out "<expiry>:<alias>" usernames whose password is an HMAC of the
// username under a secret only the relay and this server know (see
// [Credentials] and [LoadOrCreateSecret]).
//
// The server only relays to public addresses: CreatePermission, ChannelBind
// and Connect towards private (RFC 1918, ULA fc00::/7), loopback, link-local,
// multicast, unspecified and other special-purpose addresses are refused with
// 403 before any packet is sent, unless the peer is inside
// [Config.AllowPeers]. pion/turn's default admits every peer, which would turn
// a public relay into a proxy into the operator's own network.
package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for [Config].
const (
	DefaultListenAddr = ":3478"
	// DefaultTLSListenAddr is where TURN over TLS listens (Config.TLS).
	DefaultTLSListenAddr = ":5349"
	DefaultRealm         = "duet"
)

// tcpPortAttempts bounds the kernel-picked UDP ports tried for one that is
// free for TCP too (Config.TCP with port 0).
const tcpPortAttempts = 10

var (
	// ErrConfig is returned (wrapped) by [Start] for an unusable [Config].
	ErrConfig = errors.New("turnserver: invalid config")
	// ErrNoRelayIP is returned (wrapped) by [Start] when Config.RelayIP is
	// unset and no non-loopback IPv4 address exists to default to.
	ErrNoRelayIP = errors.New("turnserver: no relay address")
)

// Config configures the embedded server. Only Secret is required.
type Config struct {
	// ListenAddr is the UDP address to serve STUN/TURN on (and the TCP
	// address too when TCP is set): an IP literal or empty host, and a port.
	// Default ":3478"; port 0 picks a free one (see [Server.Addr]), and TCP
	// then takes the same number.
	ListenAddr string
	// TCP also serves TURN over TCP on the same port number.
	TCP bool
	// TLS, when set, serves TURN over TLS (turns:) on every address of
	// TLSListenAddrs (default ":5349").
	TLS            *tls.Config
	TLSListenAddrs []string
	// Listeners are more TURN listeners yielding connections whose TLS the
	// caller already terminated (tlsmux: TURN sharing the relay's HTTPS
	// port). Start serves them and Close closes them.
	Listeners []net.Listener
	// RelayIP is the address relayed allocations are reported at
	// (XOR-RELAYED-ADDRESS), i.e. what peers send to. Behind 1:1 NAT (cloud
	// VMs) set it to the public address: relay sockets are still bound to
	// the listening address (all interfaces by default). Default: 127.0.0.1
	// when listening on loopback, the listening IP when it is a specific
	// one, else the first non-loopback, non-link-local IPv4 address.
	RelayIP net.IP
	// RelayPortMin and RelayPortMax, when both set, restrict relay sockets to
	// that port range (for firewalls). Default: any ephemeral port.
	RelayPortMin, RelayPortMax uint16
	// Realm is the STUN realm. Default "duet".
	Realm string
	// Secret is the REST secret shared with relay/ice (at least
	// MinSecretSize bytes); see LoadOrCreateSecret.
	Secret []byte
	// AllowPeers are admitted as peers despite the deny rules, e.g.
	// 127.0.0.0/8 for tests on loopback. When RelayIP itself is a private
	// address and two clients must relay to each other through this server
	// (both forced to relay), add RelayIP/32 here.
	AllowPeers []netip.Prefix
	// Logger receives what the server does; nil means slog.Default().
	// Passwords and the secret are never logged.
	Logger *slog.Logger
	// Now is the clock credential expiry is checked against; nil means
	// time.Now.
	Now func() time.Time
	// MaxAllocationsPerUser caps the live allocations of one user (the
	// alias in the credential); MaxAllocations caps them in all. Past
	// either, Allocate is answered 486 (Allocation Quota Reached). Zero
	// means DefaultMaxAllocationsPerUser and DefaultMaxAllocations.
	MaxAllocationsPerUser, MaxAllocations int
}

// Server is a running embedded TURN server.
type Server struct {
	turn       *turn.Server
	udp        net.PacketConn   // the first of the UDP sockets
	udps       []net.PacketConn // every socket sharing the UDP port (udpSocketCount)
	tcp        net.Listener
	tls        []net.Listener // TURN over TLS, then Config.Listeners
	relayIP    net.IP
	realm      string
	secret     []byte
	allowPeers []netip.Prefix
	log        *slog.Logger
	now        func() time.Time

	allocations  prometheus.Counter
	active       prometheus.GaugeFunc
	authFailures *prometheus.CounterVec
	deniedPeers  *prometheus.CounterVec
	quota        *quota
	tcpGuard     *tcpGuard
	channels     *channels
	loop         *udpLoop                 // reads the UDP sockets (Linux; nil elsewhere)
	loopDrops    []prometheus.CounterFunc // duet_turn_dropped_total, by dropReasons
}

// Start listens on cfg.ListenAddr and serves until Close. ctx bounds only
// the start (like net.ListenConfig.Listen): cancelling it later does not
// stop the server.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if len(cfg.Secret) < MinSecretSize {
		return nil, fmt.Errorf("%w: secret is %d bytes, want at least %d (use LoadOrCreateSecret)",
			ErrConfig, len(cfg.Secret), MinSecretSize)
	}
	if (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) || cfg.RelayPortMin > cfg.RelayPortMax {
		return nil, fmt.Errorf("%w: relay port range %d-%d", ErrConfig, cfg.RelayPortMin, cfg.RelayPortMax)
	}
	listenAddr := cfg.ListenAddr
	if listenAddr == "" {
		listenAddr = DefaultListenAddr
	}
	host, port, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: listen address %q: %w", ErrConfig, listenAddr, err)
	}
	var listenIP netip.Addr
	if host != "" {
		if listenIP, err = netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("%w: listen address %q: want an IP address, not a name", ErrConfig, listenAddr)
		}
		listenIP = listenIP.Unmap()
	}
	relayIP, err := chooseRelayIP(cfg.RelayIP, listenIP)
	if err != nil {
		return nil, err
	}

	s := &Server{
		relayIP: relayIP,
		realm:   cfg.Realm,
		secret:  append([]byte(nil), cfg.Secret...),
		log:     cfg.Logger,
		now:     cfg.Now,
	}
	if s.realm == "" {
		s.realm = DefaultRealm
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, p := range cfg.AllowPeers {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.allowPeers = append(s.allowPeers, p.Masked())
	}
	s.initMetrics()
	s.quota = newQuota(cfg.MaxAllocationsPerUser, cfg.MaxAllocations)
	s.tcpGuard = newTCPGuard()

	// One address family throughout: a dual-stack socket would let IPv6
	// clients ask for allocations the relay address cannot serve.
	udpNet, tcpNet, bindHost := "udp4", "tcp4", "0.0.0.0"
	if relayIP.To4() == nil {
		udpNet, tcpNet, bindHost = "udp6", "tcp6", "::"
	}
	if listenIP.IsValid() && !listenIP.IsUnspecified() {
		bindHost = listenIP.String()
	}

	var lc net.ListenConfig
	// TCP takes the same port number as UDP, also when the UDP port was
	// picked by the kernel: then a number already taken for TCP (by any
	// socket of the machine) is given back and another one picked.
	closeUDP := func() {
		for _, c := range s.udps {
			c.Close()
		}
		s.udp, s.udps = nil, nil
	}
	for attempt := 1; ; attempt++ {
		s.udps, err = listenUDP(ctx, udpNet, listenAddr, udpSocketCount(port))
		if err != nil {
			return nil, fmt.Errorf("turnserver: listen %s %s: %w", udpNet, listenAddr, err)
		}
		s.udp = s.udps[0]
		if !cfg.TCP {
			break
		}
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(s.udp.LocalAddr().(*net.UDPAddr).Port))
		if port != "0" {
			tcpAddr = listenAddr
		}
		s.tcp, err = lc.Listen(ctx, tcpNet, tcpAddr)
		if err == nil {
			break
		}
		closeUDP()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == tcpPortAttempts {
			return nil, fmt.Errorf("turnserver: listen %s %s: %w", tcpNet, tcpAddr, err)
		}
	}
	if s.tcp != nil {
		s.tcp = s.tcpGuard.wrap(s.tcp)
	}
	if got := readBuffer(s.udp); got > 0 && got < listenSocketBuffer {
		s.log.Warn("turn: the UDP listening sockets' receive buffers are smaller than asked for (the kernel caps them at net.core.rmem_max): a burst of packets beyond them is dropped; raise it (sysctl -w net.core.rmem_max=4194304) or run with CAP_NET_ADMIN",
			"got_bytes", got, "asked_bytes", listenSocketBuffer)
	}

	if cfg.TLS != nil {
		addrs := cfg.TLSListenAddrs
		if len(addrs) == 0 {
			addrs = []string{DefaultTLSListenAddr}
		}
		for _, a := range addrs {
			ln, err := lc.Listen(ctx, tcpNet, a)
			if err != nil {
				s.closeListeners()
				return nil, fmt.Errorf("turnserver: listen TLS %s %s: %w", tcpNet, a, err)
			}
			// Guarded beneath TLS: pion/turn sees the *tls.Conn and bounds
			// its handshake itself.
			s.tls = append(s.tls, tls.NewListener(s.tcpGuard.wrap(ln), cfg.TLS))
		}
	}
	for _, ln := range cfg.Listeners {
		s.tls = append(s.tls, s.tcpGuard.wrap(ln))
	}

	newGen := func() turn.RelayAddressGenerator {
		if cfg.RelayPortMin != 0 {
			return &turn.RelayAddressGeneratorPortRange{
				RelayAddress: relayIP, Address: bindHost,
				MinPort: cfg.RelayPortMin, MaxPort: cfg.RelayPortMax,
			}
		}
		return &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: bindHost}
	}
	ch := newChannels()
	s.channels = ch
	// One loop reads the UDP sockets and their allocations' relay sockets
	// (Linux).
	if s.loop, err = newUDPLoop(); err != nil {
		s.closeListeners()
		return nil, err
	}
	for i, c := range s.udps {
		ls, err := s.loop.listenSocket(c, s.quota, ch)
		if err != nil {
			s.loop.stop()
			s.closeListeners()
			return nil, err
		}
		s.udps[i] = ls
	}
	s.udp = s.udps[0]
	ch.out = s.udp
	sc := turn.ServerConfig{
		Realm:         s.realm,
		AuthHandler:   s.authHandler,
		LoggerFactory: pionLogs{s.log},
		QuotaHandler:  s.quota.allow,
		EventHandler: turn.EventHandler{
			OnAuth: func(src, _ net.Addr, _, username, _, method string, verdict bool) {
				if !verdict {
					s.authFailures.WithLabelValues(authBadIntegrity).Inc()
					s.log.Debug("turn: refused wrong password", "src", src, "method", method)
				}
			},
			OnChannelCreated: func(src, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, num uint16) {
				ch.created(src, relayAddr, peer, num)
			},
			OnChannelDeleted: func(src, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, num uint16) {
				ch.deleted(src, relayAddr, peer, num)
			},
			OnAllocationDeleted: func(src, _ net.Addr, _, userID, _ string) {
				s.quota.deleted(userID, src)
			},
			OnAllocationCreated: func(src, _ net.Addr, protocol, userID, _ string, relayAddr net.Addr, _ int) {
				s.quota.created(userID, src)
				s.tcpGuard.allocated(src)
				s.allocations.Inc()
				s.log.Debug("turn: allocation", "src", src, "protocol", protocol, "user", userID, "relay", relayAddr)
			},
		},
	}
	// One config per socket: pion/turn handles each one's requests on a
	// goroutine of its own, with its own allocations (a client's packets
	// always reach the same socket of a SO_REUSEPORT group).
	for _, c := range s.udps {
		if !s.loop.reads(c) {
			// (the loop relays and tarpits its sockets' datagrams itself)
			c = listenConn{c, s.quota, ch}
		}
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn:            c,
			RelayAddressGenerator: udpRelays{newGen(), ch, s.loop},
			PermissionHandler:     s.permit,
		})
	}
	for _, ln := range append([]net.Listener{s.tcp}, s.tls...) {
		if ln == nil {
			continue
		}
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener:              ln,
			RelayAddressGenerator: newGen(),
			PermissionHandler:     s.permit,
		})
	}
	s.turn, err = turn.NewServer(sc)
	if err != nil {
		s.loop.stop()
		s.closeListeners()
		return nil, fmt.Errorf("turnserver: start: %w", err)
	}
	attrs := []any{"udp", s.udp.LocalAddr().String(), "udp_sockets", len(s.udps), "relay_ip", relayIP.String(), "realm", s.realm}
	if s.tcp != nil {
		attrs = append(attrs, "tcp", s.tcp.Addr().String())
	}
	for _, ln := range s.tls {
		attrs = append(attrs, "tls", ln.Addr().String())
	}
	if len(s.allowPeers) > 0 {
		attrs = append(attrs, "allow_peers", fmt.Sprint(s.allowPeers))
	}
	s.log.Info("turn: embedded STUN/TURN server started", attrs...)
	if ip, ok := netip.AddrFromSlice(relayIP); ok {
		if reason := s.denyReason(ip); reason != "" {
			// A server on a private network: its clients' own addresses
			// are refused as peers too, so relayed calls between them fail.
			s.log.Warn("turn: the relay address is "+reason+"; peers at such addresses (this machine, its network) are refused, so relayed calls between them fail unless AllowPeers admits them (duet relay --turn-allow-peers, e.g. "+ip.String()+"/32)",
				"relay_ip", ip.String())
		}
	}
	return s, nil
}

// chooseRelayIP applies the RelayIP defaults documented on Config.
func chooseRelayIP(configured net.IP, listenIP netip.Addr) (net.IP, error) {
	if configured != nil {
		ip, ok := netip.AddrFromSlice(configured)
		if !ok || ip.Unmap().IsUnspecified() || ip.Unmap().IsMulticast() {
			return nil, fmt.Errorf("%w: relay IP %v is not a unicast address", ErrConfig, configured)
		}
		return net.IP(ip.Unmap().AsSlice()), nil
	}
	switch {
	case listenIP.IsLoopback():
		return net.IPv4(127, 0, 0, 1).To4(), nil
	case listenIP.IsValid() && !listenIP.IsUnspecified():
		return net.IP(listenIP.AsSlice()), nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("%w: list interfaces: %w; set RelayIP", ErrNoRelayIP, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
			return ip4, nil
		}
	}
	return nil, fmt.Errorf("%w: no non-loopback IPv4 interface; set RelayIP", ErrNoRelayIP)
}

// Addr is the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// closeListeners closes what Start opened before it failed.
func (s *Server) closeListeners() {
	for _, c := range s.udps {
		c.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	for _, ln := range s.tls {
		ln.Close()
	}
}

// TLSAddrs are the addresses TURN over TLS is served on (Config.TLS, then
// Config.Listeners).
func (s *Server) TLSAddrs() []net.Addr {
	out := make([]net.Addr, 0, len(s.tls))
	for _, ln := range s.tls {
		out = append(out, ln.Addr())
	}
	return out
}

// TCPAddr is the TCP address the server listens on, nil without Config.TCP.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// RelayIP is the address relayed allocations are advertised at.
func (s *Server) RelayIP() net.IP { return append(net.IP(nil), s.relayIP...) }

// Realm is the STUN realm the server authenticates in.
func (s *Server) Realm() string { return s.realm }

// Close stops the server: listeners and every allocation are closed.
func (s *Server) Close() error {
	err := s.turn.Close()
	s.tcpGuard.close()
	s.loop.stop()
	if err != nil {
		return fmt.Errorf("turnserver: close: %w", err)
	}
	return nil
}

// dropReasons label duet_turn_dropped_total, in udpLoop.dropped's order.
var dropReasons = [...]string{"queue_full", "send_buffer_full"}

func (s *Server) initMetrics() {
	s.allocations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duet_turn_allocations_total",
		Help: "TURN allocations created by the embedded server.",
	})
	s.active = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duet_turn_allocations_active",
		Help: "TURN allocations currently held by the embedded server.",
	}, func() float64 {
		if s.turn == nil {
			return 0
		}
		return float64(s.turn.AllocationCount())
	})
	s.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_turn_auth_failures_total",
		Help: "TURN requests refused for their credentials, by reason (malformed, expired, bad_integrity).",
	}, []string{"reason"})
	s.deniedPeers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_turn_denied_peers_total",
		Help: "TURN permissions refused because the peer address is not public, by class.",
	}, []string{"reason"})
	for i, r := range dropReasons {
		s.loopDrops = append(s.loopDrops, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "duet_turn_dropped_total",
			Help:        "UDP datagrams the embedded server dropped itself, by reason: queue_full (a socket's queue for the TURN protocol handler was full), send_buffer_full (a socket's send buffer was full). Drops at a full receive buffer are the kernel's: /proc/net/snmp RcvbufErrors.",
			ConstLabels: prometheus.Labels{"reason": r},
		}, func() float64 { return float64(s.loop.dropped()[i]) }))
	}
	for _, r := range []string{authMalformed, authExpired, authBadIntegrity} {
		s.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{denyInvalid, denyUnspecified, denyLoopback, denyPrivate, denyLinkLocal, denyMulticast, denyReserved} {
		s.deniedPeers.WithLabelValues(r)
	}
}

// Collectors returns the server's Prometheus metrics for the caller to
// register: duet_turn_allocations_total, duet_turn_allocations_active,
// duet_turn_auth_failures_total{reason}, duet_turn_denied_peers_total{reason},
// the quota's duet_turn_quota_refused_total and duet_turn_quota_dropped_total,
// duet_turn_dropped_total{reason}, and the TCP and TLS connections'
// duet_turn_tcp_refused_total{reason} and duet_turn_tcp_unallocated_total.
func (s *Server) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{s.allocations, s.active, s.authFailures, s.deniedPeers, s.quota.refused, s.quota.dropped, s.tcpGuard.refused, s.tcpGuard.unallocated}
	for _, c := range s.loopDrops {
		cs = append(cs, c)
	}
	return cs
}
