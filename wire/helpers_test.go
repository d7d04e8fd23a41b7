package wire

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/identity"
)

// fakeClock is an injectable clock for tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.UnixMilli(1_780_000_000_000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// party is a user's long-term keys, derived from a one-byte seed.
type party struct {
	alias identity.Alias
	sign  ed25519.PrivateKey
	agree *ecdh.PrivateKey
}

func newParty(t testing.TB, seed byte, alias identity.Alias) party {
	t.Helper()
	var s [32]byte
	for i := range s {
		s[i] = seed
	}
	agree, err := ecdh.X25519().NewPrivateKey(s[:])
	if err != nil {
		t.Fatal(err)
	}
	return party{alias: alias, sign: ed25519.NewKeyFromSeed(s[:]), agree: agree}
}

func (p party) signPub() ed25519.PublicKey { return p.sign.Public().(ed25519.PublicKey) }
func (p party) agreePub() []byte           { return p.agree.PublicKey().Bytes() }

// session returns p's session with peer on clock and a guard.
func (p party) session(t testing.TB, peer party, clock *fakeClock, guard *ReplayGuard) *Session {
	t.Helper()
	key, err := SessionKey(p.agree, p.signPub(), peer.signPub(), peer.agreePub())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(SessionConfig{SigningKey: p.sign, PeerSigningKey: peer.signPub(), Key: key, Replay: guard, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pair is Alice and Bob with sessions to each other on one fake clock.
type pair struct {
	alice, bob party
	a, b       *Session // a: Alice's session (seals to Bob), b: Bob's
	clock      *fakeClock
}

func newPair(t testing.TB) *pair {
	t.Helper()
	p := &pair{
		alice: newParty(t, 1, "u11111111"),
		bob:   newParty(t, 2, "u22222222"),
		clock: newFakeClock(),
	}
	p.a = p.alice.session(t, p.bob, p.clock, nil)
	p.b = p.bob.session(t, p.alice, p.clock, nil)
	return p
}

var testEPK = func() []byte {
	b := make([]byte, EPKSize)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}()

const testSDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"

// msg returns a message from Alice to Bob with body b.
func (p *pair) msg(b Body) Message {
	return Message{Type: b.MessageType(), From: p.alice.alias, To: p.bob.alias, CallID: "call-1", Body: b}
}

func (p *pair) offer() Message { return p.msg(OfferPayload{SDP: testSDP, EPK: testEPK}) }

// seal seals m with Alice's session.
func (p *pair) seal(t testing.TB, m Message) *Envelope {
	t.Helper()
	env, err := p.a.Seal(m)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return env
}

// inner returns the fields of a valid call_offer inner payload from Alice
// without _sig, as a map tests can edit before sealRaw.
func (p *pair) inner() map[string]any {
	nonce := make([]byte, NonceSize)
	_, _ = rand.Read(nonce)
	return map[string]any{
		"type":    "call_offer",
		"from":    string(p.alice.alias),
		"to":      string(p.bob.alias),
		"call_id": "call-1",
		"sdp":     testSDP,
		"epk":     base64.StdEncoding.EncodeToString(testEPK),
		"_ts":     p.clock.Now().UnixMilli(),
		"_nonce":  base64.StdEncoding.EncodeToString(nonce),
	}
}

// sealRaw signs fields with s's key (adding _sig), encrypts them and wraps
// them in an envelope with Alice and Bob's route, of the fields' type if it
// is a call type and call_offer otherwise.
func (p *pair) sealRaw(t testing.TB, s *Session, fields map[string]any) *Envelope {
	t.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	typ := TypeCallOffer
	if s, ok := fields["type"].(string); ok && Type(s).IsCall() {
		typ = Type(s)
	}
	env, err := s.sealMembers(typ, p.alice.alias, p.bob.alias, "call-1", v.obj, randIV())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// sealBlob encrypts blob as is (no signature added) in Alice's call_offer
// envelope.
func (p *pair) sealBlob(t testing.TB, blob string) *Envelope {
	t.Helper()
	env, err := p.a.sealBlob(TypeCallOffer, p.alice.alias, p.bob.alias, "call-1", []byte(blob), randIV())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func randIV() [IVSize]byte {
	var iv [IVSize]byte
	_, _ = rand.Read(iv[:])
	return iv
}

func ptr[T any](v T) *T { return &v }
