package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
)

// crossOriginPage is an app developer's page on its own site that uses the
// SDK straight from the relay: it imports duet.js by the relay's absolute
// URL, and its import map sends the test driver's /sdk/ imports
// (sdktest/calls.js, served by the app's site) to the relay's /sdk/ too, so
// that the driver runs on the very SDK modules the page imported.
const crossOriginPage = `<!doctype html>
<meta charset="utf-8">
<title>an app on another origin</title>
<link rel="icon" href="data:,">
<script type="importmap">{"imports": {"/sdk/": %[1]s}}</script>
<script type="module">
import { DuetClient } from %[2]s;
window.sdkLoaded = typeof DuetClient === 'function';
</script>
`

// TestCallsCrossOrigin: a page of another origin (another host and port)
// imports the SDK from the relay's /sdk/, registers, connects and places an
// audio call to a Go peer that answers: the relay's API and WebSocket answer
// it (CORS), and the E2EE worker, which a browser starts only from the
// page's origin, runs from the blob: bootstrap and encrypts and decrypts
// the call's audio both ways. Chromium reports no CORS error.
func TestCallsCrossOrigin(t *testing.T) {
	env := startCallEnv(t)
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	mux := pagesMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, crossOriginPage, q(env.url+"/sdk/"), q(env.url+"/sdk/duet.js"))
	})
	app := startServer(t, mux)
	appURL := strings.Replace(app.URL, "127.0.0.1", "localhost", 1) + "/" // the relay is on 127.0.0.1

	tb := env.openTabURL(t, "app", appURL)
	loaded, err := evalJS[bool](tb.ctx, 10*time.Second, `new Promise((ok) => { const f = () => window.sdkLoaded ? ok(true) : setTimeout(f, 50); f(); })`)
	if err != nil || !loaded {
		t.Fatalf("the page on %s did not import %s/sdk/duet.js: %v", appURL, env.url, err)
	}
	alias := drive[string](tb, 20*time.Second, fmt.Sprintf("setup({relayUrl: %s})", q(env.url)))
	bot := env.newGoBot(t, "gobot", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	callBot(ctx, t, tb, bot, false)
	if st := bot.mod.State().Get(); string(st.Peer) != alias || st.Video {
		t.Errorf("Go side's call %+v: want an audio call from %s", st, alias)
	}
	_, d := checkBrowserMedia(t, tb, false)
	checkGoMedia(t, bot, false)
	if d.E2EE == "" {
		t.Errorf("the call reports no E2EE mode: %s", d)
	}
	if _, ok := tb.log.waitFor("e2ee-worker.js is on another origin than the page; starting it from a blob: module", 2*time.Second); !ok {
		t.Errorf("the call module did not start its worker from the cross-origin bootstrap")
	}

	if r := drive[jsResult](tb, 10*time.Second, "hangup()"); !r.OK {
		t.Fatalf("hangup: %+v", r)
	}
	if end := bot.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() }); end.State != duetcall.StateHangup {
		t.Errorf("Go status after the page hung up: %+v", end)
	}
	// A blocked cross-origin load shows as an error (headless Chromium
	// often says only "Failed to load resource: net::ERR_FAILED"): the page
	// logs no error or exception at all, and nothing about CORS.
	for _, line := range tb.log.Lines() {
		l := strings.ToLower(strings.TrimPrefix(line, tb.name+": "))
		if strings.HasPrefix(l, "error:") || strings.HasPrefix(l, "exception:") ||
			strings.Contains(l, "cors") || strings.Contains(l, "access-control") || strings.Contains(l, "cross-origin") {
			t.Errorf("console: %s", line)
		}
	}
}

// TestCallsWorkerFails: a call whose E2EE worker cannot start ends at once
// with ErrE2EE, never connecting without frame encryption nor timing out
// later for want of media: when the page's CSP forbids the blob: worker
// (the SDK on another origin), and when the app's copy of the SDK lacks
// e2ee-worker.js (a 404).
func TestCallsWorkerFails(t *testing.T) {
	env := startCallEnv(t)
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	relay, err := url.Parse(env.url)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		serve func(mux *http.ServeMux)
	}{
		{"csp-forbids-blob-worker", func(mux *http.ServeMux) {
			mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Header().Set("Content-Security-Policy", "worker-src 'self'")
				fmt.Fprintf(w, crossOriginPage, q(env.url+"/sdk/"), q(env.url+"/sdk/duet.js"))
			})
		}},
		{"worker-script-missing", func(mux *http.ServeMux) {
			// The app serves the SDK itself (same origin), without the worker.
			proxy := httputil.NewSingleHostReverseProxy(relay)
			mux.HandleFunc("GET /sdk/", func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/e2ee-worker.js") {
					http.NotFound(w, r)
					return
				}
				proxy.ServeHTTP(w, r)
			})
			mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprint(w, `<!doctype html><meta charset="utf-8"><title>an app with its own copy of the SDK</title><link rel="icon" href="data:,">`+
					`<script type="module">import { DuetClient } from '/sdk/duet.js'; window.sdkLoaded = typeof DuetClient === 'function';</script>`)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := pagesMux()
			tc.serve(mux)
			app := startServer(t, mux)
			appURL := strings.Replace(app.URL, "127.0.0.1", "localhost", 1) + "/"
			tb := env.openTabURL(t, "app", appURL)
			if loaded, err := evalJS[bool](tb.ctx, 10*time.Second, `new Promise((ok) => { const f = () => window.sdkLoaded ? ok(true) : setTimeout(f, 50); f(); })`); err != nil || !loaded {
				t.Fatalf("the page did not import the SDK: %v", err)
			}
			drive[string](tb, 20*time.Second, fmt.Sprintf("setup({relayUrl: %s})", q(env.url)))
			bot := env.newGoBot(t, "gobot", false)

			// call() rejects with ErrE2EE when the worker fails before the
			// offer is out, and resolves when it fails after; either way
			// the call ends, with ErrE2EE.
			r := drive[jsResult](tb, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias))
			if !r.OK && r.Name != "ErrE2EE" {
				t.Errorf("call(): %+v; want ErrE2EE", r)
			}
			st := tb.waitState("ended", 10*time.Second)
			if len(st.Errors) == 0 || st.Errors[0].Name != "ErrE2EE" || st.Reason != "error" || slices.Contains(st.History, "connected") {
				t.Errorf("the call: %+v; want it ended (error) with ErrE2EE, never connected", st)
			}
			if len(st.Errors) > 0 && !strings.Contains(st.Errors[0].Message, "E2EE worker") {
				t.Errorf("the error does not say what failed: %+v", st.Errors[0])
			}
			// The callee, if the offer reached it, was told.
			bot.waitState(10*time.Second, "no call", func(s duetcall.Status) bool { return s.State == duetcall.StateIdle || s.State.Terminal() })
		})
	}
}
