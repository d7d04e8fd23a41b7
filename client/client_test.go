package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/wire"
)

func TestMain(m *testing.M) {
	backoffMin, backoffMax = 20*time.Millisecond, 200*time.Millisecond
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// countingICE counts ice-config requests the relay forwards to it.
type countingICE struct {
	r     *ice.Resolver
	calls atomic.Int32
}

func (c *countingICE) Get(ctx context.Context, a identity.Alias) (ice.Config, error) {
	c.calls.Add(1)
	return c.r.Get(ctx, a)
}

// testRelay is a real relay (embedded NATS) on a fixed loopback address so it
// can be restarted at the same place.
type testRelay struct {
	t    *testing.T
	dir  string
	addr string
	ice  *countingICE
	srv  *relay.Server
	hs   *http.Server
	opts relay.Options // the rest of the relay's options
}

func startRelay(t *testing.T) *testRelay {
	t.Helper()
	res, err := ice.New(ice.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := &testRelay{t: t, dir: t.TempDir(), ice: &countingICE{r: res}}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *testRelay) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := r.opts
	o.DataDir, o.ICE, o.Logger = r.dir, r.ice, slog.New(slog.DiscardHandler)
	srv, err := relay.New(ctx, o)
	if err != nil {
		r.t.Fatal(err)
	}
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv, r.hs = srv, &http.Server{Handler: srv.Handler()}
	go r.hs.Serve(ln)
}

func (r *testRelay) stop() {
	if r.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.srv.Shutdown(ctx)
	r.hs.Shutdown(ctx)
	r.srv = nil
}

func (r *testRelay) url() string { return "http://" + r.addr }

func newIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	m, err := identity.NewMnemonic(0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromMnemonic(m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// peer is a registered, connected client whose envelopes land in a channel.
type peer struct {
	c       *Client
	id      *identity.Identity
	envs    chan *wire.Envelope
	undeliv chan Undeliverable
}

func connect(t *testing.T, r *testRelay, id *identity.Identity, pins *PinStore) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alias, _, err := Register(ctx, nil, r.url(), id)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{id: id, envs: make(chan *wire.Envelope, 16), undeliv: make(chan Undeliverable, 16)}
	p.c, err = Connect(ctx, Options{
		RelayURL: r.url(), Identity: id, Alias: alias, Pins: pins,
		OnEnvelope:      func(e *wire.Envelope) { p.envs <- e },
		OnUndeliverable: func(u Undeliverable) { p.undeliv <- u },
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.c.Close() })
	return p
}

func envelope(to identity.Alias, id string) *wire.Envelope {
	return &wire.Envelope{Type: wire.TypeCallHangup, To: to, CallID: "call-1", CryptoV: wire.CryptoV2, Payload: "AAAA", ID: id}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestRegisterIsStable(t *testing.T) {
	r := startRelay(t)
	id := newIdentity(t)
	ctx := context.Background()
	a1, created1, err := Register(ctx, nil, r.url(), id)
	if err != nil || !created1 {
		t.Fatalf("first Register = %s, %v, %v", a1, created1, err)
	}
	a2, created2, err := Register(ctx, nil, r.url(), id)
	if err != nil || created2 || a2 != a1 {
		t.Fatalf("second Register = %s, %v, %v; want %s, not created", a2, created2, err, a1)
	}
}

func TestEnvelopesBothWaysAndUndeliverable(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	b := connect(t, r, newIdentity(t), nil)
	ctx := context.Background()

	if err := a.c.Send(ctx, envelope(b.c.Alias(), "m1")); err != nil {
		t.Fatal(err)
	}
	got := recv(t, b.envs, "a→b envelope")
	if got.From != a.c.Alias() || got.To != b.c.Alias() || got.Type != wire.TypeCallHangup {
		t.Fatalf("b got %+v", got)
	}
	if err := b.c.Send(ctx, envelope(a.c.Alias(), "")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a.envs, "b→a envelope"); got.From != b.c.Alias() {
		t.Fatalf("a got %+v", got)
	}

	// An alias that is registered but offline.
	offline := newIdentity(t)
	off, _, err := Register(ctx, nil, r.url(), offline)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.c.Send(ctx, envelope(off, "m2")); err != nil {
		t.Fatal(err)
	}
	u := recv(t, a.undeliv, "undeliverable notice")
	if u.ID != "m2" || u.To != off || u.Reason != "offline" {
		t.Fatalf("undeliverable = %+v", u)
	}
}

func TestConnectUnregisteredAliasIsUnauthorized(t *testing.T) {
	r := startRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Connect(ctx, Options{RelayURL: r.url(), Identity: newIdentity(t), Alias: "u00000001", Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Connect = %v, want ErrUnauthorized", err)
	}
}

func TestKeyPinning(t *testing.T) {
	r := startRelay(t)
	pinPath := filepath.Join(t.TempDir(), "peers.json")
	pins, err := OpenPinStore(pinPath)
	if err != nil {
		t.Fatal(err)
	}
	a := connect(t, r, newIdentity(t), pins)
	bID := newIdentity(t)
	b := connect(t, r, bID, nil)
	ctx := context.Background()

	keys, err := a.c.PeerKeys(ctx, b.c.Alias())
	if err != nil || !keys.Equal(bID.PublicKeys()) {
		t.Fatalf("PeerKeys = %v, %v", keys, err)
	}
	sn, ok := a.c.SafetyNumber(b.c.Alias())
	if !ok || sn != identity.SafetyNumber(bID.PublicKeys(), a.id.PublicKeys()) {
		t.Fatalf("SafetyNumber = %q, %v", sn, ok)
	}

	// The pin survives a reload; a different pinned key for b is a hard error.
	reloaded, err := OpenPinStore(pinPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := reloaded.Pinned(b.c.Alias()); !ok || !got.Equal(keys) {
		t.Fatal("pin not persisted")
	}
	if err := pins.Accept(b.c.Alias(), newIdentity(t).PublicKeys()); err != nil {
		t.Fatal(err)
	}
	_, err = a.c.PeerKeys(ctx, b.c.Alias())
	var kc *KeyChangedError
	if !errors.Is(err, ErrKeyChanged) || !errors.As(err, &kc) || kc.Peer != b.c.Alias() {
		t.Fatalf("PeerKeys after key change = %v, want *KeyChangedError", err)
	}
	// Still refused until accepted.
	if _, err := a.c.PeerKeys(ctx, b.c.Alias()); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("second PeerKeys = %v, want ErrKeyChanged", err)
	}
	// RelayKeys returns the relay's keys, without checking or pinning them.
	if got, err := a.c.RelayKeys(ctx, b.c.Alias()); err != nil || !got.Equal(bID.PublicKeys()) {
		t.Fatalf("RelayKeys = %v, %v; want b's keys", got, err)
	}
	if got, ok := a.c.PinnedKeys(b.c.Alias()); !ok || got.Equal(keys) {
		t.Fatalf("PinnedKeys = %v, %v; want the other pinned key", got, ok)
	}
	if _, err := a.c.AcceptKey(ctx, b.c.Alias()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.PeerKeys(ctx, b.c.Alias()); err != nil {
		t.Fatalf("PeerKeys after AcceptKey = %v", err)
	}
	if got, ok := a.c.PinnedKeys(b.c.Alias()); !ok || !got.Equal(keys) {
		t.Fatalf("PinnedKeys after AcceptKey = %v, %v; want b's keys", got, ok)
	}
	if _, ok := a.c.PinnedKeys("u00000000"); ok {
		t.Fatal("PinnedKeys reports a pin for a peer never seen")
	}
}

func TestICEConfigCachedByTTL(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	ctx := context.Background()
	cfg, err := a.c.ICEConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TTL <= 0 || cfg.ICETransportPolicy != "all" || len(cfg.ICEServers) == 0 {
		t.Fatalf("ICEConfig = %+v", cfg)
	}
	if _, err := a.c.ICEConfig(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.ice.calls.Load(); n != 1 {
		t.Fatalf("relay asked %d times, want 1 (cached)", n)
	}
}

// TestICEConfigExpires: the cached ICE config is used until its ttl less the
// margin (a tenth of the ttl, at most a minute) has passed since it was
// fetched, then fetched again and cached anew. The cache's clock is the
// client's internal hook.
func TestICEConfigExpires(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	var clock atomic.Int64 // offset from start, in nanoseconds
	start := time.Now()
	a.c.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
	ctx := context.Background()

	cfg, err := a.c.ICEConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(cfg.TTL) * time.Second
	if ttl <= 0 {
		t.Fatalf("ttl %d", cfg.TTL)
	}
	keep := ttl - min(ttl/10, time.Minute)
	fetch := func(at time.Duration, want int32) {
		t.Helper()
		clock.Store(int64(at))
		got, err := a.c.ICEConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.ICEServers) == 0 {
			t.Fatalf("at %v: ICE config %+v", at, got)
		}
		if n := r.ice.calls.Load(); n != want {
			t.Fatalf("at %v (kept for %v of the %v ttl): the relay was asked %d times, want %d", at, keep, ttl, n, want)
		}
	}
	fetch(keep-time.Nanosecond, 1) // still cached
	fetch(keep, 2)                 // expired: fetched again
	fetch(keep+keep/2, 2)          // the new one is cached
	fetch(2*keep-time.Nanosecond, 2)
	fetch(2*keep, 3) // and expires in turn
}

func TestReconnectAfterRelayRestart(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	b := connect(t, r, newIdentity(t), nil)
	sub := a.c.State().Subscribe()
	defer sub.Unsubscribe()
	if s := recv(t, sub.C(), "initial state"); s != StateConnected {
		t.Fatalf("state %s, want connected", s)
	}

	r.stop()
	if s := recv(t, sub.C(), "state after relay stop"); s != StateDisconnected && s != StateConnecting {
		t.Fatalf("state %s after the relay stopped", s)
	}
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send while down = %v, want ErrNotConnected", err)
	}
	r.start() // same address, same data dir: aliases survive
	waitState(t, a.c, StateConnected)
	waitState(t, b.c, StateConnected)
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "m9")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b.envs, "envelope after reconnect"); got.From != a.c.Alias() {
		t.Fatalf("got %+v", got)
	}
}

func waitState(t *testing.T, c *Client, want ConnState) {
	t.Helper()
	sub := c.State().Subscribe()
	defer sub.Unsubscribe()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-sub.C():
			if s == want {
				return
			}
		case <-deadline:
			t.Fatalf("state never became %s (now %s)", want, c.State().Get())
		}
	}
}

func TestPinStoreCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	for _, data := range []string{"{", `{"version":2,"peers":{}}`, `{"version":1,"peers":{"bogus":{"ed25519":"AA==","x25519":"AA=="}}}`} {
		if err := writeFile(path, data); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenPinStore(path); err == nil {
			t.Errorf("OpenPinStore(%q) accepted a bad file", data)
		}
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":  "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/": "http://127.0.0.1:8080",
		"ws://h:1":               "http://h:1",
		"wss://h":                "https://h",
	} {
		if got, err := baseURL(in); err != nil || got != want {
			t.Errorf("baseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "127.0.0.1:8080", "ftp://h", "http://"} {
		if _, err := baseURL(in); err == nil {
			t.Errorf("baseURL(%q) accepted", in)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 40 {
		d := backoff(attempt)
		if d < backoffMin/2 || d > backoffMax+backoffMin/2 {
			t.Fatalf("backoff(%d) = %v out of [%v, %v]", attempt, d, backoffMin/2, backoffMax+backoffMin/2)
		}
	}
}

// TestSendWithCancelledContextKeepsConnection: a caller's context that ends
// must not close the connection other exchanges share.
func TestSendWithCancelledContextKeepsConnection(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	b := connect(t, r, newIdentity(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.c.Send(ctx, envelope(b.c.Alias(), "")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v, want context.Canceled", err)
	}
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "")); err != nil {
		t.Fatalf("Send after a cancelled one = %v", err)
	}
	recv(t, b.envs, "envelope after a cancelled send")
	if s := a.c.State().Get(); s != StateConnected {
		t.Fatalf("state %s, want connected", s)
	}
}

// TestPinStoreSharedFile: two stores on one file, as a running `duet answer`
// and a `duet id accept` in another terminal: each sees the other's pins and
// accepted keys, and no save overwrites a pin the other made.
func TestPinStoreSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	peer, other := identity.Alias("u11111111"), identity.Alias("u22222222")
	answer, err := OpenPinStore(path)
	if err != nil {
		t.Fatal(err)
	}
	accept, err := OpenPinStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := answer.Check(peer, pinKeys(1)); err != nil { // first use: pinned
		t.Fatal(err)
	}
	// The other store sees the pin: a different key is a change, not a
	// first use.
	if err := accept.Check(peer, pinKeys(3)); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("second store: Check with another key = %v, want ErrKeyChanged", err)
	}
	if err := accept.Accept(peer, pinKeys(3)); err != nil {
		t.Fatal(err)
	}
	// The accepted key takes effect in the first store at once.
	if got, ok := answer.Pinned(peer); !ok || !got.Equal(pinKeys(3)) {
		t.Fatalf("first store: Pinned = %v, %v; want the accepted key", got, ok)
	}
	if err := answer.Check(peer, pinKeys(3)); err != nil {
		t.Fatalf("first store: Check with the accepted key = %v", err)
	}
	// A pin the first store makes now keeps the second store's accept.
	if err := answer.Check(other, pinKeys(5)); err != nil {
		t.Fatal(err)
	}
	reread, err := OpenPinStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := reread.Pinned(peer); !got.Equal(pinKeys(3)) {
		t.Errorf("file: %s pinned to %v, want the accepted key", peer, got)
	}
	if _, ok := reread.Pinned(other); !ok {
		t.Errorf("file: %s not pinned", other)
	}

	// Both stores pinning new peers at once lose none (the lock file
	// serialises the changes of the two).
	var wg sync.WaitGroup
	for i := range 20 {
		st := answer
		if i%2 == 1 {
			st = accept
		}
		wg.Go(func() {
			if err := st.Check(identity.Alias(fmt.Sprintf("u3%07d", i)), pinKeys(byte(10+i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if reread, err = OpenPinStore(path); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, ok := reread.Pinned(identity.Alias(fmt.Sprintf("u3%07d", i))); !ok {
			t.Errorf("file: u3%07d was pinned but is not in the file", i)
		}
	}

	// The file removed while the stores are open: they forget nothing (no
	// silent re-pin on first use), and the next change writes it again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := answer.Check(peer, pinKeys(7)); !errors.Is(err, ErrKeyChanged) {
		t.Errorf("after the file was removed: Check with another key = %v, want ErrKeyChanged", err)
	}
	if err := answer.Check(identity.Alias("u44444444"), pinKeys(9)); err != nil {
		t.Fatal(err)
	}
	if reread, err = OpenPinStore(path); err != nil {
		t.Fatal(err)
	}
	if got, _ := reread.Pinned(peer); !got.Equal(pinKeys(3)) {
		t.Errorf("file written again: %s pinned to %v, want the accepted key", peer, got)
	}
}

// The reader reuses one buffer per connection: an envelope handed to
// OnEnvelope must stay intact after the frames that follow it, a large
// one (past maxKeptReadBuffer) among them.
func TestReceivedEnvelopesOutliveTheNextFrames(t *testing.T) {
	r := startRelay(t)
	a := connect(t, r, newIdentity(t), nil)
	b := connect(t, r, newIdentity(t), nil)
	payloads := []string{
		strings.Repeat("A", 400),
		strings.Repeat("B", 400),
		strings.Repeat("C", 3*maxKeptReadBuffer/2),
		strings.Repeat("D", 400),
	}
	for i, p := range payloads {
		env := envelope(b.c.Alias(), fmt.Sprintf("e%d", i))
		env.Payload = p
		if err := a.c.Send(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	var got []*wire.Envelope
	for range payloads {
		got = append(got, recv(t, b.envs, "envelope"))
	}
	for i, env := range got {
		if env.ID != fmt.Sprintf("e%d", i) || env.Payload != payloads[i] || env.From != a.c.Alias() || env.CallID != "call-1" {
			t.Fatalf("envelope %d changed after later frames: id %q, payload %.20q… (%d bytes), from %s", i, env.ID, env.Payload, len(env.Payload), env.From)
		}
	}
}

// A pin file whose new version cannot be written (a full disk) stays as it
// was: the save fails, and neither the file nor the store holds the pin
// that was not saved.
func TestPinStoreFailedSaveKeepsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peers.json")
	peer, other := identity.Alias("u11111111"), identity.Alias("u22222222")
	s, err := OpenPinStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(peer, pinKeys(1)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := pinFileSync
	pinFileSync = func(*os.File) error { return errors.New("no space left on device") }
	t.Cleanup(func() { pinFileSync = orig })
	if err := s.Check(other, pinKeys(3)); err == nil {
		t.Fatal("Check saved a pin although the file could not be written")
	}
	pinFileSync = orig
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("pin file changed by a failed save: %v\n%s\nwas\n%s", err, after, before)
	}
	if _, ok := s.Pinned(other); ok {
		t.Fatal("the store kept a pin it could not save")
	}
	again, err := OpenPinStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := again.Pinned(peer); !ok || !bytes.Equal(got.Signing, pinKeys(1).Signing) {
		t.Fatalf("after a failed save the file pins %v, %v", got, ok)
	}
}

// pinKeys are made-up public keys for the pin store's tests, distinct per b.
func pinKeys(b byte) identity.PublicKeys {
	return identity.PublicKeys{Signing: bytes.Repeat([]byte{b}, 32), Agreement: bytes.Repeat([]byte{b + 1}, 32)}
}
