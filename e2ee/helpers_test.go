package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"sync"
	"testing"
	"time"
)

// party is one side of a call with fixed, deterministic keys.
type party struct {
	ed  ed25519.PublicKey
	eph *ecdh.PrivateKey
}

func newParty(t testing.TB, fill byte) party {
	t.Helper()
	edPriv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{fill}, ed25519.SeedSize))
	eph, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{fill ^ 0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return party{ed: edPriv.Public().(ed25519.PublicKey), eph: eph}
}

const testCallID = "call_0123456789"

// keysFor derives self's send and recv keys for a call with peer.
func keysFor(t testing.TB, self, peer party, epoch uint32) (send, recv DirectionKey) {
	t.Helper()
	send, recv, err := DeriveKeys(self.eph, peer.eph.PublicKey().Bytes(), testCallID, self.ed, peer.ed, epoch)
	if err != nil {
		t.Fatalf("DeriveKeys: %v", err)
	}
	return send, recv
}

// fakeClock is an injectable clock that only moves when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pair is Alice's sending direction: her Encryptor and Bob's Decryptor.
type pair struct {
	alice, bob party
	enc        *Encryptor
	dec        *Decryptor
	clock      *fakeClock
}

func newPair(t testing.TB, encOpts *EncryptorOptions) *pair {
	t.Helper()
	p := &pair{alice: newParty(t, 1), bob: newParty(t, 2), clock: newFakeClock()}
	send, _ := keysFor(t, p.alice, p.bob, 0)
	_, recv := keysFor(t, p.bob, p.alice, 0)
	var err error
	if p.enc, err = NewEncryptor(send, encOpts); err != nil {
		t.Fatal(err)
	}
	if p.dec, err = NewDecryptor(recv, &DecryptorOptions{Now: p.clock.Now}); err != nil {
		t.Fatal(err)
	}
	return p
}

// rekey moves both ends to epoch n at the current fake time.
func (p *pair) rekey(t testing.TB, n uint32) {
	t.Helper()
	send, _ := keysFor(t, p.alice, p.bob, n)
	_, recv := keysFor(t, p.bob, p.alice, n)
	if err := p.enc.SetKey(send); err != nil {
		t.Fatalf("SetKey(%d): %v", n, err)
	}
	if err := p.dec.AddKey(recv); err != nil {
		t.Fatalf("AddKey(%d): %v", n, err)
	}
}

func (p *pair) encrypt(t testing.TB, frame []byte, kind FrameKind) []byte {
	t.Helper()
	out, err := p.enc.Encrypt(nil, frame, kind)
	if err != nil {
		t.Fatalf("Encrypt(%d bytes, %v): %v", len(frame), kind, err)
	}
	return out
}

// testFrame returns a deterministic frame of n bytes whose first byte is first.
func testFrame(n int, first byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i*7 + 3)
	}
	if n > 0 {
		f[0] = first
	}
	return f
}

// Frame first bytes: VP8 P bit clear (key frame) and set (delta frame).
const (
	vp8Key   = 0x10
	vp8Delta = 0x31
	opusTOC  = 0xfc
)
