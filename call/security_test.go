package call

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/e2ee"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// drops returns p's signaling drop count for reason.
func (p *peer) drops(reason string) uint64 { return p.mod.Stats().SignalingDrops[reason] }

// waitDrops waits until p counted at least n drops for reason.
func (p *peer) waitDrops(reason string, n uint64) {
	p.t.Helper()
	p.waitStats(5*time.Second, "drops["+reason+"]", func(s Stats) bool { return s.SignalingDrops[reason] >= n })
}

func TestSignalingTamperedAndReplayed(t *testing.T) {
	checkLeaks(t)
	// a swallows its first call_ice, so the test holds one sealed frame
	// the callee has never seen.
	var swallowed atomic.Bool
	a := newPeer(t, "a", withDrop(func(e *wire.Envelope) bool {
		return e.Type == wire.TypeCallICE && swallowed.CompareAndSwap(false, true)
	}))
	b := newPeer(t, "b")
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b.waitIncoming(5 * time.Second)
	ringing := b.mod.State().Get()
	offer := a.sig.sentOf(wire.TypeCallOffer)[0]
	a.waitStats(5*time.Second, "the swallowed candidate", func(Stats) bool { return swallowed.Load() })
	unseen := a.sig.sentOf(wire.TypeCallICE)[0]

	// Through the real relay: the offer again (a replay)...
	replay := offer
	replay.ID = ""
	if err := a.cl.Send(ctxT(t), &replay); err != nil {
		t.Fatal(err)
	}
	b.waitDrops("replay", 1)
	// ...and with one payload byte flipped (fails AES-GCM).
	tampered := offer
	tampered.ID = ""
	raw, err := base64.StdEncoding.DecodeString(tampered.Payload)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x01
	tampered.Payload = base64.StdEncoding.EncodeToString(raw)
	if err := a.cl.Send(ctxT(t), &tampered); err != nil {
		t.Fatal(err)
	}
	b.waitDrops("decrypt", 1)

	// As a compromised relay would deliver them: an unseen frame re-routed
	// to another call (the signed inner call_id differs)...
	moved := unseen
	moved.CallID = "another-call"
	b.mod.HandleEnvelope(&moved)
	// ...relabelled as another type...
	relabelled := unseen
	relabelled.Type = wire.TypeCallHangup
	b.mod.HandleEnvelope(&relabelled)
	b.waitDrops("route_mismatch", 2)
	// ...and a garbage payload.
	junk := unseen
	junk.Payload = base64.StdEncoding.EncodeToString([]byte("not a sealed payload"))
	b.mod.HandleEnvelope(&junk)
	b.waitDrops("malformed", 1)
	// The unseen frame itself, untouched, is accepted once; its replay is not.
	b.mod.HandleEnvelope(&unseen)
	b.mod.HandleEnvelope(&unseen)
	b.waitDrops("replay", 2)

	// None of it disturbed the call: still ringing, and it connects.
	if st := b.mod.State().Get(); st != ringing {
		t.Fatalf("b's state changed to %+v", st)
	}
	if err := b.mod.Answer(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	a.waitState(StateConnected, 10*time.Second)
	b.waitState(StateConnected, 10*time.Second)
	t.Logf("b's drops: %v", b.mod.Stats().SignalingDrops)
}

func TestKeyChangedRefused(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	// a pins b's keys (trust on first use).
	if _, err := a.cl.PeerKeys(ctxT(t), b.alias); err != nil {
		t.Fatal(err)
	}
	// b's alias re-registers with a new X25519 key: to a, b's keys changed.
	b2 := newKeyDevice(t, b, "b2")

	// a refuses to call the changed key...
	err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true})
	if !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("Call: %v, want client.ErrKeyChanged", err)
	}
	if n := len(a.sig.sentOf(wire.TypeCallOffer)); n != 0 {
		t.Errorf("a sent %d offers to a changed key", n)
	}
	// ...and refuses its calls: no ringing, the offer counted as dropped.
	if err := b2.mod.Call(ctxT(t), a.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	a.waitDrops("key_changed", 1)
	if err := waitErr(a.errs, client.ErrKeyChanged, time.Second); err == nil {
		t.Error("OnError did not report the refused call (client.ErrKeyChanged)")
	}
	select {
	case in := <-a.incoming:
		t.Fatalf("a rang for a changed key: %+v", in)
	case <-time.After(200 * time.Millisecond):
	}
	if err := b2.mod.Hangup(); err != nil {
		t.Fatal(err)
	}

	// Once the user accepts the new key, calls go through again.
	if _, err := a.cl.AcceptKey(ctxT(t), b.alias); err != nil {
		t.Fatal(err)
	}
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	b2.waitIncoming(5 * time.Second)
	// The old device of the alias cannot open what was sealed for the new key.
	b.waitDrops("decrypt", 1)
}

