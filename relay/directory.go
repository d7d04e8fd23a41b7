package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcall/duet/identity"
)

// Directory errors.
var (
	// ErrNotFound: no alias with that name is registered.
	ErrNotFound = errors.New("relay: alias not found")
	// ErrBadChallenge: a registration challenge is unknown, expired or used.
	ErrBadChallenge = errors.New("relay: unknown, expired or already used challenge (request a new one)")
	// ErrBadSignature: a signature does not verify with the registered key.
	ErrBadSignature = errors.New("relay: bad signature")
	// ErrBadKey: a public key has the wrong size.
	ErrBadKey = errors.New("relay: public keys must be 32 bytes")
	// ErrDirectory: the JetStream KV directory failed.
	ErrDirectory = errors.New("relay: directory unavailable")
)

// Domain-separation prefixes of the signed messages (docs/PROTOCOL.md §9).
const (
	registerDomain = "duet/v1/register"
	wsAuthDomain   = "duet/v1/ws-auth"
)

// ChallengeTTL is how long a registration challenge stays valid.
const ChallengeTTL = 60 * time.Second

// challengeSize is the size of every challenge, registration or WebSocket.
const challengeSize = 32

// JetStream KV buckets of the directory.
const (
	bucketAliases    = "duet_aliases"      // alias -> record (JSON)
	bucketKeys       = "duet_signing_keys" // hex(ed25519) -> alias
	bucketChallenges = "duet_challenges"   // base64url(challenge) -> expiry (Unix ms), TTL ChallengeTTL
	bucketConfig     = "duet_config"       // shared relay configuration
	bucketSessions   = "duet_sessions"     // alias -> sessions per node (JSON), in memory; see clusterLimits
	configTokenKey   = "token-hmac-key"    // in bucketConfig: the bearer token key
)

// record is an alias's directory entry: its public keys.
type record struct {
	Ed25519   ed25519.PublicKey `json:"ed25519"`
	X25519    []byte            `json:"x25519"`
	CreatedAt time.Time         `json:"created_at"`
}

// directory is the alias directory in JetStream KV, shared by every relay
// node on the same NATS and persistent across restarts.
type directory struct {
	aliases    kvBucket
	keys       kvBucket
	challenges kvBucket
	config     kvBucket
	sessions   kvBucket
	nc         *nats.Conn
	reads      readPolicy
	m          *metrics     // nil-safe
	replicas   int          // the buckets' replica count after opening
	lastOK     atomic.Int64 // Unix ns of the last successful write
	now        func() time.Time
	rand       io.Reader
	onPurge    func(key string) error // tunables.onChallengePurge
}

// openDirectory creates or updates the buckets; replicas and lower are
// Options.KVReplicas and Options.KVReplicasLower.
func openDirectory(ctx context.Context, js jetstream.JetStream, replicas int, lower bool, now func() time.Time, log *slog.Logger) (*directory, error) {
	d := &directory{now: now, rand: rand.Reader, nc: js.Conn()}
	for _, b := range []struct {
		kv  *kvBucket
		cfg jetstream.KeyValueConfig
	}{
		{&d.aliases, jetstream.KeyValueConfig{Bucket: bucketAliases, Description: "duet alias -> public keys", MaxValueSize: 4096}},
		{&d.keys, jetstream.KeyValueConfig{Bucket: bucketKeys, Description: "duet signing key -> alias", MaxValueSize: 1024}},
		{&d.challenges, jetstream.KeyValueConfig{Bucket: bucketChallenges, Description: "duet single-use registration challenges", MaxValueSize: 1024, TTL: ChallengeTTL}},
		{&d.config, jetstream.KeyValueConfig{Bucket: bucketConfig, Description: "duet relay shared configuration", MaxValueSize: 1024}},
		// Session counts describe live connections: kept in memory, they
		// vanish with the NATS cluster, as the sessions do.
		{&d.sessions, jetstream.KeyValueConfig{Bucket: bucketSessions, Description: "duet sessions per alias and relay node", MaxValueSize: 4096, Storage: jetstream.MemoryStorage}},
	} {
		// Storage: FileStorage (the zero value) unless set above.
		b.cfg.History = 1
		n, err := bucketReplicas(ctx, js, b.cfg.Bucket, replicas, lower, log)
		if err != nil {
			return nil, err
		}
		b.cfg.Replicas = n
		d.replicas = max(d.replicas, n)
		kv, err := js.CreateOrUpdateKeyValue(ctx, b.cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: creating bucket %s: %w", ErrDirectory, b.cfg.Bucket, err)
		}
		*b.kv = kvBucket{name: b.cfg.Bucket, kv: kv}
	}
	return d, nil
}

