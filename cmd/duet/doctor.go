package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
)

func doctorUsage() string {
	return `Usage: duet doctor [flags]

Checks what calls need, one line per check with a verdict (ok, warn, FAIL)
and, when it is not ok, the fix: the relay is reachable, its TLS certificate
is valid, this machine's clock agrees with the relay's (signaling refuses
envelopes more than 60 s off), registration and the WebSocket's
authentication work, the ICE configuration, the STUN mapping and whether
this network's NAT keeps one mapping for every destination (direct calls
work) or not (symmetric: calls need TURN), and a TURN allocation over each
transport offered (UDP, TCP, TLS) with a relayed echo. Exits 1 when a
check failed.

It uses the identity in --home when there is one; otherwise it registers a
temporary identity with the relay (not saved).

Flags:
` + clientFlagsHelp() + `  --timeout D          bound on each network check (default 5s)
`
}

// doctorRoots, when set (tests), is the CA pool the doctor trusts for
// https and turns: instead of the system's.
var doctorRoots *x509.CertPool

// verdicts of a check.
const (
	vOK   = "ok"
	vWarn = "warn"
	vFail = "FAIL"
)

type doctor struct {
	out      io.Writer
	timeout  time.Duration
	hc       *http.Client
	tlsConf  *tls.Config
	fails    int
	warns    int
	turnOK   int // TURN transports whose allocation worked
	relayURL *url.URL
}

func (d *doctor) line(verdict, what, detail, fix string) {
	switch verdict {
	case vFail:
		d.fails++
	case vWarn:
		d.warns++
	}
	fmt.Fprintf(d.out, "  %-4s  %-14s %s\n", verdict, what, detail)
	if fix != "" {
		fmt.Fprintf(d.out, "        %-14s fix: %s\n", "", fix)
	}
}

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("duet doctor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf clientFlags
	cf.register(fs)
	timeout := fs.Duration("timeout", 5*time.Second, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, doctorUsage())
			return 0
		}
		fmt.Fprintf(stderr, "duet doctor: %v\n\n%s", err, doctorUsage())
		return 2
	}
	if fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprint(stderr, doctorUsage())
		return 2
	}
	relay := strings.TrimSpace(strings.Split(cf.relay, ",")[0])
	u, err := url.Parse(relay)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "duet doctor: --relay %q: want http://host:port or https://host\n", relay)
		return 2
	}
	d := &doctor{out: stdout, timeout: *timeout, relayURL: u}
	d.tlsConf = &tls.Config{RootCAs: doctorRoots, MinVersion: tls.VersionTLS12}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = d.tlsConf
	d.hc = &http.Client{Transport: tr, Timeout: *timeout}
	defer tr.CloseIdleConnections()
	fmt.Fprintf(stdout, "duet doctor: relay %s\n", relay)
	d.run(ctx, relay, cf)
	switch {
	case d.fails > 0:
		fmt.Fprintf(stdout, "verdict: %d check(s) failed, %d warning(s): calls will not work until the failures are fixed\n", d.fails, d.warns)
		return 1
	case d.warns > 0:
		fmt.Fprintf(stdout, "verdict: calls should work, with %d warning(s)\n", d.warns)
	default:
		fmt.Fprintln(stdout, "verdict: all checks passed")
	}
	return 0
}

