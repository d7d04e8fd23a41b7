package web_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/duetcall/duet/web"
)

// sdkPackage is what TestSDKPackage reads of web/sdk/package.json.
type sdkPackage struct {
	Name                 string            `json:"name"`
	Version              string            `json:"version"`
	Type                 string            `json:"type"`
	Main                 string            `json:"main"`
	Types                string            `json:"types"`
	Exports              map[string]any    `json:"exports"`
	Files                []string          `json:"files"`
	SideEffects          any               `json:"sideEffects"`
	Scripts              map[string]string `json:"scripts"`
	Dependencies         map[string]string `json:"dependencies"`
	PeerDependencies     map[string]string `json:"peerDependencies"`
	OptionalDependencies map[string]string `json:"optionalDependencies"`
	BundleDependencies   any               `json:"bundleDependencies"`
	BundledDependencies  any               `json:"bundledDependencies"`
}

// sdkPackageName is the browser SDK's npm name.
const sdkPackageName = "@duetcall/duet"

// toolPath finds a command the tests need; a missing one fails the test.
func toolPath(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %s (or `make deps`)", name, install)
	}
	return p
}

// npmCommand is npm with args in dir, with what would reach the network
// for no reason (update notice, audit, funding) off.
func npmCommand(t testing.TB, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(toolPath(t, "npm", "apt-get install -y nodejs npm"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_audit=false",
		"npm_config_fund=false", "npm_config_loglevel=warn")
	return cmd
}

// runCmd runs cmd and returns its standard output; a failure fails the test
// with both outputs.
func runCmd(t testing.TB, cmd *exec.Cmd) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s (in %s): %v\n%s%s", strings.Join(cmd.Args, " "), cmd.Dir, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// packSDK runs `npm pack` on web/sdk and returns the tarball's path (in a
// directory of the test's).
func packSDK(t testing.TB) string {
	t.Helper()
	sdkDir, err := filepath.Abs("sdk")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	out := runCmd(t, npmCommand(t, dest, "pack", sdkDir, "--pack-destination", dest, "--json"))
	var packed []struct {
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal(out, &packed); err != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json printed %q: %v", out, err)
	}
	return filepath.Join(dest, packed[0].Filename)
}

// tarballFiles returns the files of an npm tarball by their path in the
// package (without npm's package/ prefix) and their contents.
func tarballFiles(t testing.TB, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		name, ok := strings.CutPrefix(h.Name, "package/")
		if !ok {
			t.Errorf("%s: %s is outside package/", path, h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
}

// TestSDKPackage checks web/sdk as the npm package @duetcall/duet: its
// package.json (an ES module package with the entry and the E2EE worker as
// its exports, the declarations as its types, no dependencies of any kind,
// no install scripts), that `npm pack` packs exactly the SDK's modules,
// duet.d.ts, package.json and README.md, that every packed module is
// reached from duet.js or e2ee-worker.js (a module neither imports, such as
// a test-only one, does not belong in the package), and that the version
// keeps step with the Go module's release tags.
func TestSDKPackage(t *testing.T) {
	raw, err := fs.ReadFile(web.SDK, "package.json")
	if err != nil {
		t.Fatal(err)
	}
	var p sdkPackage
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("web/sdk/package.json: %v", err)
	}
	if p.Name != sdkPackageName {
		t.Errorf("name %q, want %q", p.Name, sdkPackageName)
	}
	if _, ok := parseSemver(p.Version); !ok {
		t.Errorf("version %q is not semver (MAJOR.MINOR.PATCH[-PRERELEASE])", p.Version)
	}
	if p.Type != "module" {
		t.Errorf("type %q, want module (the SDK is ES modules)", p.Type)
	}
	if p.Main != "./duet.js" || p.Types != "./duet.d.ts" {
		t.Errorf("main %q, types %q; want ./duet.js and ./duet.d.ts", p.Main, p.Types)
	}
	wantExports := map[string]any{
		".":                map[string]any{"types": "./duet.d.ts", "default": "./duet.js"},
		"./e2ee-worker.js": "./e2ee-worker.js",
		"./package.json":   "./package.json",
	}
	if got, _ := json.Marshal(p.Exports); string(got) != mustJSON(t, wantExports) {
		t.Errorf("exports %s, want %s", got, mustJSON(t, wantExports))
	}
	// Every module but the worker (an entry of its own, whose top level
	// installs its message handlers) is free of side effects: a bundler may
	// drop what an app does not use, but never an import of the worker.
	if got, _ := json.Marshal(p.SideEffects); string(got) != `["./e2ee-worker.js"]` {
		t.Errorf("sideEffects %s, want [\"./e2ee-worker.js\"]", got)
	}
	for what, deps := range map[string]map[string]string{"dependencies": p.Dependencies, "peerDependencies": p.PeerDependencies, "optionalDependencies": p.OptionalDependencies} {
		if len(deps) > 0 {
			t.Errorf("%s %v: the SDK has no dependencies", what, deps)
		}
	}
	if p.BundleDependencies != nil || p.BundledDependencies != nil {
		t.Errorf("bundled dependencies: the SDK has no dependencies")
	}
	for name := range p.Scripts {
		if strings.Contains(name, "install") || strings.Contains(name, "prepare") || strings.Contains(name, "pack") {
			t.Errorf("script %q runs when the package is installed or packed: the SDK has no build step", name)
		}
	}

	// What npm packs: every module of web/sdk, the declarations,
	// package.json and README.md; nothing else.
	files := tarballFiles(t, packSDK(t))
	want := []string{"README.md", "duet.d.ts", "package.json"}
	entries, err := fs.ReadDir(web.SDK, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".js") {
			want = append(want, e.Name())
		}
	}
	var got []string
	for name := range files {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("npm pack packs %v, want %v", got, want)
	}
	for _, name := range want {
		if b, err := fs.ReadFile(web.SDK, name); err == nil && !bytes.Equal(b, files[name]) {
			t.Errorf("the packed %s differs from web/sdk/%s", name, name)
		}
	}
	// Nothing test-only is packed (issue 14): the tests' hooks live in
	// web/sdktest, served by the test servers only.
	for name, b := range files {
		for _, hook := range testOnlyNames(b) {
			t.Errorf("the packed %s contains the test hook %q: test-only code belongs in web/sdktest", name, hook)
		}
	}

	// Every packed module is reached from an entry point.
	reached := map[string]bool{}
	var visit func(name, from string)
	visit = func(name, from string) {
		if reached[name] {
			return
		}
		src, ok := files[name]
		if !ok {
			t.Errorf("%s refers to ./%s, which is not in the package", from, name)
			return
		}
		reached[name] = true
		for _, m := range relRefRe.FindAllSubmatch(src, -1) {
			visit(string(m[1])+string(m[2]), name)
		}
	}
	visit("duet.js", "exports")
	visit("e2ee-worker.js", "exports")
	for name := range files {
		if strings.HasSuffix(name, ".js") && !reached[name] && unwiredModules[name] == "" {
			t.Errorf("%s is in the package, but neither duet.js nor e2ee-worker.js imports it: a test-only module belongs in web/sdktest", name)
		}
	}
	for name := range unwiredModules {
		if reached[name] {
			t.Errorf("%s is imported now: remove it from unwiredModules in web/package_test.go", name)
		}
	}

	checkVersionTags(t, p.Version)
}

// unwiredModules are SDK modules no entry imports yet, on their way in
// (module: why). An entry that an entry reaches fails the test until it is
// removed here.
var unwiredModules = map[string]string{}

// relRefRe finds a module's references to its siblings: static imports and
// re-exports, dynamic imports and new URL('./x.js', import.meta.url).
var relRefRe = regexp.MustCompile(`(?:\bfrom\s*|\bimport\s*\(?\s*|new URL\(\s*)'\./([\w.-]+)(\.js)'`)

// checkVersionTags: the Go module releases as tags vMAJOR.MINOR.PATCH, and
// the npm package has the version of the release that ships it. A tagged
// commit's package.json must say the tag's version; between releases it
// must not be behind the newest release tag this commit contains.
func checkVersionTags(t *testing.T, version string) {
	t.Helper()
	git := toolPath(t, "git", "apt-get install -y git")
	tags := func(args ...string) []string {
		cmd := exec.Command(git, append([]string{"tag", "--list", "v[0-9]*"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(cmd.Args[1:], " "), err)
		}
		return strings.Fields(string(out))
	}
	v, _ := parseSemver(version)
	for _, tag := range tags("--points-at", "HEAD") {
		if strings.TrimPrefix(tag, "v") != version {
			t.Errorf("this commit is the release %s, but web/sdk/package.json says version %s: set it to %s", tag, version, strings.TrimPrefix(tag, "v"))
		}
	}
	for _, tag := range tags("--merged", "HEAD") {
		if tv, ok := parseSemver(strings.TrimPrefix(tag, "v")); ok && compareSemver(v, tv) < 0 {
			t.Errorf("web/sdk/package.json says version %s, behind the release %s this commit contains: set it to the next release's version", version, tag)
		}
	}
}

type semver struct {
	core [3]int
	pre  string
}

var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$`)

func parseSemver(s string) (semver, bool) {
	m := semverRe.FindStringSubmatch(s)
	if m == nil {
		return semver{}, false
	}
	var v semver
	for i := range 3 {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return semver{}, false
		}
		v.core[i] = n
	}
	v.pre = m[4]
	return v, true
}

// compareSemver orders versions by their core, and a pre-release before its
// release (pre-releases among themselves by their text, which is enough
// for a sanity check).
func compareSemver(a, b semver) int {
	for i := range 3 {
		if a.core[i] != b.core[i] {
			return a.core[i] - b.core[i]
		}
	}
	switch {
	case a.pre == b.pre:
		return 0
	case a.pre == "":
		return 1
	case b.pre == "":
		return -1
	}
	return strings.Compare(a.pre, b.pre)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
