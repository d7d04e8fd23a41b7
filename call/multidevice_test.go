package call

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/wire"
)

// countSink counts the frames written to it.
type countSink struct{ n atomic.Int64 }

func (c *countSink) WriteFrame(media.Frame) error { c.n.Add(1); return nil }

// withCountingSinks records the frames each call receives into counters.
func withCountingSinks(audio, video *countSink) peerOpt {
	return withOptions(func(o *Options) {
		o.Sinks = func(Status) (Sinks, error) { return Sinks{Audio: audio, Video: video}, nil }
	})
}

// newDevice is another device of p's user: the same identity, a client and
// module of its own (the relay rings both).
func newDevice(t *testing.T, p *peer, name string, opts ...peerOpt) *peer {
	t.Helper()
	d := newPeer(t, name, append([]peerOpt{withIdentity(p.id)}, opts...)...)
	if d.alias != p.alias {
		t.Fatalf("%s registered as %s, want %s", name, d.alias, p.alias)
	}
	return d
}

// noError checks that p's OnError got nothing within a short while.
func noError(t *testing.T, p *peer) {
	t.Helper()
	select {
	case err := <-p.errs:
		t.Errorf("%s: OnError got %v", p.name, err)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestMultiDeviceFirstAnswerWins(t *testing.T) {
	checkLeaks(t)
	var b1Audio, b1Video, b2Audio, b2Video countSink
	a := newPeer(t, "a")
	b1 := newPeer(t, "b1", withCountingSinks(&b1Audio, &b1Video))
	b2 := newDevice(t, b1, "b2", withCountingSinks(&b2Audio, &b2Video))
	if err := a.mod.Call(ctxT(t), b1.alias, Media{Video: true}); err != nil {
		t.Fatal(err)
	}
	b1.waitIncoming(5 * time.Second)
	b2.waitIncoming(5 * time.Second)

	if err := b1.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	// b2 stops ringing: answered elsewhere, a plain ending, nothing sent.
	st := b2.waitEnd(5 * time.Second)
	took := time.Since(answered)
	if st.State != StateHangup || st.Reason != ReasonAnsweredElsewhere || st.Err() != nil {
		t.Errorf("b2: %+v, want hangup answered_elsewhere", st)
	}
	t.Logf("b2 stopped ringing %v after b1 answered", took.Round(time.Millisecond))
	noError(t, b2)
	b2.sig.mu.Lock()
	n := len(b2.sig.sent)
	b2.sig.mu.Unlock()
	if n != 0 {
		t.Errorf("b2 sent %d envelopes, want none", n)
	}
	a.waitState(StateConnected, 20*time.Second)
	b1.waitState(StateConnected, 20*time.Second)
	b1.waitStats(10*time.Second, "video from a", func(s Stats) bool { return s.VideoFramesReceived >= 10 && s.AudioFramesReceived >= 10 })
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b1.waitEnd(5 * time.Second)
	if b1Audio.n.Load() == 0 || b1Video.n.Load() == 0 {
		t.Errorf("b1 recorded %d audio and %d video frames", b1Audio.n.Load(), b1Video.n.Load())
	}
	if b2Audio.n.Load() != 0 || b2Video.n.Load() != 0 {
		t.Errorf("b2 recorded %d audio and %d video frames, want none", b2Audio.n.Load(), b2Video.n.Load())
	}
}

// ringTwoDevices has a call b, a user on two devices b1 and b2, and waits
// until both ring.
func ringTwoDevices(t *testing.T, a, b1, b2 *peer) {
	t.Helper()
	if err := a.mod.Call(ctxT(t), b1.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b1.waitIncoming(5 * time.Second)
	b2.waitIncoming(5 * time.Second)
}

func TestMultiDeviceBothAnswer(t *testing.T) {
	checkLeaks(t)
	a := newPeer(t, "a")
	b1 := newPeer(t, "b1")
	b2 := newDevice(t, b1, "b2")
	ringTwoDevices(t, a, b1, b2)
	// Both devices answer at once: the caller takes the first answer; the
	// other device ends answered_elsewhere at once, never left connecting.
	var wg sync.WaitGroup
	for _, d := range []*peer{b1, b2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.mod.Answer(ctxT(t)); err != nil && !errors.Is(err, ErrCallEnded) {
				t.Errorf("%s: Answer: %v", d.name, err)
			}
		}()
	}
	wg.Wait()
	a.waitState(StateConnected, 20*time.Second)
	s1, s2 := waitOneConnected(t, b1, b2)
	if s1.State != StateConnected {
		s1, s2 = s2, s1
	}
	if s1.State != StateConnected || s2.State != StateHangup || s2.Reason != ReasonAnsweredElsewhere {
		t.Errorf("devices: %+v and %+v; want one connected, one answered elsewhere", s1, s2)
	}
	if n := len(a.sig.sentOf("call_select")); n < 1 {
		t.Errorf("a sent %d call_select, want at least 1", n)
	}
}

// waitOneConnected waits until one of x and y is connected and the other
// ended, and returns their states.
func waitOneConnected(t *testing.T, x, y *peer) (Status, Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sx, sy := x.mod.State().Get(), y.mod.State().Get()
		if (sx.State == StateConnected && sy.State.Terminal()) || (sy.State == StateConnected && sx.State.Terminal()) {
			return sx, sy
		}
		if time.Now().After(deadline) {
			t.Fatalf("not one connected and one ended: %s %+v, %s %+v", x.name, sx, y.name, sy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMultiDeviceDeclineAndBusy(t *testing.T) {
	checkLeaks(t)
	a := newPeer(t, "a")
	b1 := newPeer(t, "b1")
	b2 := newDevice(t, b1, "b2")

	// A decline on one device ends the call everywhere.
	ringTwoDevices(t, a, b1, b2)
	if err := b1.mod.Reject(); err != nil {
		t.Fatal(err)
	}
	if st := a.waitEnd(5 * time.Second); st.State != StateRejected || st.Reason != ReasonDeclined {
		t.Errorf("a: %+v, want rejected declined", st)
	}
	if err := waitErr(a.errs, ErrDeclined, 2*time.Second); err == nil {
		t.Error("a's OnError did not get ErrDeclined")
	}
	if st := b2.waitEnd(5 * time.Second); st.State != StateRejected || st.Reason != ReasonDeclinedElsewhere || st.Err() != nil {
		t.Errorf("b2: %+v, want rejected declined_elsewhere", st)
	}
	noError(t, b1)
	noError(t, b2)

	// b1 in a call with c: a's call gets busy from b1; b2 stops ringing.
	c := newPeer(t, "c")
	connect(t, c, b1, Media{Audio: true})
	if st := b2.waitEndWith(c.alias, 5*time.Second); st.Reason != ReasonAnsweredElsewhere {
		t.Errorf("b2, c's call: %+v, want answered_elsewhere", st)
	}
	if err := a.mod.Call(ctxT(t), b1.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	if st := a.waitEnd(5 * time.Second); st.State != StateRejected || st.Reason != ReasonBusy {
		t.Errorf("a: %+v, want rejected busy", st)
	}
	if st := b2.waitEndWith(a.alias, 5*time.Second); st.Reason != ReasonBusyElsewhere {
		t.Errorf("b2: %+v, want busy_elsewhere", st)
	}
	if st := b1.mod.State().Get(); st.State != StateConnected || st.Peer != c.alias {
		t.Errorf("b1's call with c: %+v", st)
	}
}

func TestGlare(t *testing.T) {
	for _, order := range []struct {
		name   string
		aID    string
		bID    string
		winner string
	}{
		{"a's call wins", "AAAAglare-a-calls-b", "ZZZZglare-b-calls-a", "a"},
		{"b's call wins", "ZZZZglare-a-calls-b", "AAAAglare-b-calls-a", "b"},
	} {
		t.Run(order.name, func(t *testing.T) {
			checkLeaks(t)
			cross := crossOffers(order.aID, order.bID)
			hold := withDrop(func(env *wire.Envelope) bool {
				cross(env)
				return false
			})
			a := newPeer(t, "a", hold, withCallIDs(func() string { return order.aID }))
			b := newPeer(t, "b", hold, withCallIDs(func() string { return order.bID }))
			want := order.aID
			if order.winner == "b" {
				want = order.bID
			}
			glare(t, a, b, want)
			waitMoreAudio(10*time.Second, "audio in the glare call", 20, a, b)
			if err := a.mod.Hangup(); err != nil {
				t.Fatal(err)
			}
			b.waitEnd(5 * time.Second)
		})
	}
}

// TestGlareOfferOvertaken: the losing side's offer is written late, after
// that side has already decided the glare and answered the winning call
// (its offer is out for the machine, not yet on the wire). Its answer must
// not overtake the offer: the winner, past calling once answered, would
// refuse the late offer busy. Here b's offer is held until b's answer is
// on its way or a second has passed; no side sends call_reject.
func TestGlareOfferOvertaken(t *testing.T) {
	checkLeaks(t)
	const aID, bID = "AAAAglare-late-a", "ZZZZglare-late-b"
	cross := crossOffers(aID, bID)
	answered := make(chan struct{})
	var answerOnce sync.Once
	hold := withDrop(func(env *wire.Envelope) bool {
		if env.Type == wire.TypeCallAnswer && env.CallID == aID {
			answerOnce.Do(func() { close(answered) })
		}
		if cross(env) && env.CallID == bID {
			select {
			case <-answered:
			case <-time.After(time.Second):
			}
		}
		return false
	})
	a := newPeer(t, "a", hold, withCallIDs(func() string { return aID }))
	b := newPeer(t, "b", hold, withCallIDs(func() string { return bID }))
	glare(t, a, b, aID)
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(5 * time.Second)
}

// crossOffers returns a signaling hook that holds the offer of either of
// the two calls until the other one is being sent too (or 10 s passed), so
// that they cross on the relay whatever the machine's load; it reports
// whether env was one of the two offers.
func crossOffers(aID, bID string) func(env *wire.Envelope) bool {
	var arrived atomic.Int32
	both := make(chan struct{})
	return func(env *wire.Envelope) bool {
		if env.Type != wire.TypeCallOffer || env.CallID != aID && env.CallID != bID {
			return false
		}
		if arrived.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
		case <-time.After(10 * time.Second):
		}
		return true
	}
}

// glare has a and b call each other at once and checks that both end up
// in the call want, neither refusing the other busy (PROTOCOL §10.5).
func glare(t *testing.T, a, b *peer, want string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range []struct{ from, to *peer }{{a, b}, {b, a}} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.from.mod.Call(ctx, p.to.alias, Media{Audio: true}); err != nil && !errors.Is(err, ErrInCall) {
				t.Errorf("%s: Call: %v", p.from.name, err)
			}
		})
	}
	wg.Wait()
	sa, sb := a.waitState(StateConnected, 20*time.Second), b.waitState(StateConnected, 20*time.Second)
	if sa.CallID != want || sb.CallID != want {
		t.Errorf("connected calls %s and %s, want both %s", sa.CallID, sb.CallID, want)
	}
	for _, p := range []*peer{a, b} {
		if n := len(p.sig.sentOf("call_reject")); n != 0 {
			t.Errorf("%s sent %d call_reject (busy), want none", p.name, n)
		}
		noError(t, p)
	}
}

// remotePairs is how many candidate pairs the call in progress of p checks
// (-1 without a peer connection).
func remotePairs(p *peer) int {
	p.mod.mu.Lock()
	s := p.mod.cur
	var pc *webrtc.PeerConnection
	if s != nil {
		pc = s.pc
	}
	p.mod.mu.Unlock()
	if pc == nil {
		return -1
	}
	n := 0
	for _, st := range pc.GetStats() {
		if _, ok := st.(webrtc.ICECandidatePairStats); ok {
			n++
		}
	}
	return n
}

// TestMultiDeviceUnselectedDeviceSilent: a callee device checks the
// caller's candidates only once the caller selected it (PROTOCOL §10.4). b2
// answers first but its answer is lost, so the caller takes b1's; with the
// caller's call_select lost too, b2 never learns it lost: it must still
// send the caller no connectivity check (a browser caller answers them, and
// b2's DTLS could then take the caller's handshake from b1), and b1, never
// told it was selected, connects on the caller's checks.
func TestMultiDeviceUnselectedDeviceSilent(t *testing.T) {
	checkLeaks(t)
	a := newPeer(t, "a", withDrop(func(e *wire.Envelope) bool { return e.Type == wire.TypeCallSelect }))
	b1 := newPeer(t, "b1")
	b2 := newDevice(t, b1, "b2", withDrop(func(e *wire.Envelope) bool { return e.Type == wire.TypeCallAnswer }))
	ringTwoDevices(t, a, b1, b2)
	if err := b2.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b2.waitState(StateConnecting, 5*time.Second)
	if err := b1.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a.waitState(StateConnected, 20*time.Second)
	b1.waitState(StateConnected, 20*time.Second)
	if n := remotePairs(b2); n != 0 {
		t.Errorf("b2, never selected, checks %d candidate pairs; want none", n)
	}
	if st := b2.mod.State().Get(); st.State != StateConnecting {
		t.Errorf("b2: %+v, want still connecting (it was told nothing)", st)
	}
}

func TestSplitCandidates(t *testing.T) {
	sdp := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=candidate:2 1 udp 1694498815 1.2.3.4 6000 typ srflx raddr 10.0.0.1 rport 5000\r\na=end-of-candidates\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=candidate:3 1 udp 2130706431 10.0.0.1 5002 typ host\r\na=mid:1\r\n"
	out, cands := splitCandidates(sdp)
	if strings.Contains(out, "a=candidate") || strings.Contains(out, "end-of-candidates") {
		t.Errorf("candidates left in the description:\n%s", out)
	}
	if want := "a=mid:0\r\nm=video"; !strings.Contains(out, want) || !strings.HasSuffix(out, "a=mid:1\r\n") {
		t.Errorf("the rest of the description changed:\n%q", out)
	}
	type cand struct {
		c    string
		mid  string
		line uint16
	}
	want := []cand{
		{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host", "0", 0},
		{"candidate:2 1 udp 1694498815 1.2.3.4 6000 typ srflx raddr 10.0.0.1 rport 5000", "0", 0},
		{"candidate:3 1 udp 2130706431 10.0.0.1 5002 typ host", "1", 1}, // its a=mid comes after it
	}
	if len(cands) != len(want) {
		t.Fatalf("%d candidates, want %d: %+v", len(cands), len(want), cands)
	}
	for i, w := range want {
		c := cands[i]
		if c.Candidate != w.c || c.SDPMid == nil || *c.SDPMid != w.mid || c.SDPMLineIndex == nil || *c.SDPMLineIndex != w.line {
			t.Errorf("candidate %d: %q mid %v line %v, want %+v", i, c.Candidate, c.SDPMid, c.SDPMLineIndex, w)
		}
	}
	if out, cands := splitCandidates("v=0\r\na=candidate:1 1 udp 1 10.0.0.1 1 typ host\r\n"); len(cands) != 0 || !strings.Contains(out, "a=candidate") {
		t.Errorf("a candidate line before any m-section: taken out (%d)", len(cands))
	}
}
