//go:build trace

package call

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"
)

// recorder is a slog handler keeping (time, peer, message) of every record.
type recorder struct {
	off   bool
	mu    *sync.Mutex
	recs  *[]rec
	attrs string
}

type rec struct {
	t   time.Time
	key string
}

func (r recorder) Enabled(context.Context, slog.Level) bool { return !r.off }
func (r recorder) Handle(_ context.Context, x slog.Record) error {
	key := r.attrs + " " + x.Message
	x.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "state", "type":
			key += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, rec{x.Time, key})
	r.mu.Unlock()
	return nil
}
func (r recorder) WithAttrs(as []slog.Attr) slog.Handler {
	n := r
	for _, a := range as {
		switch a.Key {
		case "peer_name":
			n.attrs += a.Value.String()
		case "pion":
			n.attrs += "[" + a.Value.String() + "]"
			n.off = os.Getenv("DUET_TRACE_PION") == "" || a.Value.String() != "ice"
		}
	}
	return n
}
func (r recorder) WithGroup(string) slog.Handler { return r }

// This file holds measuring tools, not tests; they build only with the
// trace tag:
//
//	go test -tags trace -v -run TestTrace ./call
//
// TestTraceSetup places 30 calls like BenchmarkCallSetup and prints the
// median offset from Call() of every log record of both sides (STEP lines,
// states, envelopes sent and received; pion's ICE logs too with
// DUET_TRACE_PION=1, and one call's full timeline with DUET_TRACE=2).
func TestTraceSetup(t *testing.T) {
	var mu sync.Mutex
	var recs []rec
	mk := func(name string) *slog.Logger {
		return slog.New(recorder{mu: &mu, recs: &recs}).With("peer_name", name)
	}
	ca := newPeer(t, "a", withLogger(mk("A")))
	cb := newPeer(t, "b", withLogger(mk("B")))
	go func() {
		for range cb.incoming {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = cb.mod.Answer(ctx)
			cancel()
		}
	}()
	t.Cleanup(func() { close(cb.incoming) })
	n := 30
	offs := map[string][]time.Duration{}
	var totals []time.Duration
	for i := range n {
		mu.Lock()
		recs = recs[:0]
		mu.Unlock()
		subA, subB := ca.mod.State().Subscribe(), cb.mod.State().Subscribe()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		if err := ca.mod.Call(ctx, cb.alias, Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		waitConnectedT(t, subA)
		waitConnectedT(t, subB)
		total := time.Since(start)
		cancel()
		subA.Unsubscribe()
		subB.Unsubscribe()
		mu.Lock()
		if i == n-1 && os.Getenv("DUET_TRACE") == "2" {
			for _, r := range recs {
				fmt.Printf("%8.3f %s\n", float64(r.t.Sub(start).Microseconds())/1000, r.key)
			}
		}
		seen := map[string]int{}
		for _, r := range recs {
			if r.t.Sub(start) > total+time.Millisecond {
				continue
			}
			k := r.key
			seen[k]++
			if seen[k] > 1 {
				k = fmt.Sprintf("%s #%d", k, seen[k])
			}
			if i > 2 {
				offs[k] = append(offs[k], r.t.Sub(start))
			}
		}
		mu.Unlock()
		if i > 2 {
			totals = append(totals, total)
		}
		if err := ca.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
		cb.waitState(StateHangup, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	type ev struct {
		k   string
		med time.Duration
		n   int
	}
	var evs []ev
	for k, v := range offs {
		slices.Sort(v)
		evs = append(evs, ev{k, v[len(v)/2], len(v)})
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].med < evs[j].med })
	var b strings.Builder
	for _, e := range evs {
		if e.n < len(totals)/2 {
			continue
		}
		k := e.k
		if len(k) > 150 {
			k = k[:150]
		}
		fmt.Fprintf(&b, "%8.2f ms  (%2d)  %s\n", float64(e.med.Microseconds())/1000, e.n, k)
	}
	slices.Sort(totals)
	fmt.Fprintf(&b, "total p50 %.2f ms\n", float64(totals[len(totals)/2].Microseconds())/1000)
	fmt.Print(b.String())
}

func waitConnectedT(t *testing.T, sub stateSub) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case st := <-sub.C():
			if st.State == StateConnected {
				return
			}
			if st.State.Terminal() {
				t.Fatalf("call ended: %+v", st)
			}
		case <-timeout:
			t.Fatal("not connected within 20 s")
		}
	}
}

// TestTraceBare prints the same timeline for the bare pion pair of
// BenchmarkCallSetup; with DUET_TRACE_TURN=1 the pair gathers from the
// relay's STUN and TURN servers like a call does.
func TestTraceBare(t *testing.T) {
	m := New(Options{})
	defer m.Close()
	m.setHooks(testHooks{settingEngine: loopback})
	offs := map[string][]time.Duration{}
	var mu sync.Mutex
	cfg := webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}
	if os.Getenv("DUET_TRACE_TURN") != "" {
		p := newPeer(t, "x")
		ic, err := p.cl.ICEConfig(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cfg = m.rtcConfig(ic)
	}
	for i := range 30 {
		start := time.Now()
		mark := func(k string) {
			mu.Lock()
			if i > 2 {
				offs[k] = append(offs[k], time.Since(start))
			}
			mu.Unlock()
		}
		pa, pb := barePCT(t, m, cfg), barePCT(t, m, cfg)
		mark("pcs created")
		connectedA, connectedB := watchConnected(pa), watchConnected(pb)
		pa.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { mark("A ice " + s.String()) })
		pb.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { mark("B ice " + s.String()) })
		toA, toB := &trickle{pc: pa}, &trickle{pc: pb}
		pa.OnICECandidate(func(c *webrtc.ICECandidate) { mark(fmt.Sprintf("A cand %v", c != nil)); toB.add(c) })
		pb.OnICECandidate(func(c *webrtc.ICECandidate) { mark(fmt.Sprintf("B cand %v", c != nil)); toA.add(c) })
		offer, _ := pa.CreateOffer(nil)
		_ = pa.SetLocalDescription(offer)
		mark("A local offer set")
		_ = pb.SetRemoteDescription(offer)
		toB.ready()
		answer, _ := pb.CreateAnswer(nil)
		_ = pb.SetLocalDescription(answer)
		mark("B local answer set")
		_ = pa.SetRemoteDescription(answer)
		mark("A remote answer set")
		toA.ready()
		<-connectedA
		mark("A connected")
		<-connectedB
		mark("B connected")
		_ = pa.GracefulClose()
		_ = pb.GracefulClose()
	}
	type ev struct {
		k   string
		med time.Duration
		n   int
	}
	var evs []ev
	for k, v := range offs {
		slices.Sort(v)
		evs = append(evs, ev{k, v[len(v)/2], len(v)})
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].med < evs[j].med })
	for _, e := range evs {
		fmt.Printf("%8.2f ms  (%2d)  %s\n", float64(e.med.Microseconds())/1000, e.n, e.k)
	}
}

func barePCT(t *testing.T, m *Module, cfg webrtc.Configuration) *webrtc.PeerConnection {
	api, err := m.newAPI(nil, func(stats.Getter) {}, cfg.ICETransportPolicy == webrtc.ICETransportPolicyRelay)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	track, _ := webrtc.NewTrackLocalStaticSample(opusCodec.RTPCodecCapability, "audio", streamID)
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	return pc
}
