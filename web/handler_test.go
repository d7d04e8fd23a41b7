package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandler checks what `duet relay` serves besides the relay: the demo
// app at / with its security headers, the browser SDK at /sdk/, and that the
// relay's own endpoints and everything else still reach the relay handler.
func TestHandler(t *testing.T) {
	relayH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Relay", "1")
		http.Error(w, "relay "+r.Method+" "+r.URL.Path, http.StatusTeapot)
	})
	srv := httptest.NewServer(Handler(relayH))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		relay        bool
		status       int
		ctype, body  string
	}{
		{"GET", "/", false, 200, "text/html", "<title>duet</title>"},
		{"GET", "/app.js", false, 200, "text/javascript", "/sdk/duet.js"},
		{"GET", "/style.css", false, 200, "text/css", ""},
		{"GET", "/manifest.webmanifest", false, 200, "application/manifest+json", `"start_url"`},
		{"GET", "/sw.js", false, 200, "text/javascript", "caches"},
		{"GET", "/icon.svg", false, 200, "image/svg+xml", "<svg"},
		{"GET", "/icon-192.png", false, 200, "image/png", ""},
		{"HEAD", "/", false, 200, "text/html", ""},
		{"GET", "/sdk/duet.js", false, 200, "text/javascript", "CallModule"},
		{"GET", "/sdk/client.js", false, 200, "text/javascript", "initCalls"},
		{"GET", "/sdk/calls.js", false, 200, "text/javascript", "CallModule"},
		{"GET", "/sdk/e2ee-worker.js", false, 200, "text/javascript", "onrtctransform"},
		{"GET", "/api/v1/ws", true, 418, "", ""},
		{"POST", "/api/v1/challenge", true, 418, "", ""},
		{"GET", "/api/v1/calls/ice-config", true, 418, "", ""},
		{"GET", "/healthz", true, 418, "", ""},
		{"GET", "/readyz", true, 418, "", ""},
		{"GET", "/metrics", true, 418, "", ""},
		{"GET", "/nope", true, 418, "", ""},
		{"POST", "/", true, 418, "", ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Relay") == "1"; got != tc.relay || resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, to relay %v; want %d, %v", tc.method, tc.path, resp.StatusCode, got, tc.status, tc.relay)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); tc.ctype != "" && !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(b), tc.body) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.body)
		}
		if !tc.relay && !strings.HasPrefix(tc.path, "/sdk/") && (resp.Header.Get("Content-Security-Policy") != AppCSP || resp.Header.Get("Permissions-Policy") != AppPermissionsPolicy) {
			t.Errorf("%s %s: CSP %q, Permissions-Policy %q; want the app's", tc.method, tc.path, resp.Header.Get("Content-Security-Policy"), resp.Header.Get("Permissions-Policy"))
		}
		if acao := resp.Header.Get("Access-Control-Allow-Origin"); !tc.relay && (acao == "*") != strings.HasPrefix(tc.path, "/sdk/") {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q; want * for the SDK only", tc.method, tc.path, acao)
		}
		if !tc.relay && resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s %s: Cache-Control %q, want no-cache", tc.method, tc.path, resp.Header.Get("Cache-Control"))
		}
	}
}
