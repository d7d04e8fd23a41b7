package web_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSDKTypes runs typecheck/check.mjs: TypeScript (tsc, pinned in
// typecheck/package-lock.json, installed by `make deps`) checks every value
// sdk/duet.d.ts declares against the JavaScript that implements it, and
// compiles typecheck/example.ts, which uses every API the READMEs show,
// against the package by its name. A renamed method, a missing export or a
// changed promise type on either side fails it.
func TestSDKTypes(t *testing.T) {
	node := toolPath(t, "node", "apt-get install -y nodejs")
	tsc := filepath.Join("typecheck", "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Fatalf("TypeScript is not installed in web/typecheck (%v): run `make deps` (npm ci there)", err)
	}
	if _, err := os.Stat(filepath.Join("typecheck", "node_modules", "@duetcall", "duet", "duet.d.ts")); err != nil {
		t.Fatalf("web/typecheck/node_modules/@duetcall/duet does not lead to web/sdk (%v): run `make deps` (npm ci there)", err)
	}
	cmd := exec.Command(node, filepath.Join("typecheck", "check.mjs"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node typecheck/check.mjs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "example.ts compiles") {
		t.Fatalf("node typecheck/check.mjs printed no result:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
