package relay

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// foreignOrigin is a page on another site than the relay's.
const foreignOrigin = "http://app.example:8443"

// corsRequest sends method path from foreignOrigin with the extra headers
// and returns the answer (its body closed).
func (r *testRelay) corsRequest(t *testing.T, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, r.ts.URL+path, nil)
	req.Header.Set("Origin", foreignOrigin)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp
}

// TestCORSPreflight: a browser on another origin asks before a POST with
// a JSON body and before a GET with a bearer token; the relay allows any
// origin, the API's methods and the two headers, without credentials.
func TestCORSPreflight(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a := r.newUser(t)
	for _, tc := range []struct{ path, method, headers string }{
		{"/api/v1/register", "POST", "content-type"},
		{"/api/v1/challenge", "POST", "content-type"},
		{"/api/v1/keys/" + string(a.alias), "GET", "authorization"},
		{"/api/v1/calls/ice-config", "GET", "authorization"},
	} {
		resp := r.corsRequest(t, "OPTIONS", tc.path, map[string]string{
			"Access-Control-Request-Method":  tc.method,
			"Access-Control-Request-Headers": tc.headers,
		})
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("OPTIONS %s: status %d, want 204", tc.path, resp.StatusCode)
		}
		if got := h.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Origin %q, want *", tc.path, got)
		}
		if m := h.Get("Access-Control-Allow-Methods"); !strings.Contains(m, tc.method) {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Methods %q lacks %s", tc.path, m, tc.method)
		}
		if hs := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(hs, "authorization") || !strings.Contains(hs, "content-type") {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Headers %q; want Authorization and Content-Type", tc.path, hs)
		}
		if h.Get("Access-Control-Max-Age") == "" {
			t.Errorf("OPTIONS %s: no Access-Control-Max-Age", tc.path)
		}
		if c := h.Get("Access-Control-Allow-Credentials"); c != "" {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Credentials %q; the relay allows no credentials", tc.path, c)
		}
	}
}

// TestCORSResponses: the API's answers, errors included, are readable by a
// page of another origin; the operational endpoints stay without CORS.
func TestCORSResponses(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a := r.newUser(t)
	c := r.connect(t, a.id, a.alias)
	for _, tc := range []struct {
		method, path, token string
		status              int
	}{
		{"POST", "/api/v1/challenge", "", 200},
		{"POST", "/api/v1/register", "", 400}, // no body
		{"GET", "/api/v1/keys/" + string(a.alias), c.token, 200},
		{"GET", "/api/v1/keys/" + string(a.alias), "", 401},
		{"GET", "/api/v1/nope", "", 404},
	} {
		hdr := map[string]string{}
		if tc.token != "" {
			hdr["Authorization"] = "Bearer " + tc.token
		}
		resp := r.corsRequest(t, tc.method, tc.path, hdr)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q, want *", tc.method, tc.path, got)
		}
		if cr := resp.Header.Get("Access-Control-Allow-Credentials"); cr != "" {
			t.Errorf("%s %s: Access-Control-Allow-Credentials %q", tc.method, tc.path, cr)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if got := r.corsRequest(t, "GET", path, nil).Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q; only /api/ answers CORS", path, got)
		}
	}
}

// dialOrigin opens the WebSocket with an Origin header; it returns the
// connection or the HTTP status the relay refused it with.
func (r *testRelay) dialOrigin(t *testing.T, origin string) (*websocket.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, strings.Replace(r.ts.URL, "http", "ws", 1)+"/api/v1/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial with Origin %s: %v", origin, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn, http.StatusSwitchingProtocols
}

// TestWebSocketForeignOrigin: a page of another origin connects and
// authenticates (the default); Options.OriginPatterns narrows the origins.
func TestWebSocketForeignOrigin(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	a := r.newUser(t)
	conn, status := r.dialOrigin(t, foreignOrigin)
	if conn == nil {
		t.Fatalf("WebSocket with Origin %s refused with %d; any origin may connect", foreignOrigin, status)
	}
	writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), a.alias, a.id.priv))
	if ready := readJSON(t, conn); ready["type"] != "ready" || ready["alias"] != string(a.alias) {
		t.Fatalf("after auth from %s: %v, want ready", foreignOrigin, ready)
	}

	rp := startRelay(t, Options{OriginPatterns: []string{"app.example:8443"}}, nil)
	if conn, status := rp.dialOrigin(t, foreignOrigin); conn == nil {
		t.Errorf("OriginPatterns app.example:8443: Origin %s refused with %d", foreignOrigin, status)
	}
	if conn, status := rp.dialOrigin(t, "http://other.example"); conn != nil || status != http.StatusForbidden {
		t.Errorf("OriginPatterns app.example:8443: Origin http://other.example gave %d, want 403", status)
	}
}
