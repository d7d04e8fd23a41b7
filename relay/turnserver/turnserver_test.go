package turnserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/duetcall/duet/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// startServer starts a server on loopback with the given tweaks applied.
func startServer(t *testing.T, tweak func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		ListenAddr: "127.0.0.1:0",
		RelayIP:    net.IPv4(127, 0, 0, 1),
		Secret:     testSecret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newClient returns a pion/turn client talking UDP to s from loopback.
func newClient(t *testing.T, s *Server, username, password string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newClientOn(t, conn, s.Addr().String(), username, password)
}

func newClientOn(t *testing.T, conn net.PacketConn, server, username, password string) *turn.Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       username,
		Password:       password,
		LoggerFactory:  pionLogs{slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func allocate(t *testing.T, c *turn.Client) net.PacketConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relayConn, err := c.AllocateWithContext(ctx)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { relayConn.Close() })
	return relayConn
}

// newPeer listens for a peer on loopback, closed at the end of the test,
// and gives it and relayConn a deadline 20 s away.
func newPeer(t *testing.T, relayConn net.PacketConn) net.PacketConn {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	deadline := time.Now().Add(20 * time.Second)
	peer.SetDeadline(deadline)
	relayConn.SetDeadline(deadline)
	return peer
}

func turnErrorCode(err error) stun.ErrorCode {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return te.ErrorCodeAttr.Code
	}
	return 0
}

func counterValue(t *testing.T, vec *prometheus.CounterVec, label string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(label).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestRelayRoundTrip(t *testing.T) {
	s := startServer(t, nil)
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	c := newClient(t, s, user, pass)
	relayConn := allocate(t, c)

	relayAddr := relayConn.LocalAddr().(*net.UDPAddr)
	if !relayAddr.IP.Equal(net.IPv4(127, 0, 0, 1)) || relayAddr.Port == 0 {
		t.Fatalf("relayed address = %v, want 127.0.0.1:<port>", relayAddr)
	}

	peer := newPeer(t, relayConn)

	// Client → relay → peer. The first WriteTo creates the permission.
	if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
		t.Fatalf("relay WriteTo: %v", err)
	}
	buf := make([]byte, 1500)
	n, from, err := peer.ReadFrom(buf)
	if err != nil {
		t.Fatalf("peer ReadFrom: %v", err)
	}
	if string(buf[:n]) != "ping" {
		t.Fatalf("peer got %q, want ping", buf[:n])
	}
	if from.(*net.UDPAddr).Port != relayAddr.Port {
		t.Fatalf("peer got the packet from %v, want the relayed address %v", from, relayAddr)
	}

	// Peer → relay → client.
	if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	n, from, err = relayConn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("relay ReadFrom: %v", err)
	}
	if string(buf[:n]) != "pong" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("client got %q from %v, want pong from %v", buf[:n], from, peer.LocalAddr())
	}

	if got := metricValue(t, s.allocations); got != 1 {
		t.Errorf("duet_turn_allocations_total = %v, want 1", got)
	}
	if got := metricValue(t, s.active); got != 1 {
		t.Errorf("duet_turn_allocations_active = %v, want 1", got)
	}
}

func TestAllocateOverTCP(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TCP = true })
	if s.TCPAddr() == nil || s.TCPAddr().(*net.TCPAddr).Port != s.Addr().(*net.UDPAddr).Port {
		t.Fatalf("TCP address %v, want the UDP port %v", s.TCPAddr(), s.Addr())
	}
	tcp, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	c := newClientOn(t, turn.NewSTUNConn(tcp), s.TCPAddr().String(), user, pass)
	relayConn := allocate(t, c)
	if !relayConn.LocalAddr().(*net.UDPAddr).IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relayed address = %v", relayConn.LocalAddr())
	}
}

