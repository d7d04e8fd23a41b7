package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/internal/testca"
)

// TestDoctorTLSRelay runs `duet doctor` against a TLS relay on loopback
// whose certificate comes from a CA made here (trusted through
// doctorRoots): every check passes, TURN over UDP, TCP and TLS with
// relayed echoes. The NAT suite (nattest TestDoctor) covers NATs and
// firewalls.
func TestDoctorTLSRelay(t *testing.T) {
	ca, err := testca.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	doctorRoots = ca.Pool
	t.Cleanup(func() { doctorRoots = nil })
	r := startRunRelay(t, "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--turn-listen", "127.0.0.1:0", "--turn-allow-peers", "127.0.0.0/8",
		"--tls-cert", certFile, "--tls-key", keyFile, "--turn-tls-listen", "127.0.0.1:0", "--turn-tls-host", "127.0.0.1")
	addr := r.waitLog(t, regexp.MustCompile(`msg="relay: listening" addr=(\S+)`))[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	code := runDoctor(ctx, []string{"--relay", "https://" + addr, "--home", t.TempDir()}, &out, &errOut)
	t.Logf("\n%s%s", out.String(), errOut.String())
	if code != 0 {
		t.Fatalf("doctor exited %d", code)
	}
	for _, want := range []string{"ok    relay", "TLS            valid for 127.0.0.1", "ok    WebSocket", "ok    clock",
		"ok    TURN udp       allocated", "ok    TURN tcp       allocated", "ok    TURN tls       allocated", "relayed echo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the doctor's output", want)
		}
	}
	if strings.Contains(out.String(), "FAIL") {
		t.Error("a check failed")
	}
}

func TestDoctorUnreachable(t *testing.T) {
	var out, errOut syncbuf.Buffer
	code := runDoctor(context.Background(), []string{"--relay", "http://127.0.0.1:1", "--timeout", "2s"}, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "FAIL  relay") || !strings.Contains(out.String(), "fix:") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}
