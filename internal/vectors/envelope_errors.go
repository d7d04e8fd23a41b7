package vectors

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// CarolMnemonic is a third party's: a signer or session key that is not the
// sender's.
const CarolMnemonic = "letter advice cage absurd amount doctor acoustic avoid letter advice cage above"

// CarolAlias is Carol's alias.
const CarolAlias = identity.Alias("u30000003")

// OpenStep is one envelope a receiver decodes and opens.
type OpenStep struct {
	Envelope string `json:"envelope"` // the text as received from the relay
	OpenAtMs int64  `json:"open_at_ms"`
	// Error is the error every implementation gives, by its Go sentinel
	// name: ErrEnvelope (§2 decoding), ErrCryptoVersion, ErrMalformed,
	// ErrDecrypt, ErrSignature, ErrStale, ErrFuture, ErrReplay,
	// ErrReplayCacheFull, ErrRouteMismatch; "" when the envelope opens.
	Error string `json:"error"`
}

// EnvelopeErrorCase is one envelope_errors.json case: a fresh receiving
// session (nonce cache of ReplayCapacity entries, 0 = the default 65 536)
// opens Before in order, each with its own outcome, then the case itself.
type EnvelopeErrorCase struct {
	Name           string     `json:"name"`
	Step           int        `json:"step"` // the §4.4 step that decides (0: §2 decoding, 11: accepted)
	ReplayCapacity int        `json:"replay_capacity,omitempty"`
	Before         []OpenStep `json:"before,omitempty"`
	OpenStep
}

// EnvelopeErrorFile is envelope_errors.json.
type EnvelopeErrorFile struct {
	Description      string              `json:"description"`
	SenderMnemonic   string              `json:"sender_mnemonic"`
	ReceiverMnemonic string              `json:"receiver_mnemonic"`
	Cases            []EnvelopeErrorCase `json:"cases"`
}

// crafter builds envelopes from Alice to Bob byte by byte, so that each can
// break exactly one rule.
type crafter struct {
	key  [wire.SessionKeySize]byte
	priv ed25519.PrivateKey
	n    int // counts nonces and IVs handed out
}

// field is one envelope member, its value raw JSON.
type field struct{ k, v string }

// nonce returns a fresh deterministic 16-byte nonce in base64.
func (c *crafter) nonce() string {
	c.n++
	return base64.StdEncoding.EncodeToString(seq(wire.NonceSize, byte(c.n*3)))
}

func (c *crafter) iv() []byte {
	c.n++
	return seq(wire.IVSize, byte(0x40+c.n*5))
}

// inner returns the inner object of a call_hangup from Alice to Bob, sealed
// at SealTimeMillis with a fresh nonce, without _sig.
func (c *crafter) inner(typ string, body map[string]any) map[string]any {
	m := map[string]any{"type": typ, "from": string(AliceAlias), "to": string(BobAlias), "call_id": CallID, "_ts": int64(SealTimeMillis), "_nonce": c.nonce()}
	for k, v := range body {
		m[k] = v
	}
	return m
}

func hangup() map[string]any { return map[string]any{"reason": "user_hangup"} }

func mustCanonical(v any) []byte {
	b, err := wire.CanonicalMarshal(v)
	if err != nil {
		panic(fmt.Sprintf("vectors: canonical JSON of %v: %v", v, err))
	}
	return b
}

// sign adds _sig over JCS(m) by priv and returns m.
func sign(m map[string]any, priv ed25519.PrivateKey) map[string]any {
	m["_sig"] = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, mustCanonical(m)))
	return m
}

// encrypt returns base64(iv || AES-256-GCM(key, iv, blob)).
func encrypt(key [wire.SessionKeySize]byte, iv, blob []byte) string {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(gcm.Seal(append([]byte{}, iv...), iv, blob, nil))
}

// payload signs m with Alice's key and encrypts it with the session key.
func (c *crafter) payload(m map[string]any) string {
	return encrypt(c.key, c.iv(), mustCanonical(sign(m, c.priv)))
}

// blob encrypts raw inner bytes as they are.
func (c *crafter) blob(raw []byte) string { return encrypt(c.key, c.iv(), raw) }

