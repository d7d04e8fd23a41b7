package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

// startTestRelay runs a real relay (embedded NATS) behind an httptest server.
func startTestRelay(t *testing.T) string {
	t.Helper()
	return startTestRelayWith(t, relay.Options{})
}

// startTestRelayWith is startTestRelay with opts (its DataDir, ICE and
// Logger are set here).
func startTestRelayWith(t *testing.T, opts relay.Options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// STUN only, at a loopback port nothing answers: host candidates connect
	// the peers on this machine without any outside traffic.
	res, err := ice.New(ice.Options{STUNURLs: []string{"stun:127.0.0.1:9"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	opts.DataDir, opts.ICE, opts.Logger = t.TempDir(), res, slog.New(slog.DiscardHandler)
	srv, err := relay.New(ctx, opts)
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
	// The relay is unreachable: the identity is still created and saved,
	// and id new fails (exit 1) saying how to register later.
	code, out, errOut := runCLI(t, "", "id", "new", "--relay", "http://127.0.0.1:1", "--home", home)
	if code != 1 || !strings.Contains(errOut, "`duet id show` registers it") || mnemonicRE.FindString(out) == "" {
		t.Fatalf("id new offline = %d: %s%s", code, out, errOut)
	}
	if _, err := identity.LoadKeystore(filepath.Join(home, "keystore.json")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "", "id", "bogus"); code != 2 {
		t.Fatalf("unknown subcommand = %d", code)
	}
}

func TestIDAcceptChangedKey(t *testing.T) {
	relayURL := startTestRelay(t)
	homeA, _ := newCLIIdentity(t, relayURL)
	homeB, b := newCLIIdentity(t, relayURL)
	idA := loadCLIIdentity(t, homeA)
	idB := loadCLIIdentity(t, homeB)
	peer := identity.Alias(b)
	pinned := func() identity.PublicKeys {
		t.Helper()
		pins, err := client.OpenPinStore(filepath.Join(homeA, "peers.json"))
		if err != nil {
			t.Fatal(err)
		}
		keys, ok := pins.Pinned(peer)
		if !ok {
			t.Fatalf("no pin for %s", peer)
		}
		return keys
	}
	cli := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, stdin, append(args, "--relay", relayURL, "--home", homeA)...)
	}

	// No pin yet: accept pins the relay's key (here without asking).
	oldSN := identity.SafetyNumber(idA.PublicKeys(), idB.PublicKeys())
	code, out, errOut := cli("", "id", "accept", b, "--yes")
	if code != 0 || !strings.Contains(out, "No key is pinned") || !strings.Contains(out, oldSN) {
		t.Fatalf("first accept = %d:\n%s%s", code, out, errOut)
	}
	if !pinned().Equal(idB.PublicKeys()) {
		t.Fatal("accept pinned another key")
	}
	code, out, errOut = cli("", "id", "show", b)
	if code != 0 || !strings.Contains(out, oldSN) || strings.Contains(out, "CHANGED") {
		t.Fatalf("show with an unchanged key = %d:\n%s%s", code, out, errOut)
	}

	// b's alias moves to a new X25519 key (same signing key: same alias).
	agree, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	changed := &identity.Identity{SigningKey: idB.SigningKey, AgreementKey: agree}
	alias, _, err := client.Register(ctxT(t), nil, relayURL, changed)
	if err != nil || alias != peer {
		t.Fatalf("re-register = %s, %v; want %s", alias, err, peer)
	}
	newSN := identity.SafetyNumber(idA.PublicKeys(), changed.PublicKeys())
	if newSN == oldSN {
		t.Fatal("the safety number did not change with the key")
	}

	// show says so, with both safety numbers and what to do.
	code, out, errOut = cli("", "id", "show", b)
	if code != 0 {
		t.Fatalf("show with a changed key = %d:\n%s%s", code, out, errOut)
	}
	t.Logf("duet id show %s:\n%s", b, out)
	for _, want := range []string{"CHANGED", "NEW safety number", newSN, oldSN, "duet id accept " + b} {
		if !strings.Contains(out, want) {
			t.Errorf("show with a changed key lacks %q:\n%s", want, out)
		}
	}
	// A call is refused and points at the commands.
	code, _, errOut = cli("", "call", b)
	if code != 1 || !strings.Contains(errOut, "duet id accept "+b) {
		t.Fatalf("call to a changed key = %d: %s", code, errOut)
	}

	// accept asks; anything but yes leaves the pin alone.
	code, out, errOut = cli("n\n", "id", "accept", b)
	if code != 1 || !strings.Contains(out, newSN) || !strings.Contains(out, "Accept the key") || !strings.Contains(errOut, "not accepted") {
		t.Fatalf("declined accept = %d:\n%s%s", code, out, errOut)
	}
	t.Logf("duet id accept %s (declined):\n%s%s", b, out, errOut)
	if !pinned().Equal(idB.PublicKeys()) {
		t.Fatal("a declined accept changed the pin")
	}
	code, out, errOut = cli("yes\n", "id", "accept", b)
	if code != 0 || !strings.Contains(out, "Accepted") {
		t.Fatalf("confirmed accept = %d:\n%s%s", code, out, errOut)
	}
	if !pinned().Equal(changed.PublicKeys()) {
		t.Fatal("accept did not pin the new key")
	}
	code, out, errOut = cli("", "id", "show", b)
	if code != 0 || !strings.Contains(out, newSN) || strings.Contains(out, "CHANGED") {
		t.Fatalf("show after accept = %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = cli("", "id", "accept", b)
	if code != 0 || !strings.Contains(out, "nothing to accept") {
		t.Fatalf("accept of the pinned key = %d:\n%s", code, out)
	}
	if code, _, errOut := cli("", "id", "accept"); code != 2 || !strings.Contains(errOut, "one PEER") {
		t.Fatalf("accept without PEER = %d: %s", code, errOut)
	}
}

// loadCLIIdentity returns the identity kept in home.
func loadCLIIdentity(t *testing.T, home string) *identity.Identity {
	t.Helper()
	ks, err := identity.LoadKeystore(filepath.Join(home, "keystore.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromMnemonic(ks.Mnemonic)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