func TestAuthRefused(t *testing.T) {
	// The server's clock is fixed far from the wall clock: expiry is judged
	// by the injected clock only.
	now := time.Date(2031, 5, 4, 12, 0, 0, 0, time.UTC)
	validUser, validPass := Credentials(testSecret, "u12345678", now.Add(time.Minute))
	expiredUser, expiredPass := Credentials(testSecret, "u12345678", now.Add(-time.Second))
	atNowUser, atNowPass := Credentials(testSecret, "u12345678", now)
	otherUser, otherPass := Credentials([]byte("another-secret-another-secret!!"), "u12345678", now.Add(time.Minute))

	tests := []struct {
		name       string
		user, pass string
		reason     string // "" = allocation succeeds
	}{
		{"valid by the server clock", validUser, validPass, ""},
		{"wrong password", validUser, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", authBadIntegrity},
		{"other secret", otherUser, otherPass, authBadIntegrity},
		{"expired", expiredUser, expiredPass, authExpired},
		{"expiring now", atNowUser, atNowPass, authExpired},
		{"not a REST username", "alice", validPass, authMalformed},
		{"non-numeric expiry", "soon:u12345678", validPass, authMalformed},
		{"empty user", "1999999999:", validPass, authMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, func(c *Config) { c.Now = func() time.Time { return now } })
			c := newClient(t, s, tt.user, tt.pass)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			relayConn, err := c.AllocateWithContext(ctx)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Allocate: %v", err)
				}
				relayConn.Close()
				return
			}
			if err == nil {
				relayConn.Close()
				t.Fatal("Allocate succeeded, want 401")
			}
			if code := turnErrorCode(err); code != stun.CodeUnauthorized {
				t.Fatalf("Allocate error = %v, want 401 Unauthorized", err)
			}
			if got := counterValue(t, s.authFailures, tt.reason); got != 1 {
				t.Errorf("auth failures{reason=%s} = %v, want 1", tt.reason, got)
			}
			if got := metricValue(t, s.allocations); got != 0 {
				t.Errorf("allocations = %v, want 0", got)
			}
		})
	}
}

func TestPermissionDenied(t *testing.T) {
	// No AllowPeers: the production deny rules apply. Refusal happens on
	// CreatePermission, before the server sends anything to the peer.
	s := startServer(t, func(c *Config) { c.AllowPeers = nil })
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	c := newClient(t, s, user, pass)
	allocate(t, c)

	for _, tt := range []struct{ peer, reason string }{
		{"127.0.0.1", denyLoopback},
		{"10.1.2.3", denyPrivate},
		{"192.168.1.1", denyPrivate},
		{"172.31.0.7", denyPrivate},
		{"169.254.169.254", denyLinkLocal}, // cloud metadata service
		{"224.0.0.251", denyMulticast},
		{"0.0.0.0", denyUnspecified},
		{"100.64.0.1", denyReserved},
	} {
		before := counterValue(t, s.deniedPeers, tt.reason)
		err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(tt.peer), Port: 9})
		if code := turnErrorCode(err); code != stun.CodeForbidden {
			t.Errorf("CreatePermission(%s) error = %v, want 403 Forbidden", tt.peer, err)
		}
		if got := counterValue(t, s.deniedPeers, tt.reason); got != before+1 {
			t.Errorf("denied peers{reason=%s} = %v after %s, want %v", tt.reason, got, tt.peer, before+1)
		}
	}

	// A public peer is admitted (no packet is sent by CreatePermission).
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("203.0.113.5"), Port: 9}); err != nil {
		t.Errorf("CreatePermission(203.0.113.5) = %v, want success", err)
	}
}

