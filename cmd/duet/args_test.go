package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/identity"
)

// TestHelpCommand: `duet help CMD` prints what `duet CMD --help` prints.
func TestHelpCommand(t *testing.T) {
	for _, cmd := range []string{"relay", "id", "call", "answer"} {
		code, got, errOut := runCLI(t, "", "help", cmd)
		_, want, _ := runCLI(t, "", cmd, "--help")
		if code != 0 || got != want || errOut != "" {
			t.Errorf("help %s = %d, stderr %q, stdout:\n%s\nwant the output of %s --help:\n%s", cmd, code, errOut, got, cmd, want)
		}
	}
	if code, _, errOut := runCLI(t, "", "help", "bogus"); code != 2 || !strings.Contains(errOut, `unknown command "bogus"`) {
		t.Errorf("help bogus = %d, %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "", "help", "call", "id"); code != 2 {
		t.Errorf("help with two commands = %d, want 2", code)
	}
}

// TestCallArguments: every misuse is refused at once (exit 2), naming the
// problem, before any connection (the relay here is unreachable: a check
// made only after connecting would exit 1 with a connection error).
func TestCallArguments(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--relay", "http://127.0.0.1:1", "--home", t.TempDir()}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"call"}, "missing ALIAS"},
		{[]string{"call", "u12345678", "extra"}, `"extra"`},
		{[]string{"call", "u12345678", "--duration", "-5s"}, "--duration -5s: want more than 0"},
		{[]string{"call", "u12345678", "--duration", "0s"}, "--duration 0s: want more than 0"},
		{[]string{"call", "u12345678", "--send-video", file}, "add --video"},
		{[]string{"call", "u12345678", "--video", "--send-video", file + ".missing"}, "--send-video"},
		{[]string{"call", "u12345678", "--send-audio", t.TempDir()}, "is a directory"},
		{[]string{"call", "u12345678", "--record", filepath.Join(file, "rec")}, "--record " + filepath.Join(file, "rec")},
		{[]string{"answer", "extra"}, `unexpected argument "extra"`},
		{[]string{"answer", "--record", filepath.Join(file, "rec")}, "--record"},
	} {
		code, out, errOut := runCLI(t, "", append(c.args, common...)...)
		if code != 2 || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("%q = %d, stdout %q, stderr %q; want 2 and %q", c.args, code, out, errOut, c.want)
		}
		if strings.Contains(errOut, "Usage:") {
			t.Errorf("%q: the whole usage instead of the problem: %q", c.args, errOut)
		}
	}
	// A missing --record directory is created at start.
	rec := filepath.Join(t.TempDir(), "a", "b")
	if code, _, errOut := runCLI(t, "", append([]string{"call", "u12345678", "--record", rec}, common...)...); code != 1 || strings.Contains(errOut, "--record") {
		t.Errorf("call with a new --record dir = %d, %q; want the connection error (1)", code, errOut)
	}
	if st, err := os.Stat(rec); err != nil || !st.IsDir() {
		t.Errorf("--record dir not created: %v", err)
	}
}

func TestRelayOnlyHelp(t *testing.T) {
	for _, u := range []string{callUsage(), answerUsage()} {
		if strings.Contains(u, "hides both") || !strings.Contains(u, "hides YOUR address") {
			t.Errorf("--relay-only help:\n%s", u)
		}
	}
}

func TestPrintStatsWithoutConnection(t *testing.T) {
	var b bytes.Buffer
	printStats(&b, call.Stats{})
	if strings.Contains(b.String(), "candidates /") || !strings.Contains(b.String(), "candidates none (no connection)") {
		t.Errorf("stats of a failed call: %q", b.String())
	}
	b.Reset()
	printStats(&b, call.Stats{LocalCandidate: "host", RemoteCandidate: "relay"})
	if !strings.Contains(b.String(), "candidates host/relay") {
		t.Errorf("stats: %q", b.String())
	}
}

// TestIDNewRegistrationFails: a relay URL that answers with a web page (a
// wrong --relay) fails id new with a short message and exit 1; the
// identity is saved and its mnemonic shown.
func TestIDNewRegistrationFails(t *testing.T) {
	page := "<!DOCTYPE html><html><head><title>Not Found</title></head><body>" + strings.Repeat("<p>lorem ipsum</p>", 200) + "</body></html>"
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, page)
	}))
	defer ts.Close()
	home := t.TempDir()
	code, out, errOut := runCLI(t, "", "id", "new", "--relay", ts.URL, "--home", home)
	if code != 1 || strings.Contains(errOut, "<") || len(errOut) > 600 || !strings.Contains(errOut, "not the duet API") || !strings.Contains(errOut, "duet id show") {
		t.Fatalf("id new against a web page = %d, stderr (%d bytes) %q", code, len(errOut), errOut)
	}
	if mnemonicRE.FindString(out) == "" {
		t.Errorf("the mnemonic was not shown: %q", out)
	}
	if _, err := identity.LoadKeystore(filepath.Join(home, "keystore.json")); err != nil {
		t.Errorf("keystore: %v", err)
	}
}

// TestIDRestoreOneWordPerLine: a mnemonic file with one word per line
// restores.
func TestIDRestoreOneWordPerLine(t *testing.T) {
	relayURL := startTestRelay(t)
	m, err := identity.NewMnemonic(12)
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Join(strings.Fields(m), "\n") + "\n"
	code, out, errOut := runCLI(t, in, "id", "restore", "--relay", relayURL, "--home", t.TempDir())
	if code != 0 || !aliasRE.MatchString(out) {
		t.Fatalf("restore from one word per line = %d: %s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, strings.Repeat("abandon ", 600), "id", "restore", "--relay", relayURL, "--home", t.TempDir()); code != 1 || !strings.Contains(errOut, "more than") {
		t.Fatalf("restore from a huge input = %d, %q", code, errOut)
	}
}