func TestAcceptedKeyRetiresCachedSession(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	// b calls a twice; a rejects. The first offer makes a look b's keys up
	// (and pin them); the second is opened with the session a holds,
	// without a lookup.
	ring := func(from *peer) {
		t.Helper()
		if err := from.mod.Call(ctxT(t), a.alias, Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		a.waitIncoming(5 * time.Second)
		if err := a.mod.Reject(); err != nil {
			t.Fatal(err)
		}
		from.waitState(StateRejected, 5*time.Second)
	}
	ring(b)
	lookups := a.keyLookups()
	if lookups == 0 {
		t.Fatal("a never looked b's keys up")
	}
	ring(b)
	if n := a.keyLookups(); n != lookups {
		t.Errorf("a looked keys up %d more times for a known, unchanged peer", n-lookups)
	}

	// b's alias moves to a new X25519 key, and a's user accepts it.
	b2 := newKeyDevice(t, b, "b2")
	if _, err := a.cl.AcceptKey(ctxT(t), b.alias); err != nil {
		t.Fatal(err)
	}

	// The old device still holds its session with a and offers with the
	// old keys: a drops the offer (it does not open under the accepted
	// key) and does not ring.
	before := a.drops("decrypt")
	if err := b.mod.Call(ctxT(t), a.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	a.waitDrops("decrypt", before+1)
	select {
	case in := <-a.incoming:
		t.Fatalf("a rang for the old key after accepting the new one: %+v", in)
	case <-time.After(200 * time.Millisecond):
	}
	if st := a.mod.State().Get(); st.State.Active() {
		t.Fatalf("a is in a call with the old key: %+v", st)
	}
	if err := b.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	// The new device, with the accepted key, gets through.
	ring(b2)
}

func TestRekey(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 10 })
	if !a.mod.forceRekey() {
		t.Fatal("no call to rekey")
	}
	waitEpoch(5*time.Second, 1, a, b)
	// Media keeps flowing under the new keys, without a frame lost to the
	// switch.
	for i, st := range waitMoreAudio(5*time.Second, "audio after the rekey", 50, a, b) {
		p := []*peer{a, b}[i]
		if st.DecryptErrors != 0 {
			t.Errorf("%s: %d frames failed to decrypt around the rekey", p.name, st.DecryptErrors)
		}
	}
	// A second rekey, from the other side.
	if !b.mod.forceRekey() {
		t.Fatal("no call to rekey")
	}
	waitEpoch(5*time.Second, 2, a, b)
	if n := len(a.sig.sentOf(wire.TypeCallRekey)) + len(b.sig.sentOf(wire.TypeCallRekey)); n != 4 {
		t.Errorf("%d call_rekey sent, want 4 (two requests, two replies)", n)
	}
}

// newKeyDevice registers a new device for p's alias: p's signing key with a
// new X25519 key (the relay keeps the alias), so that to its peers p's keys
// changed. p stays connected with the old keys.
func newKeyDevice(t *testing.T, p *peer, name string) *peer {
	t.Helper()
	agree, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := newPeer(t, name, withIdentity(&identity.Identity{SigningKey: p.id.SigningKey, AgreementKey: agree}))
	if d.alias != p.alias {
		t.Fatalf("re-registration gave alias %s, want %s", d.alias, p.alias)
	}
	return d
}

// callAndHangUp places one connected call from a to b and hangs it up: a
// then holds a signaling session with b.
func callAndHangUp(t *testing.T, a, b *peer) {
	t.Helper()
	connect(t, a, b, Media{Audio: true})
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitState(StateHangup, 5*time.Second)
}

