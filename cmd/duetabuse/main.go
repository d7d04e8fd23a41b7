// Command duetabuse is the relay's abuse suite (`make abuse`): it starts a
// relay (the duet binary, in a child process, on loopback only), keeps a
// bystander pair exchanging call_ice envelopes at 40/s, and runs each attack
// of issue 12 against it in turn, bounded in count and time. For each attack
// it reports the bystander's delivery latency p50/p99 while quiet and during
// the attack, victim disconnects, the relay's peak RSS, CPU and garbage
// collections, the attack's CPU, and what the attack itself observed. The
// attack runs in a process of its own at niceness 19 (-attacker-prefix; see
// runAttacker). Every connection goes to 127.0.0.1.
//
//	go run ./cmd/duetabuse [-relay-bin PATH] [-only NAME,...] [-slow] [-attacker-prefix CMD] [-profile DIR] [-- relay flags]
//
// With -profile, the relay serves its profiles (--pprof-addr on loopback)
// and the suite saves a CPU profile and an execution trace of each attack,
// taken from 1 s into it (-profile-after), as DIR/NAME.cpu.pprof and
// DIR/NAME.trace (see `go tool pprof`, `go tool trace`).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/internal/proccpu"
)

func main() {
	relayBin := flag.String("relay-bin", "", "duet binary to run the relay with (default: go build ./cmd/duet)")
	only := flag.String("only", "", "comma-separated attacks to run (default: all)")
	scale := flag.Float64("scale", 1, "multiplies attack durations")
	profile := flag.String("profile", "", "save a CPU profile and an execution trace of the relay during each attack in this directory")
	slow := flag.Bool("slow", false, "print the bystander's slowest envelopes during each attack, and when they arrived")
	profileFor := flag.Duration("profile-for", 5*time.Second, "length of each profile and trace (-profile)")
	profileAfter := flag.Duration("profile-after", time.Second, "how far into each attack its profile and trace start (-profile)")
	attackerPrefix := flag.String("attacker-prefix", defaultAttackerPrefix(), "command (space-separated) the attack's process runs under; \"\" for none")
	bystanderFor := flag.String("bystander-for", "", "internal: run the bystander pair against this relay URL, printing latencies")
	attackChild := flag.String("attack", "", "internal: run this attack against -relay-url (relay process -relay-pid), printing its result")
	relayURL := flag.String("relay-url", "", "internal: see -attack")
	relayPID := flag.Int("relay-pid", 0, "internal: see -attack")
	flag.Parse()
	if *bystanderFor != "" {
		runBystanderChild(*bystanderFor)
		return
	}
	if *attackChild != "" {
		runAttackChild(*attackChild, *relayURL, *relayPID, *scale)
		return
	}
	prof := profiling{dir: *profile, length: *profileFor, after: *profileAfter}
	if err := run(*relayBin, *only, *scale, prof, *slow, strings.Fields(*attackerPrefix), flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "duetabuse:", err)
		os.Exit(1)
	}
}

// relay is the relay under test.
type relay struct {
	cmd   *exec.Cmd
	base  string // http://127.0.0.1:port
	ws    string
	pid   int
	pprof string // the profiles' base URL, with -profile
	dir   string // its data directory's parent, removed by stop
}

var (
	listenRE = regexp.MustCompile(`relay: listening.* addr=(\S+)`)
	pprofRE  = regexp.MustCompile(`relay: serving profiles.* pprof=(\S+)`)
)

func startRelay(bin string, extra []string) (*relay, error) {
	dir, err := os.MkdirTemp("", "duetabuse-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"relay", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--turn-listen", "127.0.0.1:0", "--turn-allow-peers", "127.0.0.0/8"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	addr := make(chan string, 1)
	var pprofURL atomic.Value // string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if m := pprofRE.FindStringSubmatch(sc.Text()); m != nil {
				pprofURL.Store(m[1]) // logged before "listening"
			}
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
			if os.Getenv("DUETABUSE_RELAY_LOG") != "" {
				fmt.Fprintln(os.Stderr, "relay:", sc.Text())
			}
		}
	}()
	select {
	case a := <-addr:
		p, _ := pprofURL.Load().(string)
		return &relay{cmd: cmd, base: "http://" + a, ws: "ws://" + a + "/api/v1/ws", pid: cmd.Process.Pid, pprof: p, dir: dir}, nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = os.RemoveAll(dir)
		return nil, errors.New("the relay did not start within 60 s")
	}
}