// bucketReplicas is the replica count to give a bucket: want (> 0) for a
// new bucket or one with fewer replicas; the bucket's current count when
// want is unset, or when want is lower and lower is false (a node started
// with a smaller --kv-replicas never scales a clustered directory down
// unless told to: it warns and keeps the count); 1 for a new bucket without
// want.
func bucketReplicas(ctx context.Context, js jetstream.JetStream, bucket string, want int, lower bool, log *slog.Logger) (int, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return max(want, 1), nil
	}
	cur := 0
	if err == nil {
		var st jetstream.KeyValueStatus
		if st, err = kv.Status(ctx); err == nil {
			cur = 1
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.Config().Replicas > 0 {
				cur = bs.Config().Replicas
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: reading bucket %s: %w", ErrDirectory, bucket, err)
	}
	switch {
	case want <= 0 || want == cur:
		return cur, nil
	case want > cur:
		log.Info("relay: raising the directory's replicas", "bucket", bucket, "from", cur, "to", want)
		return want, nil
	case lower:
		log.Warn("relay: lowering the directory's replicas (--kv-replicas-lower)", "bucket", bucket, "from", cur, "to", want)
		return want, nil
	default:
		log.Warn("relay: --kv-replicas is below the directory's replica count; keeping it (pass --kv-replicas-lower to lower it)",
			"bucket", bucket, "kv_replicas", want, "keeping", cur)
		return cur, nil
	}
}

// TokenKey returns the bearer-token HMAC key, creating it on first use. Every
// node reads the same key: the first node's Create wins.
func (d *directory) TokenKey(ctx context.Context) ([]byte, error) {
	for range 3 {
		e, err := d.get(ctx, &d.config, configTokenKey, false)
		if err == nil && len(e.value) == tokenKeySize {
			return e.value, nil
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: reading the token key: %w", ErrDirectory, err)
		}
		key := make([]byte, tokenKeySize)
		if _, err := io.ReadFull(d.rand, key); err != nil {
			return nil, err
		}
		if _, err := d.wrote(d.config.kv.Create(ctx, configTokenKey, key)); err == nil {
			return key, nil
		} else if !casConflict(err) {
			return nil, fmt.Errorf("%w: storing the token key: %w", ErrDirectory, err)
		}
	}
	return nil, fmt.Errorf("%w: token key is invalid in bucket %s", ErrDirectory, bucketConfig)
}

// NewChallenge stores and returns a fresh single-use registration challenge.
func (d *directory) NewChallenge(ctx context.Context) ([]byte, error) {
	ch := make([]byte, challengeSize)
	if _, err := io.ReadFull(d.rand, ch); err != nil {
		return nil, err
	}
	exp := d.now().Add(ChallengeTTL).UnixMilli()
	if _, err := d.wrote(d.challenges.kv.Create(ctx, challengeKey(ch), strconv.AppendInt(nil, exp, 10))); err != nil {
		return nil, fmt.Errorf("%w: storing a challenge: %w", ErrDirectory, err)
	}
	return ch, nil
}

// ConsumeChallenge uses up ch. It fails with ErrBadChallenge when ch is
// unknown, expired or already used, on this node or any other: the purge is
// conditional on the revision read, so of two concurrent uses one fails.
// A purge refused although nobody used ch (see cas.go: right after its
// creation, NATS may refuse it) is retried: the loser of two uses finds
// ch gone when it reads it again.
func (d *directory) ConsumeChallenge(ctx context.Context, ch []byte) error {
	if len(ch) != challengeSize {
		return ErrBadChallenge
	}
	ctx, cancel := context.WithTimeout(ctx, dirTimeout)
	defer cancel()
	key := challengeKey(ch)
	for attempt := 0; ; attempt++ {
		// After a conflict, from the leader: what won, if anything did.
		e, err := d.get(ctx, &d.challenges, key, attempt > 0)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrBadChallenge
		}
		if err != nil {
			return fmt.Errorf("%w: reading a challenge: %w", ErrDirectory, err)
		}
		err = d.purgeChallenge(ctx, key, e.rev)
		if err == nil {
			exp, err := strconv.ParseInt(string(e.value), 10, 64)
			if err != nil || d.now().UnixMilli() >= exp {
				return ErrBadChallenge
			}
			return nil
		}
		if !casConflict(err) || !casBackoff(ctx, attempt) {
			return fmt.Errorf("%w: consuming a challenge: %w", ErrDirectory, err)
		}
	}
}

