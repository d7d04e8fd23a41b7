package nattest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/internal/testca"
)

// duetBin is the duet binary the suite runs, built once by TestMain.
var duetBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "duet-nattest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	duetBin = filepath.Join(dir, "duet")
	build := exec.Command("go", "build", "-o", duetBin, "./cmd/duet")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building duet: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTools fails the test without root, ip or nft: the suite never
// skips.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the NAT suite needs root (network namespaces, nftables): run `make nattest` as root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install iproute2 and nftables (`apt-get install -y iproute2 nftables`, or `make deps`)", tool)
		}
	}
}

// Addresses inside the lab. 203.0.113.0/24 (TEST-NET-3) is the lab's
// "internet": the relay is .1, router A's public side .2, router B's .3.
const (
	relayIP = "203.0.113.1"
)

// NAT behaviours of a router.
const (
	cone      = "masquerade"              // endpoint-independent mapping
	symmetric = "masquerade fully-random" // a new port per destination
)

// Filters of a router's forward chain (traffic from its LAN).
const (
	open      = ""
	blockUDP  = `iifname "lan" meta l4proto udp drop`
	only443   = `iifname "lan" tcp dport 443 accept` + "\n" + `iifname "lan" drop`
	blockNone = open
)

// side is one peer's network: the host namespace behind a router one.
type side struct {
	name           string // "a" or "b"
	host, router   string // namespace names
	lanIP, lanNet  string // the host's address and its /24
	gateway, pubIP string
}

type lab struct {
	t      *testing.T
	id     string
	pub    string
	a, b   side
	nsList []string
	mu     sync.Mutex
	procs  []*proc
}

var labSeq atomic.Int32

// newLab builds the namespaces: pub (the relay's bridge), and for each of
// a and b a router (NAT natA/natB, filter filterA/filterB) and a host
// behind it. Everything is removed when the test ends.
func newLab(t *testing.T, natA, filterA, natB, filterB string) *lab {
	t.Helper()
	requireTools(t)
	l := &lab{t: t, id: fmt.Sprintf("d16n%d-%d", os.Getpid()%100000, labSeq.Add(1))}
	t.Cleanup(l.destroy)
	l.pub = l.ns("pub")
	l.run("ip", "-n", l.pub, "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", l.pub, "addr", "add", relayIP+"/24", "dev", "br0")
	l.run("ip", "-n", l.pub, "link", "set", "br0", "up")
	l.a = l.side("a", 2, natA, filterA)
	l.b = l.side("b", 3, natB, filterB)
	return l
}