func (r *relay) stop() {
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(r.dir)
}

// fds is the number of the relay's open file descriptors.
func (r *relay) fds() int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", r.pid))
	return len(ents)
}

// rssKiB is the relay's resident set size.
func (r *relay) rssKiB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// gcs is the number of the relay's garbage collections so far (the Go
// collector's go_gc_duration_seconds_count on its /metrics), or -1.
func (r *relay) gcs() int {
	resp, err := httpClient.Get(r.base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_duration_seconds_count "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// cpu is the relay's user+system CPU time (0 when unknown).
func (r *relay) cpu() time.Duration {
	d, _ := proccpu.Of(r.pid)
	return d
}

// defaultAttackerPrefix puts the attack's process below the suite's own
// priority: nice -n 19, or, when the suite runs at a real-time priority
// (chrt -r 2, which keeps other processes on the machine from counting as
// the relay's delay), the normal policy at the highest niceness: below the
// relay and the bystander, above the machine's other work. Not a lower
// real-time priority: real-time tasks may use 95 % of the CPU time
// (sched_rt_runtime_us), and an attacker using the rest of it got every
// real-time task, the relay's and the bystander's too, stopped for the
// last ~50 ms of each second.
func defaultAttackerPrefix() string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "nice -n 19"
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// rt_priority and policy are fields 40 and 41 of stat(5).
	if len(f) > 38 {
		prio, _ := strconv.Atoi(f[37])
		if policy := f[38]; (policy == "1" || policy == "2") && prio >= 1 { // SCHED_FIFO, SCHED_RR
			return "chrt -o 0 nice -n -20"
		}
	}
	return "nice -n 19"
}

// attackResult is what an attack's process prints (runAttackChild).
type attackResult struct {
	Disconnects, Notes, Err string
}

// runAttacker runs the attack name against r in a process of its own,
// under the command prefix (by default nice -n 19), and returns its result
// and CPU time. The attacking clients' CPU is the attacker's machine's in
// the real world; on the suite's one machine it competes with the relay and
// the bystander, and at a low priority it takes the CPU they leave (what it
// achieved is in its notes).
func runAttacker(ctx context.Context, r *relay, name string, scale float64, prefix []string) (attackResult, time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return attackResult{}, 0, err
	}
	args := []string{self, "-attack", name, "-relay-url", r.base, "-relay-pid", strconv.Itoa(r.pid), "-scale", strconv.FormatFloat(scale, 'g', -1, 64)}
	args = append(slices.Clone(prefix), args...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.Output()
	var cpu time.Duration
	if ps := cmd.ProcessState; ps != nil { // nil when it did not start
		cpu = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		return attackResult{}, cpu, fmt.Errorf("the attack's process: %w", err)
	}
	var res attackResult
	if err := json.Unmarshal(stdout, &res); err != nil {
		return res, cpu, fmt.Errorf("the attack's result %q: %w", stdout, err)
	}
	if res.Err != "" {
		return res, cpu, errors.New(res.Err)
	}
	return res, cpu, nil
}

// runAttackChild is the attack's process: it runs the attack and prints
// its attackResult.
func runAttackChild(name, base string, pid int, scale float64) {
	i := slices.IndexFunc(attacks, func(a attack) bool { return a.name == name })
	if i < 0 {
		fmt.Fprintln(os.Stderr, "duetabuse: no attack", name)
		os.Exit(2)
	}
	r := &relay{base: base, ws: "ws://" + strings.TrimPrefix(base, "http://") + "/api/v1/ws", pid: pid}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var res attackResult
	var err error
	res.Disconnects, res.Notes, err = attacks[i].run(ctx, &env{r: r, scale: scale})
	if err != nil {
		res.Err = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// user is a registered identity.
type user struct {
	alias string
	key   ed25519.PrivateKey
}

var userSeq atomic.Uint64

// register creates and registers a fresh identity. Each user presents its
// own X-Forwarded-For address (documentation range 198.18.0.0/15 text only,
// nothing is sent there), which a relay trusting 127.0.0.1 as a proxy
// (--trusted-proxies) counts as that client's address.
func register(ctx context.Context, r *relay) (*user, error) { return registerXFF(ctx, r, "") }

// registerXFF registers from the address xff ("": one of its own).
func registerXFF(ctx context.Context, r *relay, xff string) (*user, error) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	n := userSeq.Add(1)
	if xff == "" {
		xff = fmt.Sprintf("198.18.%d.%d", n/250%250, n%250+1)
	}
	var ch struct {
		Challenge string `json:"challenge"`
		PoWBits   int    `json:"pow_bits"`
	}
	if err := postJSON(ctx, r.base+"/api/v1/challenge", xff, nil, &ch); err != nil {
		return nil, err
	}
	chal, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	msg := append(append([]byte("duet/v1/register"), chal...), xk.PublicKey().Bytes()...)
	req := map[string]string{
		"ed25519":   base64.StdEncoding.EncodeToString(pub),
		"x25519":    base64.StdEncoding.EncodeToString(xk.PublicKey().Bytes()),
		"challenge": ch.Challenge,
		"signature": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg)),
	}
	var resp struct {
		Alias string `json:"alias"`
	}
	if err := postJSON(ctx, r.base+"/api/v1/register", xff, req, &resp); err != nil {
		return nil, err
	}
	return &user{alias: resp.Alias, key: priv}, nil
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

func postJSON(ctx context.Context, url, xff string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

func registerN(ctx context.Context, r *relay, n int) ([]*user, error) {
	us := make([]*user, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			u, err := register(ctx, r)
			if err != nil {
				errs <- err
				return
			}
			us[i] = u
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return us, nil
}

// connect opens an authenticated session of u.
func connect(ctx context.Context, r *relay, u *user) (*websocket.Conn, error) {
	c, _, err := connectWithToken(ctx, r, u)
	return c, err
}

// connectToken opens a session of u for its bearer token and closes it.
func connectToken(ctx context.Context, r *relay, u *user) (string, error) {
	c, tok, err := connectWithToken(ctx, r, u)
	if err != nil {
		return "", err
	}
	c.CloseNow()
	return tok, nil
}

func connectWithToken(ctx context.Context, r *relay, u *user) (*websocket.Conn, string, error) {
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, r.ws, nil)
	if err != nil {
		return nil, "", err
	}
	c.SetReadLimit(1 << 20)
	var ch struct{ Challenge []byte }
	if err := readJSON(dctx, c, &ch); err != nil {
		c.CloseNow()
		return nil, "", fmt.Errorf("challenge: %w", err)
	}
	sig := ed25519.Sign(u.key, append([]byte("duet/v1/ws-auth"), ch.Challenge...))
	auth, _ := json.Marshal(map[string]string{"type": "auth", "alias": u.alias, "signature": base64.StdEncoding.EncodeToString(sig)})
	if err := c.Write(dctx, websocket.MessageText, auth); err != nil {
		c.CloseNow()
		return nil, "", err
	}
	var ready struct{ Type, Token string }
	if err := readJSON(dctx, c, &ready); err != nil || ready.Type != "ready" {
		c.CloseNow()
		return nil, "", fmt.Errorf("ready: %v %q", err, ready.Type)
	}
	return c, ready.Token, nil
}

func readJSON(ctx context.Context, c *websocket.Conn, v any) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

var seq atomic.Uint64

// envelope is a call_ice envelope from -> to with a payload of size bytes of
// base64; its id carries the send time for the bystander's latency.
func envelope(from, to string, size int) []byte {
	id := "t" + strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + strconv.FormatUint(seq.Add(1), 10)
	return []byte(`{"type":"call_ice","to":"` + to + `","from":"` + from + `","call_id":"abuse","crypto_v":2,"id":"` + id + `","payload":"` + payload(size) + `"}`)
}

var payloads sync.Map

func payload(size int) string {
	if p, ok := payloads.Load(size); ok {
		return p.(string)
	}
	b := make([]byte, size*3/4)
	_, _ = rand.Read(b)
	p := base64.StdEncoding.EncodeToString(b)
	payloads.Store(size, p)
	return p
}

// bystander is a pair exchanging envelopes at 40/s; the receiver records
// each envelope's latency. It runs in a child process of its own, so that
// the attack's CPU in this process does not count as the relay's delay.
type bystander struct {
	mu   sync.Mutex
	lat  []time.Duration
	at   []time.Time  // when each of lat arrived
	lost atomic.Int64 // disconnects
	cmd  *exec.Cmd
	emit func(string) // in the child: where latencies go
}

// start runs the child and reads its latencies until it exits.
func (b *bystander) start(r *relay) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.cmd = exec.Command(self, "-bystander-for", r.base)
	b.cmd.Stderr = os.Stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := b.cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "R":
				once.Do(func() { close(ready) })
			case len(f) == 1 && f[0] == "D":
				b.lost.Add(1)
			case len(f) == 2 && f[0] == "L":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				b.mu.Lock()
				b.lat = append(b.lat, time.Duration(ns))
				b.at = append(b.at, time.Now())
				b.mu.Unlock()
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-time.After(60 * time.Second):
		_ = b.cmd.Process.Kill()
		return errors.New("the bystander did not start within 60 s")
	}
}

