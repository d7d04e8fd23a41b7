package call

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/relay"
	relayice "github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/wire"
)

// fastICE makes pion notice a dead path quickly: disconnected after 500 ms
// without traffic, failed 1 s later.
func fastICE(se *webrtc.SettingEngine) {
	se.SetICETimeouts(500*time.Millisecond, time.Second, 200*time.Millisecond)
}

func TestPeerKilled(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{disconnected: time.Second, media: 3 * time.Second, mediaCheck: 250 * time.Millisecond, restartWait: 2 * time.Second})
	a := newPeer(t, "a", withEngine(fastICE))
	b := newPeer(t, "b", withGate())
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })

	// b's process dies: its packets stop, its relay connection drops,
	// nothing says goodbye.
	start := time.Now()
	b.gate.block()
	_ = b.cl.Close()

	st := a.waitState(StateEnded, 10*time.Second)
	took := time.Since(start)
	// ICE notices within ~0.5-1 s here, then the (shortened) 1 s
	// disconnected timeout runs: the call cannot end before that timeout.
	// When ICE reports failed first (a loaded machine), the caller's
	// restart runs instead and its wait (2 s here) ends the call as
	// ice_failed (PROTOCOL §10.6).
	want := ErrDisconnected
	switch st.Reason {
	case ReasonDisconnected:
	case ReasonICEFailed:
		want = ErrICEFailed
	default:
		t.Errorf("a: %+v, want ended disconnected (or ice_failed)", st)
	}
	if took < time.Second {
		t.Errorf("a ended %v after the peer died, before the disconnected timeout (1 s here)", took)
	}
	if err := waitErr(a.errs, want, time.Second); err == nil {
		t.Errorf("OnError did not get %v", want)
	}
	t.Logf("a ended %v after the peer died: %+v", took.Round(time.Millisecond), st)
}

// stallingSource yields n frames of a real source, then nothing.
type stallingSource struct {
	media.Source
	left atomic.Int32
}

func (s *stallingSource) Next(ctx context.Context) (media.Frame, error) {
	if s.left.Add(-1) < 0 {
		<-ctx.Done()
		return media.Frame{}, ctx.Err()
	}
	return s.Source.Next(ctx)
}

func TestMediaTimeout(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{media: 1500 * time.Millisecond, mediaCheck: 100 * time.Millisecond})
	a := newPeer(t, "a")
	// b stays connected (ICE consent keeps flowing) but its audio stops
	// after 25 frames (half a second).
	b := newPeer(t, "b", withOptions(func(o *Options) {
		o.Audio = func() (media.Source, error) {
			src, err := media.BytesOpener(media.AudioFixture())()
			if err != nil {
				return nil, err
			}
			s := &stallingSource{Source: src}
			s.left.Store(25)
			return s, nil
		}
	}))
	connect(t, a, b, Media{Audio: true})
	start := time.Now()
	st := a.waitState(StateEnded, 5*time.Second)
	if st.Reason != ReasonMediaTimeout {
		t.Errorf("a: %+v, want ended media_timeout", st)
	}
	// Media stopped after ~0.5 s and the timeout is 1.5 s of no growth here:
	// the call cannot end before media has been still for a while.
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("a ended %v after connecting, before the media timeout could run out", took)
	}
	if err := waitErr(a.errs, ErrMediaTimeout, time.Second); err == nil {
		t.Error("OnError did not get ErrMediaTimeout")
	}
	// a told b why.
	if st := b.waitState(StateHangup, 3*time.Second); st.Reason != ReasonMediaTimeout {
		t.Errorf("b: %+v, want hangup media_timeout", st)
	}
}

