package call

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// BenchmarkCallSetup measures call setup, Call() until both sides are
// connected, over loopback through the relay (sealed signaling, key lookups,
// ICE config, TURN gathering, E2EE key derivation), beside the floor: a bare
// pion pair with the same media engine and tracks, signaled in memory
// (bare-pion, no ICE servers; bare-pion-ice, the relay's STUN/TURN servers,
// so gathering srflx and relay candidates too). It reports p50 and p99 over
// b.N calls, and the median CPU time the process spent per setup (both
// peers, and for relay the relay, NATS and TURN servers, all in this
// process). Each runs twice: on bare loopback, where the setup is bound by
// CPU, and with every link 10 ms one way (the -10ms variants, withDelay),
// where it is bound by the round trips of signaling, ICE and DTLS. Run it
// with, for example,
//
//	go test -run '^$' -bench CallSetup -benchtime 50x ./call
func BenchmarkCallSetup(b *testing.B) {
	for _, d := range []time.Duration{0, benchDelay} {
		name := func(s string) string {
			if d > 0 {
				s += fmt.Sprintf("-%dms", d.Milliseconds())
			}
			return s
		}
		b.Run(name("relay"), func(b *testing.B) { benchRelay(b, d, nil, nil) })
		// Media through TURN: both sides with policy relay, and only the
		// caller (the callee still offers host and srflx candidates).
		relayOnly := withOptions(func(o *Options) { o.AlwaysRelay = true })
		b.Run(name("relay-only"), func(b *testing.B) { benchRelay(b, d, relayOnly, relayOnly) })
		b.Run(name("relay-only-caller"), func(b *testing.B) { benchRelay(b, d, relayOnly, nil) })
		b.Run(name("relay-only-callee"), func(b *testing.B) { benchRelay(b, d, nil, relayOnly) })
		b.Run(name("bare-pion"), func(b *testing.B) {
			benchBare(b, webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, d)
		})
		b.Run(name("bare-pion-ice"), func(b *testing.B) {
			ca := newPeer(b, "a")
			ice, err := ca.mod.sig.ICEConfig(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchBare(b, ca.mod.rtcConfig(ice), d)
		})
	}
}

// benchDelay is the one-way latency of every link in the -10ms variants
// (withDelay): a packet between the peers or to TURN, an envelope from one
// peer to the other, an HTTP request to the relay.
const benchDelay = 10 * time.Millisecond

// reportPercentiles reports p50 and p99 of the setup times d and the median
// of the CPU times cpu (none where the platform cannot tell).
func reportPercentiles(b *testing.B, d, cpu []time.Duration) {
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(d, 0.50), "p50-ms")
	b.ReportMetric(pct(d, 0.99), "p99-ms")
	if processCPU() >= 0 {
		b.ReportMetric(pct(cpu, 0.50), "cpu-p50-ms")
	}
	b.ReportMetric(0, "ns/op")
}

func benchRelay(b *testing.B, delay time.Duration, optA, optB peerOpt) {
	opts := func(o peerOpt) []peerOpt {
		if o == nil {
			return []peerOpt{withDelay(delay)}
		}
		return []peerOpt{withDelay(delay), o}
	}
	ca := newPeer(b, "a", opts(optA)...)
	cb := newPeer(b, "b", opts(optB)...)
	// b answers every call at once, as `duet answer --auto` does.
	go func() {
		for range cb.incoming {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := cb.mod.Answer(ctx); err != nil {
				b.Error(err)
			}
			cancel()
		}
	}()
	b.Cleanup(func() { close(cb.incoming) })
	durations := make([]time.Duration, 0, b.N)
	var cpus []time.Duration
	b.ResetTimer()
	for range b.N {
		subA, subB := ca.mod.State().Subscribe(), cb.mod.State().Subscribe()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		cpu0 := processCPU()
		if err := ca.mod.Call(ctx, cb.alias, Media{Audio: true}); err != nil {
			b.Fatal(err)
		}
		waitConnected(b, subA)
		waitConnected(b, subB)
		durations = append(durations, time.Since(start))
		cpus = append(cpus, processCPU()-cpu0)
		cancel()
		subA.Unsubscribe()
		subB.Unsubscribe()
		b.StopTimer()
		if err := ca.mod.Hangup(); err != nil {
			b.Fatal(err)
		}
		cb.waitState(StateHangup, 5*time.Second)
		// Stay under the relay's rate limit (50 frames/s per session): a
		// call is about 7 frames from each side.
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, durations, cpus)
}