func (b *bystander) stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// runBystanderChild is the bystander process: it prints R once running,
// L <latency ns> per envelope received and D per disconnect.
func runBystanderChild(base string) {
	u := strings.TrimPrefix(base, "http://")
	r := &relay{base: base, ws: "ws://" + u + "/api/v1/ws"}
	userSeq.Store(50_000) // addresses apart from the attack's
	ctx := context.Background()
	pair, err := registerN(ctx, r, 2)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bystander:", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	emit := func(s string) {
		mu.Lock()
		out.WriteString(s + "\n")
		out.Flush()
		mu.Unlock()
	}
	var b bystander
	b.emit = emit
	if err := b.run(ctx, r, pair[0], pair[1]); err != nil {
		fmt.Fprintln(os.Stderr, "bystander:", err)
		os.Exit(1)
	}
	emit("R")
	select {}
}

func (b *bystander) run(ctx context.Context, r *relay, a, c *user) error {
	ca, err := connect(ctx, r, a)
	if err != nil {
		return err
	}
	cc, err := connect(ctx, r, c)
	if err != nil {
		return err
	}
	go func() {
		for {
			_, data, err := cc.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					b.emit("D")
				}
				return
			}
			var e struct {
				Type, ID string
			}
			if json.Unmarshal(data, &e) != nil || e.Type != "call_ice" {
				continue
			}
			ns, err := strconv.ParseInt(strings.SplitN(strings.TrimPrefix(e.ID, "t"), "-", 2)[0], 10, 64)
			if err == nil {
				b.emit("L " + strconv.FormatInt(int64(time.Since(time.Unix(0, ns))), 10))
			}
		}
	}()
	go func() {
		defer ca.CloseNow()
		defer cc.CloseNow()
		go func() { // discard a's notices
			for {
				if _, _, err := ca.Read(ctx); err != nil {
					return
				}
			}
		}()
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := ca.Write(ctx, websocket.MessageText, envelope(a.alias, c.alias, 400)); err != nil {
					if ctx.Err() == nil {
						b.emit("D")
					}
					return
				}
			}
		}
	}()
	return nil
}

