package relay

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcall/duet/identity"
)

func TestRegister(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	id := newID(t)
	code, res := r.tryRegister(t, id, r.challenge(t), id.priv)
	if code != 200 || !res.Alias.Valid() || !res.Created {
		t.Fatalf("first registration: %d %+v", code, res)
	}
	// The same signing key again, from a "new device" with a new X25519 key.
	id.x[0] ^= 0xff
	code, res2 := r.tryRegister(t, id, r.challenge(t), id.priv)
	if code != 200 || res2.Alias != res.Alias || res2.Created {
		t.Fatalf("second registration: %d %+v, want alias %s created false", code, res2, res.Alias)
	}
	other := r.register(t, newID(t))
	if other == res.Alias {
		t.Fatal("two keys got one alias")
	}
	c := r.connect(t, id, res.Alias)
	var keys struct {
		Alias   identity.Alias `json:"alias"`
		Ed25519 []byte         `json:"ed25519"`
		X25519  []byte         `json:"x25519"`
	}
	if code := r.do(t, "GET", "/api/v1/keys/"+string(res.Alias), c.token, nil, &keys); code != 200 {
		t.Fatalf("keys: %d", code)
	}
	if keys.Alias != res.Alias || string(keys.Ed25519) != string(id.pub) || string(keys.X25519) != string(id.x) {
		t.Fatalf("keys %+v: want the updated x25519 key", keys)
	}
	if got := r.metric(t, `duet_relay_registrations_total{result="created"}`); got != 2 {
		t.Errorf("registrations created = %v, want 2", got)
	}
}

func TestRegisterErrors(t *testing.T) {
	now := time.Now()
	var skew atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(skew.Load())) }
	r := startRelay(t, Options{Now: clock}, nil)
	id := newID(t)

	for _, body := range []any{"not json", map[string]string{"ed25519": "x"}, map[string]any{"ed25519": 5},
		map[string]string{"ed25519": "AAAA", "x25519": "AAAA", "challenge": "AAAA", "signature": "AAAA"},
		map[string]string{"ed25519": "!!", "x25519": "AAAA", "challenge": "AAAA", "signature": "AAAA"},
		map[string]string{"ed25519": "AAAA", "x25519": "AAAA", "challenge": "AAAA", "signature": "AAAA", "extra": "x"},
	} {
		var res registerResult
		if code := r.do(t, "POST", "/api/v1/register", "", body, &res); code != http.StatusBadRequest || res.Error != "bad_request" || res.Message == "" {
			t.Errorf("register %v: %d %+v, want 400 bad_request", body, code, res)
		}
	}

	// Base64 is strict (PROTOCOL conventions): a line break, or non-zero
	// padding bits, in an otherwise valid request is refused as such.
	ch := r.challenge(t)
	sig := b64.EncodeToString(ed25519.Sign(id.priv, RegisterMessage(ch, id.x)))
	x := b64.EncodeToString(id.x) // 32 bytes: 43 characters and "=", the last one's 2 low bits padding (zero)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	badBits := x[:42] + string(alphabet[strings.IndexByte(alphabet, x[42])+1]) + "="
	for name, body := range map[string]map[string]string{
		"a line break in the signature":   {"ed25519": b64.EncodeToString(id.pub), "x25519": x, "challenge": b64.EncodeToString(ch), "signature": sig[:20] + "\n" + sig[20:]},
		"non-zero padding bits in x25519": {"ed25519": b64.EncodeToString(id.pub), "x25519": badBits, "challenge": b64.EncodeToString(ch), "signature": sig},
	} {
		var res registerResult
		if code := r.do(t, "POST", "/api/v1/register", "", body, &res); code != http.StatusBadRequest || res.Error != "bad_request" || !strings.Contains(res.Message, "must be standard base64") {
			t.Errorf("register with %s: %d %+v, want 400 bad_request: ... must be standard base64", name, code, res)
		}
	}

	// Unknown challenge.
	if code, res := r.tryRegister(t, id, make([]byte, 32), id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("unknown challenge: %d %+v", code, res)
	}
	// Bad signature (signed by another key): the challenge is used up too.
	ch = r.challenge(t)
	if code, res := r.tryRegister(t, id, ch, newID(t).priv); code != 401 || res.Error != "bad_signature" {
		t.Errorf("bad signature: %d %+v", code, res)
	}
	if code, res := r.tryRegister(t, id, ch, id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("challenge reused after a bad signature: %d %+v", code, res)
	}
	// Replayed challenge.
	ch = r.challenge(t)
	if code, _ := r.tryRegister(t, id, ch, id.priv); code != 200 {
		t.Fatalf("register: %d", code)
	}
	if code, res := r.tryRegister(t, id, ch, id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("replayed challenge: %d %+v", code, res)
	}
	// Expired challenge.
	ch = r.challenge(t)
	skew.Store(int64(61 * time.Second))
	if code, res := r.tryRegister(t, id, ch, id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("expired challenge: %d %+v", code, res)
	}
	if got := r.metric(t, `duet_relay_auth_failures_total{reason="register_bad_challenge"}`); got != 4 {
		t.Errorf("auth failures bad_challenge = %v, want 4", got)
	}
}

