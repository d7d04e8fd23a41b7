package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// cliArgsEnv, when set to a JSON list of arguments, makes the test binary
// run the CLI with them instead of the tests and exit with its status: a
// test re-executes os.Args[0] with it to run duet as a separate process
// (TestPeerProcessKilled).
const cliArgsEnv = "DUET_TEST_CLI_ARGS"

func TestMain(m *testing.M) {
	if v, ok := os.LookupEnv(cliArgsEnv); ok {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintf(os.Stderr, "%s is not a JSON list of arguments: %v\n", cliArgsEnv, err)
			os.Exit(2)
		}
		os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "duet dev", ""},
		{[]string{"help"}, 0, "Usage:", ""},
		{nil, 2, "", "Usage:"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, strings.NewReader(""), &out, &errb)
		if code != tt.code {
			t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.code)
		}
		if !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("run(%q): stdout %q stderr %q; want them to contain %q / %q", tt.args, out.String(), errb.String(), tt.stdout, tt.stderr)
		}
	}
}

// TestHelp: --help of every command prints its usage on stdout and exits 0,
// with the defaults of --relay and --home as they are here; a bad flag
// prints the error and the usage on stderr and exits 2.
func TestHelp(t *testing.T) {
	t.Setenv("DUET_RELAY", "http://relay.example:9")
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	for _, args := range [][]string{
		{"call", "--help"}, {"call", "-h"}, {"call", "u12345678", "--help"},
		{"answer", "--help"},
		{"id", "--help"}, {"id", "help"}, {"id", "new", "--help"}, {"id", "show", "-h"},
		{"id", "accept", "--help"}, {"id", "restore", "--help"},
		{"relay", "--help"}, {"loadtest", "--help"},
	} {
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		if code != 0 || !strings.Contains(out.String(), "Usage:") || errb.Len() != 0 {
			t.Errorf("run(%q) = %d, stdout %d bytes, stderr %q; want 0 and the usage on stdout only", args, code, out.Len(), errb.String())
			continue
		}
		if args[0] == "relay" {
			continue
		}
		wants := []string{"--relay URL", "(default http://relay.example:9)", "--home DIR", "/cfg/duet"}
		if args[0] == "loadtest" { // no keystore
			wants = wants[:2]
		}
		for _, want := range wants {
			if !strings.Contains(out.String(), want) {
				t.Errorf("run(%q) usage lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	for _, args := range [][]string{
		{"call", "--bogus"}, {"answer", "--duration", "1s"}, {"id", "show", "--bogus"}, {"id"},
	} {
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), "Usage:") {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want 2 and the usage on stderr", args, code, out.String(), errb.String())
		}
	}
	// The answer help says what is recorded for an audio call.
	var out bytes.Buffer
	run([]string{"answer", "--help"}, strings.NewReader(""), &out, &out)
	if strings.Contains(out.String(), "one .ivf and one .ogg per call") || !strings.Contains(out.String(), "<call_id>-video.ivf for a\nvideo call") {
		t.Errorf("answer help on recordings:\n%s", out.String())
	}
}