func TestPeerDenyReason(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"8.8.8.8", ""},
		{"203.0.113.5", ""},
		{"2001:4860:4860::8888", ""},
		{"127.0.0.1", denyLoopback},
		{"127.255.255.254", denyLoopback},
		{"::1", denyLoopback},
		{"::ffff:127.0.0.1", denyLoopback},
		{"::ffff:10.0.0.1", denyPrivate},
		{"10.0.0.1", denyPrivate},
		{"172.16.0.1", denyPrivate},
		{"172.32.0.1", ""},
		{"192.168.0.1", denyPrivate},
		{"fd00::1", denyPrivate},
		{"fc00::1", denyPrivate},
		{"169.254.1.1", denyLinkLocal},
		{"fe80::1", denyLinkLocal},
		{"224.0.0.1", denyMulticast},
		{"239.255.255.250", denyMulticast},
		{"ff02::1", denyMulticast},
		{"ff0e::1", denyMulticast},
		{"0.0.0.0", denyUnspecified},
		{"::", denyUnspecified},
		{"0.1.2.3", denyReserved},
		{"100.127.255.255", denyReserved},
		{"255.255.255.255", denyReserved},
		{"198.18.0.1", denyReserved},
		{"fec0::1", denyReserved},
		{"64:ff9b::a00:1", denyPrivate},   // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", denyLoopback}, // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", ""},          // NAT64 of 8.8.8.8
		{"2002:c0a8:101::1", denyPrivate}, // 6to4 of 192.168.1.1
		{"2002:808:808::1", ""},           // 6to4 of 8.8.8.8
		{"64:ff9b:1::1", denyReserved},    // local-use NAT64
	} {
		if got := peerDenyReason(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("peerDenyReason(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got := peerDenyReason(netip.Addr{}); got != denyInvalid {
		t.Errorf("peerDenyReason(zero) = %q, want %q", got, denyInvalid)
	}
}

func TestAllowPeers(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.initMetrics()
	s.allowPeers = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	if !s.permit(nil, net.ParseIP("10.9.1.2")) {
		t.Error("10.9.1.2 refused despite AllowPeers 10.9.0.0/16")
	}
	if !s.permit(nil, net.ParseIP("::ffff:10.9.1.2")) {
		t.Error("v4-mapped 10.9.1.2 refused despite AllowPeers 10.9.0.0/16")
	}
	if s.permit(nil, net.ParseIP("10.8.1.2")) {
		t.Error("10.8.1.2 admitted")
	}
	if s.permit(nil, net.IP{1, 2, 3}) {
		t.Error("a 3-byte IP admitted")
	}
}

// TestPrivateRelayIPWarning: a server whose relay address it would itself
// refuse as a peer (a private network) says so at start, naming the
// AllowPeers fix; one that admits it says nothing.
func TestPrivateRelayIPWarning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow []netip.Prefix
		warn  bool
	}{
		{"loopback refused", nil, true},
		{"loopback admitted", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncbuf.Buffer
			startServer(t, func(c *Config) {
				c.AllowPeers = tc.allow
				c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
			})
			got := strings.Contains(buf.String(), "the relay address is loopback") && strings.Contains(buf.String(), "127.0.0.1/32")
			if got != tc.warn {
				t.Errorf("warning logged: %v, want %v; log:\n%s", got, tc.warn, buf.String())
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	// Vector: printf '1700000000:u12345678' | openssl dgst -sha1 -hmac "$secret" -binary | base64
	user, pass := Credentials([]byte("0123456789abcdef0123456789abcdef"), "u12345678", time.Unix(1700000000, 0))
	if user != "1700000000:u12345678" || pass != "13LCUBI3ONuBlK6NZAr+/7kS5vc=" {
		t.Fatalf("Credentials = %q, %q", user, pass)
	}

	// pion/turn's own REST handler derives the same long-term key.
	expiry := time.Now().Add(time.Hour)
	user, pass = Credentials(testSecret, "u87654321", expiry)
	pionHandler := turn.LongTermTURNRESTAuthHandler(string(testSecret), nil)
	id, key, ok := pionHandler(&turn.RequestAttributes{Username: user, Realm: DefaultRealm})
	if !ok || id != "u87654321" || !bytes.Equal(key, turn.GenerateAuthKey(user, DefaultRealm, pass)) {
		t.Fatalf("pion handler: id=%q ok=%v key mismatch=%v", id, ok, !bytes.Equal(key, turn.GenerateAuthKey(user, DefaultRealm, pass)))
	}
	s := &Server{secret: testSecret, realm: DefaultRealm, now: time.Now, log: slog.New(slog.DiscardHandler)}
	s.initMetrics()
	id2, key2, ok2 := s.authHandler(&turn.RequestAttributes{Username: user, Realm: "ignored"})
	if !ok2 || id2 != id || !bytes.Equal(key2, key) {
		t.Fatalf("authHandler = %q %v, want the same key as pion's", id2, ok2)
	}
}

func TestStartConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no secret":         {ListenAddr: "127.0.0.1:0"},
		"short secret":      {ListenAddr: "127.0.0.1:0", Secret: []byte("short")},
		"host name":         {ListenAddr: "localhost:0", Secret: testSecret},
		"no port":           {ListenAddr: "127.0.0.1", Secret: testSecret},
		"half port range":   {ListenAddr: "127.0.0.1:0", Secret: testSecret, RelayPortMin: 40000},
		"inverted range":    {ListenAddr: "127.0.0.1:0", Secret: testSecret, RelayPortMin: 50000, RelayPortMax: 40000},
		"multicast relay":   {ListenAddr: "127.0.0.1:0", Secret: testSecret, RelayIP: net.ParseIP("224.0.0.1")},
		"unspecified relay": {ListenAddr: "127.0.0.1:0", Secret: testSecret, RelayIP: net.IPv4zero},
	} {
		s, err := Start(context.Background(), cfg)
		if !errors.Is(err, ErrConfig) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: Start error = %v, want ErrConfig", name, err)
		}
	}
}