func TestConcurrentRegistrations(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	const n = 8
	// n devices register one key at once: one alias, created once.
	id := newID(t)
	chs := make([][]byte, n)
	for i := range chs {
		chs[i] = r.challenge(t)
	}
	results := make([]registerResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, res := r.tryRegister(t, id, chs[i], id.priv)
			if code != 200 {
				t.Errorf("register %d: %d %+v", i, code, res)
			}
			results[i] = res
		})
	}
	wg.Wait()
	created := 0
	for _, res := range results {
		if res.Alias != results[0].Alias {
			t.Fatalf("one key got two aliases: %+v", results)
		}
		if res.Created {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d registrations report created, want 1: %+v", created, results)
	}
	// n different keys at once: n distinct aliases.
	aliases := make([]identity.Alias, n)
	for i := range n {
		wg.Go(func() { aliases[i] = r.register(t, newID(t)) })
	}
	wg.Wait()
	seen := map[identity.Alias]bool{results[0].Alias: true}
	for _, a := range aliases {
		if seen[a] {
			t.Fatalf("alias %s assigned twice", a)
		}
		seen[a] = true
	}
}

// TestAliasCollision forces the random alias source to repeat itself.
func TestAliasCollision(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	first := r.register(t, newID(t))
	d := r.srv.dir
	// Every alias draw yields the taken alias first, then fresh ones.
	var draws atomic.Int32
	orig := d.rand
	d.rand = readerFunc(func(p []byte) (int, error) {
		if len(p) == 4 && draws.Add(1) <= 3 {
			v := uint32(0)
			for _, c := range first[1:] {
				v = v*10 + uint32(c-'0')
			}
			p[0], p[1], p[2], p[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			return 4, nil
		}
		return orig.Read(p)
	})
	id := newID(t)
	second, created, err := d.assign(t.Context(), id.pub, id.x)
	if err != nil || !created {
		t.Fatalf("assign: %v %v", created, err)
	}
	if second == first || !second.Valid() {
		t.Fatalf("collision: second alias %s, first %s", second, first)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestKeysLookup(t *testing.T) {
	now := time.Now()
	var skew atomic.Int64
	r := startRelay(t, Options{Now: func() time.Time { return now.Add(time.Duration(skew.Load())) }}, nil)
	a, b := r.newUser(t), r.newUser(t)
	ca := r.connect(t, a.id, a.alias)
	path := "/api/v1/keys/" + string(b.alias)

	var e apiError
	if code := r.do(t, "GET", path, "", nil, &e); code != 401 || e.Error != "unauthorized" {
		t.Errorf("no token: %d %+v", code, e)
	}
	for _, tok := range []string{"garbage", "v1." + string(a.alias) + ".99999999999.AAAA", ca.token + "x", ca.token[:len(ca.token)-2]} {
		if code := r.do(t, "GET", path, tok, nil, &e); code != 401 || e.Error != "unauthorized" {
			t.Errorf("token %q: %d %+v", tok, code, e)
		}
	}
	var keys keysResponse
	if code := r.do(t, "GET", path, ca.token, nil, &keys); code != 200 || keys.Alias != b.alias || string(keys.Ed25519) != string(b.id.pub) {
		t.Errorf("lookup: %d %+v", code, keys)
	}
	if code := r.do(t, "GET", "/api/v1/keys/u00000000", ca.token, nil, &e); code != 404 || e.Error != "not_found" {
		t.Errorf("unknown alias: %d %+v", code, e)
	}
	if code := r.do(t, "GET", "/api/v1/keys/bob", ca.token, nil, &e); code != 400 || e.Error != "bad_request" {
		t.Errorf("invalid alias: %d %+v", code, e)
	}
	skew.Store(int64(TokenTTL))
	if code := r.do(t, "GET", path, ca.token, nil, &e); code != 401 || e.Error != "unauthorized" {
		t.Errorf("expired token: %d %+v", code, e)
	}
}

// TestBucketReplicas: a node without a replica setting keeps a bucket's
// count (a clustered directory is never scaled down by a node started
// without the flag); a new bucket gets 1; a setting wins.
func TestBucketReplicas(t *testing.T) {
	r := startRelay(t, Options{}, nil)
	js := r.srv.nats.js
	ctx := context.Background()
	for _, tc := range []struct {
		bucket string
		want   int
		got    int
	}{
		{"duet-no-such-bucket", 0, 1},
		{bucketAliases, 0, 1},
		{bucketAliases, 3, 3},
	} {
		n, err := bucketReplicas(ctx, js, tc.bucket, tc.want, false, testLogger(t))
		if err != nil || n != tc.got {
			t.Errorf("bucketReplicas(%s, %d) = %d, %v; want %d", tc.bucket, tc.want, n, err, tc.got)
		}
	}
}

// wrongLastSequence is the error nats-server answers a revision-checked
// write that it refuses on a replicated stream (see cas.go).
var wrongLastSequence = &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}

// A challenge's purge refused although nobody used the challenge (NATS
// refuses a revision-checked write while the last write to the key is
// still being applied, see cas.go) is retried; one refused because the
// challenge was used meanwhile is not.
func TestChallengePurgeConflict(t *testing.T) {
	var (
		mode    atomic.Int32 // 1: refuse two purges; 2: another node uses the challenge first
		calls   atomic.Int32
		relayOf atomic.Pointer[testRelay]
	)
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.onChallengePurge = func(key string) error {
			n := calls.Add(1)
			switch mode.Load() {
			case 1:
				if n <= 2 {
					return wrongLastSequence
				}
			case 2:
				if n == 1 {
					if err := relayOf.Load().srv.dir.challenges.kv.Purge(context.Background(), key); err != nil {
						return err
					}
					return wrongLastSequence
				}
			}
			return nil
		}
	})
	relayOf.Store(r)
	id := newID(t)

	mode.Store(1)
	ch := r.challenge(t)
	if code, res := r.tryRegister(t, id, ch, id.priv); code != 200 {
		t.Fatalf("register with two purges refused: %d %+v, want 200", code, res)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d purges, want 3 (two refused, then one that went through)", n)
	}
	if code, res := r.tryRegister(t, id, ch, id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("the challenge again: %d %+v, want 401 bad_challenge", code, res)
	}

	mode.Store(2)
	calls.Store(0)
	if code, res := r.tryRegister(t, id, r.challenge(t), id.priv); code != 401 || res.Error != "bad_challenge" {
		t.Errorf("a challenge another node used first: %d %+v, want 401 bad_challenge", code, res)
	}
}

