package relay

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsCluster is a cluster of real nats-servers with JetStream, clustered
// over loopback routes inside the test process. Each node keeps its ports
// and store across kill and restart, as a real node would.
type natsCluster struct {
	t     testing.TB
	name  string
	mu    sync.Mutex
	nodes []*natsNode
}

type natsNode struct {
	name        string
	clientPort  int
	clusterPort int
	storeDir    string
	srv         *server.Server // nil while killed
}

// freePorts returns n distinct free TCP ports on loopback.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startCluster starts n clustered nats-servers with JetStream and waits
// until they have a JetStream meta leader.
func startCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	c := &natsCluster{t: t, name: "duet-test-" + strconv.Itoa(ports[0])}
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{
			name:        fmt.Sprintf("n%d", i+1),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
			storeDir:    t.TempDir(),
		})
	}
	t.Cleanup(c.shutdown)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.restart(i)
		}()
	}
	wg.Wait()
	c.waitMetaLeader()
	return c
}

func (c *natsCluster) options(nd *natsNode) *server.Options {
	var routes []*url.URL
	for _, o := range c.nodes {
		if o != nd {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", o.clusterPort)})
		}
	}
	o := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.clientPort,
		JetStream:  true,
		StoreDir:   nd.storeDir,
		NoSigs:     true,
		NoLog:      os.Getenv("DUET_NATS_LOG") == "",
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: nd.clusterPort,
		},
		Routes: routes,
	}
	if len(c.nodes) == 1 {
		o.Cluster, o.Routes = server.ClusterOpts{}, nil // a single server, restartable on its port
	}
	return o
}

// restart starts node i (again), on its ports and store.
func (c *natsCluster) restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	nd := c.nodes[i]
	c.mu.Unlock()
	ns, err := server.NewServer(c.options(nd))
	if err != nil {
		c.t.Fatalf("nats %s: %v", nd.name, err)
	}
	if os.Getenv("DUET_NATS_LOG") != "" {
		ns.ConfigureLogger()
	} else {
		ns.SetLogger(natsLogger{slog.New(slog.NewTextHandler(failureLog(c.t, "nats "+nd.name), &slog.HandlerOptions{Level: slog.LevelDebug}))}, false, false) // notices are at debug
	}
	ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		c.t.Fatalf("nats %s not ready", nd.name)
	}
	c.mu.Lock()
	nd.srv = ns
	c.mu.Unlock()
}

// kill stops node i at once (its clients see the connection drop).
func (c *natsCluster) kill(i int) {
	c.mu.Lock()
	ns := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

func (c *natsCluster) shutdown() {
	for i := range c.nodes {
		c.kill(i)
	}
}

// url is node i's client URL.
func (c *natsCluster) url(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].clientPort)
}

// running returns the nodes that run.
func (c *natsCluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, nd := range c.nodes {
		if nd.srv != nil {
			out = append(out, nd.srv)
		}
	}
	return out
}

// waitMetaLeader waits until a running node is the JetStream meta leader
// and every running node is current.
func (c *natsCluster) waitMetaLeader() {
	c.t.Helper()
	if len(c.nodes) == 1 {
		return
	}
	eventually(c.t, 60*time.Second, "a JetStream meta leader", func() bool {
		leader := false
		for _, ns := range c.running() {
			if ns.JetStreamIsLeader() {
				leader = true
			}
			if !ns.JetStreamIsCurrent() {
				return false
			}
		}
		return leader
	})
}

// streamLeader returns the index of the node leading stream, or -1.
func (c *natsCluster) streamLeader(stream string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.srv != nil && nd.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// waitStreamLeader waits for stream to have a leader and returns its index.
func (c *natsCluster) waitStreamLeader(stream string) int {
	c.t.Helper()
	i := -1
	eventually(c.t, 60*time.Second, "a leader for "+stream, func() bool {
		i = c.streamLeader(stream)
		return i >= 0
	})
	return i
}

// kvStream is the JetStream stream of a KV bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// startClusterRelay starts a relay connected to node i of c.
func startClusterRelay(t testing.TB, c *natsCluster, i int, opts Options) *testRelay {
	t.Helper()
	return startClusterRelayTuned(t, c, i, opts, nil)
}

// startClusterRelayTuned is startClusterRelay with startRelay's tune.
func startClusterRelayTuned(t testing.TB, c *natsCluster, i int, opts Options, tune func(*tunables)) *testRelay {
	t.Helper()
	opts.NATSURL = c.url(i)
	return startRelay(t, opts, tune)
}
