package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// testRelay is a relay node behind a real HTTP server.
type testRelay struct {
	srv *Server
	ts  *httptest.Server
}

// testLogger logs to t with -v; otherwise it keeps the last lines at info
// level and up, and shows them only when t fails (a rare failure under load
// then says what the relay saw).
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(&tbWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(failureLog(t, "relay"), nil))
}

// tailLog keeps the last tailLogSize bytes written to it.
type tailLog struct {
	mu   sync.Mutex
	buf  []byte
	lost bool // earlier lines were dropped
}

const tailLogSize = 64 << 10

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - tailLogSize; over > 0 {
		cut := over
		if i := bytes.IndexByte(l.buf[over:], '\n'); i >= 0 {
			cut += i + 1
		}
		l.buf = append(l.buf[:0], l.buf[cut:]...)
		l.lost = true
	}
	return len(p), nil
}

// failureLog is a tailLog whose lines t logs, under name, if it fails.
func failureLog(t testing.TB, name string) *tailLog {
	l := &tailLog{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.buf) == 0 {
			return
		}
		head := name + "'s log"
		if l.lost {
			head += " (its end)"
		}
		t.Logf("%s:\n%s", head, l.buf)
	})
	return l
}

type tbWriter struct{ t testing.TB }

func (w *tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRelay starts a relay; opts.DataDir defaults to a temporary directory.
// tune, if not nil, adjusts the tunables before the relay starts.
func startRelay(t testing.TB, opts Options, tune func(*tunables)) *testRelay {
	t.Helper()
	if opts.DataDir == "" && opts.NATSURL == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	opts.tune = func(tu *tunables) {
		if tune != nil {
			tune(tu)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	r := &testRelay{srv: srv, ts: httptest.NewServer(srv.Handler())}
	t.Cleanup(r.stop)
	return r
}

func (r *testRelay) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	r.ts.Close()
}

// testID is a user's long-term key pair.
type testID struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	x    []byte
}

func newID(t testing.TB) *testID {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]byte, 32)
	rand.Read(x)
	return &testID{priv: priv, pub: pub, x: x}
}

var b64 = base64.StdEncoding

// do sends an HTTP request and decodes the JSON answer into out (if not nil).
func (r *testRelay) do(t testing.TB, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		if s, ok := body.(string); ok {
			b = []byte(s)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.ts.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (r *testRelay) challenge(t testing.TB) []byte {
	t.Helper()
	var c struct {
		Challenge []byte `json:"challenge"`
		ExpiresIn int    `json:"expires_in"`
	}
	if code := r.do(t, "POST", "/api/v1/challenge", "", nil, &c); code != 200 || len(c.Challenge) != 32 || c.ExpiresIn != 60 {
		t.Fatalf("challenge: %d %+v", code, c)
	}
	return c.Challenge
}

type registerResult struct {
	Alias   identity.Alias `json:"alias"`
	Created bool           `json:"created"`
	Error   string         `json:"error"`
	Message string         `json:"message"`
}

// tryRegister registers id with the challenge ch, signed by signer.
func (r *testRelay) tryRegister(t testing.TB, id *testID, ch []byte, signer ed25519.PrivateKey) (int, registerResult) {
	t.Helper()
	sig := ed25519.Sign(signer, RegisterMessage(ch, id.x))
	var res registerResult
	code := r.do(t, "POST", "/api/v1/register", "", map[string]string{
		"ed25519": b64.EncodeToString(id.pub), "x25519": b64.EncodeToString(id.x),
		"challenge": b64.EncodeToString(ch), "signature": b64.EncodeToString(sig),
	}, &res)
	return code, res
}

func (r *testRelay) register(t testing.TB, id *testID) identity.Alias {
	t.Helper()
	code, res := r.tryRegister(t, id, r.challenge(t), id.priv)
	if code != 200 || !res.Alias.Valid() {
		t.Fatalf("register: %d %+v", code, res)
	}
	return res.Alias
}

// testClient is a WebSocket client. A reader goroutine (unless started with
// noRead) collects frames.
type testClient struct {
	t      testing.TB
	conn   *websocket.Conn
	alias  identity.Alias
	token  string
	frames chan map[string]any
	raw    chan []byte
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
}

func (r *testRelay) dial(t testing.TB) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(r.ts.URL, "http", "ws", 1)+"/api/v1/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func readJSON(t testing.TB, conn *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return m
}

func writeJSONFrame(t testing.TB, conn *websocket.Conn, v any) {
	t.Helper()
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// authFrameFor answers a challenge frame.
func authFrameFor(t testing.TB, ch map[string]any, alias identity.Alias, priv ed25519.PrivateKey) map[string]string {
	t.Helper()
	f, err := answerChallenge(ch, alias, priv)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// answerChallenge is authFrameFor, for any goroutine.
func answerChallenge(ch map[string]any, alias identity.Alias, priv ed25519.PrivateKey) (map[string]string, error) {
	if ch["type"] != "challenge" {
		return nil, fmt.Errorf("first frame %v, want a challenge", ch)
	}
	s, _ := ch["challenge"].(string)
	c, err := b64.DecodeString(s)
	if err != nil || len(c) != 32 {
		return nil, fmt.Errorf("challenge %v", ch)
	}
	return map[string]string{"type": "auth", "alias": string(alias), "signature": b64.EncodeToString(ed25519.Sign(priv, WSAuthMessage(c)))}, nil
}

// connect opens an authenticated session for alias.
func (r *testRelay) connect(t testing.TB, id *testID, alias identity.Alias) *testClient {
	return r.connectOpt(t, id, alias, false)
}

func (r *testRelay) connectOpt(t testing.TB, id *testID, alias identity.Alias, noRead bool) *testClient {
	t.Helper()
	conn := r.dial(t)
	writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), alias, id.priv))
	ready := readJSON(t, conn)
	if ready["type"] != "ready" || ready["alias"] != string(alias) || ready["token_expires_in"] != 3600.0 {
		t.Fatalf("ready: %v", ready)
	}
	c := &testClient{t: t, conn: conn, alias: alias, token: ready["token"].(string),
		frames: make(chan map[string]any, 4096), raw: make(chan []byte, 4096), done: make(chan struct{})}
	if !noRead {
		go c.readLoop()
	}
	return c
}

