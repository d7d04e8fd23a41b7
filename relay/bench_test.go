package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
)

// Benchmarks of the relay:
//
//	go test -run '^$' -bench Relay -benchtime 200000x ./relay
//	DUET_BENCH_IDLE=10000 go test -run '^$' -bench IdleSessions -benchtime 1x ./relay
//
// The clients run in the same process for the forwarding benchmark (the
// relay and its clients share the CPUs); for the idle-session memory they
// run in a child process, so that the relay's own heap and stacks are
// measured and each process stays under its file-descriptor limit.

// benchUsers registers n users directly in the directory (no challenges).
func benchUsers(b testing.TB, r *testRelay, n int) []user {
	b.Helper()
	users := make([]user, n)
	var failed atomic.Value
	inParallel(n, 8, func(i int) {
		if failed.Load() != nil {
			return
		}
		id := newID(b)
		a, _, err := r.srv.dir.assign(context.Background(), id.pub, id.x)
		if err != nil {
			failed.Store(err)
			return
		}
		users[i] = user{id, a}
	})
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	return users
}

// inParallel calls fn(i) for every i below n on workers goroutines.
func inParallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func quietRelay(b testing.TB, tune func(*tunables)) *testRelay {
	return startRelay(b, Options{Logger: slog.New(slog.DiscardHandler)}, tune)
}

// BenchmarkRelayForward holds DUET_BENCH_SESSIONS (default 1000)
// authenticated sessions, one alias each, and forwards b.N envelopes
// (call_ice, 176-byte payload) between random pairs. The per-session rate
// limit is lifted: this measures the forwarding path. The clients run in a
// child process (TestBenchForwardClients), as they would on other machines:
// the relay's scheduler serves only the relay, and the two processes share
// the CPUs. Sub-benchmarks: "max" keeps 256 envelopes in flight (closed loop:
// throughput); "rate=N" sends N envelopes per second (open loop: latency at
// that rate, counted from when each envelope was due), for N in
// DUET_BENCH_RATES (default 10000,20000); "max-via-nats" is "max" with every
// envelope published through NATS (and acknowledged), as between the nodes
// of a cluster: the one process then does the work of both nodes.
func BenchmarkRelayForward(b *testing.B) {
	n := envInt("DUET_BENCH_SESSIONS", 1000)
	r := quietRelay(b, func(tu *tunables) { tu.rateLimit, tu.rateBurst, tu.byteRate, tu.byteBurst = 1e9, 1e9, 1e12, 1<<40 })
	usersFile := writeBenchUsers(b, benchUsers(b, r, n))
	b.Run("max", func(b *testing.B) { forwardInChild(b, r, usersFile, 256, 0) })
	b.Run("max-via-nats", func(b *testing.B) {
		r.srv.router.solo.Store(false)
		defer r.srv.router.solo.Store(true)
		forwardInChild(b, r, usersFile, 256, 0)
	})
	rates := os.Getenv("DUET_BENCH_RATES")
	if rates == "" {
		rates = "10000,20000"
	}
	for _, f := range strings.Split(rates, ",") {
		rate, err := strconv.Atoi(f)
		if err != nil || rate <= 0 {
			b.Fatalf("DUET_BENCH_RATES: %q", f)
		}
		b.Run("rate="+f, func(b *testing.B) { forwardInChild(b, r, usersFile, 0, float64(rate)) })
	}
}

// writeBenchUsers writes "alias seed" lines for a child process.
func writeBenchUsers(b testing.TB, users []user) string {
	f, err := os.CreateTemp(b.TempDir(), "users")
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range users {
		fmt.Fprintf(f, "%s %s\n", u.alias, base64.StdEncoding.EncodeToString(u.id.priv.Seed()))
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return f.Name()
}

// forwardInChild runs one forwarding run of b.N envelopes in a child process
// and reports its figures. The child connects its sessions, says
// "connected" and waits; the relay's CPU time is taken from then until its
// result, so that it is the forwarding's alone (not the sessions' setup and
// teardown), as duet loadtest measures it.
func forwardInChild(b *testing.B, r *testRelay, usersFile string, window int, rate float64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchForwardClients$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), fmt.Sprintf("DUET_BENCH_FWD=%s %s %d %d %g", r.ts.URL, usersFile, b.N, window, rate))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var cpu0, relayCPU time.Duration
	var res fwdResult
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		if line == "connected" {
			cpu0 = processCPU(b)
			fmt.Fprintln(stdin, "go")
		}
		if rest, ok := strings.CutPrefix(line, "result "); ok {
			relayCPU = processCPU(b) - cpu0
			stdin.Close() // the child closes its sessions and exits
			if _, err := fmt.Sscan(rest, &res.got, &res.elapsed, &res.p50, &res.p99, &res.max); err != nil {
				b.Fatalf("forwarding clients: %q: %v", line, err)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("forwarding clients: %v", err)
	}
	if res.got < int64(b.N) {
		var drops []string
		for _, reason := range dropReasons {
			drops = append(drops, fmt.Sprintf("%s=%d", reason, r.srv.metrics.drops.Value(reason)))
		}
		b.Errorf("%d of %d envelopes arrived; drops: %s", res.got, b.N, strings.Join(drops, " "))
	}
	if res.got == 0 {
		return
	}
	b.ReportMetric(float64(res.got)/res.elapsed.Seconds(), "env/s")
	b.ReportMetric(float64(res.p50)/1e6, "p50-ms")
	b.ReportMetric(float64(res.p99)/1e6, "p99-ms")
	b.ReportMetric(float64(res.max)/1e6, "max-ms")
	// The relay process's CPU time (user+system) per envelope forwarded:
	// what bounds a node's throughput on cores of its own.
	b.ReportMetric(float64(relayCPU.Microseconds())/float64(res.got), "relay-cpu-µs/env")
	b.ReportMetric(0, "ns/op")
}

