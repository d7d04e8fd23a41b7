package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/testca"
)

// TestRunRelayTLS runs `duet relay --tls-cert --tls-key` with a CA made
// here: a Go client that trusts the CA registers and connects over https
// and wss, the ICE config lists turns: after udp and tcp, a TURN
// allocation over TLS relays an echo, and --http-addr redirects to https.
func TestRunRelayTLS(t *testing.T) {
	ca, err := testca.New("relay.duet.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := startRunRelay(t, "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--turn-listen", "127.0.0.1:0", "--turn-allow-peers", "127.0.0.0/8",
		"--tls-cert", certFile, "--tls-key", keyFile, "--turn-tls-listen", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0")
	defer func() {
		if code := r.stop(); code != 0 {
			t.Errorf("relay exited with %d", code)
		}
	}()
	addr := r.waitLog(t, regexp.MustCompile(`msg="relay: listening" addr=(\S+) scheme=https`))[1]
	httpAddr := r.waitLog(t, regexp.MustCompile(`msg="relay: plain HTTP[^"]*" addr=(\S+)`))[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := "https://" + addr
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("")}}
	defer hc.CloseIdleConnections()

	// A client that does not trust the CA is refused.
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("https without trusting the test CA succeeded")
	}

	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	m, _ := identity.NewMnemonic(0)
	id, _ := identity.FromMnemonic(m)
	alias, _, err := client.Register(cctx, hc, base, id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(cctx, client.Options{RelayURL: base, Identity: id, Alias: alias, HTTPClient: hc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ice, err := c.ICEConfig(cctx)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	var user, pass string
	for _, s := range ice.ICEServers {
		urls = append(urls, s.URLs...)
		if s.Username != "" {
			user, pass = s.Username, s.Credential
		}
	}
	joined := strings.Join(urls, " ")
	tlsURL := regexp.MustCompile(`turns:relay\.duet\.test:(\d+)\?transport=tcp`).FindStringSubmatch(joined)
	iu, it, is := strings.Index(joined, "?transport=udp"), strings.Index(joined, "turn:127.0.0.1"), strings.Index(joined, "turns:")
	if tlsURL == nil || iu < 0 || !strings.Contains(joined, "?transport=tcp") || is < it || is < iu {
		t.Fatalf("ICE URLs %q: want turn udp, turn tcp, then turns:relay.duet.test", urls)
	}

	// TURN over TLS with the relay's certificate: an allocation and a
	// relayed echo.
	conn, err := tls.Dial("tcp4", "127.0.0.1:"+tlsURL[1], ca.ClientConfig("relay.duet.test"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: conn.RemoteAddr().String(), TURNServerAddr: conn.RemoteAddr().String(),
		Conn: turn.NewSTUNConn(conn), Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := tc.AllocateWithContext(cctx)
	if err != nil {
		t.Fatalf("allocation over TLS: %v", err)
	}
	defer relayConn.Close()
	peer, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("relayed echo over TURN/TLS: %q %v", buf[:n], err)
	}

	// Plain HTTP redirects to https.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + httpAddr + "/api/v1/ws?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(addr)
	_, hport, _ := net.SplitHostPort(httpAddr)
	if want := "https://127.0.0.1:" + port + "/api/v1/ws?x=1"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("http://127.0.0.1:%s: %d Location %q, want 301 to %s", hport, resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestTLSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
		addr string
	}{
		{[]string{"--tls-cert", "c.pem"}, false, ""},
		{[]string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, true, ":443"},
		{[]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--addr", ":8443"}, true, ":8443"},
		{[]string{"--acme-domain", "relay.example.com"}, true, ":443"},
		{[]string{"--acme-domain", "10.0.0.1"}, false, ""},
		{[]string{"--acme-domain", "a.example", "--tls-cert", "c", "--tls-key", "k"}, false, ""},
		{[]string{"--http-addr", ":80"}, false, ""},
		{[]string{"--tls-cert", "c", "--tls-key", "k", "--turn-tls-listen", "nope"}, false, ""},
	} {
		c, err := parseRelayConfig(tc.args, mapLookup(nil))
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errUsage)) {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if tc.ok && c.addr != tc.addr {
			t.Errorf("%q: addr %q, want %q", tc.args, c.addr, tc.addr)
		}
	}
	c, _ := parseRelayConfig([]string{"--acme-domain", "relay.example.com"}, mapLookup(nil))
	if c.tls.httpAddr != ":80" || len(c.tls.turnListen) != 1 || c.tls.turnListen[0] != ":5349" {
		t.Errorf("acme defaults: %+v", c.tls)
	}
	c, _ = parseRelayConfig([]string{"--tls-cert", "c", "--tls-key", "k", "--turn-tls-listen", "off"}, mapLookup(nil))
	if c.tls.turnListen != nil || c.tls.httpAddr != "" {
		t.Errorf("off: %+v", c.tls)
	}
}