// On a 3-node cluster with R3 buckets, a challenge used at once after it
// was issued is taken: before the retry, NATS refused a few of the purges
// (bad_challenge for a fresh identity) on a busy machine. A challenge used
// by two relays at once is still taken once.
func TestChallengeUsedAtOnceR3(t *testing.T) {
	c := startCluster(t, 3)
	rs := []*testRelay{
		startClusterRelay(t, c, 0, Options{KVReplicas: 3}),
		startClusterRelay(t, c, 1, Options{KVReplicas: 3}),
	}
	ctx := context.Background()
	for i := range 500 {
		r := rs[i%2]
		ch, err := r.srv.dir.NewChallenge(ctx)
		if err != nil {
			t.Fatalf("challenge %d: %v", i, err)
		}
		if i%10 == 0 {
			var errs [2]error
			var wg sync.WaitGroup
			for k, r := range rs {
				wg.Go(func() { errs[k] = r.srv.dir.ConsumeChallenge(ctx, ch) })
			}
			wg.Wait()
			if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs[:]...), ErrBadChallenge) {
				t.Fatalf("challenge %d, used on both relays at once: %v, want one use and one ErrBadChallenge", i, errs)
			}
			continue
		}
		if err := r.srv.dir.ConsumeChallenge(ctx, ch); err != nil {
			t.Fatalf("challenge %d, used at once: %v", i, err)
		}
		if err := r.srv.dir.ConsumeChallenge(ctx, ch); !errors.Is(err, ErrBadChallenge) {
			t.Fatalf("challenge %d, used twice: %v, want ErrBadChallenge", i, err)
		}
	}
}