// ns creates a namespace with its loopback up.
func (l *lab) ns(role string) string {
	name := l.id + "-" + role
	l.run("ip", "netns", "add", name)
	l.mu.Lock()
	l.nsList = append(l.nsList, name)
	l.mu.Unlock()
	l.run("ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func (l *lab) side(name string, n int, nat, filter string) side {
	s := side{name: name, router: l.ns("r" + name), host: l.ns(name),
		lanIP: fmt.Sprintf("10.0.%d.2", n), lanNet: fmt.Sprintf("10.0.%d.0/24", n),
		gateway: fmt.Sprintf("10.0.%d.1", n), pubIP: fmt.Sprintf("203.0.113.%d", n)}
	port := "p" + name
	l.run("ip", "-n", l.pub, "link", "add", port, "type", "veth", "peer", "name", "wan", "netns", s.router)
	l.run("ip", "-n", l.pub, "link", "set", port, "master", "br0", "up")
	l.run("ip", "-n", s.router, "addr", "add", s.pubIP+"/24", "dev", "wan")
	l.run("ip", "-n", s.router, "link", "set", "wan", "up")
	l.run("ip", "-n", s.router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", s.host)
	l.run("ip", "-n", s.router, "addr", "add", s.gateway+"/24", "dev", "lan")
	l.run("ip", "-n", s.router, "link", "set", "lan", "up")
	l.run("ip", "-n", s.host, "addr", "add", s.lanIP+"/24", "dev", "eth0")
	l.run("ip", "-n", s.host, "link", "set", "eth0", "up")
	l.run("ip", "-n", s.host, "route", "add", "default", "via", s.gateway)
	l.run("ip", "netns", "exec", s.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := fmt.Sprintf(`table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" %s
  }
}
table inet filter {
  chain input {
    type filter hook input priority filter; policy accept;
    # Like a home router: unsolicited packets from outside are dropped
    # before conntrack confirms an entry for them. An entry confirmed for
    # an early hole-punching packet would take the mapping that the
    # host's own packet to that peer needs next, and the NAT would pick
    # another port (symmetric behaviour).
    iifname "wan" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    %s
  }
}
`, nat, filter)
	l.runIn(rules, "ip", "netns", "exec", s.router, "nft", "-f", "-")
	return s
}

// changeAddress moves s's host from its LAN address to newIP (same /24):
// like a DHCP renew giving another address. Established connections from
// the old address are dead from then on.
func (l *lab) changeAddress(s *side, newIP string) {
	l.run("ip", "-n", s.host, "addr", "del", s.lanIP+"/24", "dev", "eth0")
	l.run("ip", "-n", s.host, "addr", "add", newIP+"/24", "dev", "eth0")
	l.run("ip", "-n", s.host, "route", "replace", "default", "via", s.gateway)
	s.lanIP = newIP
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	l.runIn("", args...)
}

func (l *lab) runIn(stdin string, args ...string) {
	l.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// destroy stops every process and removes every namespace of the lab.
func (l *lab) destroy() {
	l.mu.Lock()
	procs, nss := l.procs, l.nsList
	l.procs, l.nsList = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	if l.t.Failed() {
		for _, p := range procs {
			l.t.Logf("--- %s output:\n%s", p.name, p.out.String())
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i]).CombinedOutput(); err != nil {
			l.t.Errorf("removing namespace %s: %v %s", nss[i], err, out)
		}
	}
}

// proc is a duet process running in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// start runs duet with args in namespace ns.
func (l *lab) start(name, ns string, env []string, args ...string) *proc {
	l.t.Helper()
	p := &proc{name: name, out: new(syncbuf.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, duetBin}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// stop interrupts p (it hangs up and exits) and kills it if it lingers.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for p to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s still running after %v:\n%s", p.name, within, p.out.String())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// waitFor waits until p's output matches re and returns the submatches.
func (p *proc) waitFor(t *testing.T, re string, within time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(within)
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := rx.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("%s exited without %q:\n%s", p.name, re, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v:\n%s", p.name, re, within, p.out.String())
		}
	}
}

// relayOpts configure the lab's relay.
type relayOpts struct {
	args []string // extra flags
	url  string   // what clients dial; default http://203.0.113.1:8080
	env  []string // clients' environment (SSL_CERT_FILE for a test CA)
	proc *proc    // the relay (set by startRelay): its log
}

// startRelay443 starts the relay serving HTTPS, WSS and TURN over TLS on
// port 443 alone, with a certificate of a test CA the clients trust.
func (l *lab) startRelay443() relayOpts {
	l.t.Helper()
	ca, err := testca.New(relayIP)
	if err != nil {
		l.t.Fatal(err)
	}
	dir := l.t.TempDir()
	cert, key, err := ca.WriteFiles(dir)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.startRelay(relayOpts{
		args: []string{"--addr", relayIP + ":443", "--tls-cert", cert, "--tls-key", key, "--turn-tls-listen", "off", "--turn-tls-host", relayIP},
		url:  "https://" + relayIP,
		env:  []string{"SSL_CERT_FILE=" + filepath.Join(dir, "ca.pem")},
	})
}

// startRelay runs `duet relay` on the public bridge.
func (l *lab) startRelay(o relayOpts) relayOpts {
	l.t.Helper()
	args := append([]string{"relay", "--data-dir", l.t.TempDir(), "--turn-listen", relayIP + ":3478", "--log-level", "info"}, o.args...)
	if !contains(o.args, "--addr") {
		args = append(args, "--addr", relayIP+":8080")
	}
	if o.url == "" {
		o.url = "http://" + relayIP + ":8080"
	}
	o.proc = l.start("relay", l.pub, nil, args...)
	o.proc.waitFor(l.t, `msg="relay: listening"`, 60*time.Second)
	return o
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// newUser creates an identity in s's host namespace and returns its home
// and alias.
func (l *lab) newUser(s side, r relayOpts) (home, alias string) {
	l.t.Helper()
	home = l.t.TempDir()
	p := l.start("id new "+s.name, s.host, r.env, "id", "new", "--home", home, "--relay", r.url)
	if code := p.wait(l.t, 60*time.Second); code != 0 {
		l.t.Fatalf("duet id new in %s exited %d:\n%s", s.name, code, p.out.String())
	}
	m := regexp.MustCompile(`\bu\d{8}\b`).FindString(p.out.String())
	if m == "" {
		l.t.Fatalf("no alias in:\n%s", p.out.String())
	}
	return home, m
}

// callResult is what `duet call` reported.
type callResult struct {
	code          int
	out           string
	setup         time.Duration // calling → connected, as the suite saw the lines
	local, remote string        // candidate types of the selected pair
}

// placeCall runs `duet call` from a to alias (answered by b's `duet answer
// --auto`) for duration after it connects.
func (l *lab) placeCall(home, alias string, r relayOpts, duration time.Duration, within time.Duration) callResult {
	l.t.Helper()
	p := l.start("call", l.a.host, r.env, "call", alias, "--home", home, "--relay", r.url, "--duration", duration.String())
	var calling, connected time.Time
	deadline := time.Now().Add(within)
	for {
		out := p.out.String()
		if calling.IsZero() && strings.Contains(out, "state: calling") {
			calling = time.Now()
		}
		if connected.IsZero() && strings.Contains(out, "state: connected") {
			connected = time.Now()
		}
		select {
		case <-p.done:
		case <-time.After(5 * time.Millisecond):
			if time.Now().After(deadline) {
				// A hung process: its goroutines (SIGQUIT) go to the log.
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-p.done:
				case <-time.After(5 * time.Second):
				}
				l.t.Fatalf("duet call still running after %v:\n%s", within, p.out.String())
			}
			continue
		}
		break
	}
	res := callResult{code: p.wait(l.t, time.Second), out: p.out.String()}
	if !connected.IsZero() && !calling.IsZero() {
		res.setup = connected.Sub(calling)
	}
	if m := regexp.MustCompile(`candidates (\w*)/(\w*)`).FindStringSubmatch(res.out); m != nil {
		res.local, res.remote = m[1], m[2]
	}
	return res
}

// placeCallQuiet is placeCall reporting failures in the result only (for
// a call placed on another goroutine).
func (l *lab) placeCallQuiet(home, alias string, r relayOpts, duration, within time.Duration) callResult {
	p := l.start("call", l.a.host, r.env, "call", alias, "--home", home, "--relay", r.url, "--duration", duration.String())
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.done
	}
	res := callResult{code: -1, out: p.out.String()}
	if p.err == nil {
		res.code = 0
	} else if ee, ok := p.err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	}
	return res
}

// waitCallerConnected waits until the running `duet call` is connected.
func (l *lab) waitCallerConnected(within time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		var p *proc
		for _, q := range l.procs {
			if q.name == "call" {
				p = q
			}
		}
		l.mu.Unlock()
		if p != nil && strings.Contains(p.out.String(), "state: connected") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.t.Fatalf("the call did not connect within %v", within)
}

// answer runs `duet answer --auto` in b and waits until it listens.
func (l *lab) answer(home string, r relayOpts) *proc {
	l.t.Helper()
	p := l.start("answer", l.b.host, r.env, "answer", "--auto", "--home", home, "--relay", r.url)
	p.waitFor(l.t, "waiting for calls", 60*time.Second)
	return p
}
