package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

// startTestRelay runs a real relay (embedded NATS) behind an httptest server.
func startTestRelay(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// STUN only, at a loopback port nothing answers: host candidates connect
	// the peers on this machine without any outside traffic.
	res, err := ice.New(ice.Options{STUNURLs: []string{"stun:127.0.0.1:9"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.New(ctx, relay.Options{DataDir: t.TempDir(), ICE: res, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	return ts.URL
}

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

var (
	mnemonicRE = regexp.MustCompile(`(?m)^  ((?:[a-z]+ ){11}[a-z]+)$`)
	aliasRE    = regexp.MustCompile(`alias:?\s+(u\d{8})`)
)

func TestIDNewShowRestore(t *testing.T) {
	relayURL := startTestRelay(t)
	home := t.TempDir()

	code, out, errOut := runCLI(t, "", "id", "new", "--relay", relayURL, "--home", home)
	if code != 0 {
		t.Fatalf("id new = %d: %s%s", code, out, errOut)
	}
	m := mnemonicRE.FindStringSubmatch(out)
	a := aliasRE.FindStringSubmatch(out)
	if m == nil || a == nil {
		t.Fatalf("id new printed no mnemonic or alias:\n%s", out)
	}
	if err := identity.ValidateMnemonic(m[1]); err != nil {
		t.Fatalf("printed mnemonic invalid: %v", err)
	}
	st, err := os.Stat(filepath.Join(home, "keystore.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keystore: %v, mode %v", err, st.Mode())
	}

	if code, _, errOut := runCLI(t, "", "id", "new", "--relay", relayURL, "--home", home); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second id new = %d, %q; want a refusal", code, errOut)
	}

	code, out, errOut = runCLI(t, "", "id", "show", "--relay", relayURL, "--home", home)
	if code != 0 || !strings.Contains(out, a[1]) {
		t.Fatalf("id show = %d: %s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "", "id", "show", "u12345678", "--relay", relayURL, "--home", home); code != 1 || !strings.Contains(errOut, "no pinned keys") {
		t.Fatalf("id show PEER without pin = %d, %q", code, errOut)
	}

	// Restore on "another device": the same alias comes back.
	other := t.TempDir()
	code, out, errOut = runCLI(t, "  "+strings.ToUpper(m[1])+"\n", "id", "restore", "--relay", relayURL, "--home", other)
	if code != 0 || !strings.Contains(out, a[1]) {
		t.Fatalf("id restore = %d: %s%s; want alias %s", code, out, errOut, a[1])
	}

	// A mistyped word is named.
	bad := strings.Replace(m[1], strings.Fields(m[1])[2], "zzzz", 1)
	if code, _, errOut := runCLI(t, bad, "id", "restore", "--relay", relayURL, "--home", t.TempDir()); code != 1 || !strings.Contains(errOut, `word 3 "zzzz"`) {
		t.Fatalf("restore with a bad word = %d, %q", code, errOut)
	}
}

func TestIDWithoutIdentityOrRelay(t *testing.T) {
	home := t.TempDir()
	if code, _, errOut := runCLI(t, "", "id", "show", "--home", home); code != 1 || !strings.Contains(errOut, "duet id new") {
		t.Fatalf("id show without identity = %d, %q", code, errOut)
	}
	// The relay is unreachable: the identity is still created and saved.
	code, out, errOut := runCLI(t, "", "id", "new", "--relay", "http://127.0.0.1:1", "--home", home)
	if code != 0 || !strings.Contains(out, "Not registered yet") || mnemonicRE.FindString(out) == "" {
		t.Fatalf("id new offline = %d: %s%s", code, out, errOut)
	}
	if _, err := identity.LoadKeystore(filepath.Join(home, "keystore.json")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "", "id", "bogus"); code != 2 {
		t.Fatalf("unknown subcommand = %d", code)
	}
}