func (d *doctor) run(ctx context.Context, relay string, cf clientFlags) {
	// Reachability, TLS and the relay's clock (its Date header).
	start := time.Now()
	resp, err := d.hc.Get(relay + "/healthz")
	if err != nil {
		var cerr *tls.CertificateVerificationError
		if errors.As(err, &cerr) {
			d.line(vFail, "TLS", "the certificate is not valid: "+cerr.Err.Error(), "install a certificate for "+d.relayURL.Hostname()+" from a public CA (duet relay --acme-domain "+d.relayURL.Hostname()+"), or a full chain in --tls-cert")
			return
		}
		d.line(vFail, "relay", "not reachable: "+err.Error(), "check --relay (is `duet relay` running there, and the port open in its firewall?)")
		return
	}
	resp.Body.Close()
	rtt := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		d.line(vFail, "relay", fmt.Sprintf("GET /healthz answered %s", resp.Status), "this URL is not a duet relay, or a proxy in front of it refuses: check --relay")
		return
	}
	d.line(vOK, "relay", fmt.Sprintf("reachable, /healthz in %v", rtt.Round(time.Millisecond)), "")
	d.checkTLS(resp)
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		skew := date.Sub(start.Add(rtt / 2)).Round(time.Second)
		d.skewLine(skew, "from the relay's Date header")
	}

	// Registration and the WebSocket's authentication.
	id, alias, how, err := d.identity(ctx, relay, cf)
	if err != nil {
		d.line(vFail, "registration", err.Error(), "check that the relay's directory works (GET /readyz) and its logs")
		return
	}
	d.line(vOK, "registration", fmt.Sprintf("%s (%s)", alias, how), "")
	cctx, cancel := context.WithTimeout(ctx, d.timeout+5*time.Second)
	defer cancel()
	start = time.Now()
	c, err := client.Connect(cctx, client.Options{RelayURL: relay, Identity: id, Alias: alias, HTTPClient: d.hc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		d.line(vFail, "WebSocket", err.Error(), "a proxy must pass WebSocket upgrades on /api/v1/ws; ErrUnauthorized: the identity is not registered on this relay")
		return
	}
	defer c.Close()
	d.line(vOK, "WebSocket", fmt.Sprintf("authenticated in %v", time.Since(start).Round(time.Millisecond)), "")
	if skew := c.ClockSkew(); skew != 0 {
		d.skewLine(skew.Round(100*time.Millisecond), "from the WebSocket's ready frame")
	}

	// ICE configuration.
	ice, err := c.ICEConfig(cctx)
	if err != nil {
		d.line(vFail, "ICE config", err.Error(), "the relay's TURN provider failed: check its logs (duet relay --log-level debug)")
		return
	}
	var urls []string
	for _, s := range ice.ICEServers {
		urls = append(urls, s.URLs...)
	}
	switch {
	case len(urls) == 0:
		d.line(vFail, "ICE config", "no ICE servers", "configure a TURN provider or keep the embedded TURN (no --no-turn)")
	case !hasTURN(urls):
		d.line(vWarn, "ICE config", "STUN only: "+strings.Join(urls, " "), "without TURN, calls between symmetric NATs or through firewalls fail: keep the embedded TURN (no --no-turn) or configure a provider")
	default:
		d.line(vOK, "ICE config", fmt.Sprintf("policy %s, ttl %d s: %s", ice.ICETransportPolicy, ice.TTL, strings.Join(urls, " ")), "")
	}
	d.checkNetwork(ctx, ice)
}

func hasTURN(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			return true
		}
	}
	return false
}

func (d *doctor) checkTLS(resp *http.Response) {
	if resp.TLS == nil {
		host := d.relayURL.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
			d.line(vOK, "TLS", "plain http on this machine (browsers allow localhost)", "")
			return
		}
		d.line(vWarn, "TLS", "plain http: browsers on other machines give the page no camera or microphone", "run the relay with --tls-cert/--tls-key or --acme-domain and use https://")
		return
	}
	leaf := resp.TLS.PeerCertificates[0]
	left := time.Until(leaf.NotAfter)
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	detail := fmt.Sprintf("valid for %s until %s (%d days)", strings.Join(names, ","), leaf.NotAfter.Format("2006-01-02"), int(left.Hours()/24))
	if left < 14*24*time.Hour {
		d.line(vWarn, "TLS", detail, "renew the certificate (--acme-domain renews by itself)")
		return
	}
	d.line(vOK, "TLS", detail, "")
}

func (d *doctor) skewLine(skew time.Duration, how string) {
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	detail := fmt.Sprintf("%v off the relay's clock (%s)", skew, how)
	switch {
	case abs > 60*time.Second:
		d.line(vFail, "clock", detail, "signaling refuses envelopes more than 60 s off: set this machine's clock (enable NTP)")
	case abs > 30*time.Second:
		d.line(vWarn, "clock", detail, "near the 60 s limit of signaling: set this machine's clock (enable NTP)")
	default:
		d.line(vOK, "clock", detail, "")
	}
}

// identity loads the keystore of --home, or registers a temporary one.
func (d *doctor) identity(ctx context.Context, relay string, cf clientFlags) (*identity.Identity, identity.Alias, string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if ks, err := identity.LoadKeystore(cf.keystorePath()); err == nil {
		id, err := identity.FromMnemonic(ks.Mnemonic)
		if err == nil {
			alias, _, err := client.Register(ctx, d.hc, relay, id)
			if err != nil {
				return nil, "", "", fmt.Errorf("registering the identity of %s: %w", cf.home, err)
			}
			return id, alias, "identity from " + cf.home, nil
		}
	}
	m, err := identity.NewMnemonic(0)
	if err != nil {
		return nil, "", "", err
	}
	id, err := identity.FromMnemonic(m)
	if err != nil {
		return nil, "", "", err
	}
	alias, _, err := client.Register(ctx, d.hc, relay, id)
	if err != nil {
		return nil, "", "", fmt.Errorf("registering a temporary identity: %w", err)
	}
	return id, alias, "a temporary identity: no keystore in " + cf.home, nil
}