// TestBenchForwardClients is the child process of BenchmarkRelayForward: it
// authenticates the users it is given, prints "connected", waits for a line
// on stdin, forwards the envelopes, prints "result <received> <elapsed>
// <p50> <p99> <max>" (durations in ns) and closes the sessions when stdin
// closes.
func TestBenchForwardClients(t *testing.T) {
	arg := os.Getenv("DUET_BENCH_FWD")
	if arg == "" {
		t.Skip("child of BenchmarkRelayForward")
	}
	var base, file string
	var n, window int
	var rate float64
	if _, err := fmt.Sscan(arg, &base, &file, &n, &window, &rate); err != nil {
		t.Fatalf("DUET_BENCH_FWD %q: %v", arg, err)
	}
	clients := dialFileUsers(t, base, file, nil)
	var cur atomic.Pointer[fwdRun]
	var readers sync.WaitGroup
	for _, c := range clients {
		readers.Go(func() {
			for {
				_, data, err := c.conn.Read(context.Background())
				if err != nil {
					return
				}
				if run := cur.Load(); run != nil {
					run.received(data)
				}
			}
		})
	}
	fmt.Println("connected")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		t.Fatalf("waiting for the parent: %v", err)
	}
	res, err := forward(&cur, clients, n, window, rate)
	if err != nil {
		t.Error(err)
	}
	fmt.Println("result", res.got, int64(res.elapsed), res.p50, res.p99, res.max)
	io.Copy(io.Discard, in) // until the parent has taken its CPU time
	for _, c := range clients {
		c.conn.CloseNow()
	}
	readers.Wait()
}

// dialFileUsers authenticates a session for every "alias seed" line of file,
// calling ready (if not nil) with each as soon as it is ready.
func dialFileUsers(t testing.TB, base, file string, ready func(*websocket.Conn)) []*benchClient {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var clients []*benchClient
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		alias, seed, _ := strings.Cut(line, " ")
		s, err := base64.StdEncoding.DecodeString(seed)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/api/v1/ws", nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), identity.Alias(alias), ed25519.NewKeyFromSeed(s)))
		if m := readJSON(t, conn); m["type"] != "ready" {
			t.Fatalf("ready: %v", m)
		}
		if ready != nil {
			ready(conn)
		}
		clients = append(clients, &benchClient{conn: conn, alias: identity.Alias(alias)})
	}
	return clients
}

type benchClient struct {
	conn  *websocket.Conn
	alias identity.Alias
}

// fwdRun is one run of forward: latencies of the envelopes received.
type fwdRun struct {
	lat  []int64
	got  atomic.Int64
	done chan struct{}
	sem  chan struct{} // nil without a window
}

func (run *fwdRun) received(data []byte) {
	i := bytes.Index(data, []byte(`"payload":"`))
	if i < 0 || len(data) < i+23 {
		return // a notice
	}
	var ts [9]byte
	base64.StdEncoding.Decode(ts[:], data[i+11:i+23])
	k := run.got.Add(1)
	if k > int64(len(run.lat)) {
		return
	}
	run.lat[k-1] = time.Now().UnixNano() - int64(binary.BigEndian.Uint64(ts[:8]))
	if run.sem != nil {
		<-run.sem
	}
	if k == int64(len(run.lat)) {
		close(run.done)
	}
}

// fwdResult is what a forwarding run measured; latencies in ns.
type fwdResult struct {
	got           int64
	elapsed       time.Duration
	p50, p99, max int64
}