// purgeChallenge purges key if its revision is still rev.
func (d *directory) purgeChallenge(ctx context.Context, key string, rev uint64) error {
	if h := d.onPurge; h != nil {
		if err := h(key); err != nil {
			return err
		}
	}
	_, err := d.wrote(0, d.challenges.kv.Purge(ctx, key, jetstream.LastRevision(rev)))
	return err
}

func challengeKey(ch []byte) string { return base64.RawURLEncoding.EncodeToString(ch) }

// RegisterMessage returns the bytes a client signs to register (§9.1).
func RegisterMessage(challenge, x25519Pub []byte) []byte {
	m := make([]byte, 0, len(registerDomain)+len(challenge)+len(x25519Pub))
	m = append(m, registerDomain...)
	m = append(m, challenge...)
	return append(m, x25519Pub...)
}

// WSAuthMessage returns the bytes a client signs to authenticate a WebSocket
// session (§9.2).
func WSAuthMessage(challenge []byte) []byte {
	return append([]byte(wsAuthDomain), challenge...)
}

// Register consumes the challenge, verifies the signature and returns the
// alias of ed: a new one (created) or the one ed registered before, whose
// X25519 key is then updated.
func (d *directory) Register(ctx context.Context, ed, x, challenge, sig []byte) (alias identity.Alias, created bool, err error) {
	if len(ed) != ed25519.PublicKeySize || len(x) != 32 {
		return "", false, ErrBadKey
	}
	if err := d.ConsumeChallenge(ctx, challenge); err != nil {
		return "", false, err
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(ed25519.PublicKey(ed), RegisterMessage(challenge, x), sig) {
		return "", false, ErrBadSignature
	}
	return d.assign(ctx, ed, x)
}

// assign maps ed to an alias. The signing-key index is claimed with Create, so
// of two concurrent registrations of one key a single alias wins; the alias
// record is also claimed with Create, so two keys never share an alias. A
// crash between the two steps leaves an index entry without a record, which
// the next registration of that key repairs.
func (d *directory) assign(ctx context.Context, ed, x []byte) (identity.Alias, bool, error) {
	keyID := hex.EncodeToString(ed)
	created, fresh := false, false
	for attempt := range 16 {
		if attempt > 0 && !casBackoff(ctx, attempt) { // after a conflict (see cas.go) or a taken alias
			return "", false, fmt.Errorf("%w: %w", ErrDirectory, ctx.Err())
		}
		var alias identity.Alias
		var keyRev uint64
		e, err := d.get(ctx, &d.keys, keyID, fresh)
		fresh = true // a retry follows a conflict: read what won
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			alias, err = d.randomAlias()
			if err != nil {
				return "", false, err
			}
			keyRev, err = d.wrote(d.keys.kv.Create(ctx, keyID, []byte(alias)))
			if casConflict(err) {
				continue // a concurrent registration of the same key won
			}
			if err != nil {
				return "", false, fmt.Errorf("%w: %w", ErrDirectory, err)
			}
			created = true
		case err != nil:
			return "", false, fmt.Errorf("%w: %w", ErrDirectory, err)
		default:
			alias, keyRev = identity.Alias(e.value), e.rev
			if !alias.Valid() {
				return "", false, fmt.Errorf("%w: corrupt signing-key index entry", ErrDirectory)
			}
		}

		ok, err := d.claimAlias(ctx, alias, ed, x)
		if err != nil {
			return "", false, err
		}
		if ok {
			return alias, created, nil
		}
		// The alias belongs to another key (only after a crash left a stale
		// index entry, or a collision raced): move this key to a fresh alias.
		next, err := d.randomAlias()
		if err != nil {
			return "", false, err
		}
		if _, err := d.wrote(d.keys.kv.Update(ctx, keyID, []byte(next), keyRev)); err != nil && !casConflict(err) {
			return "", false, fmt.Errorf("%w: %w", ErrDirectory, err)
		}
	}
	return "", false, fmt.Errorf("%w: could not assign an alias, try again", ErrDirectory)
}

