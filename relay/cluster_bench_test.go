package relay

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/identity"
)

// BenchmarkClusterReadYourWrites measures the directory's read policies on
// a 3-node cluster with 3 replicas: one op is a fresh identity's challenge
// on one relay, registration on another, WebSocket auth on the first and
// key lookup on the second (as TestReadYourWrites), run by 4 goroutines.
// fails/op is the share of identities that failed.
func BenchmarkClusterReadYourWrites(b *testing.B) {
	for _, p := range []readPolicy{readLeader, readFallback, readDirect} {
		b.Run(p.String(), func(b *testing.B) {
			c := startCluster(b, 3)
			var r []*testRelay
			for i := range 3 {
				tr := startClusterRelay(b, c, i, Options{KVReplicas: 3})
				tr.srv.dir.reads = p
				r = append(r, tr)
			}
			var fails rywFailures
			var n atomic.Int64
			b.ResetTimer()
			b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					rywOnce(b, r[i%3], r[(i+1)%3], &fails)
				}
			})
			b.ReportMetric(float64(fails.total())/float64(b.N), "fails/op")
		})
	}
}

// BenchmarkClusterLookup measures one alias lookup by a relay on a NATS
// node that does not lead the aliases stream, with each read policy; the
// found/missing variants show the cost of the fallback's second read.
func BenchmarkClusterLookup(b *testing.B) {
	c := startCluster(b, 3)
	r0 := startClusterRelay(b, c, 0, Options{KVReplicas: 3})
	u := r0.newUser(b)
	leader := c.waitStreamLeader(kvStream(bucketAliases))
	follower := startClusterRelay(b, c, (leader+1)%3, Options{KVReplicas: 3})
	d := follower.srv.dir
	ctx := context.Background()
	for _, p := range []readPolicy{readLeader, readFallback, readDirect} {
		for _, tc := range []struct {
			name  string
			alias string
		}{{"found", string(u.alias)}, {"missing", "u00000000"}} {
			b.Run(p.String()+"/"+tc.name, func(b *testing.B) {
				d.reads = p
				for b.Loop() {
					if _, err := d.Lookup(ctx, identity.Alias(tc.alias)); err != nil && err != ErrNotFound {
						b.Fatal(err)
					}
				}
			})
		}
	}
	d.reads = readLeader
}

// BenchmarkClusterSessionOpen measures opening a session on a 3-node
// cluster (3 replicas): one op is a WebSocket handshake (challenge, auth,
// ready; the alias's session counted in the cluster) on relay i%3 by one
// of 4 aliases, then its close (uncounted after the op). cpu-ms/op is the
// test process's CPU time (relays, NATS servers and clients) per op.
func BenchmarkClusterSessionOpen(b *testing.B) {
	c := startCluster(b, 3)
	var r []*testRelay
	for i := range 3 {
		r = append(r, startClusterRelay(b, c, i, Options{KVReplicas: 3}))
	}
	var users []user
	for range 4 {
		users = append(users, r[0].newUser(b))
	}
	ctx := context.Background()
	cpu0 := processCPU(b)
	i := 0
	for b.Loop() {
		conn, refused, err := r[i%3].openSession(ctx, users[i%len(users)])
		if err != nil || refused {
			b.Fatalf("session %d: refused %v, %v", i, refused, err)
		}
		conn.Close(websocket.StatusNormalClosure, "")
		i++
	}
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
