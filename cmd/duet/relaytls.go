package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/duetcall/duet/internal/tlsmux"
)

// tlsConfig is the TLS part of `duet relay`'s configuration.
type tlsConfig struct {
	certFile, keyFile string
	acmeDomains       []string
	acmeEmail         string
	acmeDirectory     string
	// httpAddr, when set, serves plain HTTP: ACME HTTP-01 challenges and a
	// redirect of everything else to https.
	httpAddr string
	// turnListen are the addresses of TURN over TLS; nil with "off".
	turnListen []string
	turnHost   string
}

func (t tlsConfig) enabled() bool { return t.certFile != "" || len(t.acmeDomains) > 0 }

// parseTLSFlags checks the TLS flags after parsing. addrSet says whether
// --addr (or DUET_ADDR) was given; without it a TLS relay listens on :443.
func parseTLSFlags(c *relayConfig, addrSet bool, acmeDomains, turnTLSListen string) error {
	t := &c.tls
	for _, d := range strings.Split(acmeDomains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			if net.ParseIP(d) != nil || strings.ContainsAny(d, "/: ") {
				return fmt.Errorf("%w: --acme-domain %q: want a DNS name (certificates by ACME are for names, not addresses)", errUsage, d)
			}
			t.acmeDomains = append(t.acmeDomains, d)
		}
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if t.certFile != "" && len(t.acmeDomains) > 0 {
		return fmt.Errorf("%w: --tls-cert and --acme-domain exclude each other: a certificate from files, or one from ACME", errUsage)
	}
	if !t.enabled() {
		if t.httpAddr != "" {
			return fmt.Errorf("%w: --http-addr redirects to https: it needs --tls-cert or --acme-domain", errUsage)
		}
		return nil
	}
	if !addrSet {
		c.addr = ":443"
	}
	if len(t.acmeDomains) > 0 && t.httpAddr == "" {
		t.httpAddr = ":80" // HTTP-01 challenges
	}
	switch strings.TrimSpace(turnTLSListen) {
	case "off", "none":
	case "":
		t.turnListen = []string{":5349"}
	default:
		for _, a := range strings.Split(turnTLSListen, ",") {
			a = strings.TrimSpace(a)
			if _, err := parseTURNListen(a); err != nil {
				return fmt.Errorf("%w: --turn-tls-listen %q: want IP:PORT or :PORT", errUsage, a)
			}
			t.turnListen = append(t.turnListen, a)
		}
	}
	return nil
}

// relayTLS is the running TLS setup.
type relayTLS struct {
	cfg      *tls.Config
	acme     *autocert.Manager // nil with certificate files
	turnHost string            // the name turns: URLs carry
}

// buildTLS loads the certificate files or sets up ACME (certificates cached
// under dataDir/acme).
func buildTLS(cfg relayConfig, log *slog.Logger) (*relayTLS, error) {
	t := cfg.tls
	r := &relayTLS{turnHost: t.turnHost}
	if t.certFile != "" {
		cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate %s / key %s: %w", t.certFile, t.keyFile, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("TLS certificate %s: %w", t.certFile, err)
		}
		if time.Now().After(leaf.NotAfter) {
			log.Warn("tls: the certificate has expired; clients will refuse it", "file", t.certFile, "not_after", leaf.NotAfter)
		}
		r.cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if r.turnHost == "" && len(leaf.DNSNames) > 0 {
			r.turnHost = leaf.DNSNames[0]
		}
		log.Info("tls: certificate from files", "cert", t.certFile, "names", strings.Join(leaf.DNSNames, ","), "not_after", leaf.NotAfter.Format(time.RFC3339))
		return r, nil
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(t.acmeDomains...),
		Cache:      autocert.DirCache(filepath.Join(cfg.dataDir, "acme")),
		Email:      t.acmeEmail,
	}
	if t.acmeDirectory != "" {
		m.Client = &acme.Client{DirectoryURL: t.acmeDirectory}
	}
	r.acme = m
	r.cfg = m.TLSConfig()
	// Plain HTTP/1.1 (WebSockets; tlsmux serves the decrypted stream) and
	// the TLS-ALPN-01 challenge.
	r.cfg.NextProtos = []string{"http/1.1", acme.ALPNProto}
	r.cfg.MinVersion = tls.VersionTLS12
	if r.turnHost == "" {
		r.turnHost = t.acmeDomains[0]
	}
	log.Info("tls: certificates by ACME", "domains", strings.Join(t.acmeDomains, ","), "cache", filepath.Join(cfg.dataDir, "acme"),
		"http01", t.httpAddr)
	return r, nil
}

// listen opens the relay's listener on addr. With TLS, connections are
// decrypted; when addr's port is 443, TURN over TLS shares it (tlsmux) and
// turnL yields the TURN connections.
func (r *relayTLS) listen(addr string) (httpL, turnL net.Listener, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		return ln, nil, nil
	}
	if _, port, _ := net.SplitHostPort(ln.Addr().String()); port == "443" {
		httpL, turnL = tlsmux.Split(ln, r.cfg)
		return httpL, turnL, nil
	}
	return tls.NewListener(ln, r.cfg), nil, nil
}

// redirectServer serves --http-addr: ACME HTTP-01 challenges (with ACME)
// and a redirect of every other request to https on the relay's port.
func (r *relayTLS) redirectServer(httpAddr, relayAddr string, log *slog.Logger) (*http.Server, net.Listener, error) {
	_, port, _ := net.SplitHostPort(relayAddr)
	redirect := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if port != "443" {
			host = net.JoinHostPort(host, port)
		}
		http.Redirect(w, req, "https://"+host+req.URL.RequestURI(), http.StatusMovedPermanently)
	})
	var h http.Handler = redirect
	if r.acme != nil {
		h = r.acme.HTTPHandler(redirect)
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s (HTTP: ACME challenges and the redirect to https): %w", httpAddr, err)
	}
	return newHTTPServer(h, log), ln, nil
}

// tlsPorts are the ports of the TURN TLS listeners, for the turns: URLs.
func tlsPorts(addrs []net.Addr) []int {
	var out []int
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	return out
}

// serveHTTP runs hs on ln until ctx ends, then shuts it down.
func serveHTTP(ctx context.Context, hs *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	}
}