// take returns the latencies recorded since the last take, and when each
// arrived.
func (b *bystander) take() ([]time.Duration, []time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, at := b.lat, b.at
	b.lat, b.at = nil, nil
	return l, at
}

// slowest describes the n largest of l: each latency and when it arrived,
// relative to t0.
func slowest(l []time.Duration, at []time.Time, t0 time.Time, n int) string {
	idx := make([]int, len(l))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(l[b] - l[a]) })
	var parts []string
	for _, i := range idx[:min(n, len(idx))] {
		parts = append(parts, fmt.Sprintf("%s at %+.2f s", ms(l[i]), at[i].Sub(t0).Seconds()))
	}
	return strings.Join(parts, ", ")
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// victim is a reading session that counts its disconnects.
type victim struct {
	u        *user
	conn     *websocket.Conn
	got      atomic.Int64
	bytes    atomic.Int64
	closedBy atomic.Value // string: the close status, once closed
}

// startVictim connects u and reads at full speed, or at bytesPerSec when
// that is positive (a slow link), or not at all when bytesPerSec < 0.
func startVictim(ctx context.Context, r *relay, u *user, bytesPerSec int) (*victim, error) {
	c, err := connect(ctx, r, u)
	if err != nil {
		return nil, err
	}
	v := &victim{u: u, conn: c}
	if bytesPerSec < 0 {
		return v, nil
	}
	go func() {
		start := time.Now()
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					v.closedBy.Store(fmt.Sprint(err))
				}
				return
			}
			v.got.Add(1)
			n := v.bytes.Add(int64(len(data)))
			if bytesPerSec > 0 {
				due := start.Add(time.Duration(float64(n) / float64(bytesPerSec) * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
		}
	}()
	return v, nil
}

func (v *victim) disconnected() string {
	s, _ := v.closedBy.Load().(string)
	return s
}

