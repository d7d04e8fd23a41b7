package relay

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/testproxy"
)

// TestFailoverLoss: senders on relay 1 send to a recipient on relay 2 (each
// relay on its own node of a 3-node NATS cluster) while relay 1's NATS
// fails mid-stream:
//
//   - path: its bytes to its NATS node are lost for 300 ms, then the
//     connection drops (the node stays up);
//   - node: its NATS node dies (envelopes the node had read but not passed
//     on yet are lost inside NATS);
//   - recipient: relay 2's NATS node dies instead: until relay 2 has its
//     subscriptions on another node, NATS answers relay 1 "no responders"
//     although the recipient is connected.
//
// The relay cut off fails over to another node. Every envelope is delivered, or
// counted (publish_error, lost_in_cluster) and its sender got
// undeliverable/unavailable (recipient_busy, counted by relay 2, is allowed
// too): none is lost silently, none is reported offline (the recipient
// stays connected), and every count has its notice.
func TestFailoverLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		// start starts relay 1 on node 0 and returns what kills its NATS
		// (or, with recipient, relay 2's).
		start     func(t *testing.T, c *natsCluster, tune func(*tunables)) (*testRelay, func())
		recipient bool
	}{
		{"path", func(t *testing.T, c *natsCluster, tune func(*tunables)) (*testRelay, func()) {
			proxy := testproxy.New(t, strings.TrimPrefix(c.url(0), "nats://"))
			r := startRelay(t, Options{NATSURL: proxy.URL("nats"), KVReplicas: 3}, tune)
			return r, func() {
				proxy.Freeze()
				time.AfterFunc(300*time.Millisecond, proxy.Kill)
			}
		}, false},
		{"node", func(t *testing.T, c *natsCluster, tune func(*tunables)) (*testRelay, func()) {
			return startClusterRelayTuned(t, c, 0, Options{KVReplicas: 3}, tune), func() { c.kill(0) }
		}, false},
		{"recipient", func(t *testing.T, c *natsCluster, tune func(*tunables)) (*testRelay, func()) {
			return startClusterRelayTuned(t, c, 0, Options{KVReplicas: 3}, tune), func() { c.kill(1) }
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3)
			// The senders send faster than the rate limits allow, so that
			// many envelopes are in flight when NATS fails.
			unlimited := func(tu *tunables) {
				tu.rateLimit, tu.rateBurst, tu.byteRate, tu.byteBurst = 1e9, 1e9, 1e12, 1<<40
				tu.recipientRate, tu.recipientBurst = 1e12, 1<<40
			}
			r1, kill := tc.start(t, c, unlimited)
			r2 := startClusterRelayTuned(t, c, 1, Options{KVReplicas: 3}, unlimited)
			cut := r1
			if tc.recipient {
				cut = r2
			}
			failoverLoss(t, r1, r2, cut, kill)
		})
	}
}

