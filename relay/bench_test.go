package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
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
	var wg sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				id := newID(b)
				a, _, err := r.srv.dir.assign(context.Background(), id.pub, id.x)
				if err != nil {
					failed.Store(err)
					return
				}
				users[i] = user{id, a}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	return users
}

func quietRelay(b testing.TB, tune func(*tunables)) *testRelay {
	return startRelay(b, Options{Logger: slog.New(slog.DiscardHandler)}, tune)
}

// BenchmarkRelayForward holds DUET_BENCH_SESSIONS (default 1000)
// authenticated sessions, one alias each, and forwards b.N envelopes
// (call_ice, 176-byte payload) between random pairs. The per-session rate
// limit is lifted: this measures the forwarding path. Sub-benchmarks: "max"
// keeps 256 envelopes in flight (closed loop: throughput); "rate=N" sends
// N envelopes per second (open loop: latency at that rate), for N in
// DUET_BENCH_RATES (default 10000,20000).
func BenchmarkRelayForward(b *testing.B) {
	n := envInt("DUET_BENCH_SESSIONS", 1000)
	r := quietRelay(b, func(tu *tunables) { tu.rateLimit, tu.rateBurst = 1e9, 1e9 })
	users := benchUsers(b, r, n)
	clients := make([]*benchClient, n)
	for i, u := range users {
		clients[i] = dialBenchClient(b, r, u)
	}
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
	b.Run("max", func(b *testing.B) { runForward(b, r, &cur, clients, 256, 0) })
	rates := os.Getenv("DUET_BENCH_RATES")
	if rates == "" {
		rates = "10000,20000"
	}
	for _, f := range strings.Split(rates, ",") {
		rate, err := strconv.Atoi(f)
		if err != nil || rate <= 0 {
			b.Fatalf("DUET_BENCH_RATES: %q", f)
		}
		b.Run("rate="+f, func(b *testing.B) { runForward(b, r, &cur, clients, 0, float64(rate)) })
	}
	for _, c := range clients {
		c.conn.CloseNow()
	}
	readers.Wait()
}

type benchClient struct {
	conn  *websocket.Conn
	alias identity.Alias
}

func dialBenchClient(b testing.TB, r *testRelay, u user) *benchClient {
	conn := r.dial(b)
	writeJSONFrame(b, conn, authFrameFor(b, readJSON(b, conn), u.alias, u.id.priv))
	if m := readJSON(b, conn); m["type"] != "ready" {
		b.Fatalf("ready: %v", m)
	}
	return &benchClient{conn: conn, alias: u.alias}
}

// fwdRun is one run of runForward: latencies of the envelopes received.
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

// runForward sends b.N envelopes. window > 0 bounds the envelopes in flight;
// rate > 0 paces the sends instead.
func runForward(b *testing.B, r *testRelay, cur *atomic.Pointer[fwdRun], clients []*benchClient, window int, rate float64) {
	run := &fwdRun{lat: make([]int64, b.N), done: make(chan struct{})}
	if window > 0 {
		run.sem = make(chan struct{}, window)
	}
	cur.Store(run)
	defer cur.Store(nil)
	const workers = 8
	var sent atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			payload := make([]byte, 132) // 176 base64 characters
			for {
				k := sent.Add(1) - 1
				if k >= int64(b.N) {
					return
				}
				if rate > 0 {
					if d := time.Until(start.Add(time.Duration(float64(k) / rate * float64(time.Second)))); d > 0 {
						time.Sleep(d)
					}
				} else {
					run.sem <- struct{}{}
				}
				src := clients[rng.IntN(len(clients))]
				dst := clients[rng.IntN(len(clients))]
				for dst == src {
					dst = clients[rng.IntN(len(clients))]
				}
				binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
				frame := fmt.Appendf(nil, `{"type":"call_ice","to":"%s","from":"%s","call_id":"bench","crypto_v":2,"payload":"%s"}`,
					dst.alias, src.alias, base64.StdEncoding.EncodeToString(payload))
				if err := src.conn.Write(context.Background(), websocket.MessageText, frame); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-run.done:
	case <-time.After(30 * time.Second):
		var drops []string
		for _, reason := range dropReasons {
			drops = append(drops, fmt.Sprintf("%s=%d", reason, r.srv.metrics.drops.Value(reason)))
		}
		b.Errorf("%d of %d envelopes arrived; drops: %s", run.got.Load(), b.N, strings.Join(drops, " "))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	n := min(int(run.got.Load()), len(run.lat))
	if n == 0 {
		return
	}
	l := slices.Clone(run.lat[:n])
	slices.Sort(l)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "env/s")
	b.ReportMetric(float64(l[n/2])/1e6, "p50-ms")
	b.ReportMetric(float64(l[n*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(l[n-1])/1e6, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRelayIdleSessions measures the relay's memory per idle
// authenticated session: DUET_BENCH_IDLE (default 2000) sessions, one alias
// each, held by a child process.
func BenchmarkRelayIdleSessions(b *testing.B) {
	n := envInt("DUET_BENCH_IDLE", 2000)
	r := quietRelay(b, nil)
	users := benchUsers(b, r, n)
	f, err := os.CreateTemp(b.TempDir(), "users")
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range users {
		fmt.Fprintf(f, "%s %s\n", u.alias, base64.StdEncoding.EncodeToString(u.id.priv.Seed()))
	}
	f.Close()

	before := heapAndStacks()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchIdleClients$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), "DUET_BENCH_CHILD="+r.ts.URL+" "+f.Name())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("child: %q %v", line, err)
	}
	eventually(b, 60*time.Second, "sessions up", func() bool { return r.metric(b, "duet_relay_sessions") == float64(n) })
	time.Sleep(time.Second) // let writer goroutines finish
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
// it authenticates the users it is given, prints "ready", and holds the
// sessions without reading until stdin closes.
func TestBenchIdleClients(t *testing.T) {
	arg := os.Getenv("DUET_BENCH_CHILD")
	if arg == "" {
		t.Skip("child of BenchmarkRelayIdleSessions")
	}
	base, file, _ := strings.Cut(arg, " ")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*websocket.Conn
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		alias, seed, _ := strings.Cut(line, " ")
		s, _ := base64.StdEncoding.DecodeString(seed)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/api/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		writeJSONFrame(t, conn, authFrameFor(t, readJSON(t, conn), identity.Alias(alias), ed25519.NewKeyFromSeed(s)))
		if m := readJSON(t, conn); m["type"] != "ready" {
			t.Fatalf("ready: %v", m)
		}
		cancel()
		conns = append(conns, conn)
	}
	fmt.Println("ready", len(conns))
	var buf [1]byte
	os.Stdin.Read(buf[:])
	for _, c := range conns {
		c.CloseNow()
	}
	os.Exit(0)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