func TestKeyChangedAfterHeldSession(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	callAndHangUp(t, a, b)
	// b's alias moves to a new X25519 key; the old device stays online.
	newKeyDevice(t, b, "b2")
	sub := b.mod.State().Subscribe()
	defer sub.Unsubscribe()
	first := (<-sub.C()).CallID

	// a's offer goes out with the session it holds (sealed to the pinned
	// keys), then the fresh lookup (slow here, so that it is not in before
	// the offer is ready) finds the change: Call fails as it does without
	// a held session, and a tells the peer.
	a.slowKeyLookups(time.Second)
	err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true})
	if !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("Call: %v, want client.ErrKeyChanged", err)
	}
	if st := a.mod.State().Get(); st.State != StateEnded || st.Reason != ReasonError {
		t.Errorf("a's state %+v, want ended (error)", st)
	}
	if n := len(a.sig.sentOf(wire.TypeCallHangup)); n != 2 {
		t.Errorf("a sent %d call_hangup, want 2 (one per call)", n)
	}
	// The old device, which the offer was sealed to, rang and stops.
	if in := b.waitIncoming(5 * time.Second); in.from != a.alias {
		t.Fatalf("b rang for %+v, want a call from %s", in, a.alias)
	}
	deadline := time.After(5 * time.Second)
	for ended := false; !ended; {
		select {
		case st := <-sub.C():
			ended = st.CallID != first && st.State.Terminal()
		case <-deadline:
			t.Fatalf("b's second call did not end: %+v", b.mod.State().Get())
		}
	}
	// The change is known now: the next call is refused before any offer.
	offers := len(a.sig.sentOf(wire.TypeCallOffer))
	if err := a.mod.Call(ctxT(t), b.alias, Media{Audio: true}); !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("Call again: %v, want client.ErrKeyChanged", err)
	}
	if n := len(a.sig.sentOf(wire.TypeCallOffer)); n != offers {
		t.Errorf("a sent %d more offers to a known changed key", n-offers)
	}
}

func TestHeldSessionKeyLookupFails(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	callAndHangUp(t, a, b)
	// With a session held for b, a key lookup that fails for another
	// reason than a changed key says nothing against the pinned keys the
	// offer is sealed to: the call goes through.
	a.failKeyLookups(true)
	lookups := a.keyLookups()
	connect(t, a, b, Media{Audio: true})
	if a.keyLookups() == lookups {
		t.Error("a did not check b's keys")
	}
}

// TestKeysWipedAtEnd: an ended call keeps no key material (forward
// secrecy): its media keys are closed, its ephemeral keys forgotten, and
// Stats still has its figures.
func TestKeysWipedAtEnd(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	connect(t, a, b, Media{Audio: true})
	a.waitStats(5*time.Second, "audio", func(s Stats) bool { return s.AudioFramesReceived >= 5 })
	sa, sb := a.mod.curSession(), b.mod.curSession()
	sa.m.mu.Lock()
	enc := sa.enc
	sa.m.mu.Unlock()
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	b.waitEnd(5 * time.Second)
	<-sb.done
	for _, s := range []*session{sa, sb} {
		if held := s.heldKeys(); len(held) > 0 {
			t.Errorf("%s: the ended call still holds %v", s.m.sig.Alias(), held)
		}
	}
	if _, err := enc.Encrypt(nil, []byte{0xfc, 1, 2}, e2ee.KindOpus); !errors.Is(err, e2ee.ErrClosed) {
		t.Errorf("the ended call's Encryptor still encrypts: %v", err)
	}
	if st := a.mod.Stats(); st.CallID != sa.id || st.AudioFramesReceived < 5 {
		t.Errorf("Stats after the end: %+v", st)
	}
}

// TestKeyLookupOffTheWorker: a slow key lookup for one caller's offer does
// not hold up the signaling of the call in progress: its hangup still
// arrives at once.
func TestKeyLookupOffTheWorker(t *testing.T) {
	checkLeaks(t)
	a, b := newPair(t)
	c := newPeer(t, "c")
	connect(t, a, b, Media{Audio: true})
	b.slowKeyLookups(20 * time.Second) // b looks up c's keys for 20 s
	lookups := b.keyLookups()
	if err := c.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); b.keyLookups() == lookups; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b never looked up c's keys")
		}
	}
	if err := a.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	// Well inside the lookup's 20 s: the hangup did not wait for it.
	if st := b.waitEnd(10 * time.Second); st.State != StateHangup {
		t.Errorf("b: %+v", st)
	}
	if err := c.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
}

// TestFailedLookupCached: after the keys of an offer's sender could not be
// looked up, that sender's next offers are dropped without a lookup for a
// while (a junk offer costs no round trip each).
func TestFailedLookupCached(t *testing.T) {
	checkLeaks(t)
	b, c := newPeer(t, "b"), newPeer(t, "c")
	b.failKeyLookups(true)
	for i := range 3 {
		if err := c.mod.Call(ctxT(t), b.alias, Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		want := uint64(i + 1)
		b.waitStats(5*time.Second, "dropped offers", func(s Stats) bool { return s.SignalingDrops["peer_keys"] >= want })
		if err := c.mod.Hangup(); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.keyLookups(); n != 1 {
		t.Errorf("b looked up c's keys %d times for 3 offers, want 1", n)
	}
}