func TestDefaultRelayIP(t *testing.T) {
	s := startServer(t, func(c *Config) { c.RelayIP = nil })
	if !s.RelayIP().Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("RelayIP on loopback = %v, want 127.0.0.1", s.RelayIP())
	}
	ip, err := chooseRelayIP(nil, netip.Addr{})
	if err != nil {
		if !errors.Is(err, ErrNoRelayIP) {
			t.Fatalf("chooseRelayIP(all interfaces): %v, want a non-loopback IPv4 or ErrNoRelayIP", err)
		}
		t.Skipf("no non-loopback IPv4 here: %v", err) // a host with loopback only
	}
	if ip.To4() == nil || ip.IsLoopback() {
		t.Errorf("chooseRelayIP(all interfaces) = %v, want a non-loopback IPv4", ip)
	}
}

func TestRelayPortRange(t *testing.T) {
	s := startServer(t, func(c *Config) { c.RelayPortMin, c.RelayPortMax = 40000, 40100 })
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	relayConn := allocate(t, newClient(t, s, user, pass))
	if p := relayConn.LocalAddr().(*net.UDPAddr).Port; p < 40000 || p > 40100 {
		t.Errorf("relay port %d outside 40000-40100", p)
	}
}

// TestExpiryOnlyGatesNewAllocations: credentials that expire during a call
// keep the call's allocation working, but cannot create a new one.
func TestExpiryOnlyGatesNewAllocations(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Date(2031, 5, 4, 12, 0, 0, 0, time.UTC)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := startServer(t, func(c *Config) { c.Now = clock })
	user, pass := Credentials(testSecret, "u12345678", clock().Add(time.Minute))
	c := newClient(t, s, user, pass)
	allocate(t, c)

	mu.Lock()
	now = now.Add(2 * time.Minute) // the credentials have expired
	mu.Unlock()
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Fatalf("CreatePermission on the existing allocation after expiry: %v", err)
	}
	c2 := newClient(t, s, user, pass)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c2.AllocateWithContext(ctx); turnErrorCode(err) != stun.CodeUnauthorized {
		t.Fatalf("new Allocate with expired credentials: %v, want 401", err)
	}
	if got := counterValue(t, s.authFailures, authExpired); got != 1 {
		t.Errorf("expired refusals = %v, want 1", got)
	}
}

// TestSeveralSockets: on a fixed port the server listens with one socket
// per CPU (SO_REUSEPORT, reads in batches), and clients spread over them by
// address all get relayed, both ways.
func TestSeveralSockets(t *testing.T) {
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	s := startServer(t, func(c *Config) { c.ListenAddr = fmt.Sprintf("127.0.0.1:%d", port) })
	if want := udpSocketCount(strconv.Itoa(port)); len(s.udps) != want || (runtime.GOMAXPROCS(0) > 1 && want < 2) {
		t.Fatalf("%d UDP sockets, want %d (one per CPU)", len(s.udps), want)
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	deadline := time.Now().Add(10 * time.Second)
	peer.SetDeadline(deadline)
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	buf := make([]byte, 1500)
	for i := range 8 {
		relayConn := allocate(t, newClient(t, s, user, pass))
		relayConn.SetDeadline(deadline)
		msg := fmt.Sprintf("ping %d", i)
		if _, err := relayConn.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
			t.Fatalf("client %d: relay WriteTo: %v", i, err)
		}
		n, from, err := peer.ReadFrom(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("client %d: peer got %q, %v; want %q", i, buf[:n], err, msg)
		}
		if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
			t.Fatal(err)
		}
		if n, _, err := relayConn.ReadFrom(buf); err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("client %d: got %q, %v; want pong", i, buf[:n], err)
		}
	}
	if got := metricValue(t, s.active); got != 8 {
		t.Errorf("duet_turn_allocations_active = %v, want 8", got)
	}
}

// TestPortInUse: a second server on a fixed port the first one serves
// fails to start, SO_REUSEPORT notwithstanding.
func TestPortInUse(t *testing.T) {
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	startServer(t, func(c *Config) { c.ListenAddr = addr })
	s, err := Start(context.Background(), Config{ListenAddr: addr, RelayIP: net.IPv4(127, 0, 0, 1), Secret: testSecret, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		s.Close()
		t.Fatalf("a second server on %s started; want an error (address in use)", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second server on %s: %v; want address in use", addr, err)
	}
}
