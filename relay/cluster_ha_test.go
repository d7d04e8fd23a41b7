package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcall/duet/identity"
)

// rywCount is how many fresh identities TestReadYourWrites registers on one
// node and uses on another: DUET_RYW_N, default 300 (make cluster-soak runs
// thousands).
func rywCount(t testing.TB) int {
	if v := os.Getenv("DUET_RYW_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DUET_RYW_N=%q: want a positive number", v)
		}
		return n
	}
	return 300
}

// rywFailures counts the ways a fresh identity failed on the other node.
type rywFailures struct {
	mu    sync.Mutex
	kinds map[string]int
	first []string
}

func (f *rywFailures) add(kind, detail string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kinds == nil {
		f.kinds = map[string]int{}
	}
	f.kinds[kind]++
	if len(f.first) < 5 {
		f.first = append(f.first, kind+": "+detail)
	}
}

func (f *rywFailures) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.kinds {
		n += v
	}
	return n
}

// TestReadYourWrites: on a 3-node NATS cluster with the directory at 3
// replicas, a fresh identity takes its challenge from one relay, registers
// on another, authenticates its WebSocket on the first and looks its own
// keys up on the second, each relay on its own NATS node. Every step must
// see the writes before it: no bad_challenge, no unknown alias, no 404.
func TestReadYourWrites(t *testing.T) {
	c := startCluster(t, 3)
	r := []*testRelay{
		startClusterRelay(t, c, 0, Options{KVReplicas: 3}),
		startClusterRelay(t, c, 1, Options{KVReplicas: 3}),
		startClusterRelay(t, c, 2, Options{KVReplicas: 3}),
	}
	n := rywCount(t)
	var fails rywFailures
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				a, b := r[i%3], r[(i+1)%3]
				rywOnce(t, a, b, &fails)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d identities in %v; failures %v", n, time.Since(start).Round(time.Millisecond), fails.kinds)
	if fails.total() > 0 {
		t.Fatalf("%d of %d identities failed across nodes: %v; first: %s", fails.total(), n, fails.kinds, strings.Join(fails.first, "; "))
	}
}

// rywOnce: challenge on a, register on b, WebSocket on a, key lookup on b.
func rywOnce(t testing.TB, a, b *testRelay, fails *rywFailures) {
	id := newID(t)
	var ch challengeResponse
	if code, err := tryDo(a, "POST", "/api/v1/challenge", "", nil, &ch); code != 200 || err != nil {
		fails.add("challenge", fmt.Sprint(code, err))
		return
	}
	sig := ed25519.Sign(id.priv, RegisterMessage(ch.Challenge, id.x))
	var res registerResult
	code, err := tryDo(b, "POST", "/api/v1/register", "", map[string]string{
		"ed25519": b64.EncodeToString(id.pub), "x25519": b64.EncodeToString(id.x),
		"challenge": b64.EncodeToString(ch.Challenge), "signature": b64.EncodeToString(sig),
	}, &res)
	if code != 200 || err != nil {
		fails.add(fmt.Sprintf("register_%d_%s", code, res.Error), fmt.Sprint(err, res.Message))
		return
	}
	token, err := tryConnect(a, id, res.Alias)
	if err != nil {
		fails.add("ws_auth", err.Error())
		return
	}
	var keys keysResponse
	if code, err := tryDo(b, "GET", "/api/v1/keys/"+string(res.Alias), token, nil, &keys); code != 200 || err != nil || !bytes.Equal(keys.X25519, id.x) {
		fails.add(fmt.Sprintf("keys_%d", code), fmt.Sprint(err))
	}
}

// tryDo is testRelay.do reporting errors instead of failing the test.
func tryDo(r *testRelay, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.ts.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.ts.Client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%q: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}