// failoverLoss runs the senders on r1, calls kill (which cuts relay cut off
// its NATS node) a third into the stream and checks the outcome of every
// envelope.
func failoverLoss(t *testing.T, r1, r2, cut *testRelay, kill func()) {
	b := r2.newUser(t)
	cb := r2.connect(t, b.id, b.alias)
	const senders, perSender = 6, 300
	var cs []*testClient
	for range senders {
		u := r1.newUser(t)
		cs = append(cs, r1.connect(t, u.id, u.alias))
	}
	envs := make([][]any, senders)
	for i, ca := range cs {
		for j := range perSender {
			envs[i] = append(envs[i], ca.env(b.alias, fmt.Sprintf("e%d-%d", i, j)))
		}
	}
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	var wg sync.WaitGroup
	for i, ca := range cs {
		wg.Go(func() {
			for j := range perSender {
				if j == perSender/3 && i == 0 {
					wg.Go(kill)
				}
				mu.Lock()
				sentAt[fmt.Sprintf("e%d-%d", i, j)] = time.Now()
				mu.Unlock()
				writeJSONFrame(t, ca.conn, envs[i][j])
				time.Sleep(2 * time.Millisecond) // pacing: ~500 envelopes/s per sender
			}
		})
	}
	sending := make(chan struct{})
	go func() {
		wg.Wait()
		close(sending)
	}()

	delivered := map[string]bool{}
	noticed := map[string][]string{}
	reasons := map[string]int{}
	var slowest time.Duration // from sending to an unavailable notice, as seen here (+10 ms)
	drain := func() {
		for _, x := range append([]*testClient{cb}, cs...) {
			for more := true; more; {
				select {
				case m := <-x.frames:
					<-x.raw
					id, _ := m["id"].(string)
					if x == cb {
						delivered[id] = true
						continue
					}
					notice := fmt.Sprint(m["type"], "/", m["reason"])
					if code, ok := m["code"]; ok {
						notice += fmt.Sprint(" ", code)
					}
					noticed[id] = append(noticed[id], notice)
					if notice == "undeliverable/unavailable" {
						mu.Lock()
						slowest = max(slowest, time.Since(sentAt[id]))
						mu.Unlock()
					}
					reasons[notice]++
				default:
					more = false
				}
			}
		}
	}
	counted := func() float64 {
		return r1.metric(t, `duet_relay_drops_total{reason="publish_error"}`) +
			max(r1.metric(t, `duet_relay_drops_total{reason="lost_in_cluster"}`), 0)
	}
	unresolved := func() (silent int) {
		for i := range senders {
			for j := range perSender {
				id := fmt.Sprintf("e%d-%d", i, j)
				if !delivered[id] && len(noticed[id]) == 0 {
					silent++
				}
			}
		}
		return silent
	}
	// Once all is sent, wait until the relay cut off is on another NATS node and
	// every envelope is accounted for: delivered or noticed, relay 1 awaits
	// no answer any more, and each counted envelope has its notice.
	reconnected := func() bool { return cut.srv.nats.nc.Stats().Reconnects > 0 && cut.srv.nats.nc.IsConnected() }
	var deadline time.Time // 30 s after all was sent
	for {
		drain()
		if deadline.IsZero() {
			select {
			case <-sending:
				deadline = time.Now().Add(30 * time.Second)
			default:
			}
		} else if reconnected() && unresolved() == 0 && pendingAcks(r1) == 0 && counted() == float64(reasons["undeliverable/unavailable"]) ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	kinds := map[string]int{}
	for i := range senders {
		for j := range perSender {
			id := fmt.Sprintf("e%d-%d", i, j)
			switch {
			case delivered[id] && len(noticed[id]) > 0:
				kinds["delivered and noticed "+strings.Join(noticed[id], ",")]++
			case delivered[id]:
				kinds["delivered"]++
			case len(noticed[id]) > 0:
				kinds[strings.Join(noticed[id], ",")]++
			default:
				kinds["silent"]++
			}
		}
	}
	lost := r1.metric(t, `duet_relay_drops_total{reason="lost_in_cluster"}`)
	pubErr := r1.metric(t, `duet_relay_drops_total{reason="publish_error"}`)
	t.Logf("%d envelopes: %v; relay 1 counted publish_error %v, lost_in_cluster %v; relay 2 recipient_busy %v; slowest unavailable notice %v",
		senders*perSender, kinds, pubErr, lost, r2.metric(t, `duet_relay_drops_total{reason="recipient_busy"}`), slowest.Round(time.Millisecond))
	if n := kinds["silent"]; n > 0 {
		t.Errorf("%d envelopes lost without a notice", n)
	}
	for notice, n := range reasons {
		if notice != "undeliverable/unavailable" && notice != "undeliverable/recipient_busy" {
			t.Errorf("%d notices %s (want only unavailable or recipient_busy: the recipient stayed connected)", n, notice)
		}
	}
	for id, ns := range noticed {
		if len(ns) > 1 {
			t.Errorf("envelope %s: %d notices %v, want one", id, len(ns), ns)
		}
	}
	if got := float64(reasons["undeliverable/unavailable"]); got != counted() {
		t.Errorf("%v unavailable notices, but publish_error + lost_in_cluster = %v", got, counted())
	}
	if !reconnected() {
		t.Error("the relay cut off did not fail over to another NATS node")
	}
}

// pendingAcks is the number of envelopes r awaits an answer for, or will
// tell offline.
func pendingAcks(r *testRelay) int {
	a := r.srv.router.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for s := a.tail; s < a.head; s++ {
		if a.ring[s&uint64(len(a.ring)-1)].state != ackSettled {
			n++
		}
	}
	return n + len(a.checks)
}
