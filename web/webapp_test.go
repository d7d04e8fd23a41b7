package web_test

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestExampleWebApp runs examples/web-app as an app developer would: the
// SDK packed with `npm pack` and installed from the tarball with npm, the
// app's JavaScript checked against the installed package's types (tsc), the
// app on its own site (its own node static server, under its content
// security policy) and a relay on another origin, calling a `duet answer
// --auto` bot (the CLI, built from cmd/duet). Both pages of the example
// place an audio call and hang up: index.html imports the package by name
// through an import map, bundled.html is the app bundled by esbuild with the
// E2EE worker as a second entry point beside the bundle (the SDK starts the
// worker from new URL('./e2ee-worker.js', import.meta.url)), and the bundled
// page again with the worker built into assets/duet-e2ee.js and given to
// initCalls as workerUrl (the SDK starts it from there). Audio is
// encrypted and decrypted by the worker in the browser and received by the
// bot; the page logs no error and no CSP violation.
func TestExampleWebApp(t *testing.T) {
	node := toolPath(t, "node", "apt-get install -y nodejs")
	src, err := filepath.Abs(filepath.Join("..", "examples", "web-app"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"esbuild", "typescript"} {
		if _, err := os.Stat(filepath.Join(src, "node_modules", tool)); err != nil {
			t.Fatalf("%s is not installed in examples/web-app (%v): run `make deps` (npm ci there)", tool, err)
		}
	}

	// The app, as a developer's checkout: its files, its installed dev
	// tools, and the SDK from the packed tarball.
	app := filepath.Join(t.TempDir(), "web-app")
	copyTree(t, src, app, func(rel string) bool {
		return rel == "dist" || rel == "assets" || strings.HasSuffix(rel, ".tgz") || strings.HasPrefix(rel, filepath.Join("node_modules", "@duetcall"))
	})
	tarball := packSDK(t)
	runCmd(t, npmCommand(t, app, "install", "--no-save", "--offline", tarball))
	if _, err := os.Stat(filepath.Join(app, "node_modules", "@duetcall", "duet", "duet.js")); err != nil {
		t.Fatalf("npm install %s: %v", tarball, err)
	}
	// The app's JavaScript against the installed package's types (tsc
	// with checkJs: tsconfig.json, the types found through the package's
	// exports), as an editor sees them.
	runCmd(t, npmCommand(t, app, "run", "check"))
	runCmd(t, npmCommand(t, app, "run", "build"))
	for _, f := range []string{"dist/app.js", "dist/e2ee-worker.js", "assets/duet-e2ee.js"} {
		if _, err := os.Stat(filepath.Join(app, f)); err != nil {
			t.Fatalf("npm run build made no %s: %v", f, err)
		}
	}

	env := startCallEnv(t)
	duet := buildDuet(t)
	home := t.TempDir()
	out := runCmd(t, exec.Command(duet, "id", "new", "--relay", env.url, "--home", home))
	m := regexp.MustCompile(`alias:?\s+(u\d{8})`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("duet id new printed no alias:\n%s", out)
	}
	botAlias := string(m[1])
	bot := startProcess(t, "duet answer", exec.Command(duet, "answer", "--auto", "--relay", env.url, "--home", home))
	bot.waitLine(t, 30*time.Second, "waiting for calls")

	server := exec.Command(node, "server.js")
	server.Dir = app
	server.Env = append(os.Environ(), "PORT=0", "RELAY="+env.url)
	site := startProcess(t, "node server.js", server)
	listen := site.waitLine(t, 15*time.Second, "listening on http://127.0.0.1:")
	port := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(listen)
	// localhost: another host than the relay's 127.0.0.1, so another origin.
	base := "http://localhost:" + port[1]

	for i, page := range []struct{ name, path, workerURL, worker, notLoaded string }{
		{"index.html", "/index.html", "", "/node_modules/@duetcall/duet/e2ee-worker.js", "/dist/"},
		{"bundled.html", "/bundled.html", "", "/dist/e2ee-worker.js", "/node_modules/"},
		// The worker elsewhere than beside the bundle, under another name
		// (as a bundler or CDN may put it), given by initCalls' workerUrl:
		// the SDK starts it from there and never asks for dist/e2ee-worker.js.
		{"workerUrl", "/bundled.html", "/assets/duet-e2ee.js", "/assets/duet-e2ee.js", "/dist/e2ee-worker.js"},
	} {
		t.Run(page.name, func(t *testing.T) {
			served := site.mark()
			q := url.Values{"relay": {env.url}, "callee": {botAlias}}
			if page.workerURL != "" {
				q.Set("worker", page.workerURL)
			}
			pageURL := base + page.path + "?" + q.Encode()
			tb := env.openTabURL(t, "app-"+page.name, pageURL)
			waitPage(t, tb, 10*time.Second, `document.getElementById('support')?.textContent`, func(s string) bool { return s == "script-transform" || s == "encoded-streams" }, "the app to load and find frame encryption")
			if _, err := evalJS[bool](tb.ctx, 5*time.Second, `document.getElementById('call').click(), true`); err != nil {
				t.Fatal(err)
			}
			state := waitPage(t, tb, 30*time.Second, `document.getElementById('state').textContent + ' ' + document.getElementById('error').textContent`, func(s string) bool {
				return strings.HasPrefix(s, "connected") || strings.HasPrefix(s, "hangup") || strings.HasPrefix(s, "rejected") || strings.HasPrefix(s, "ended")
			}, "the call to connect")
			if !strings.HasPrefix(state, "connected") {
				t.Fatalf("the call did not connect: %s", state)
			}
			alias, _ := evalJS[string](tb.ctx, 5*time.Second, `document.getElementById('alias').textContent`)
			bot.waitLine(t, 5*time.Second, "incoming audio call from "+alias)
			// The worker's counts, sampled every 2 s: audio both ways.
			waitPage(t, tb, 20*time.Second, `JSON.stringify(document.getElementById('stats').dataset)`, func(s string) bool {
				var enc, dec int
				_, _ = fmt.Sscanf(regexp.MustCompile(`"encrypted":"(\d+)"`).FindString(s), `"encrypted":"%d"`, &enc)
				_, _ = fmt.Sscanf(regexp.MustCompile(`"decrypted":"(\d+)"`).FindString(s), `"decrypted":"%d"`, &dec)
				return enc >= 50 && dec >= 50
			}, "the E2EE worker to encrypt and decrypt 50 audio frames each way")

			if _, err := evalJS[bool](tb.ctx, 5*time.Second, `document.getElementById('hangup').click(), true`); err != nil {
				t.Fatal(err)
			}
			waitPage(t, tb, 10*time.Second, `document.getElementById('state').textContent`, func(s string) bool { return strings.HasPrefix(s, "hangup") }, "the page to hang up")
			// The bot's own figures of the call: audio frames received.
			stats := bot.waitNth(t, 10*time.Second, "stats: ", i+1)
			if m := regexp.MustCompile(`received \d+ B \(\d+ video / (\d+) audio frames\)`).FindStringSubmatch(stats); m == nil {
				t.Errorf("duet answer printed no received figures: %s", stats)
			} else if n, _ := strconv.Atoi(m[1]); n < 50 {
				t.Errorf("duet answer received %s audio frames, want 50 or more: %s", m[1], stats)
			}
			bot.waitNth(t, 10*time.Second, "call ended", i+1)

			// The worker came from where this page's SDK is, and nothing
			// from the other layout was loaded.
			lines := site.since(served)
			if !slices.Contains(lines, "GET "+page.worker+" 200") {
				t.Errorf("the server did not serve %s for %s; it served:\n%s", page.worker, page.path, strings.Join(lines, "\n"))
			}
			for _, l := range lines {
				if strings.Contains(l, " "+page.notLoaded) || strings.HasSuffix(l, " 404") {
					t.Errorf("%s: unexpected request %q", page.path, l)
				}
			}
			for _, line := range tb.log.Lines() {
				l := strings.ToLower(strings.TrimPrefix(line, tb.name+": "))
				if strings.HasPrefix(l, "error:") || strings.HasPrefix(l, "exception:") ||
					strings.Contains(l, "content security policy") || strings.Contains(l, "cors") {
					t.Errorf("console: %s", line)
				}
			}
		})
	}
}

// waitPage polls expr (a string) in the tab until ok, and returns its
// value; it fails the test after timeout with the last value.
func waitPage(t *testing.T, tb *tab, timeout time.Duration, expr string, ok func(string) bool, what string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		v, err := evalJS[string](tb.ctx, 5*time.Second, expr)
		if err == nil && ok(v) {
			return v
		}
		last = v
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited %v for %s; last: %q", tb.name, timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// buildDuet builds the duet command into a directory of the test's.
func buildDuet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "duet")
	cmd := exec.Command(toolPath(t, "go", "install Go"), "build", "-o", bin, "./cmd/duet")
	cmd.Dir = ".."
	runCmd(t, cmd)
	return bin
}

// process is a child process whose output lines the test reads.
type process struct {
	name  string
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every line
}

// startProcess starts cmd, collecting its standard output and error by
// line; the process is killed at the end of the test (its output logged
// when the test failed).
func startProcess(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: name, more: make(chan struct{})}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed at cleanup: its status says so
		w.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		<-done
		if t.Failed() {
			t.Logf("%s:\n%s", name, strings.Join(p.since(0), "\n"))
		}
	})
	return p
}

func (p *process) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

func (p *process) since(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines[n:]...)
}

// waitLine waits for a line containing s and returns it.
func (p *process) waitLine(t *testing.T, timeout time.Duration, s string) string {
	t.Helper()
	return p.waitNth(t, timeout, s, 1)
}

// waitNth waits for the nth line containing s and returns it.
func (p *process) waitNth(t *testing.T, timeout time.Duration, s string, nth int) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				if seen++; seen == nth {
					p.mu.Unlock()
					return l
				}
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("%s printed no line %d containing %q within %v", p.name, nth, s, timeout)
		}
	}
}

// copyTree copies the regular files and directories of src to dst, except
// those skip names (by their path relative to src).
func copyTree(t *testing.T, src, dst string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}
