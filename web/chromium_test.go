package web_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetcall/duet/web"
)

// chromiumPath finds Debian's Chromium. A missing browser fails the test:
// the browser SDK is only verified in a real browser, and CI must not pass
// silently without one.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DUET_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("DUET_CHROMIUM=%s is not an executable (%v); unset it to use Debian's Chromium (`apt-get install -y chromium`)", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found: the browser SDK tests run in Debian's Chromium; install it with `apt-get install -y chromium` (or `make deps`), or point DUET_CHROMIUM at a Chromium binary")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile (headless, no
// sandbox, no GPU, QUIC, background networking, component updates or sync,
// which would keep trying to reach the closed internet; plus extra) and
// returns the context of its first tab. The browser stops at the end of the
// test.
func newBrowser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium keeps its singleton socket in a directory of its own
		// under TMPDIR, removed only when it exits cleanly; the browser is
		// killed at the end of the test, so that directory goes with the
		// test's.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Registered after t.TempDir, so this runs first: the browser stops
	// before its profile directory is removed.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium (%s): %v; the browser SDK tests need a working Debian Chromium (`apt-get install -y chromium`)", exe, err)
	}
	return ctx
}

// newTab opens another tab in the browser of ctx.
func newTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a Chromium tab: %v", err)
	}
	return ctx
}

// consoleLog collects what a tab prints, for the test log.
type consoleLog struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// captureConsole records the console of the tab of ctx until stop.
func captureConsole(ctx context.Context, prefix string) (log *consoleLog, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	l := &consoleLog{done: make(chan struct{})}
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(l.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			text := m.String()
			if m.Exception != nil && m.Exception.Exception != nil && m.Exception.Exception.Description != "" {
				text += " " + m.Exception.Exception.Description
			}
			l.mu.Lock()
			l.lines = append(l.lines, prefix+text)
			l.mu.Unlock()
		}
	}()
	return l, func() {
		cancel()
		<-l.done
	}
}

func (l *consoleLog) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// find returns the first line containing s.
// waitFor waits up to timeout for a line containing s: console events may
// arrive after the evaluation that logged them has returned.
func (l *consoleLog) waitFor(s string, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if line, ok := l.find(s); ok || time.Now().After(deadline) {
			return line, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *consoleLog) find(s string) (string, bool) {
	for _, line := range l.Lines() {
		if strings.Contains(line, s) {
			return line, true
		}
	}
	return "", false
}

// evalJS evaluates expr (which may return a promise) in the tab of ctx,
// within timeout, and decodes its value into T. A JS exception becomes an
// error carrying its text.
func evalJS[T any](ctx context.Context, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	var exc *chromedp.ExceptionError
	if errors.As(err, &exc) {
		return v, fmt.Errorf("JavaScript: %s", exceptionText(exc))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return v, fmt.Errorf("JavaScript did not finish within %v: %s", timeout, expr)
	}
	return v, err
}

func exceptionText(e *chromedp.ExceptionError) string {
	d := e.ExceptionDetails
	if d == nil {
		return e.Error()
	}
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// navigate loads url in the tab of ctx.
func navigate(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s in Chromium: %v", url, err)
	}
}

// sdkMux serves the SDK at /sdk/ (with the test versions of its modules
// of constants: testSDK), the test pages at /sdktest/ and the vectors at
// /vectors/.
func sdkMux() *http.ServeMux {
	mux := pagesMux()
	mux.Handle("/sdk/", testSDK(http.StripPrefix("/sdk", http.FileServerFS(web.SDK))))
	return mux
}

// testSDKModules are the SDK's modules of constants (timings, limits, call
// ids, the ICE cache's clock) of which sdktest/sdk/ holds test versions:
// the same exports, changeable, plus the controls the tests use (as Go's
// export_test.go adds to a package). The shipped SDK has no test hook.
var testSDKModules = []string{"call-config.js", "client-config.js", "frame-limits.js"}

// testSDK wraps h, which serves the SDK at /sdk/: the test version of each
// of testSDKModules is served at its URL, in the pages and in the E2EE
// worker, and the shipped module at that URL with the query "shipped"
// (which the test versions import).
func testSDK(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/sdk/")
		if ok && slices.Contains(testSDKModules, name) && r.URL.RawQuery != "shipped" {
			w.Header().Set("Access-Control-Allow-Origin", "*") // as web.Handler serves /sdk/: pages of other origins load it
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			http.ServeFile(w, r, filepath.Join("sdktest", "sdk", name))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// pagesMux serves the test pages at /sdktest/, the vectors at /vectors/ and
// the call state machine scenarios at /scenarios/.
func pagesMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/sdktest/", http.StripPrefix("/sdktest", http.FileServer(http.Dir("sdktest"))))
	mux.Handle("/vectors/", http.StripPrefix("/vectors", http.FileServer(http.Dir("../testdata/vectors"))))
	mux.Handle("/scenarios/", http.StripPrefix("/scenarios", http.FileServer(http.Dir("../testdata/scenarios"))))
	return mux
}

func startServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