type stateSub interface{ C() <-chan Status }

func waitConnected(b *testing.B, sub stateSub) {
	b.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case st := <-sub.C():
			if st.State == StateConnected {
				return
			}
			if st.State.Terminal() {
				b.Fatalf("call ended: %+v", st)
			}
		case <-timeout:
			b.Fatal("not connected within 20 s")
		}
	}
}

// benchBare connects two pion peer connections with the module's media
// engine, interceptors, loopback settings and an audio track each, trickling
// candidates through memory.
func benchBare(b *testing.B, cfg webrtc.Configuration, delay time.Duration) {
	m := New(Options{})
	defer m.Close()
	se := loopback
	if delay > 0 {
		n, err := stdnet.NewNet()
		if err != nil {
			b.Fatal(err)
		}
		se = func(se *webrtc.SettingEngine) {
			loopback(se)
			se.SetNet(delayedNet(n, delay))
		}
	}
	m.setHooks(testHooks{settingEngine: se})
	durations := make([]time.Duration, 0, b.N)
	var cpus []time.Duration
	b.ResetTimer()
	for range b.N {
		start, cpu0 := time.Now(), processCPU()
		pa, pb := barePC(b, m, cfg), barePC(b, m, cfg)
		connectedA, connectedB := watchConnected(pa), watchConnected(pb)
		toA, toB := &trickle{pc: pa}, &trickle{pc: pb}
		pa.OnICECandidate(toB.add)
		pb.OnICECandidate(toA.add)
		offer, err := pa.CreateOffer(nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := pa.SetLocalDescription(offer); err != nil {
			b.Fatal(err)
		}
		if err := pb.SetRemoteDescription(offer); err != nil {
			b.Fatal(err)
		}
		toB.ready()
		answer, err := pb.CreateAnswer(nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := pb.SetLocalDescription(answer); err != nil {
			b.Fatal(err)
		}
		if err := pa.SetRemoteDescription(answer); err != nil {
			b.Fatal(err)
		}
		toA.ready()
		for _, c := range []chan struct{}{connectedA, connectedB} {
			select {
			case <-c:
			case <-time.After(20 * time.Second):
				b.Fatal("bare pair not connected within 20 s")
			}
		}
		durations = append(durations, time.Since(start))
		cpus = append(cpus, processCPU()-cpu0)
		b.StopTimer()
		_ = pa.GracefulClose()
		_ = pb.GracefulClose()
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, durations, cpus)
}

func barePC(b *testing.B, m *Module, cfg webrtc.Configuration) *webrtc.PeerConnection {
	api, err := m.newAPI(nil, func(stats.Getter) {}, cfg.ICETransportPolicy == webrtc.ICETransportPolicyRelay)
	if err != nil {
		b.Fatal(err)
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		b.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticSample(opusCodec.RTPCodecCapability, "audio", streamID)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		b.Fatal(err)
	}
	return pc
}

func watchConnected(pc *webrtc.PeerConnection) chan struct{} {
	done := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(done) })
		}
	})
	return done
}

// trickle hands candidates to pc, keeping those that come before its remote
// description is set.
type trickle struct {
	pc    *webrtc.PeerConnection
	mu    sync.Mutex
	set   bool
	early []webrtc.ICECandidateInit
}

func (t *trickle) add(c *webrtc.ICECandidate) {
	if c == nil {
		return
	}
	t.mu.Lock()
	if !t.set {
		t.early = append(t.early, c.ToJSON())
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = t.pc.AddICECandidate(c.ToJSON())
}

func (t *trickle) ready() {
	t.mu.Lock()
	t.set = true
	early := t.early
	t.early = nil
	t.mu.Unlock()
	for _, c := range early {
		_ = t.pc.AddICECandidate(c)
	}
}
