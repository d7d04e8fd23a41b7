package main

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/duetcall/duet/internal/dotenv"
)

// The deployment kit in deploy/ (docs/DEPLOY.md) is checked here so that it
// cannot rot: the NATS configs with nats-server's own parser, the relays'
// environment files with duet relay's own configuration parser, the systemd
// units' ExecStart lines likewise, and the Caddyfile's upstreams and health
// check against them.

const deployDir = "../../deploy"

const deployNodes = 3

// TestDeployNATSConfigs parses every deploy/nats/nats-N.conf with
// nats-server's parser: a 3-node JetStream cluster routing to all three,
// relays authenticating with the password of nats.env.
func TestDeployNATSConfigs(t *testing.T) {
	env, err := dotenv.Load(filepath.Join(deployDir, "systemd/nats.env"))
	if err != nil {
		t.Fatal(err)
	}
	pw := env["DUET_NATS_PASSWORD"]
	if pw == "" {
		t.Fatal("systemd/nats.env sets no DUET_NATS_PASSWORD")
	}
	t.Setenv("DUET_NATS_PASSWORD", pw)
	var cluster string
	for i := 1; i <= deployNodes; i++ {
		path := filepath.Join(deployDir, fmt.Sprintf("nats/nats-%d.conf", i))
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.ServerName != fmt.Sprintf("nats-%d", i) || !o.JetStream || o.StoreDir == "" || o.Port != 4222 {
			t.Errorf("%s: server_name %q, jetstream %v, store %q, port %d", path, o.ServerName, o.JetStream, o.StoreDir, o.Port)
		}
		if o.Username != "duet" || o.Password != pw {
			t.Errorf("%s: clients authenticate as %q with %q, want duet and nats.env's password", path, o.Username, o.Password)
		}
		if cluster == "" {
			cluster = o.Cluster.Name
		}
		if o.Cluster.Name == "" || o.Cluster.Name != cluster || o.Cluster.Port != 6222 {
			t.Errorf("%s: cluster %q port %d, want %q on 6222", path, o.Cluster.Name, o.Cluster.Port, cluster)
		}
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		if want := []string{"nats-1.internal:6222", "nats-2.internal:6222", "nats-3.internal:6222"}; !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want %v", path, routes, want)
		}
		if o.LameDuckDuration <= 0 || o.HTTPHost != "127.0.0.1" {
			t.Errorf("%s: lame duck %v, monitoring on %q (want loopback)", path, o.LameDuckDuration, o.HTTPHost)
		}
	}
}

// TestDeployRelayEnv parses every deploy/relay/relay-N.env with duet relay's
// configuration parser, and checks it against the NATS configs.
func TestDeployRelayEnv(t *testing.T) {
	natsEnv, err := dotenv.Load(filepath.Join(deployDir, "systemd/nats.env"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= deployNodes; i++ {
		cfg := deployRelayConfig(t, i, nil)
		if cfg.kvReplicas != 3 {
			t.Errorf("relay-%d.env: --kv-replicas %d, want 3 (one copy per NATS node)", i, cfg.kvReplicas)
		}
		if cfg.turnPublicHost != fmt.Sprintf("relay-%d.example.com", i) || cfg.noTURN {
			t.Errorf("relay-%d.env: TURN public host %q (no TURN %v)", i, cfg.turnPublicHost, cfg.noTURN)
		}
		var hosts []string
		for _, raw := range strings.Split(cfg.natsURL, ",") {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("relay-%d.env: NATS URL %q: %v", i, raw, err)
			}
			pw, _ := u.User.Password()
			if u.Scheme != "nats" || u.User.Username() != "duet" || pw != natsEnv["DUET_NATS_PASSWORD"] {
				t.Errorf("relay-%d.env: NATS URL %s: want nats://duet:<nats.env's password>@...", i, redactURL(raw))
			}
			hosts = append(hosts, u.Host)
		}
		if want := []string{"nats-1.internal:4222", "nats-2.internal:4222", "nats-3.internal:4222"}; !slices.Equal(hosts, want) {
			t.Errorf("relay-%d.env: NATS servers %v, want %v", i, hosts, want)
		}
	}
}

// deployRelayConfig resolves relay-N.env (plus args) as duet relay would.
func deployRelayConfig(t *testing.T, i int, args []string) relayConfig {
	t.Helper()
	path := filepath.Join(deployDir, fmt.Sprintf("relay/relay-%d.env", i))
	env, err := dotenv.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for k := range env {
		if !strings.HasPrefix(k, "DUET_") || !strings.Contains(relayUsage, "["+k+"]") {
			t.Errorf("%s: %s is not a duet relay variable", path, k)
		}
	}
	cfg, err := parseRelayConfig(args, mapLookup(env))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// unit is a systemd unit file: section -> key -> values.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) != k || k == "" {
				t.Fatalf("%s:%d: not a key=value line of a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("%s: no [%s] section", path, s)
		}
	}
	return u
}

// TestDeploySystemdUnits: the units run what the kit configures: duet
// relay's ExecStart parses with relay-N.env, nats-server's names the config
// the NATS files are installed as.
func TestDeploySystemdUnits(t *testing.T) {
	relayUnit := parseUnit(t, filepath.Join(deployDir, "systemd/duet-relay.service"))
	exec := strings.Fields(relayUnit["Service"]["ExecStart"][0])
	if len(exec) < 2 || filepath.Base(exec[0]) != "duet" || exec[1] != "relay" {
		t.Fatalf("duet-relay.service: ExecStart %q, want duet relay ...", exec)
	}
	for i := 1; i <= deployNodes; i++ {
		deployRelayConfig(t, i, exec[2:])
	}
	if got := relayUnit["Service"]["EnvironmentFile"]; !slices.Equal(got, []string{"/etc/duet/relay.env"}) {
		t.Errorf("duet-relay.service: EnvironmentFile %v", got)
	}
	natsUnit := parseUnit(t, filepath.Join(deployDir, "systemd/nats.service"))
	exec = strings.Fields(natsUnit["Service"]["ExecStart"][0])
	if len(exec) != 3 || filepath.Base(exec[0]) != "nats-server" || exec[1] != "--config" || exec[2] != "/etc/nats/nats.conf" {
		t.Errorf("nats.service: ExecStart %q", exec)
	}
	if got := natsUnit["Service"]["EnvironmentFile"]; !slices.Equal(got, []string{"/etc/nats/nats.env"}) {
		t.Errorf("nats.service: EnvironmentFile %v", got)
	}
}

// TestDeployCaddyfile: the load balancer proxies to the three relays on
// their DUET_ADDR port, health-checks /readyz and does not serve the
// relays' /metrics; braces balance.
func TestDeployCaddyfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "caddy/Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if strings.Count(text, "{") != strings.Count(text, "}") {
		t.Error("Caddyfile: unbalanced braces")
	}
	m := regexp.MustCompile(`(?m)^\s*reverse_proxy ([^{]+)\{`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("Caddyfile: no reverse_proxy block")
	}
	upstreams := strings.Fields(m[1])
	var want []string
	for i := 1; i <= deployNodes; i++ {
		_, port, err := net.SplitHostPort(deployRelayConfig(t, i, nil).addr)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("relay-%d.internal:%s", i, port))
	}
	if !slices.Equal(upstreams, want) {
		t.Errorf("Caddyfile: upstreams %v, want %v", upstreams, want)
	}
	for _, d := range []string{"health_uri /readyz", "health_status 200", "respond /metrics 404"} {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(d) + `\s*$`).MatchString(text) {
			t.Errorf("Caddyfile: no %q", d)
		}
	}
}