// result is one attack's line in the report.
type result struct {
	name                 string
	quietP50, quietP99   time.Duration
	duringP50, duringP99 time.Duration
	quietN, duringN      int // the bystander's envelopes the percentiles are of
	victimDisconnects    string
	rssIdle, rssPeak     int // KiB
	cpu                  float64
	attackerCPU          float64 // this process's: the attack's clients (the bystander has its own)
	gcs                  int     // the relay's garbage collections during the attack, -1 if unknown
	notes                string
}

type attack struct {
	name string
	desc string
	run  func(ctx context.Context, e *env) (disconnects, notes string, err error)
}

// env is what an attack gets: the relay and a way to register users.
type env struct {
	r     *relay
	scale float64
}

func (e *env) dur(d time.Duration) time.Duration { return time.Duration(float64(d) * e.scale) }

// profiling is -profile: where to save each attack's profiles, and their
// length.
type profiling struct {
	dir           string
	length, after time.Duration
}

// start fetches a CPU profile and an execution trace of r for p.length,
// from p.after on, into p.dir; wait waits for both.
func (p profiling) start(r *relay, name string) (wait func()) {
	if p.dir == "" || r.pprof == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, k := range []struct{ path, file string }{{"profile", name + ".cpu.pprof"}, {"trace", name + ".trace"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(p.after) // by default past the attack's registrations
			url := fmt.Sprintf("%s%s?seconds=%d", r.pprof, k.path, max(1, int(p.length.Seconds())))
			resp, err := http.Get(url)
			if err != nil {
				fmt.Fprintf(os.Stderr, "   profile: %v\n", err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(p.dir, k.file))
			if err == nil {
				_, err = io.Copy(f, resp.Body)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil || resp.StatusCode != 200 {
				fmt.Fprintf(os.Stderr, "   profile %s: %d %v\n", k.file, resp.StatusCode, err)
			}
		}()
	}
	return wg.Wait
}

func run(bin, only string, scale float64, prof profiling, slow bool, attackerPrefix, relayArgs []string) error {
	if bin == "" {
		dir, err := os.MkdirTemp("", "duetabuse-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "duet")
		b := exec.Command("go", "build", "-o", bin, "./cmd/duet")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("building the relay: %w", err)
		}
	}
	if prof.dir != "" {
		if err := os.MkdirAll(prof.dir, 0o755); err != nil {
			return err
		}
		relayArgs = append(relayArgs, "--pprof-addr", "127.0.0.1:0")
	}
	var results []result
	victimLost := false
	for _, a := range attacks {
		if only != "" && !slices.Contains(strings.Split(only, ","), a.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s: %s\n", a.name, a.desc)
		res, err := runOne(bin, relayArgs, a, scale, prof, slow, attackerPrefix)
		if err != nil {
			fmt.Fprintf(os.Stderr, "   failed: %v\n", err)
			res = result{name: a.name, notes: "error: " + err.Error()}
		}
		results = append(results, res)
		printResult(os.Stderr, res)
		if d := res.victimDisconnects; d != "" && !strings.HasPrefix(d, "n/a") && !strings.HasPrefix(d, "0") {
			victimLost = true
		}
	}
	fmt.Println("| attack | bystander p50 quiet → during | bystander p99 quiet → during (envelopes) | victim disconnects | relay RSS idle → peak | relay CPU during | relay GCs during | attacker CPU | observed |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s → %s | %s → %s (%d → %d) | %s | %d → %d MiB | %.0f %% | %s | %.0f %% | %s |\n", r.name,
			ms(r.quietP50), ms(r.duringP50), ms(r.quietP99), ms(r.duringP99), r.quietN, r.duringN, r.victimDisconnects,
			r.rssIdle/1024, r.rssPeak/1024, r.cpu, gcCount(r.gcs), r.attackerCPU, r.notes)
	}
	if victimLost {
		return errors.New("a reading victim was disconnected")
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "   bystander p50 %s -> %s, p99 %s -> %s (of %d -> %d envelopes); victim disconnects %s; RSS %d -> %d MiB; CPU %.0f %% (attacker %.0f %%), %s GCs; %s\n",
		ms(r.quietP50), ms(r.duringP50), ms(r.quietP99), ms(r.duringP99), r.quietN, r.duringN, r.victimDisconnects, r.rssIdle/1024, r.rssPeak/1024, r.cpu, r.attackerCPU, gcCount(r.gcs), r.notes)
}

func gcCount(n int) string {
	if n < 0 {
		return "?"
	}
	return strconv.Itoa(n)
}

// runOne runs one attack against a fresh relay.
func runOne(bin string, relayArgs []string, a attack, scale float64, prof profiling, slow bool, attackerPrefix []string) (result, error) {
	res := result{name: a.name}
	r, err := startRelay(bin, relayArgs)
	if err != nil {
		return res, err
	}
	defer r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var by bystander
	if err := by.start(r); err != nil {
		return res, err
	}
	defer by.stop()
	time.Sleep(5 * time.Second)
	quiet, _ := by.take()
	res.quietP50, res.quietP99, res.quietN = pct(quiet, 0.5), pct(quiet, 0.99), len(quiet)
	res.rssIdle = r.rssKiB()

	// Sample RSS while the attack runs.
	stopSample := make(chan struct{})
	var peak atomic.Int64
	peak.Store(int64(res.rssIdle))
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				if v := int64(r.rssKiB()); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	gc0 := r.gcs()
	cpu0, t0 := r.cpu(), time.Now()
	actx, acancel := context.WithTimeout(ctx, 4*time.Minute)
	profiled := prof.start(r, a.name)
	out, attackerCPU, err := runAttacker(actx, r, a.name, scale, attackerPrefix)
	acancel()
	cpu := (r.cpu() - cpu0).Seconds() / time.Since(t0).Seconds() * 100
	res.attackerCPU = attackerCPU.Seconds() / time.Since(t0).Seconds() * 100
	disc, notes := out.Disconnects, out.Notes
	close(stopSample)
	<-sampled
	during, at := by.take()
	if slow {
		fmt.Fprintf(os.Stderr, "   slowest bystander envelopes during the attack (started %s): %s\n", t0.UTC().Format("15:04:05.000"), slowest(during, at, t0, 12))
	}
	profiled() // after the measures: a profile outlasting the attack does not dilute them
	res.duringP50, res.duringP99, res.duringN = pct(during, 0.5), pct(during, 0.99), len(during)
	res.rssPeak = int(peak.Load())
	res.cpu = cpu
	if gc1 := r.gcs(); gc0 >= 0 && gc1 >= 0 {
		res.gcs = gc1 - gc0
	} else {
		res.gcs = -1
	}
	res.victimDisconnects = disc
	res.notes = notes
	if n := by.lost.Load(); n > 0 {
		res.notes += fmt.Sprintf("; BYSTANDER LOST %d", n)
	}
	if len(during) == 0 {
		res.notes += "; bystander got nothing during the attack"
	}
	return res, err
}

// rawWS is a hand-rolled WebSocket client for frames coder/websocket will
// not send (a flood of pings, empty continuation fragments).
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(ctx context.Context, r *relay, u *user) (*rawWS, error) {
	host := strings.TrimPrefix(r.base, "http://")
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	k := base64.StdEncoding.EncodeToString(key)
	fmt.Fprintf(c, "GET /api/v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", host, k)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	h := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		c.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	w := &rawWS{c: c, br: br}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	msg, err := w.readMessage()
	if err != nil {
		c.Close()
		return nil, err
	}
	var ch struct{ Challenge []byte }
	_ = json.Unmarshal(msg, &ch)
	sig := ed25519.Sign(u.key, append([]byte("duet/v1/ws-auth"), ch.Challenge...))
	auth, _ := json.Marshal(map[string]string{"type": "auth", "alias": u.alias, "signature": base64.StdEncoding.EncodeToString(sig)})
	if _, err := c.Write(frame(0x81, auth)); err != nil {
		c.Close()
		return nil, err
	}
	if msg, err = w.readMessage(); err != nil || !bytes.Contains(msg, []byte(`"ready"`)) {
		c.Close()
		return nil, fmt.Errorf("ready: %v %q", err, msg)
	}
	_ = c.SetDeadline(time.Time{})
	return w, nil
}

// frame is one masked client frame (mask 0: the payload is as given).
func frame(b0 byte, p []byte) []byte {
	var f []byte
	switch n := len(p); {
	case n < 126:
		f = []byte{b0, 0x80 | byte(n)}
	case n < 65536:
		f = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		f = append([]byte{b0, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, uint64(n))...)
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, p...)
}

// readMessage reads one unfragmented server frame's payload.
func (w *rawWS) readMessage() ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return nil, err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return nil, err
		}
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(w.br, p)
	if h[0]&0x0f == 8 {
		return p, fmt.Errorf("closed: %d %s", binary.BigEndian.Uint16(append(p, 0, 0)[:2]), p[min(2, len(p)):])
	}
	return p, err
}
