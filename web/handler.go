package web

import (
	"io/fs"
	"net/http"
	"strings"
)

// Handler serves what `duet relay` serves beside the relay itself: the demo
// app at / (index.html for /) and the SDK at /sdk/, the SDK with
// Access-Control-Allow-Origin: * so that pages of any origin can import it
// (module scripts from another origin load only with CORS; the relay's API
// answers CORS itself). The relay's endpoints
// (/api/, /healthz, /readyz, /metrics), non-GET requests to the app's paths
// and every path that is no file of the app or the SDK go to relay.
func Handler(relay http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/", "/healthz", "/readyz", "/metrics"} {
		mux.Handle(p, relay)
	}
	mux.Handle("GET /sdk/", http.StripPrefix("/sdk/", anyOrigin(noCache(typeScript(http.FileServerFS(SDK))))))
	mux.Handle("/", appHandler(relay))
	return mux
}

// AppCSP is the demo app's content security policy: its own scripts,
// styles, workers and connections only; camera and remote streams play
// from blob: and mediastream: sources.
const AppCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// AppPermissionsPolicy allows the camera, the microphone and screen
// capture (the share button) for the app's origin only.
const AppPermissionsPolicy = "camera=(self), microphone=(self), display-capture=(self)"

// appHandler serves the demo app's embedded files for GET and HEAD (/ is
// index.html); other requests, and paths that are no file of the app, go
// to next.
func appHandler(next http.Handler) http.Handler {
	files := http.FileServerFS(App)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name == "" {
			name = "index.html"
		}
		if st, err := fs.Stat(App, name); err != nil || st.IsDir() {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		if strings.HasSuffix(name, ".webmanifest") {
			h.Set("Content-Type", "application/manifest+json")
		}
		h.Set("Content-Security-Policy", AppCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", AppPermissionsPolicy)
		noCache(files).ServeHTTP(w, r)
	})
}

// noCache makes browsers revalidate every file (they are small, and a new
// binary must not run against a cached older SDK).
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// typeScript serves .ts files (duet.d.ts) as TypeScript: the file server
// would take the type from the system's MIME table, where .ts is often an
// MPEG transport stream or Qt Linguist (text/vnd.trolltech.linguist).
func typeScript(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".ts") {
			w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
		}
		h.ServeHTTP(w, r)
	})
}

// anyOrigin lets pages of every origin read h's answers (CORS without
// credentials): the SDK is public code.
func anyOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}
