package call

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay"
	relayice "github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/relay/turnserver"
	"github.com/duetcall/duet/wire"
)

// testEnv is the relay every test shares: a relay node with embedded NATS
// behind an httptest server, and the embedded TURN server on loopback that
// its ice-config hands out.
var testEnv struct {
	relayURL   string
	turnAddr   *net.UDPAddr
	turnSecret []byte
	ice        *relayice.Resolver
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	quiet := slog.New(slog.DiscardHandler)
	if os.Getenv("DUET_TEST_RELAY_LOG") != "" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	turn, err := turnserver.Start(ctx, turnserver.Config{
		ListenAddr: "127.0.0.1:0",
		Secret:     secret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     quiet,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnserver:", err)
		return 1
	}
	defer turn.Close()
	testEnv.turnAddr = turn.Addr().(*net.UDPAddr)
	testEnv.turnSecret = secret
	res, err := relayice.New(relayice.Options{
		Embedded: &relayice.Embedded{Host: "127.0.0.1", Port: testEnv.turnAddr.Port, Secret: secret},
		Logger:   quiet,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ice resolver:", err)
		return 1
	}
	testEnv.ice = res
	dir, err := os.MkdirTemp("", "duet-call-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := relay.New(ctx, relay.Options{DataDir: dir, ICE: res, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	ts := httptest.NewServer(srv.Handler())
	testEnv.relayURL = ts.URL
	if err := waitReady(ctx, ts.URL); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	code := m.Run()
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	ts.Close()
	return code
}

// waitReady polls the relay's /readyz and then issues a challenge until
// both answer 200: the embedded JetStream may take a moment to serve.
func waitReady(ctx context.Context, url string) error {
	for {
		ok := true
		for _, r := range []struct{ method, path string }{{"GET", "/readyz"}, {"POST", "/api/v1/challenge"}} {
			req, _ := http.NewRequestWithContext(ctx, r.method, url+r.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ok = false
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				ok = false
				break
			}
		}
		if ok {
			http.DefaultClient.CloseIdleConnections()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkLeaks fails t if goroutines started during the test outlive it. Call
// it first, so that its cleanup runs after every other one.
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		// The shared TURN server keeps an allocation until its lifetime
		// ends when the client's deallocation was lost (a peer whose
		// network the test cut): the server's, not the module's.
		goleak.VerifyNone(t, opt,
			goleak.IgnoreAnyFunction("github.com/pion/turn/v5/internal/allocation.(*Allocation).packetConnHandler"))
	})
}

// testLogger logs to t (shown for failing tests, and with -v), at debug
// level with -v.
func testLogger(t testing.TB, name string) *slog.Logger {
	lvl := slog.LevelInfo
	if testing.Verbose() || os.Getenv("DUET_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	w := &tbWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("peer_name", name)
}

type tbWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// loopback makes pion use only IPv4 on the loopback interface, without
// mDNS, so tests do not depend on the machine's network.
func loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// peerOpt adjusts a test peer.
type peerOpt func(*peerConfig)

type peerConfig struct {
	name      string
	opts      Options                     // module options (Signaler is set by newPeer)
	gate      bool                        // route every pion socket through a gate the test can close
	engine    func(*webrtc.SettingEngine) // more SettingEngine settings
	tap       func(Kind, []byte)          // sees every received RTP payload
	id        *identity.Identity          // the identity (default: a new one)
	drop      func(*wire.Envelope) bool   // swallows sent envelopes
	onRestart func()                      // called when the module restarts ICE
	relayURL  string                      // another relay than the shared one
	logger    *slog.Logger                // the logger (default: testLogger)
	firstSeq  uint32                      // the epoch-0 key's first frame seq (hooks.firstSeq)
	callID    func() string               // the IDs of the calls placed (hooks.callID)
	addrs     func() []string             // the interface addresses watched (hooks.localAddrs)
	delay     time.Duration               // latency of the peer's links (withDelay)
}

func withOptions(f func(*Options)) peerOpt { return func(c *peerConfig) { f(&c.opts) } }
func withGate() peerOpt                    { return func(c *peerConfig) { c.gate = true } }
func withEngine(f func(*webrtc.SettingEngine)) peerOpt {
	return func(c *peerConfig) { c.engine = f }
}
func withTap(f func(Kind, []byte)) peerOpt         { return func(c *peerConfig) { c.tap = f } }
func withIdentity(id *identity.Identity) peerOpt   { return func(c *peerConfig) { c.id = id } }
func withDrop(f func(*wire.Envelope) bool) peerOpt { return func(c *peerConfig) { c.drop = f } }
func withRelay(url string) peerOpt                 { return func(c *peerConfig) { c.relayURL = url } }
func withOnRestart(f func()) peerOpt               { return func(c *peerConfig) { c.onRestart = f } }
func withLogger(l *slog.Logger) peerOpt            { return func(c *peerConfig) { c.logger = l } }
func withFirstSeq(seq uint32) peerOpt              { return func(c *peerConfig) { c.firstSeq = seq } }
func withCallIDs(f func() string) peerOpt          { return func(c *peerConfig) { c.callID = f } }
func withAddrs(f func() []string) peerOpt          { return func(c *peerConfig) { c.addrs = f } }

// withDelay gives the peer's links a one-way latency of d: every packet its
// pion sockets send (to the other peer, to STUN and TURN) arrives d later,
// every envelope it receives is handed to its module d after the relay
// delivered it, and every HTTP request to the relay (key lookups, the ICE
// configuration) takes d more. With both peers so, an envelope from one to
// the other takes d, as a packet does: the relay sits halfway.
func withDelay(d time.Duration) peerOpt { return func(c *peerConfig) { c.delay = d } }

// peer is one test user: an identity registered on the shared relay, a
// connected client and a call module.
type peer struct {
	t        testing.TB
	name     string
	id       *identity.Identity
	alias    identity.Alias
	hc       *http.Client
	cl       *client.Client
	sig      *tapSignaler
	mod      *Module
	gate     *gate
	incoming chan incomingCall
	errs     chan error
	closed   atomic.Bool
}

type incomingCall struct {
	from    identity.Alias
	isVideo bool
}

// newIdentity returns a fresh identity.
func newIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	m, err := identity.NewMnemonic(12)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromMnemonic(m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newPeer registers a user on the shared relay, connects it and creates its
// module. Everything is closed when the test ends.
func newPeer(t testing.TB, name string, opts ...peerOpt) *peer {
	t.Helper()
	cfg := peerConfig{name: name}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.id == nil {
		cfg.id = newIdentity(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := &peer{
		t: t, name: name, id: cfg.id,
		hc:       newPeerHTTPClient(t, cfg.delay),
		incoming: make(chan incomingCall, 4),
		errs:     make(chan error, 8),
	}
	url := testEnv.relayURL
	if cfg.relayURL != "" {
		url = cfg.relayURL
	}
	alias, _, err := client.Register(ctx, p.hc, url, cfg.id)
	if err != nil {
		t.Fatalf("%s: register: %v", name, err)
	}
	p.alias = alias
	log := cfg.logger
	if log == nil {
		log = testLogger(t, name)
	}
	var modp atomic.Pointer[Module]
	handle := func(e *wire.Envelope) {
		if m := modp.Load(); m != nil {
			m.HandleEnvelope(e)
		}
	}
	deliver := handle
	if cfg.delay > 0 {
		line := newDelayLine(cfg.delay)
		t.Cleanup(line.close)
		deliver = func(e *wire.Envelope) { line.put(func() { handle(e) }) }
	}
	p.cl, err = client.Connect(ctx, client.Options{
		RelayURL:   url,
		Identity:   cfg.id,
		Alias:      alias,
		HTTPClient: p.hc,
		Logger:     log,
		OnEnvelope: func(e *wire.Envelope) {
			log.Debug("test: envelope received", "type", e.Type)
			deliver(e)
		},
		OnUndeliverable: func(u client.Undeliverable) {
			if m := modp.Load(); m != nil {
				m.HandleUndeliverable(u)
			}
		},
		OnRelayError: func(e client.RelayError) {
			if m := modp.Load(); m != nil {
				m.HandleRelayError(e)
			}
		},
	})
	if err != nil {
		t.Fatalf("%s: connect: %v", name, err)
	}
	p.sig = &tapSignaler{Client: p.cl, drop: cfg.drop, log: log}
	o := cfg.opts
	o.Signaler = p.sig
	o.Logger = log
	o.OnIncomingCall = func(from identity.Alias, isVideo bool) {
		select {
		case p.incoming <- incomingCall{from, isVideo}:
		default:
		}
	}
	o.OnError = func(err error) {
		select {
		case p.errs <- err:
		default:
		}
	}
	p.mod = New(o)
	var h testHooks
	var engineNet transport.Net
	if cfg.gate || cfg.delay > 0 {
		n, err := stdnet.NewNet()
		if err != nil {
			t.Fatal(err)
		}
		engineNet = n
		if cfg.delay > 0 {
			engineNet = delayedNet(engineNet, cfg.delay)
		}
		if cfg.gate {
			p.gate = &gate{}
			engineNet = &gatedNet{Net: engineNet, g: p.gate}
		}
	}
	h.settingEngine = func(se *webrtc.SettingEngine) {
		loopback(se)
		if engineNet != nil {
			se.SetNet(engineNet)
		}
		if cfg.engine != nil {
			cfg.engine(se)
		}
	}
	if cfg.tap != nil {
		tap := cfg.tap
		h.rtpTap = func(k Kind, pkt *rtp.Packet) { tap(k, pkt.Payload) }
	}
	if cfg.onRestart != nil {
		f := cfg.onRestart
		h.onRestart = func(string) { f() }
	}
	h.firstSeq = cfg.firstSeq
	h.callID = cfg.callID
	if tm, ok := timingsFor(t); ok {
		h.timings = &tm
	}
	h.localAddrs = cfg.addrs
	p.mod.setHooks(h)
	modp.Store(p.mod)
	t.Cleanup(p.close)
	return p
}

// close closes the module, then the client.
func (p *peer) close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	_ = p.mod.Close()
	_ = p.cl.Close()
	p.hc.CloseIdleConnections()
}

// newPeerHTTPClient returns an HTTP client of its own, whose idle
// connections are closed when the test ends (so no goroutine outlives it),
// which counts the key lookups made through it and whose requests take
// delay more.
func newPeerHTTPClient(t testing.TB, delay time.Duration) *http.Client {
	hc := &http.Client{Transport: &countingTransport{Transport: &http.Transport{}, delay: delay}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// countingTransport counts the key lookups (GET /api/v1/keys/...) made
// through it.
type countingTransport struct {
	*http.Transport
	keyLookups atomic.Int64
	failKeys   atomic.Bool  // key lookups fail as if the relay were unreachable
	keysDelay  atomic.Int64 // key lookups take this long more (ns)
	delay      time.Duration
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/api/v1/keys/") {
		c.keyLookups.Add(1)
		select {
		case <-time.After(time.Duration(c.keysDelay.Load())):
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		if c.failKeys.Load() {
			return nil, errors.New("test: key lookups fail")
		}
	}
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	return c.Transport.RoundTrip(r)
}

// failKeyLookups makes p's key lookups fail (or work again).
func (p *peer) failKeyLookups(fail bool) {
	p.hc.Transport.(*countingTransport).failKeys.Store(fail)
}

// slowKeyLookups makes p's key lookups take d more.
func (p *peer) slowKeyLookups(d time.Duration) {
	p.hc.Transport.(*countingTransport).keysDelay.Store(int64(d))
}

// keyLookups returns how many times p's client asked the relay for keys.
func (p *peer) keyLookups() int64 {
	return p.hc.Transport.(*countingTransport).keyLookups.Load()
}

// newPair returns two peers, a (the caller) and b.
func newPair(t *testing.T, opts ...peerOpt) (a, b *peer) {
	t.Helper()
	return newPeer(t, "a", opts...), newPeer(t, "b", opts...)
}

// waitState waits until p's state is want and returns the status.
func (p *peer) waitState(want State, timeout time.Duration) Status {
	p.t.Helper()
	sub := p.mod.State().Subscribe()
	defer sub.Unsubscribe()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last Status
	for {
		select {
		case st, ok := <-sub.C():
			if !ok {
				p.t.Fatalf("%s: state closed waiting for %s; last %+v", p.name, want, last)
			}
			last = st
			if st.State == want {
				return st
			}
		case <-deadline.C:
			p.t.Fatalf("%s: state %s not reached within %v; last %+v; stats %+v", p.name, want, timeout, last, p.mod.Stats())
		}
	}
}

// waitEnd waits until p's call is over (a terminal state) and returns the
// status.
func (p *peer) waitEnd(timeout time.Duration) Status {
	p.t.Helper()
	return p.waitEndWith("", timeout)
}

// waitEndWith waits for the end of a call with peer (any call when peer
// is empty): a device that still shows an earlier call's end is not taken
// for having ended the next one.
func (p *peer) waitEndWith(peer identity.Alias, timeout time.Duration) Status {
	p.t.Helper()
	sub := p.mod.State().Subscribe()
	defer sub.Unsubscribe()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last Status
	for {
		select {
		case st, ok := <-sub.C():
			if !ok {
				p.t.Fatalf("%s: state closed waiting for the end; last %+v", p.name, last)
			}
			last = st
			if st.State.Terminal() && (peer == "" || st.Peer == peer) {
				return st
			}
		case <-deadline.C:
			p.t.Fatalf("%s: the call did not end within %v; last %+v", p.name, timeout, last)
		}
	}
}

// waitIncoming waits for an incoming call.
func (p *peer) waitIncoming(timeout time.Duration) incomingCall {
	p.t.Helper()
	select {
	case in := <-p.incoming:
		return in
	case <-time.After(timeout):
		p.t.Fatalf("%s: no incoming call within %v (state %+v)", p.name, timeout, p.mod.State().Get())
	}
	return incomingCall{}
}

// waitStats polls p's stats until ok returns true.
func (p *peer) waitStats(timeout time.Duration, what string, ok func(Stats) bool) Stats {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := p.mod.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s not reached within %v; stats %+v", p.name, what, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connect has a call p and b in a connected call (b answers).
func connect(t *testing.T, a, b *peer, md Media) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.mod.Call(ctx, b.alias, md); err != nil {
		t.Fatalf("Call: %v", err)
	}
	in := b.waitIncoming(10 * time.Second)
	if in.from != a.alias || in.isVideo != md.Video {
		t.Fatalf("incoming call %+v, want from %s video %v", in, a.alias, md.Video)
	}
	if err := b.mod.Answer(ctx); err != nil {
		t.Fatalf("Answer: %v", err)
	}
	a.waitState(StateConnected, 20*time.Second)
	b.waitState(StateConnected, 20*time.Second)
}

// tapSignaler is a client that records what it sends and can swallow
// envelopes.
type tapSignaler struct {
	*client.Client
	drop func(*wire.Envelope) bool
	// notConnected: while above zero, Send fails as a client whose relay
	// connection is down does (and counts down).
	notConnected atomic.Int32
	log          *slog.Logger
	mu           sync.Mutex
	sent         []wire.Envelope
}

func (s *tapSignaler) Send(ctx context.Context, env *wire.Envelope) error {
	if s.notConnected.Add(-1) >= 0 {
		return client.ErrNotConnected
	}
	s.notConnected.Store(0)
	env.From = s.Client.Alias()
	s.mu.Lock()
	s.sent = append(s.sent, *env)
	s.mu.Unlock()
	if s.drop != nil && s.drop(env) {
		return nil
	}
	s.log.Debug("test: envelope sending", "type", env.Type)
	err := s.Client.Send(ctx, env)
	s.log.Debug("test: envelope sent", "type", env.Type)
	return err
}

// sentOf returns the envelopes of type typ sent so far.
func (s *tapSignaler) sentOf(typ wire.Type) []wire.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Envelope
	for _, e := range s.sent {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// gate drops every packet of the sockets made through a gatedNet while it
// is closed: to the peer, the process behind it is gone.
type gate struct{ blocked atomic.Bool }

func (g *gate) block()   { g.blocked.Store(true) }
func (g *gate) unblock() { g.blocked.Store(false) }

type gatedNet struct {
	transport.Net
	g *gate
}

func (n *gatedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &gatedPacketConn{PacketConn: c, g: n.g}, nil
}

func (n *gatedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &gatedUDPConn{UDPConn: c, g: n.g}, nil
}

func (n *gatedNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return &gatedUDPConn{UDPConn: c, g: n.g}, nil
}

type gatedPacketConn struct {
	net.PacketConn
	g *gate
}

func (c *gatedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.g.blocked.Load() {
			return n, a, err
		}
	}
}

func (c *gatedPacketConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if c.g.blocked.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, a)
}

type gatedUDPConn struct {
	transport.UDPConn
	g *gate
}

func (c *gatedUDPConn) Read(p []byte) (int, error) {
	for {
		n, err := c.UDPConn.Read(p)
		if err != nil || !c.g.blocked.Load() {
			return n, err
		}
	}
}

func (c *gatedUDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.UDPConn.ReadFrom(p)
		if err != nil || !c.g.blocked.Load() {
			return n, a, err
		}
	}
}

func (c *gatedUDPConn) ReadFromUDP(p []byte) (int, *net.UDPAddr, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDP(p)
		if err != nil || !c.g.blocked.Load() {
			return n, a, err
		}
	}
}

func (c *gatedUDPConn) ReadMsgUDP(p, oob []byte) (int, int, int, *net.UDPAddr, error) {
	for {
		n, oobn, flags, a, err := c.UDPConn.ReadMsgUDP(p, oob)
		if err != nil || !c.g.blocked.Load() {
			return n, oobn, flags, a, err
		}
	}
}

func (c *gatedUDPConn) Write(p []byte) (int, error) {
	if c.g.blocked.Load() {
		return len(p), nil
	}
	return c.UDPConn.Write(p)
}

func (c *gatedUDPConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if c.g.blocked.Load() {
		return len(p), nil
	}
	return c.UDPConn.WriteTo(p, a)
}

func (c *gatedUDPConn) WriteToUDP(p []byte, a *net.UDPAddr) (int, error) {
	if c.g.blocked.Load() {
		return len(p), nil
	}
	return c.UDPConn.WriteToUDP(p, a)
}

func (c *gatedUDPConn) WriteMsgUDP(p, oob []byte, a *net.UDPAddr) (int, int, error) {
	if c.g.blocked.Load() {
		return len(p), len(oob), nil
	}
	return c.UDPConn.WriteMsgUDP(p, oob, a)
}

// errIs reports whether any error in ch wraps target, waiting up to timeout.
func waitErr(ch chan error, target error, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case err := <-ch:
			if errors.Is(err, target) {
				return err
			}
		case <-deadline:
			return nil
		}
	}
}

// waitEpoch waits until a and b both use media key epoch.
func waitEpoch(timeout time.Duration, epoch uint32, a, b *peer) {
	for _, p := range []*peer{a, b} {
		p.waitStats(timeout, fmt.Sprintf("epoch %d", epoch), func(s Stats) bool { return s.KeyEpoch == epoch })
	}
}

// waitMoreAudio waits until a and b have each received n more audio frames
// than when it was called, and returns their stats then.
func waitMoreAudio(timeout time.Duration, what string, n uint64, a, b *peer) [2]Stats {
	before := [2]uint64{a.mod.Stats().AudioFramesReceived, b.mod.Stats().AudioFramesReceived}
	var st [2]Stats
	for i, p := range []*peer{a, b} {
		st[i] = p.waitStats(timeout, what, func(s Stats) bool { return s.AudioFramesReceived >= before[i]+n })
	}
	return st
}