func TestICERestart(t *testing.T) {
	checkLeaks(t)
	// The disconnected timeout is out of the way: this test is about ICE
	// failing (1.5 s after the path dies, with fastICE). A restart that
	// does not recover ends the call after restartWait.
	setTimings(t, timings{disconnected: 30 * time.Second, media: 30 * time.Second, restartWait: 3 * time.Second})
	var (
		bGate    atomic.Pointer[gate]
		restarts atomic.Int32
	)
	a := newPeer(t, "a", withEngine(fastICE), withOnRestart(func() {
		// The network comes back as the caller restarts ICE, the first time.
		if restarts.Add(1) == 1 {
			bGate.Load().unblock()
		}
	}))
	b := newPeer(t, "b", withEngine(fastICE), withGate())
	bGate.Store(b.gate)
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })

	b.gate.block()
	a.waitStats(10*time.Second, "an ICE restart", func(s Stats) bool { return s.ICERestarts == 1 })
	// Media flows again over the restarted ICE, both ways; the call never
	// left connected.
	for _, p := range []*peer{a, b} {
		before := p.mod.Stats().AudioFramesReceived
		st := p.waitStats(10*time.Second, "audio after the restart", func(s Stats) bool { return s.AudioFramesReceived >= before+50 })
		if st.ICERestarts != 1 || st.State != StateConnected {
			t.Errorf("%s: %+v", p.name, st)
		}
	}
	// The restart offer was sent (the stat counts the restart as it starts,
	// before the offer goes out; media flowing again means b got it).
	if n := len(a.sig.sentOf(wire.TypeCallOffer)); n != 2 {
		t.Errorf("a sent %d offers, want 2 (the call and the ICE restart)", n)
	}
	if pc := a.mod.pcOf(); pc == nil || pc.ICEConnectionState() != webrtc.ICEConnectionStateConnected && pc.ICEConnectionState() != webrtc.ICEConnectionStateCompleted {
		t.Errorf("a's ICE is not connected after the restart")
	}

	// The path dies again, for good: the caller restarts once more (one
	// restart per outage, PROTOCOL §10.6), which cannot recover, and the
	// call ends with ice_failed when the restart's wait runs out. Both
	// sides' waits bound the outage; whichever fires first tells the
	// other, which is in the same outage and so ends as its own wait
	// would: both end ended/ice_failed with the error (the hangup crossing
	// the other's timer never turns the failure into a plain hangup).
	b.gate.block()
	start := time.Now()
	sa, sb := a.waitEnd(15*time.Second), b.waitEnd(15*time.Second)
	t.Logf("second ICE failure ended the call after %v: a %s, b %s", time.Since(start).Round(time.Millisecond), sa.State, sb.State)
	for _, x := range []struct {
		p  *peer
		st Status
	}{{a, sa}, {b, sb}} {
		if x.st.State != StateEnded || x.st.Reason != ReasonICEFailed {
			t.Errorf("%s: %+v; want ended for ice_failed", x.p.name, x.st)
		}
		if err := waitErr(x.p.errs, ErrICEFailed, time.Second); err == nil {
			t.Errorf("%s: OnError did not get %v", x.p.name, ErrICEFailed)
		}
	}
	if n := restarts.Load(); n != 2 {
		t.Errorf("%d ICE restarts, want 2 (one per outage)", n)
	}
}