// claimAlias makes sure alias's record holds ed (creating it if needed) and x.
// It returns false if the alias belongs to a different signing key.
func (d *directory) claimAlias(ctx context.Context, alias identity.Alias, ed, x []byte) (bool, error) {
	for i := range 16 {
		// A retry follows a conflict: read what won, from the leader.
		if i > 0 && !casBackoff(ctx, i) {
			return false, fmt.Errorf("%w: %w", ErrDirectory, ctx.Err())
		}
		e, err := d.get(ctx, &d.aliases, string(alias), i > 0)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rec, _ := json.Marshal(record{Ed25519: ed, X25519: x, CreatedAt: d.now().UTC()})
			_, err := d.wrote(d.aliases.kv.Create(ctx, string(alias), rec))
			if casConflict(err) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("%w: %w", ErrDirectory, err)
			}
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrDirectory, err)
		}
		var rec record
		if err := json.Unmarshal(e.value, &rec); err != nil {
			return false, fmt.Errorf("%w: corrupt record for %s: %w", ErrDirectory, alias, err)
		}
		if !bytes.Equal(rec.Ed25519, ed) {
			return false, nil
		}
		if bytes.Equal(rec.X25519, x) {
			return true, nil
		}
		rec.X25519 = x
		b, _ := json.Marshal(rec)
		_, err = d.wrote(d.aliases.kv.Update(ctx, string(alias), b, e.rev))
		if casConflict(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrDirectory, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("%w: alias %s keeps changing, try again", ErrDirectory, alias)
}

// Lookup returns alias's record or ErrNotFound.
func (d *directory) Lookup(ctx context.Context, alias identity.Alias) (record, error) {
	if !alias.Valid() {
		return record{}, ErrNotFound
	}
	e, err := d.get(ctx, &d.aliases, string(alias), false)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{}, ErrNotFound
	}
	if err != nil {
		return record{}, fmt.Errorf("%w: %w", ErrDirectory, err)
	}
	var rec record
	if err := json.Unmarshal(e.value, &rec); err != nil || len(rec.Ed25519) != ed25519.PublicKeySize {
		return record{}, fmt.Errorf("%w: corrupt record for %s", ErrDirectory, alias)
	}
	return rec, nil
}

// wrote counts a write's outcome and passes it on.
func (d *directory) wrote(rev uint64, err error) (uint64, error) {
	switch {
	case err == nil:
		d.lastOK.Store(time.Now().UnixNano())
		d.m.dirOp("write", "ok")
	case casConflict(err):
		d.m.dirOp("write", "conflict")
	default:
		d.m.dirOp("write", errorKind(err))
	}
	return rev, err
}

// lastWrite is when the directory last took a write (the zero time: never).
func (d *directory) lastWrite() time.Time {
	if ns := d.lastOK.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// probe writes this node's readiness key (node is a unique node id) to
// the challenges bucket, where it expires like a challenge.
func (d *directory) probe(ctx context.Context, node string) error {
	_, err := d.wrote(d.challenges.kv.Put(ctx, "readyz."+strings.ReplaceAll(node, ".", "-"), nil))
	return err
}

// randomAlias draws u + 8 uniformly random digits.
func (d *directory) randomAlias() (identity.Alias, error) {
	const n = 100_000_000
	const limit = (1 << 32) / n * n // rejection sampling keeps it uniform
	var b [4]byte
	for {
		if _, err := io.ReadFull(d.rand, b[:]); err != nil {
			return "", err
		}
		v := binary.BigEndian.Uint32(b[:])
		if v < limit {
			return identity.Alias(fmt.Sprintf("u%08d", v%n)), nil
		}
	}
}