func jstr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// envelope returns the envelope text: the route of m (or of Alice's
// call_hangup), crypto_v 2 and payload, with fields replaced, removed (value
// "") or added (at the end) by edits.
func envelope(typ, payload string, edits ...field) string {
	fs := []field{{"type", jstr(typ)}, {"to", jstr(string(BobAlias))}, {"from", jstr(string(AliceAlias))}, {"call_id", jstr(CallID)}, {"crypto_v", "2"}, {"payload", jstr(payload)}}
	for _, e := range edits {
		found := false
		for i := range fs {
			if fs[i].k == e.k {
				fs[i].v, found = e.v, true
			}
		}
		if !found {
			fs = append(fs, e)
		}
	}
	var b strings.Builder
	b.WriteByte('{')
	n := 0
	for _, f := range fs {
		if f.v == "" {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(jstr(f.k) + ":" + f.v)
	}
	b.WriteByte('}')
	return b.String()
}

const openAt = SealTimeMillis + 1500

func genEnvelopeErrors() (any, error) {
	alice, bob, carol := mustIdentity(AliceMnemonic), mustIdentity(BobMnemonic), mustIdentity(CarolMnemonic)
	key, err := wire.SessionKey(alice.AgreementKey, alice.PublicKeys().Signing, bob.PublicKeys().Signing, bob.PublicKeys().Agreement)
	if err != nil {
		return nil, err
	}
	carolKey, err := wire.SessionKey(alice.AgreementKey, alice.PublicKeys().Signing, carol.PublicKeys().Signing, carol.PublicKeys().Agreement)
	if err != nil {
		return nil, err
	}
	c := &crafter{key: key, priv: alice.SigningKey}
	f := EnvelopeErrorFile{
		Description: "PROTOCOL.md §2 and §4.4: envelopes from the sender to the receiver that every implementation refuses with the error named (its Go sentinel; ErrEnvelope is a §2 decoding failure), or opens (error \"\"). " +
			"For each case a fresh receiving session (nonce cache of replay_capacity entries, default 65536) first decodes and opens the envelopes of before in order, each with its own outcome, then decodes and opens the case's envelope with open_at_ms as its clock. " +
			"step is the check of §4.4 that decides (0 = §2 decoding, 11 = none: accepted); where several checks would fail, the name says which and the earliest step wins.",
		SenderMnemonic:   AliceMnemonic,
		ReceiverMnemonic: BobMnemonic,
	}
	add := func(name string, step int, env, errName string) *EnvelopeErrorCase {
		f.Cases = append(f.Cases, EnvelopeErrorCase{Name: name, Step: step, OpenStep: OpenStep{Envelope: env, OpenAtMs: openAt, Error: errName}})
		return &f.Cases[len(f.Cases)-1]
	}
	good := func() string { return c.payload(c.inner("call_hangup", hangup())) }
	hang := func(p string, edits ...field) string { return envelope("call_hangup", p, edits...) }
	epk := base64.StdEncoding.EncodeToString(mustEphemeral(0x11).PublicKey().Bytes())
	offer := func(extra map[string]any) map[string]any {
		m := map[string]any{"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "epk": epk}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	// Accepted, as a baseline and at the edges.
	add("valid call_hangup", 11, hang(good()), "")

	// §2 decoding (step 0): ErrEnvelope, except a crypto_v other than 2.
	add("unknown envelope field", 0, hang(good(), field{"extra", "1"}), "ErrEnvelope")
	add("duplicate envelope key", 0, strings.Replace(hang(good()), `{`, `{"type":"call_hangup",`, 1), "ErrEnvelope")
	add("field name in another case", 0, strings.Replace(hang(good()), `"call_id"`, `"Call_id"`, 1), "ErrEnvelope")
	add("to is not an alias", 0, hang(good(), field{"to", jstr("bob")}), "ErrEnvelope")
	add("from missing", 0, hang(good(), field{"from", ""}), "ErrEnvelope")
	add("call_id with a dot", 0, hang(good(), field{"call_id", jstr("c0ffee.7e57")}), "ErrEnvelope")
	add("call_id of 65 characters", 0, hang(good(), field{"call_id", jstr(strings.Repeat("c", 65))}), "ErrEnvelope")
	add("empty id", 0, hang(good(), field{"id", jstr("")}), "ErrEnvelope")
	add("empty payload", 0, hang("", field{"payload", jstr("")}), "ErrEnvelope")
	add("payload over 48 KiB", 0, hang(strings.Repeat("A", wire.MaxPayloadSize+4)), "ErrEnvelope")
	add("type is a number", 0, hang(good(), field{"type", "7"}), "ErrEnvelope")
	// Lengths count UTF-8 bytes, not characters or UTF-16 code units.
	add("type of 40 two-byte characters (80 bytes)", 0, hang(good(), field{"type", jstr(strings.Repeat("é", 40))}), "ErrEnvelope")
	add("payload of 30 000 two-byte characters (over 48 KiB)", 0, hang(strings.Repeat("é", 30000)), "ErrEnvelope")
	add("crypto_v as a string", 0, hang(good(), field{"crypto_v", `"2"`}), "ErrEnvelope")
	add("crypto_v 2.0 (not an integer)", 0, hang(good(), field{"crypto_v", "2.0"}), "ErrEnvelope")
	add("trailing data after the object", 0, hang(good())+" {}", "ErrEnvelope")
	add("a JSON array", 0, "["+hang(good())+"]", "ErrEnvelope")
	add("unknown field and crypto_v 1: decoding wins", 0, hang(good(), field{"crypto_v", "1"}, field{"extra", "1"}), "ErrEnvelope")
	add("crypto_v 1 before an unknown field: decoding still wins", 0, strings.Replace(hang(good(), field{"crypto_v", "1"}), `{`, `{"extra":1,`, 1), "ErrEnvelope")

	// Step 1: crypto_v, checked before the other §2 field rules.
	add("crypto_v 1", 1, hang(good(), field{"crypto_v", "1"}), "ErrCryptoVersion")
	add("crypto_v 3", 1, hang(good(), field{"crypto_v", "3"}), "ErrCryptoVersion")
	add("crypto_v missing", 1, hang(good(), field{"crypto_v", ""}), "ErrCryptoVersion")
	add("crypto_v 1 and an invalid alias: crypto_v wins", 1, hang(good(), field{"crypto_v", "1"}, field{"to", jstr("bob")}), "ErrCryptoVersion")
	add("crypto_v 1 and a garbage payload: crypto_v wins", 1, hang("!!!!", field{"crypto_v", "1"}), "ErrCryptoVersion")

	// Step 2: the payload decodes (strict base64) to at least IV + tag.
	b40 := base64.StdEncoding.EncodeToString(seq(40, 0x10)) // ends in "=="
	add("payload without its padding", 2, hang(strings.TrimRight(b40, "=")), "ErrMalformed")
	badBits := []byte(b40)
	badBits[len(badBits)-3]++ // a non-zero padding bit
	add("payload with non-zero padding bits", 2, hang(string(badBits)), "ErrMalformed")
	add("payload with a line break", 2, hang(b40[:20]+"\n"+b40[20:]), "ErrMalformed")
	add("payload in the URL-safe alphabet", 2, hang(base64.URLEncoding.EncodeToString(append([]byte{0xfb, 0xff}, seq(40, 0)...))), "ErrMalformed")
	add("payload of 27 bytes", 2, hang(base64.StdEncoding.EncodeToString(seq(27, 0))), "ErrMalformed")
	add("bad base64 and the wrong key: step 2 wins", 2, hang(strings.TrimRight(encrypt(carolKey, c.iv(), mustCanonical(sign(c.inner("call_hangup", hangup()), alice.SigningKey))), "=")+"A"), "ErrMalformed")

	// Step 3: AES-GCM.
	add("payload of exactly 28 bytes (IV and tag, no ciphertext)", 3, hang(base64.StdEncoding.EncodeToString(seq(28, 0))), "ErrDecrypt")
	flip := func(p string, at int) string {
		raw, _ := base64.StdEncoding.DecodeString(p)
		if at < 0 {
			at += len(raw)
		}
		raw[at] ^= 0x01
		return base64.StdEncoding.EncodeToString(raw)
	}
	cut := func(p string, n int) string {
		raw, _ := base64.StdEncoding.DecodeString(p)
		return base64.StdEncoding.EncodeToString(raw[:len(raw)-n])
	}
	add("tag tampered", 3, hang(flip(good(), -1)), "ErrDecrypt")
	add("ciphertext tampered", 3, hang(flip(good(), 20)), "ErrDecrypt")
	add("IV tampered", 3, hang(flip(good(), 0)), "ErrDecrypt")
	add("payload truncated by one byte", 3, hang(cut(good(), 1)), "ErrDecrypt")
	add("payload truncated by the whole tag", 3, hang(cut(good(), 16)), "ErrDecrypt")
	add("payload with a byte appended", 3, hang(func() string {
		raw, _ := base64.StdEncoding.DecodeString(good())
		return base64.StdEncoding.EncodeToString(append(raw, 0))
	}()), "ErrDecrypt")
	add("sealed with another session key", 3, hang(encrypt(carolKey, c.iv(), mustCanonical(sign(c.inner("call_hangup", hangup()), alice.SigningKey)))), "ErrDecrypt")
	add("wrong key and a bad signature: step 3 wins", 3, hang(encrypt(carolKey, c.iv(), mustCanonical(sign(c.inner("call_hangup", hangup()), carol.SigningKey)))), "ErrDecrypt")

	// Step 4: the blob is a §4.2 JSON object with well-formed seal fields.
	signed := func(m map[string]any) map[string]any { return sign(m, alice.SigningKey) }
	add("blob is not JSON", 4, hang(c.blob([]byte("hello"))), "ErrMalformed")
	add("blob is a JSON array", 4, hang(c.blob([]byte("[]"))), "ErrMalformed")
	add("blob has a duplicate key", 4, hang(c.blob([]byte(strings.Replace(string(mustCanonical(signed(c.inner("call_hangup", hangup())))), `{`, `{"reason":"busy",`, 1)))), "ErrMalformed")
	add("blob has a fraction", 4, hang(c.blob([]byte(strings.Replace(string(mustCanonical(signed(c.inner("call_hangup", hangup())))), `"_ts":1795392000000`, `"_ts":1795392000000.5`, 1)))), "ErrMalformed")
	add("blob has an integer beyond 2^53-1", 4, hang(c.blob([]byte(strings.Replace(string(mustCanonical(signed(c.inner("call_hangup", hangup())))), `"_ts":1795392000000`, `"_ts":9007199254740992`, 1)))), "ErrMalformed")
	for _, m := range []struct {
		name string
		edit func(map[string]any)
	}{
		{"_sig missing", func(m map[string]any) { delete(m, "_sig") }},
		{"_sig of 63 bytes", func(m map[string]any) { m["_sig"] = base64.StdEncoding.EncodeToString(seq(63, 1)) }},
		{"_sig of 65 bytes", func(m map[string]any) { m["_sig"] = base64.StdEncoding.EncodeToString(seq(65, 1)) }},
		{"_sig without padding", func(m map[string]any) { m["_sig"] = strings.TrimRight(m["_sig"].(string), "=") }},
		{"_sig is a number", func(m map[string]any) { m["_sig"] = 1 }},
		{"_ts missing", func(m map[string]any) { delete(m, "_ts") }},
		{"_ts is a string", func(m map[string]any) { m["_ts"] = "1795392000000" }},
		{"_nonce missing", func(m map[string]any) { delete(m, "_nonce") }},
		{"_nonce of 15 bytes", func(m map[string]any) { m["_nonce"] = base64.StdEncoding.EncodeToString(seq(15, 1)) }},
		{"_nonce of 17 bytes", func(m map[string]any) { m["_nonce"] = base64.StdEncoding.EncodeToString(seq(17, 1)) }},
		{"_nonce is null", func(m map[string]any) { m["_nonce"] = nil }},
	} {
		inner := signed(c.inner("call_hangup", hangup()))
		m.edit(inner)
		add(m.name, 4, hang(c.blob(mustCanonical(inner))), "ErrMalformed")
	}
	{
		inner := c.inner("call_hangup", hangup())
		inner["_nonce"] = base64.StdEncoding.EncodeToString(seq(15, 1))
		inner["_sig"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
		add("malformed _nonce and a bad signature: step 4 wins", 4, hang(c.blob(mustCanonical(inner))), "ErrMalformed")
	}
	{
		// Not canonical on the wire: the signature is over JCS of the
		// parsed object, so the receiver accepts it.
		inner := signed(c.inner("call_hangup", hangup()))
		pretty, _ := json.MarshalIndent(map[string]any{"type": inner["type"], "_sig": inner["_sig"], "to": inner["to"], "from": inner["from"], "call_id": inner["call_id"], "reason": inner["reason"], "_ts": inner["_ts"], "_nonce": inner["_nonce"]}, "", "  ")
		add("blob with whitespace (not canonical) is accepted", 11, hang(c.blob(pretty)), "")
	}

	// Step 5: Ed25519 over JCS(object without _sig) with the pinned key.
	add("signed by another key", 5, hang(encrypt(key, c.iv(), mustCanonical(sign(c.inner("call_hangup", hangup()), carol.SigningKey)))), "ErrSignature")
	{
		inner := signed(c.inner("call_hangup", hangup()))
		inner["reason"] = "busy"
		add("field changed under the signature", 5, hang(c.blob(mustCanonical(inner))), "ErrSignature")
	}
	{
		inner := c.inner("call_hangup", hangup())
		noncanon, _ := json.MarshalIndent(inner, "", " ")
		inner["_sig"] = base64.StdEncoding.EncodeToString(ed25519.Sign(alice.SigningKey, noncanon))
		add("signature over non-canonical JSON", 5, hang(c.blob(mustCanonical(inner))), "ErrSignature")
	}
	{
		inner := c.inner("call_hangup", hangup())
		inner["_sig"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
		add("all-zero signature", 5, hang(c.blob(mustCanonical(inner))), "ErrSignature")
	}
	{
		inner := c.inner("call_hangup", hangup())
		inner["_ts"] = int64(SealTimeMillis - 600_000)
		inner["to"] = string(CarolAlias)
		inner = sign(inner, carol.SigningKey)
		add("bad signature, stale and a route mismatch: step 5 wins", 5, hang(c.blob(mustCanonical(inner))), "ErrSignature")
	}

	// Steps 6 and 7: |now - _ts| < 60 000 ms.
	at := func(cs *EnvelopeErrorCase, ms int64) { cs.OpenAtMs = ms }
	at(add("_ts 59 999 ms in the past", 11, hang(good()), ""), SealTimeMillis+59_999)
	at(add("_ts exactly 60 000 ms in the past", 6, hang(good()), "ErrStale"), SealTimeMillis+60_000)
	at(add("_ts 59 999 ms in the future", 11, hang(good()), ""), SealTimeMillis-59_999)
	at(add("_ts exactly 60 000 ms in the future", 7, hang(good()), "ErrFuture"), SealTimeMillis-60_000)
	{
		inner := c.inner("call_hangup", map[string]any{"reason": "bored"})
		inner["to"] = string(CarolAlias)
		at(add("stale, a route mismatch and a bad reason: step 6 wins", 6, hang(c.payload(inner)), "ErrStale"), SealTimeMillis+120_000)
	}
	{
		inner := c.inner("call_hangup", hangup())
		inner["_ts"] = int64(-5)
		add("negative _ts", 6, hang(c.payload(inner)), "ErrStale")
	}
	{
		env := hang(good())
		cs := add("stale and a replay: step 6 wins", 6, env, "ErrStale")
		cs.Before = []OpenStep{{Envelope: env, OpenAtMs: openAt}}
		cs.OpenAtMs = SealTimeMillis + 60_000
	}

	// Step 8: the nonce was not accepted in the last 5 minutes.
	{
		env := hang(good())
		cs := add("the same envelope again", 8, env, "ErrReplay")
		cs.Before = []OpenStep{{Envelope: env, OpenAtMs: openAt}}
	}
	{
		first := c.inner("call_hangup", hangup())
		second := c.inner("call_reject", map[string]any{"reason": "busy"})
		second["_nonce"] = first["_nonce"]
		cs := add("another message under an accepted nonce", 8, envelope("call_reject", c.payload(second)), "ErrReplay")
		cs.Before = []OpenStep{{Envelope: hang(c.payload(first)), OpenAtMs: openAt}}
	}
	{
		first := c.inner("call_hangup", hangup())
		second := c.inner("call_hangup", map[string]any{"reason": "bored"})
		second["_nonce"] = first["_nonce"]
		second["call_id"] = "another-call"
		cs := add("replay, a route mismatch and a bad reason: step 8 wins", 8, hang(c.payload(second)), "ErrReplay")
		cs.Before = []OpenStep{{Envelope: hang(c.payload(first)), OpenAtMs: openAt}}
	}
	{
		bad := c.inner("call_hangup", hangup())
		bad["call_id"] = "another-call"
		good := c.inner("call_hangup", hangup())
		good["_nonce"] = bad["_nonce"]
		cs := add("a refused envelope does not burn its nonce", 11, hang(c.payload(good)), "")
		cs.Before = []OpenStep{{Envelope: hang(c.payload(bad)), OpenAtMs: openAt, Error: "ErrRouteMismatch"}}
	}
	{
		cs := add("nonce cache full of entries younger than 60 s", 8, hang(good()), "ErrReplayCacheFull")
		cs.ReplayCapacity = 1
		cs.Before = []OpenStep{{Envelope: hang(good()), OpenAtMs: openAt}}
	}
	{
		old := c.inner("call_hangup", hangup())
		old["_ts"] = int64(openAt - 60_000)
		cs := add("nonce cache full: an entry whose _ts is exactly 60 s old is evicted", 11, hang(good()), "")
		cs.ReplayCapacity = 1
		cs.Before = []OpenStep{{Envelope: hang(c.payload(old)), OpenAtMs: openAt - 60_000}}
	}
	{
		old := c.inner("call_hangup", hangup())
		old["_ts"] = int64(openAt - 59_999)
		cs := add("nonce cache full: an entry 59 999 ms old is not evicted", 8, hang(good()), "ErrReplayCacheFull")
		cs.ReplayCapacity = 1
		cs.Before = []OpenStep{{Envelope: hang(c.payload(old)), OpenAtMs: openAt - 59_999}}
	}

	// Step 9: the inner route fields equal the envelope's.
	for _, r := range []struct {
		name string
		edit func(map[string]any)
	}{
		{"inner type differs", func(m map[string]any) { m["type"] = "call_reject" }},
		{"inner from differs", func(m map[string]any) { m["from"] = string(CarolAlias) }},
		{"inner to differs", func(m map[string]any) { m["to"] = string(CarolAlias) }},
		{"inner call_id differs", func(m map[string]any) { m["call_id"] = "another-call" }},
		{"inner call_id missing", func(m map[string]any) { delete(m, "call_id") }},
		{"inner to missing", func(m map[string]any) { delete(m, "to") }},
		{"inner call_id is a number", func(m map[string]any) { m["call_id"] = 7 }},
		{"route mismatch and a bad reason: step 9 wins", func(m map[string]any) { m["call_id"] = "another-call"; m["reason"] = "bored" }},
		// device sorts before from, to and type: the route is still checked first.
		{"inner to differs and a bad device: step 9 wins", func(m map[string]any) { m["to"] = string(CarolAlias); m["device"] = "not a device" }},
		{"inner from differs and a bad device: step 9 wins", func(m map[string]any) { m["from"] = string(CarolAlias); m["device"] = "" }},
		{"inner type differs and a device that is a number: step 9 wins", func(m map[string]any) { m["type"] = "call_reject"; m["device"] = 7 }},
	} {
		inner := c.inner("call_hangup", hangup())
		r.edit(inner)
		add(r.name, 9, hang(c.payload(inner)), "ErrRouteMismatch")
	}

	// Step 10: the type's fields (§3).
	ten := func(name, typ string, body map[string]any, errName string) {
		step := 10
		if errName == "" {
			step = 11
		}
		add(name, step, envelope(typ, c.payload(c.inner(typ, body))), errName)
	}
	ten("call_hangup reason not in the reason set", "call_hangup", map[string]any{"reason": "bored"}, "ErrMalformed")
	ten("device with a space", "call_hangup", map[string]any{"reason": "user_hangup", "device": "not a device"}, "ErrMalformed")
	ten("device empty", "call_hangup", map[string]any{"reason": "user_hangup", "device": ""}, "ErrMalformed")
	ten("device is a number", "call_hangup", map[string]any{"reason": "user_hangup", "device": 7}, "ErrMalformed")
	ten("a valid device is accepted", "call_hangup", map[string]any{"reason": "user_hangup", "device": "dev-1_A"}, "")
	ten("call_reject reason missing", "call_reject", map[string]any{}, "ErrMalformed")
	ten("unknown inner field", "call_hangup", map[string]any{"reason": "busy", "extra": 1}, "ErrMalformed")
	ten("call_offer empty sdp", "call_offer", offer(map[string]any{"sdp": ""}), "ErrMalformed")
	ten("call_offer epk missing", "call_offer", map[string]any{"sdp": "v=0\r\n"}, "ErrMalformed")
	ten("call_offer epk of 31 bytes", "call_offer", offer(map[string]any{"epk": base64.StdEncoding.EncodeToString(seq(31, 1))}), "ErrMalformed")
	ten("call_offer epk of 33 bytes (as many base64 characters as 32)", "call_offer", offer(map[string]any{"epk": base64.StdEncoding.EncodeToString(seq(33, 1))}), "ErrMalformed")
	ten("call_offer ice_restart is a string", "call_offer", offer(map[string]any{"ice_restart": "true"}), "ErrMalformed")
	ten("call_offer explicit ice_restart false is accepted", "call_offer", offer(map[string]any{"ice_restart": false}), "")
	ten("call_answer with ice_restart", "call_answer", offer(map[string]any{"ice_restart": true}), "ErrMalformed")
	ten("call_rekey epoch 0", "call_rekey", map[string]any{"epoch": 0, "epk": epk}, "ErrMalformed")
	ten("call_rekey epoch 2^32", "call_rekey", map[string]any{"epoch": int64(1) << 32, "epk": epk}, "ErrMalformed")
	ten("call_rekey epoch 2^32-1 is accepted", "call_rekey", map[string]any{"epoch": int64(1)<<32 - 1, "epk": epk}, "")
	ten("call_rekey epoch is a string", "call_rekey", map[string]any{"epoch": "1", "epk": epk}, "ErrMalformed")
	ten("call_ice sdp_mline 65536", "call_ice", map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdp_mid": "0", "sdp_mline": 65536}, "ErrMalformed")
	ten("call_ice sdp_mid and sdpMid disagree", "call_ice", map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdp_mid": "0", "sdpMid": "1"}, "ErrMalformed")
	ten("call_ice candidate missing", "call_ice", map[string]any{"sdp_mid": "0", "sdp_mline": 0}, "ErrMalformed")
	ten("call_ice usernameFragment is not a signed name", "call_ice", map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "usernameFragment": "abcd"}, "ErrMalformed")
	ten("call_ice in the browser shape is accepted", "call_ice", map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}, "")
	ten("call_ice with both shapes agreeing is accepted", "call_ice", map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdp_mid": "0", "sdpMid": "0", "sdp_mline": 0, "sdpMLineIndex": 0}, "")
	ten("call_ice end of candidates is accepted", "call_ice", map[string]any{"candidate": "", "sdp_mid": nil, "sdp_mline": nil}, "")
	ten("call_ice end of candidates without sdp_mid and sdp_mline is accepted", "call_ice", map[string]any{"candidate": ""}, "")
	ten("call_media audio_muted missing", "call_media", map[string]any{"video_off": false}, "ErrMalformed")
	ten("call_media video_off missing", "call_media", map[string]any{"audio_muted": true}, "ErrMalformed")
	ten("call_media video_off is a string", "call_media", map[string]any{"audio_muted": false, "video_off": "true"}, "ErrMalformed")
	ten("call_media audio_muted is 1", "call_media", map[string]any{"audio_muted": 1, "video_off": false}, "ErrMalformed")
	ten("call_media screen is null", "call_media", map[string]any{"audio_muted": false, "video_off": false, "screen": nil}, "ErrMalformed")
	ten("call_media unknown field", "call_media", map[string]any{"audio_muted": false, "video_off": false, "camera": true}, "ErrMalformed")
	ten("call_media explicit screen false is accepted", "call_media", map[string]any{"audio_muted": false, "video_off": true, "screen": false}, "")
	ten("call_media with screen is accepted", "call_media", map[string]any{"audio_muted": true, "video_off": true, "screen": true}, "")
	ten("call_offer renegotiate is a number", "call_offer", offer(map[string]any{"renegotiate": 1}), "ErrMalformed")
	ten("call_offer both ice_restart and renegotiate", "call_offer", offer(map[string]any{"ice_restart": true, "renegotiate": true}), "ErrMalformed")
	ten("call_offer explicit renegotiate false is accepted", "call_offer", offer(map[string]any{"renegotiate": false}), "")
	ten("call_answer with renegotiate", "call_answer", offer(map[string]any{"renegotiate": true}), "ErrMalformed")
	ten("type that is not a call type", "call_chat", map[string]any{"reason": "busy"}, "ErrMalformed")
	return f, nil
}