func TestRelayOnlyCall(t *testing.T) {
	checkLeaks(t)
	relayOnly := withOptions(func(o *Options) { o.AlwaysRelay = true })
	a, b := newPair(t, relayOnly)
	connect(t, a, b, Media{Video: true})
	for _, p := range []*peer{a, b} {
		st := p.waitStats(10*time.Second, "media over TURN", func(s Stats) bool {
			return s.VideoFramesReceived >= 30 && s.AudioFramesReceived >= 50
		})
		if st.LocalCandidate != "relay" || st.RemoteCandidate != "relay" {
			t.Errorf("%s: selected pair %s/%s, want relay/relay", p.name, st.LocalCandidate, st.RemoteCandidate)
		}
		if st.DecryptErrors != 0 {
			t.Errorf("%s: %d decrypt errors", p.name, st.DecryptErrors)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitState(StateHangup, 5*time.Second)
}

// The transport policy follows the relay's ice_transport_policy, unless
// the module always relays.
func TestRTCConfigPolicy(t *testing.T) {
	for _, tt := range []struct {
		alwaysRelay bool
		relay       string
		want        webrtc.ICETransportPolicy
	}{
		{false, "all", webrtc.ICETransportPolicyAll},
		{false, "relay", webrtc.ICETransportPolicyRelay},
		{true, "all", webrtc.ICETransportPolicyRelay},
		{true, "relay", webrtc.ICETransportPolicyRelay},
	} {
		m := &Module{opts: Options{AlwaysRelay: tt.alwaysRelay}}
		if got := m.rtcConfig(client.ICEConfig{ICETransportPolicy: tt.relay}).ICETransportPolicy; got != tt.want {
			t.Errorf("AlwaysRelay %v, relay policy %q: %s, want %s", tt.alwaysRelay, tt.relay, got, tt.want)
		}
	}
}

// A relay that answers ice_transport_policy "relay" (duet relay
// --force-relay) puts the calls of modules that do not ask for it through
// TURN.
func TestRelayForcesTURN(t *testing.T) {
	checkLeaks(t)
	res, err := relayice.New(relayice.Options{
		Embedded:   &relayice.Embedded{Host: "127.0.0.1", Port: testEnv.turnAddr.Port, Secret: testEnv.turnSecret},
		ForceRelay: true,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := startRelayWith(t, t.TempDir(), "127.0.0.1:0", res)
	t.Cleanup(r.stop)
	url := "http://" + r.addr
	a, b := newPeer(t, "a", withRelay(url)), newPeer(t, "b", withRelay(url))
	connect(t, a, b, Media{Audio: true})
	for _, p := range []*peer{a, b} {
		st := p.waitStats(10*time.Second, "audio over TURN", func(s Stats) bool { return s.AudioFramesReceived >= 20 })
		if st.LocalCandidate != "relay" || st.RemoteCandidate != "relay" {
			t.Errorf("%s: selected pair %s/%s, want relay/relay", p.name, st.LocalCandidate, st.RemoteCandidate)
		}
		if pc := p.mod.pcOf(); pc == nil || pc.GetConfiguration().ICETransportPolicy != webrtc.ICETransportPolicyRelay {
			t.Errorf("%s: the peer connection's transport policy is not relay", p.name)
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitState(StateHangup, 5*time.Second)
}

// A connection that comes back before the disconnected timeout keeps the
// call: the timer armed when it went disconnected is cleared.
func TestDisconnectedThenBack(t *testing.T) {
	checkLeaks(t)
	// ICE notices the dead path after 0.5 s and would only fail after
	// 30 s (no ICE restart here); the disconnected timeout is 1 s.
	setTimings(t, timings{disconnected: time.Second, media: 30 * time.Second})
	slowFail := func(se *webrtc.SettingEngine) {
		se.SetICETimeouts(500*time.Millisecond, 30*time.Second, 200*time.Millisecond)
	}
	a := newPeer(t, "a", withEngine(slowFail))
	b := newPeer(t, "b", withEngine(slowFail), withGate())
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })

	b.gate.block()
	for _, p := range []*peer{a, b} {
		p.waitStats(5*time.Second, "the disconnected timer", func(Stats) bool { return p.mod.disconnectTimerArmed() })
	}
	b.gate.unblock()
	for _, p := range []*peer{a, b} {
		p.waitStats(5*time.Second, "reconnected", func(s Stats) bool {
			return s.State == StateConnected && !p.mod.disconnectTimerArmed()
		})
	}
	// The call outlives the disconnected timeout: 100 more audio frames
	// (2 s of audio) arrive and it is still connected, with no error.
	for _, p := range []*peer{a, b} {
		before := p.mod.Stats().AudioFramesReceived
		p.waitStats(10*time.Second, "audio after the reconnection", func(s Stats) bool { return s.AudioFramesReceived >= before+100 })
	}
	for _, p := range []*peer{a, b} {
		if st := p.mod.State().Get(); st.State != StateConnected {
			t.Errorf("%s: %+v, want still connected", p.name, st)
		}
		select {
		case err := <-p.errs:
			t.Errorf("%s: OnError(%v)", p.name, err)
		default:
		}
	}
	if n := a.mod.Stats().ICERestarts + b.mod.Stats().ICERestarts; n != 0 {
		t.Errorf("%d ICE restarts; the connection came back by itself", n)
	}
}

func TestPeerClosedWithoutHangup(t *testing.T) {
	checkLeaks(t)
	setTimings(t, timings{disconnected: time.Second})
	// a's call_hangup is lost: b learns of the end as a browser does, from
	// ICE going disconnected (after 0.5 s here, fastICE), then the
	// disconnected timeout (1 s here).
	a := newPeer(t, "a", withDrop(func(e *wire.Envelope) bool { return e.Type == wire.TypeCallHangup }))
	b := newPeer(t, "b", withEngine(fastICE))
	connect(t, a, b, Media{Audio: true})
	start := time.Now()
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	st := b.waitEnd(5 * time.Second)
	if st.State != StateEnded || st.Reason != ReasonDisconnected {
		t.Errorf("b: %+v, want ended disconnected", st)
	}
	// ICE goes disconnected after ~0.5 s here, then the 1 s disconnected
	// timeout runs: not before.
	if took := time.Since(start); took < time.Second {
		t.Errorf("b ended %v after a closed, before the disconnected timeout (1 s here)", took)
	}
}

// restartableRelay is a relay node of its own on a fixed loopback address,
// which the test can stop and start again (same data directory, same
// address), as an operator restarting `duet relay` would.
type restartableRelay struct {
	t    *testing.T
	dir  string
	addr string
	srv  *relay.Server
	hs   *http.Server
	done chan struct{}
}

func startRelayAt(t *testing.T, dir, addr string) *restartableRelay {
	t.Helper()
	return startRelayWith(t, dir, addr, testEnv.ice)
}

// startRelayWith is startRelayAt with the ICE configuration of res.
func startRelayWith(t *testing.T, dir, addr string, res *relayice.Resolver) *restartableRelay {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := relay.New(ctx, relay.Options{DataDir: dir, ICE: res, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the port may linger a moment after the last close
		if ln, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &restartableRelay{t: t, dir: dir, addr: ln.Addr().String(), srv: srv, hs: &http.Server{Handler: srv.Handler()}, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = r.hs.Serve(ln)
	}()
	if err := waitReady(ctx, "http://"+r.addr); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *restartableRelay) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.hs.Close()
	<-r.done
}

func TestRelayRestartMidCall(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	r := startRelayAt(t, dir, "127.0.0.1:0")
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			r.stop()
		}
	})
	url := "http://" + r.addr
	a := newPeer(t, "a", withRelay(url))
	b := newPeer(t, "b", withRelay(url))
	connect(t, a, b, Media{Audio: true})
	b.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })

	// The relay goes away and comes back on the same address.
	r.stop()
	stopped = true
	before := b.mod.Stats().AudioFramesReceived
	r = startRelayAt(t, dir, r.addr)
	stopped = false

	// Media never depended on the relay: it kept flowing.
	b.waitStats(5*time.Second, "audio during the restart", func(s Stats) bool { return s.AudioFramesReceived >= before+50 })
	// The clients reconnect by themselves; signaling works again.
	for _, p := range []*peer{a, b} {
		sub := p.cl.State().Subscribe()
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case st := <-sub.C():
				if st == client.StateConnected {
					break wait
				}
			case <-deadline:
				t.Fatalf("%s did not reconnect", p.name)
			}
		}
		sub.Unsubscribe()
	}
	if st := a.mod.State().Get(); st.State != StateConnected {
		t.Fatalf("a: %+v", st)
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := b.waitState(StateHangup, 5*time.Second); st.Reason != ReasonUserHangup {
		t.Errorf("b: %+v", st)
	}
}

