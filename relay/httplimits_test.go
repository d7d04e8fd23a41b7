package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		remote, xff string
		trusted     []netip.Prefix
		want        string
	}{
		{"203.0.113.5:4000", "", nil, "203.0.113.5"},
		{"203.0.113.5:4000", "198.51.100.7", nil, "203.0.113.5"}, // not from a trusted proxy
		{"127.0.0.1:4000", "", nil, ""},                          // loopback: not limited
		{"[::1]:4000", "", nil, ""},
		{"10.1.1.1:4000", "198.51.100.7, 10.2.2.2", proxies, "198.51.100.7"},
		{"10.1.1.1:4000", "192.0.2.1, 198.51.100.7", proxies, "198.51.100.7"}, // the rightmost untrusted: the client may forge the left
		{"10.1.1.1:4000", "junk, 10.2.2.2", proxies, "10.2.2.2"},
		{"127.0.0.1:4000", "198.51.100.8", proxies, "198.51.100.8"},
		{"[2001:db8:1:2:3::4]:4000", "", nil, "2001:db8:1:2::/64"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientKey(r, tc.trusted); got != tc.want {
			t.Errorf("clientKey(%s, XFF %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// post sends a JSON POST with X-Forwarded-For xff and returns the status
// and the Retry-After header.
func (r *testRelay) post(t *testing.T, path, xff string, body any) (int, string, []byte) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest("POST", r.ts.URL+path, rd)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := r.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

// frozenClock is a clock that stands still: no bucket refills while a test
// spends its burst, however slow the machine.
func frozenClock() func() time.Time {
	t0 := time.Now()
	return func() time.Time { return t0 }
}

func TestRegistrationRateLimited(t *testing.T) {
	r := startRelay(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Now: frozenClock()}, nil)
	for i := range RegisterBurst {
		if code, _, b := r.post(t, "/api/v1/challenge", "198.51.100.1", nil); code != 200 {
			t.Fatalf("challenge %d: %d %s", i, code, b)
		}
	}
	code, retry, b := r.post(t, "/api/v1/register", "198.51.100.1", map[string]string{})
	if code != http.StatusTooManyRequests || retry != "1" || !strings.Contains(string(b), `"rate_limited"`) {
		t.Fatalf("past the burst: %d, Retry-After %q, %s; want 429 rate_limited", code, retry, b)
	}
	if code, _, _ := r.post(t, "/api/v1/challenge", "198.51.100.2", nil); code != 200 {
		t.Errorf("another address: %d, want 200", code)
	}
	if code, _, _ := r.post(t, "/api/v1/challenge", "", nil); code != 200 {
		t.Errorf("the proxy itself (loopback): %d, want 200", code)
	}
	if v := r.metric(t, `duet_relay_http_requests_total{route="register",status="429"}`); v != 1 {
		t.Errorf("429s counted %v", v)
	}
}

func TestLookupRateLimited(t *testing.T) {
	r := startRelay(t, Options{Now: frozenClock()}, nil)
	a := r.newUser(t)
	c := r.connect(t, a.id, a.alias)
	for i := range LookupBurst {
		if code := r.do(t, "GET", "/api/v1/keys/"+string(a.alias), c.token, nil, nil); code != 200 {
			t.Fatalf("lookup %d: %d", i, code)
		}
	}
	if code := r.do(t, "GET", "/api/v1/keys/"+string(a.alias), c.token, nil, nil); code != http.StatusTooManyRequests {
		t.Fatalf("past the burst: %d, want 429", code)
	}
}

func TestRegisterRefusesWeakKeys(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	good := newID(t)
	identityPoint := append([]byte{1}, make([]byte, 31)...) // the Ed25519 identity (small order)
	for _, tc := range []struct {
		name    string
		ed, x   []byte
		message string
	}{
		{"identity point", identityPoint, good.x, "small-order"},
		{"zero x25519", good.pub, make([]byte, 32), "low-order"},
	} {
		var res registerResult
		ch := r.challenge(t)
		code := r.do(t, "POST", "/api/v1/register", "", map[string]string{
			"ed25519": b64.EncodeToString(tc.ed), "x25519": b64.EncodeToString(tc.x),
			"challenge": b64.EncodeToString(ch), "signature": b64.EncodeToString(make([]byte, 64)),
		}, &res)
		if code != 400 || res.Error != "bad_request" || !strings.Contains(res.Message, tc.message) {
			t.Errorf("%s: %d %+v, want 400 bad_request saying %q", tc.name, code, res, tc.message)
		}
	}
}

// solvePoW finds a nonce for bits as a client does.
func solvePoW(ch []byte, bits int) []byte {
	for n := uint64(0); ; n++ {
		nonce := binary.BigEndian.AppendUint64(nil, n)
		h := sha256.Sum256(append(append([]byte(PoWContext), ch...), nonce...))
		if leadingZeroBits(h[:]) >= bits {
			return nonce
		}
	}
}

// nonSolution returns a nonce that does not solve the challenge at bits
// (about 1 in 2^bits does: the next one is tried then).
func nonSolution(t *testing.T, ch []byte, bits int) []byte {
	t.Helper()
	for n := range uint64(1000) {
		nonce := binary.BigEndian.AppendUint64(nil, n)
		if !checkPoW(ch, b64.EncodeToString(nonce), bits) {
			return nonce
		}
	}
	t.Fatalf("1000 nonces in a row solve a %d-bit challenge", bits)
	return nil
}

func TestRegisterPoW(t *testing.T) {
	r := startRelay(t, Options{RegisterPoWBits: 10}, nil)
	id := newID(t)
	var c struct {
		Challenge []byte `json:"challenge"`
		PoWBits   int    `json:"pow_bits"`
	}
	if code := r.do(t, "POST", "/api/v1/challenge", "", nil, &c); code != 200 || c.PoWBits != 10 {
		t.Fatalf("challenge: %d %+v, want pow_bits 10", code, c)
	}
	req := map[string]string{
		"ed25519": b64.EncodeToString(id.pub), "x25519": b64.EncodeToString(id.x), "challenge": b64.EncodeToString(c.Challenge),
		"signature": b64.EncodeToString(signRegister(id, c.Challenge)),
	}
	var res registerResult
	if code := r.do(t, "POST", "/api/v1/register", "", req, &res); code != 401 || res.Error != "bad_pow" {
		t.Fatalf("without pow: %d %+v, want 401 bad_pow", code, res)
	}
	req["pow"] = b64.EncodeToString(nonSolution(t, c.Challenge, 10))
	if code := r.do(t, "POST", "/api/v1/register", "", req, &res); code != 401 || res.Error != "bad_pow" {
		t.Fatalf("wrong pow: %d %+v, want 401 bad_pow", code, res)
	}
	req["pow"] = b64.EncodeToString(solvePoW(c.Challenge, 10))
	if code := r.do(t, "POST", "/api/v1/register", "", req, &res); code != 200 || !res.Alias.Valid() {
		t.Fatalf("with pow: %d %+v", code, res)
	}
	if _, err := New(t.Context(), Options{DataDir: t.TempDir(), RegisterPoWBits: MaxRegisterPoWBits + 1}); err == nil {
		t.Error("New accepted RegisterPoWBits past the maximum")
	}
}

func signRegister(id *testID, ch []byte) []byte {
	return ed25519.Sign(id.priv, RegisterMessage(ch, id.x))
}

// TestSlowBodyCut: a client sending a registration body slowly is cut off
// after the body timeout.
func TestSlowBodyCut(t *testing.T) {
	r := startRelay(t, Options{}, func(tu *tunables) { tu.bodyTimeout = 300 * time.Millisecond })
	for _, path := range []string{"/api/v1/register", "/api/v1/challenge"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ed", path)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c) // until the relay closes the connection
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the connection is still open after 10 s", path)
		}
		c.Close()
	}
}

// TestRefusalsHeld: a request refused by a rate limit waits RefuseDelay
// before its 429, up to maxHeldPerClient of one client address at a time;
// past that the client's refusals are answered at once, while another
// address's are held again. A client that leaves frees its place.
func TestRefusalsHeld(t *testing.T) {
	r := startRelay(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Now: frozenClock()},
		func(tu *tunables) { tu.refuseDelay = time.Hour })
	for _, addr := range []string{"198.51.100.1", "198.51.100.2"} {
		for i := range RegisterBurst {
			if code, _, b := r.post(t, "/api/v1/challenge", addr, nil); code != 200 {
				t.Fatalf("challenge %d: %d %s", i, code, b)
			}
		}
	}
	held := func() int {
		r.srv.held.mu.Lock()
		defer r.srv.held.mu.Unlock()
		return r.srv.held.total
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	refuse := func(addr string) {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, "POST", r.ts.URL+"/api/v1/challenge", http.NoBody)
		req.Header.Set("X-Forwarded-For", addr)
		if resp, err := r.ts.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("a held refusal was answered %d", resp.StatusCode)
		}
	}
	for range maxHeldPerClient {
		wg.Add(1)
		go refuse("198.51.100.1")
	}
	eventually(t, 10*time.Second, "the refusals held", func() bool { return held() == maxHeldPerClient })
	if code, retry, _ := r.post(t, "/api/v1/challenge", "198.51.100.1", nil); code != http.StatusTooManyRequests || retry != "1" {
		t.Errorf("past the client's held refusals: %d, Retry-After %q; want 429 at once", code, retry)
	}
	wg.Add(1)
	go refuse("198.51.100.2")
	eventually(t, 10*time.Second, "another address's refusal held", func() bool { return held() == maxHeldPerClient+1 })
	cancel()
	wg.Wait()
	eventually(t, 10*time.Second, "the held refusals released", func() bool { return held() == 0 })
}