// forward sends n envelopes between random pairs of clients. window > 0
// bounds the envelopes in flight; rate > 0 paces the sends instead.
func forward(cur *atomic.Pointer[fwdRun], clients []*benchClient, n, window int, rate float64) (fwdResult, error) {
	run := &fwdRun{lat: make([]int64, n), done: make(chan struct{})}
	if window > 0 {
		run.sem = make(chan struct{}, window)
	}
	cur.Store(run)
	defer cur.Store(nil)
	const workers = 8
	var sent atomic.Int64
	var werr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			payload := make([]byte, 132) // 176 base64 characters
			for {
				k := sent.Add(1) - 1
				if k >= int64(n) {
					return
				}
				// Open loop: the latency of an envelope counts from when it
				// was due, so a sender that falls behind does not hide the
				// delay.
				var stamp time.Time
				if rate > 0 {
					stamp = start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
					if d := time.Until(stamp); d > 0 {
						time.Sleep(d)
					}
				} else {
					run.sem <- struct{}{}
					stamp = time.Now()
				}
				src := clients[rng.IntN(len(clients))]
				dst := clients[rng.IntN(len(clients))]
				for dst == src {
					dst = clients[rng.IntN(len(clients))]
				}
				binary.BigEndian.PutUint64(payload, uint64(stamp.UnixNano()))
				frame := fmt.Appendf(nil, `{"type":"call_ice","to":"%s","from":"%s","call_id":"bench","crypto_v":2,"payload":"%s"}`,
					dst.alias, src.alias, base64.StdEncoding.EncodeToString(payload))
				if err := src.conn.Write(context.Background(), websocket.MessageText, frame); err != nil {
					werr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var err error
	if e, ok := werr.Load().(error); ok {
		err = fmt.Errorf("writing an envelope: %w", e)
	}
	select {
	case <-run.done:
	case <-time.After(30 * time.Second):
	}
	res := fwdResult{got: min(run.got.Load(), int64(n)), elapsed: time.Since(start)}
	if res.got == 0 {
		return res, err
	}
	l := slices.Clone(run.lat[:res.got])
	slices.Sort(l)
	res.p50, res.p99, res.max = l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
	return res, err
}

// BenchmarkRelayIdleSessions measures the relay's memory per idle
// authenticated session, its directory entry included: DUET_BENCH_IDLE
// (default 2000) sessions, one alias each, held by a child process.
func BenchmarkRelayIdleSessions(b *testing.B) {
	n := envInt("DUET_BENCH_IDLE", 2000)
	r := quietRelay(b, nil)
	before := heapAndStacks()
	goroutines := runtime.NumGoroutine()
	users := benchUsers(b, r, n)
	usersFile := writeBenchUsers(b, users)

	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchIdleClients$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), "DUET_BENCH_CHILD="+r.ts.URL+" "+usersFile)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("child: %q %v", line, err)
	}
	eventually(b, 60*time.Second, "sessions up", func() bool { return r.metric(b, "duet_relay_sessions") == float64(n) })
	// Every client then checks its session once, as the SDKs do every
	// 15 s: the wake-up, the pong and the parking again are part of an
	// idle session's life (what one of them keeps shows here).
	if _, err := io.WriteString(stdin, "ping\n"); err != nil {
		b.Fatal(err)
	}
	if line, err := out.ReadString('\n'); err != nil || line != "pinged\n" {
		b.Fatalf("child: %q %v", line, err)
	}
	// Idle sessions park (no goroutine, see poller; elsewhere each keeps
	// its own): wait for all of them and for their writers to end (a few
	// goroutines may be pinging).
	eventually(b, 60*time.Second, "sessions parked", func() bool {
		return r.srv.pollers == nil || r.srv.pollers.count() == n && runtime.NumGoroutine() <= goroutines+16
	})
	after := heapAndStacks()
	if p := os.Getenv("DUET_BENCH_HEAPPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	per := float64(after-before) / float64(n)
	b.ReportMetric(per, "B/session")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d idle sessions: %.0f bytes each (heap+stacks in use, after GC)", n, per)
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if os.Getenv("DUET_BENCH_HEAPPROFILE") != "" {
		fmt.Fprintf(os.Stderr, "heap in use %d, stacks %d\n", m.HeapInuse, m.StackInuse)
	}
	return m.HeapInuse + m.StackInuse
}

// TestBenchIdleClients is the child process of BenchmarkRelayIdleSessions:
// it authenticates the users it is given, prints "ready", pings every
// session (and prints "pinged") when a line "ping" comes on stdin, and
// holds the sessions until stdin closes, answering the relay's pings (a session that
// does not would be dropped after the ping interval and timeout, 30 s: on a
// loaded machine, before the last of 10 000 sessions connected).
func TestBenchIdleClients(t *testing.T) {
	arg := os.Getenv("DUET_BENCH_CHILD")
	if arg == "" {
		t.Skip("child of BenchmarkRelayIdleSessions")
	}
	base, file, _ := strings.Cut(arg, " ")
	conns := dialFileUsers(t, base, file, func(c *websocket.Conn) { c.CloseRead(context.Background()) })
	fmt.Println("ready", len(conns))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "ping" {
			continue
		}
		inParallel(len(conns), 64, func(i int) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := conns[i].conn.Ping(ctx); err != nil {
				t.Errorf("ping: %v", err)
			}
		})
		fmt.Println("pinged")
	}
	for _, c := range conns {
		c.conn.CloseNow()
	}
	os.Exit(0)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