// TestDTLSNoHelloVerify: the caller is the DTLS server of the call (the
// answer takes the active role) and answers the callee's first ClientHello
// with its ServerHello, without the HelloVerifyRequest round trip: ICE has
// checked the path already, and Chromium's DTLS server sends none either.
func TestDTLSNoHelloVerify(t *testing.T) {
	checkLeaks(t)
	var helloVerify, serverHello atomic.Int64
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	tap := tapLink(func(p []byte) {
		// A DTLS handshake record (content type 22): a 13-byte record
		// header, then the handshake message type.
		if len(p) > 13 && p[0] == 22 {
			switch p[13] {
			case 2:
				serverHello.Add(1)
			case 3:
				helloVerify.Add(1)
			}
		}
	})
	a := newPeer(t, "a", withEngine(func(se *webrtc.SettingEngine) {
		se.SetNet(&linkNet{Net: n, newLink: func() link { return tap }})
	}))
	b := newPeer(t, "b")
	connect(t, a, b, Media{Audio: true})
	if serverHello.Load() == 0 {
		t.Fatal("the caller sent no ServerHello: it was not the DTLS server")
	}
	if n := helloVerify.Load(); n != 0 {
		t.Errorf("the caller sent %d HelloVerifyRequest", n)
	}
}

// TestNetworkChangeRestartsAtOnce: when the caller's interface addresses
// change mid-call, it restarts ICE at once (PROTOCOL §10.6), before any
// disconnected report, and media goes on.
func TestNetworkChangeRestartsAtOnce(t *testing.T) {
	checkLeaks(t)
	var changed atomic.Bool
	addrs := func() []string {
		if changed.Load() {
			return []string{"192.0.2.7/24"}
		}
		return []string{"192.0.2.6/24"}
	}
	restarted := make(chan struct{}, 1)
	a := newPeer(t, "a", withAddrs(addrs), withOnRestart(func() {
		select {
		case restarted <- struct{}{}:
		default:
		}
	}))
	b := newPeer(t, "b")
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })
	sub := a.mod.State().Subscribe()
	defer sub.Unsubscribe()
	changed.Store(true)
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatal("no ICE restart after the network changed")
	}
	// The app saw the recovery, then its end, while the state stayed
	// connected.
	var saw []bool
	for deadline := time.After(10 * time.Second); len(saw) < 2 || saw[len(saw)-1]; {
		select {
		case st := <-sub.C():
			if st.State != StateConnected {
				t.Fatalf("a: %+v during the recovery", st)
			}
			if len(saw) == 0 && st.Recovering || len(saw) > 0 && st.Recovering != saw[len(saw)-1] {
				saw = append(saw, st.Recovering)
			}
		case <-deadline:
			t.Fatalf("recovery seen by the app: %v, want [true false]", saw)
		}
	}
	waitMoreAudio(10*time.Second, "audio after the restart", 50, a, b)
	for _, p := range []*peer{a, b} {
		if st := p.mod.Stats(); st.ICERestarts != 1 || st.State != StateConnected {
			t.Errorf("%s: %+v", p.name, st)
		}
	}
}

// TestSendWaitsForRelay: a call's messages wait for the relay connection
// (the client reconnecting after a network change) instead of failing.
func TestSendWaitsForRelay(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	a.sig.notConnected.Store(3) // the offer's first three tries
	connect(t, a, b, Media{Audio: true})
	if n := a.sig.notConnected.Load(); n != 0 {
		t.Errorf("%d tries left unused", n)
	}
}

// TestHangupAfterRelayReconnect: a hangup sent while the relay connection
// is down reaches the peer once it is back, and Hangup does not wait for
// that.
func TestHangupAfterRelayReconnect(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true})
	a.sig.notConnected.Store(3)
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := b.waitEnd(10 * time.Second); st.State != StateHangup || st.Reason != ReasonUserHangup {
		t.Errorf("b: %+v", st)
	}
}