func (c *testClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			m = map[string]any{"unparsable": string(b)}
		}
		select {
		case c.frames <- m:
		default:
		}
		select {
		case c.raw <- b:
		default:
		}
	}
}

// next returns the next frame, failing after d.
func (c *testClient) next(d time.Duration) map[string]any {
	c.t.Helper()
	select {
	case m := <-c.frames:
		<-c.raw
		return m
	case <-time.After(d):
		c.t.Fatalf("%s: no frame within %v", c.alias, d)
		return nil
	}
}

// none asserts that no frame arrives within d.
func (c *testClient) none(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.frames:
		c.t.Fatalf("%s: unexpected frame %v", c.alias, m)
	case <-time.After(d):
	}
}

// closed waits for the connection to close and returns its close status.
func (c *testClient) closed(d time.Duration) websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.t.Fatalf("%s: still open after %v", c.alias, d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return websocket.CloseStatus(c.err)
}

func (c *testClient) send(v any) {
	c.t.Helper()
	writeJSONFrame(c.t, c.conn, v)
}

var callSeq int

// env builds an envelope from c to to.
func (c *testClient) env(to identity.Alias, id string) *wire.Envelope {
	callSeq++
	return &wire.Envelope{Type: wire.TypeCallOffer, To: to, From: c.alias, CallID: fmt.Sprintf("call-%d", callSeq),
		CryptoV: 2, Payload: b64.EncodeToString([]byte("sealed " + id)), ID: id}
}

// expectEnvelope waits for an envelope frame and checks it equals want.
func (c *testClient) expectEnvelope(want *wire.Envelope) {
	c.t.Helper()
	select {
	case <-c.frames:
		b := <-c.raw
		got, err := wire.DecodeEnvelope(b)
		if err != nil {
			c.t.Fatalf("%s: got %q: %v", c.alias, b, err)
		}
		if *got != *want {
			c.t.Fatalf("%s: got %+v, want %+v", c.alias, got, want)
		}
	case <-time.After(5 * time.Second):
		c.t.Fatalf("%s: no envelope within 5s", c.alias)
	}
}

// expectError waits for an error notice with code.
func (c *testClient) expectError(code, id string) {
	c.t.Helper()
	m := c.next(5 * time.Second)
	if m["type"] != "error" || m["code"] != code || m["message"] == "" {
		c.t.Fatalf("%s: got %v, want error %s", c.alias, m, code)
	}
	if gotID, _ := m["id"].(string); gotID != id {
		c.t.Fatalf("%s: error id %q, want %q", c.alias, gotID, id)
	}
}

// user is a registered identity with its alias.
type user struct {
	id    *testID
	alias identity.Alias
}

func (r *testRelay) newUser(t testing.TB) user {
	id := newID(t)
	return user{id, r.register(t, id)}
}

// metric reads one sample from the relay's /metrics page, e.g.
// `duet_relay_drops_total{reason="slow_consumer"}`.
func (r *testRelay) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := r.ts.Client().Get(r.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errTest = errors.New("test: provider down")