// tryConnect authenticates a WebSocket session, returns its token and
// closes it.
func tryConnect(r *testRelay, id *testID, alias identity.Alias) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(r.ts.URL, "http", "ws", 1)+"/api/v1/ws", nil)
	if err != nil {
		return "", err
	}
	defer conn.CloseNow()
	read := func() (map[string]any, error) {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		return m, json.Unmarshal(b, &m)
	}
	ch, err := read()
	if err != nil {
		return "", err
	}
	c, err := b64.DecodeString(fmt.Sprint(ch["challenge"]))
	if err != nil {
		return "", fmt.Errorf("challenge %v", ch)
	}
	auth, _ := json.Marshal(map[string]string{"type": "auth", "alias": string(alias), "signature": b64.EncodeToString(ed25519.Sign(id.priv, WSAuthMessage(c)))})
	if err := conn.Write(ctx, websocket.MessageText, auth); err != nil {
		return "", err
	}
	ready, err := read()
	if err != nil {
		return "", err
	}
	tok, _ := ready["token"].(string)
	if ready["type"] != "ready" || tok == "" {
		return "", fmt.Errorf("ready: %v", ready)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	return tok, nil
}

// TestPublishFailsFast: while the node cannot reach NATS, every envelope
// with an id gets undeliverable/unavailable at once (not buffered for the
// reconnect, where it surfaced as a burst of false "offline"), each counted
// as publish_error; once NATS is back, no notice about them follows and
// envelopes flow again.
func TestPublishFailsFast(t *testing.T) {
	c := startCluster(t, 1)
	r1 := startClusterRelay(t, c, 0, Options{})
	r2 := startClusterRelay(t, c, 0, Options{})
	a, b := r1.newUser(t), r2.newUser(t)
	ca, cb := r1.connect(t, a.id, a.alias), r2.connect(t, b.id, b.alias)

	c.kill(0)
	eventually(t, 10*time.Second, "node 1 sees NATS down", func() bool { return !r1.srv.nats.nc.IsConnected() })
	const n = 20
	var slowest time.Duration
	for i := range n {
		start := time.Now()
		ca.send(ca.env(b.alias, fmt.Sprint("lost-", i)))
		m := ca.next(10 * time.Second)
		if m["type"] != "undeliverable" || m["reason"] != "unavailable" || m["id"] != fmt.Sprint("lost-", i) {
			t.Fatalf("envelope %d during the outage: got %v, want undeliverable/unavailable", i, m)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("%d unavailable notices, the slowest after %v", n, slowest)
	if got := r1.metric(t, `duet_relay_drops_total{reason="publish_error"}`); got != n {
		t.Errorf("publish_error drops = %v, want %d", got, n)
	}

	c.restart(0)
	for _, r := range []*testRelay{r1, r2} {
		eventually(t, 20*time.Second, "relays ready again", func() bool {
			return r.do(t, "GET", "/readyz", "", nil, nil) == 200
		})
	}
	// The recipient's subscription is back once an envelope gets through.
	deadline := time.Now().Add(20 * time.Second)
	for delivered := false; !delivered; {
		if time.Now().After(deadline) {
			t.Fatal("envelopes do not flow again after the outage")
		}
		ca.send(ca.env(b.alias, "again"))
		select {
		case m := <-cb.frames:
			<-cb.raw
			if m["id"] != "again" {
				t.Fatalf("b got %v", m)
			}
			delivered = true
		case m := <-ca.frames: // offline until b's node has resubscribed
			<-ca.raw
			if m["id"] != "again" {
				t.Fatalf("after the outage: %v", m)
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Nothing about the envelopes of the outage comes later.
	for {
		select {
		case m := <-ca.frames:
			<-ca.raw
			if m["id"] != "again" {
				t.Fatalf("after the outage: %v", m)
			}
			continue
		case <-time.After(time.Second):
		}
		break
	}
}

// metaLeader returns the index of the JetStream meta leader, or -1.
func (c *natsCluster) metaLeader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.srv != nil && nd.srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// TestStartDuringElection: a relay starting while JetStream elects leaders
// (the node that led the meta group and the directory's streams was just
// killed; quorum holds) waits for the election and starts.
func TestStartDuringElection(t *testing.T) {
	c := startCluster(t, 3)
	r0 := startClusterRelay(t, c, 0, Options{KVReplicas: 3})
	u := r0.newUser(t)
	// Move every leader to one node, then kill it.
	leader := c.metaLeader()
	for _, b := range kvBuckets {
		for c.waitStreamLeader(kvStream(b)) != leader {
			if err := c.nodes[c.waitStreamLeader(kvStream(b))].srv.JetStreamStepdownStream(server.DEFAULT_GLOBAL_ACCOUNT, kvStream(b)); err != nil {
				t.Logf("stepdown %s: %v", b, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	other := (leader + 1) % 3
	c.kill(leader)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := New(ctx, Options{NATSURL: c.url(other), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New during the election, after %v: %v", time.Since(start), err)
	}
	t.Logf("started after %v", time.Since(start))
	r := &testRelay{srv: srv, ts: httptest.NewServer(srv.Handler())}
	t.Cleanup(r.stop)
	if got := r.register(t, u.id); got != u.alias {
		t.Fatalf("registered as %s, want %s", got, u.alias)
	}
}

// kvBuckets are the relay's JetStream KV buckets.
var kvBuckets = []string{bucketAliases, bucketKeys, bucketChallenges, bucketConfig, bucketSessions}

// bucketReplicasNow reads a bucket's replica count from JetStream.
func bucketReplicasNow(t testing.TB, r *testRelay, bucket string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := r.srv.nats.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).Config().Replicas
}

// TestKVReplicasNeverLowered: a node joining with a smaller --kv-replicas
// keeps the cluster's replica count (and says which count it runs with);
// only KVReplicasLower lowers it. A larger count raises it.
func TestKVReplicasNeverLowered(t *testing.T) {
	c := startCluster(t, 3)
	r0 := startClusterRelay(t, c, 0, Options{KVReplicas: 2})
	if got := r0.srv.KVReplicas(); got != 2 {
		t.Fatalf("KVReplicas() = %d, want 2", got)
	}
	r1 := startClusterRelay(t, c, 1, Options{KVReplicas: 3})
	r2 := startClusterRelay(t, c, 2, Options{KVReplicas: 1})
	r3 := startClusterRelay(t, c, 0, Options{})
	for _, b := range kvBuckets {
		if got := bucketReplicasNow(t, r2, b); got != 3 {
			t.Errorf("%s: %d replicas after a node joined with --kv-replicas 1, want 3", b, got)
		}
	}
	if r1.srv.KVReplicas() != 3 || r2.srv.KVReplicas() != 3 || r3.srv.KVReplicas() != 3 {
		t.Errorf("effective replicas %d %d %d, want 3 3 3", r1.srv.KVReplicas(), r2.srv.KVReplicas(), r3.srv.KVReplicas())
	}
	r4 := startClusterRelay(t, c, 1, Options{KVReplicas: 1, KVReplicasLower: true})
	if got := bucketReplicasNow(t, r4, bucketAliases); got != 1 || r4.srv.KVReplicas() != 1 {
		t.Errorf("with KVReplicasLower: %d replicas (effective %d), want 1", got, r4.srv.KVReplicas())
	}
}

// leadersOnto moves the leadership of the directory's streams to node i.
func (c *natsCluster) leadersOnto(t testing.TB, i int) {
	t.Helper()
	for _, b := range kvBuckets {
		eventually(t, 60*time.Second, "leader of "+b+" on node "+fmt.Sprint(i), func() bool {
			l := c.waitStreamLeader(kvStream(b))
			if l == i {
				return true
			}
			_ = c.nodes[l].srv.JetStreamStepdownStream(server.DEFAULT_GLOBAL_ACCOUNT, kvStream(b))
			time.Sleep(200 * time.Millisecond)
			return false
		})
	}
}

// TestReadyzOnPeerLoss: when the NATS node leading the directory dies,
// the relays on the other NATS nodes stay ready (a load balancer must not
// drain every node at once for an election) while the streams elect new
// leaders, and registration works again on them.
func TestReadyzOnPeerLoss(t *testing.T) {
	c := startCluster(t, 3)
	var rs []*testRelay
	for i := range 3 {
		// The grace is what keeps them ready; a loaded machine may take
		// longer than the default 10 s to elect.
		r := startClusterRelayTuned(t, c, i, Options{KVReplicas: 3}, func(tu *tunables) { tu.readyGrace = 30 * time.Second })
		if code, _ := tryDo(r, "GET", "/readyz", "", nil, nil); code != 200 {
			t.Fatalf("relay %d not ready before the loss: %d", i, code)
		}
		rs = append(rs, r)
	}
	c.leadersOnto(t, 0)
	c.kill(0)
	survivors := rs[1:]
	var notReady []string
	deadline := time.Now().Add(60 * time.Second)
	for registered := 0; registered < len(survivors); {
		if time.Now().After(deadline) {
			t.Fatal("registration does not work again after the leader's loss")
		}
		registered = 0
		for i, r := range survivors {
			var e apiError
			if code, _ := tryDo(r, "GET", "/readyz", "", nil, &e); code != 200 {
				notReady = append(notReady, fmt.Sprintf("relay %d: %d %s", i+1, code, e.Error))
			}
			var ch challengeResponse
			if code, _ := tryDo(r, "POST", "/api/v1/challenge", "", nil, &ch); code == 200 {
				registered++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(notReady) > 0 {
		t.Fatalf("relays on surviving NATS nodes answered not ready %d times during the election: %s", len(notReady), strings.Join(notReady[:min(5, len(notReady))], "; "))
	}
}

// TestReadyzQuorumLost: with two of three NATS nodes gone no registration
// can work, and the relay left says so on /readyz (after its grace); once a
// node returns, it is ready again.
func TestReadyzQuorumLost(t *testing.T) {
	c := startCluster(t, 3)
	r := startClusterRelayTuned(t, c, 0, Options{KVReplicas: 3}, func(tu *tunables) { tu.readyGrace = time.Second })
	c.kill(1)
	c.kill(2)
	eventually(t, 30*time.Second, "challenges fail without quorum", func() bool {
		code, _ := tryDo(r, "POST", "/api/v1/challenge", "", nil, nil)
		return code == 503
	})
	var e apiError
	eventually(t, 30*time.Second, "readyz 503 without quorum", func() bool {
		code, _ := tryDo(r, "GET", "/readyz", "", nil, &e)
		return code == 503
	})
	if e.Error != "directory_unavailable" {
		t.Errorf("readyz without quorum: %+v", e)
	}
	if got := r.metric(t, `duet_relay_directory_ops_total{op="write",result="ok"}`); got < 1 {
		t.Errorf("directory write ok = %v", got)
	}
	c.restart(1)
	eventually(t, 60*time.Second, "ready again with quorum", func() bool {
		code, _ := tryDo(r, "GET", "/readyz", "", nil, nil)
		return code == 200
	})
}

// TestNATSNodeLossRecovers: relays whose NATS node dies reconnect to the
// others by themselves: sessions that stayed open exchange envelopes again
// across relays, and registration and login work, with no relay restart.
func TestNATSNodeLossRecovers(t *testing.T) {
	c := startCluster(t, 3)
	r0 := startClusterRelay(t, c, 0, Options{KVReplicas: 3})
	r1 := startClusterRelay(t, c, 1, Options{KVReplicas: 3})
	a, b := r0.newUser(t), r1.newUser(t)
	ca, cb := r0.connect(t, a.id, a.alias), r1.connect(t, b.id, b.alias)
	c.kill(0)
	eventually(t, 30*time.Second, "relay 0 on another NATS node", func() bool { return r0.srv.nats.nc.IsConnected() })
	// a's session stayed open: its subscription is back once an envelope
	// from b gets through (b may see offline until then).
	deadline := time.Now().Add(30 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("envelopes do not reach a's session again")
		}
		cb.send(cb.env(a.alias, "to-a"))
		select {
		case m := <-ca.frames:
			<-ca.raw
			got = m["id"] == "to-a"
		case <-cb.frames:
			<-cb.raw
		case <-time.After(200 * time.Millisecond):
		}
	}
	e := ca.env(b.alias, "to-b")
	ca.send(e)
	cb.expectEnvelope(e)
	// The directory: a new identity registers on relay 0 and logs in on 1.
	var fails rywFailures
	eventually(t, 30*time.Second, "registration across relays again", func() bool {
		before := fails.total()
		rywOnce(t, r0, r1, &fails)
		return fails.total() == before
	})
	t.Logf("failures while the directory recovered: %v", fails.kinds)
}