// checkNetwork runs the STUN and TURN checks against the ICE servers.
func (d *doctor) checkNetwork(ctx context.Context, ice client.ICEConfig) {
	type turnServer struct {
		uri        *stun.URI
		user, pass string
	}
	var stunAddrs []string
	var turns []turnServer
	seen := map[string]bool{}
	for _, s := range ice.ICEServers {
		for _, raw := range s.URLs {
			u, err := stun.ParseURI(raw)
			if err != nil {
				d.line(vWarn, "ICE config", fmt.Sprintf("%s: %v", raw, err), "")
				continue
			}
			hp := net.JoinHostPort(u.Host, fmt.Sprint(u.Port))
			if (u.Scheme == stun.SchemeTypeSTUN || (u.Scheme == stun.SchemeTypeTURN && u.Proto == stun.ProtoTypeUDP)) && !seen[hp] {
				seen[hp] = true
				stunAddrs = append(stunAddrs, hp)
			}
			if u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS {
				turns = append(turns, turnServer{u, s.Username, s.Credential})
			}
		}
	}

	// STUN: this machine's mapping, seen by the first server.
	sock, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		d.line(vFail, "STUN", err.Error(), "")
		return
	}
	defer sock.Close()
	var mapped netip.AddrPort
	for _, hp := range stunAddrs {
		m, err := d.stunMapped(sock, hp)
		if err != nil {
			d.line(vWarn, "STUN", fmt.Sprintf("%s: %v", hp, err), "UDP to the STUN/TURN server is blocked (or it is down): no direct calls from here; calls need TURN over TCP or TLS (below). Open UDP "+hp+" outbound for direct calls")
			continue
		}
		nat := "behind a NAT"
		if isLocalAddr(m.Addr()) {
			nat = "no NAT between this machine and the server (the address is one of its own)"
		}
		d.line(vOK, "STUN", fmt.Sprintf("%s sees this machine at %s: %s", hp, m, nat), "")
		mapped = m
		break
	}

	// TURN: an allocation over every transport offered, with a relayed
	// echo; the UDP one also tells the NAT's mapping behaviour.
	for _, ts := range turns {
		name := "TURN " + ts.uri.Proto.String()
		if ts.uri.Scheme == stun.SchemeTypeTURNS {
			name = "TURN tls"
		}
		d.checkTURN(ctx, name, ts.uri, ts.user, ts.pass, sock, mapped)
	}
	if len(turns) > 0 && d.turnOK == 0 {
		d.line(vFail, "TURN", "no allocation worked over any transport offered", "open UDP or TCP 3478, or TCP 443, outbound to the relay; a relay with TLS on :443 serves TURN over TLS there (turns:HOST:443), which passes most firewalls")
	}
}

func isLocalAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if ipn, ok := x.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// stunMapped sends a Binding request from sock to hp and returns the
// XOR-MAPPED-ADDRESS, retrying a lost request.
func (d *doctor) stunMapped(sock net.PacketConn, hp string) (netip.AddrPort, error) {
	raddr, err := net.ResolveUDPAddr("udp4", hp)
	if err != nil {
		return netip.AddrPort{}, err
	}
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	deadline := time.Now().Add(d.timeout)
	buf := make([]byte, 1500)
	for try := 0; time.Now().Before(deadline); try++ {
		if _, err := sock.WriteTo(req.Raw, raddr); err != nil {
			return netip.AddrPort{}, err
		}
		_ = sock.SetReadDeadline(time.Now().Add(min(500*time.Millisecond<<try, time.Until(deadline))))
		for {
			n, _, err := sock.ReadFrom(buf)
			if err != nil {
				break // timeout: send again
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(res); err != nil {
				return netip.AddrPort{}, fmt.Errorf("no mapped address in the answer: %w", err)
			}
			ip, _ := netip.AddrFromSlice(xor.IP)
			return netip.AddrPortFrom(ip.Unmap(), uint16(xor.Port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no answer within %v", d.timeout)
}

// checkTURN allocates over the transport of u and echoes a packet through
// the relayed address: sock (a plain UDP socket, mapped at mapped) sends to
// it and the allocation answers. For UDP it also compares the mapping
// sock got towards the relayed port with the STUN one: equal means the NAT
// maps endpoint-independently.
func (d *doctor) checkTURN(ctx context.Context, name string, u *stun.URI, user, pass string, sock net.PacketConn, mapped netip.AddrPort) {
	hp := net.JoinHostPort(u.Host, fmt.Sprint(u.Port))
	var conn net.PacketConn
	switch {
	case u.Scheme == stun.SchemeTypeTURNS:
		cfg := d.tlsConf.Clone()
		cfg.ServerName = u.Host
		dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: d.timeout}, Config: cfg}
		c, err := dialer.DialContext(ctx, "tcp4", hp)
		if err != nil {
			fix := "the network blocks TCP " + fmt.Sprint(u.Port) + ", or the TURN certificate is not valid for " + u.Host
			d.line(vWarn, name, fmt.Sprintf("connecting to %s: %v", hp, err), fix)
			return
		}
		conn = turn.NewSTUNConn(c)
	case u.Proto == stun.ProtoTypeTCP:
		c, err := (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, "tcp4", hp)
		if err != nil {
			d.line(vWarn, name, fmt.Sprintf("connecting to %s: %v", hp, err), "the network blocks TCP "+fmt.Sprint(u.Port)+" outbound; TURN over TLS on 443 gets through most firewalls (relay with TLS on :443)")
			return
		}
		conn = turn.NewSTUNConn(c)
	default:
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			d.line(vFail, name, err.Error(), "")
			return
		}
		conn = c
	}
	defer conn.Close()
	tc, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: hp, TURNServerAddr: hp, Conn: conn, Username: user, Password: pass})
	if err != nil {
		d.line(vFail, name, err.Error(), "")
		return
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		d.line(vFail, name, err.Error(), "")
		return
	}
	actx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	start := time.Now()
	relayConn, err := tc.AllocateWithContext(actx)
	if err != nil {
		fix := "UDP to " + hp + " is blocked, or the credentials were refused (clock skew with the relay? see the clock line)"
		if u.Proto == stun.ProtoTypeTCP {
			fix = "the TURN server refused or did not answer over " + strings.ToUpper(name[5:])
		}
		d.line(vWarn, name, fmt.Sprintf("allocation on %s: %v", hp, err), fix)
		return
	}
	defer relayConn.Close()
	d.turnOK++
	alloc := time.Since(start)
	relayed := relayConn.LocalAddr().(*net.UDPAddr)
	if !mapped.IsValid() {
		d.line(vOK, name, fmt.Sprintf("allocated %s in %v (relayed echo not tried: it needs UDP out from this machine)", relayed, alloc.Round(time.Millisecond)), "")
		return
	}
	// The permission for this machine's public address, then the echo.
	if err := tc.CreatePermission(&net.UDPAddr{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())}); err != nil {
		d.line(vWarn, name, fmt.Sprintf("allocated %s in %v; the server refuses to relay to this machine's address %s (%v)", relayed, alloc.Round(time.Millisecond), mapped.Addr(), err),
			"expected when this machine and the relay share a private network; calls relayed between peers on it need duet relay --turn-allow-peers")
		return
	}
	echoStart := time.Now()
	from, err := d.echo(relayConn, sock, relayed)
	if err != nil {
		d.line(vFail, name, fmt.Sprintf("allocated %s in %v, but no relayed echo: %v", relayed, alloc.Round(time.Millisecond), err),
			"the TURN server's relay ports are blocked (open its UDP relay port range), or its --turn-public-host is wrong")
		return
	}
	d.line(vOK, name, fmt.Sprintf("allocated %s in %v, relayed echo in %v", relayed, alloc.Round(time.Millisecond), time.Since(echoStart).Round(time.Millisecond)), "")
	if name == "TURN udp" {
		if from == mapped {
			d.line(vOK, "NAT mapping", fmt.Sprintf("endpoint-independent (%s towards two ports of the server): direct calls can work", from), "")
		} else {
			d.line(vWarn, "NAT mapping", fmt.Sprintf("symmetric: %s towards one port of the server, %s towards another", mapped, from),
				"calls from this network go through TURN (slower, uses the relay's bandwidth); a router with endpoint-independent NAT (UDP) allows direct calls")
		}
	}
}

// echo sends a packet from sock to the relayed address and answers it
// through the allocation; it returns the address the server saw sock at.
func (d *doctor) echo(relayConn net.PacketConn, sock net.PacketConn, relayed *net.UDPAddr) (netip.AddrPort, error) {
	deadline := time.Now().Add(d.timeout)
	_ = relayConn.SetReadDeadline(deadline)
	_ = sock.SetReadDeadline(deadline)
	ping := []byte("duet doctor ping")
	buf := make([]byte, 1500)
	var from net.Addr
	for from == nil {
		if _, err := sock.WriteTo(ping, relayed); err != nil {
			return netip.AddrPort{}, err
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, addr, err := relayConn.ReadFrom(buf)
		if err == nil && string(buf[:n]) == string(ping) {
			from = addr
			break
		}
		if time.Now().After(deadline) {
			return netip.AddrPort{}, errors.New("the packet sent to the relayed address never arrived")
		}
	}
	for {
		if _, err := relayConn.WriteTo([]byte("duet doctor pong"), from); err != nil {
			return netip.AddrPort{}, err
		}
		_ = sock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := sock.ReadFrom(buf)
		if err == nil && string(buf[:n]) == "duet doctor pong" {
			ap, _ := netip.ParseAddrPort(from.String())
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
		}
		if time.Now().After(deadline) {
			return netip.AddrPort{}, errors.New("the answer from the relayed address never arrived")
		}
	}
}
