package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/duetcall/duet/identity"
)

// TokenTTL is how long a bearer token from a WebSocket "ready" frame is
// valid (docs/PROTOCOL.md §9.2, "token_expires_in").
const TokenTTL = time.Hour

// ErrUnauthorized is returned (wrapped) for a missing, malformed, forged or
// expired bearer token.
var ErrUnauthorized = errors.New("relay: unauthorized")

// tokenDomain separates the token MAC from every other use of the key.
const tokenDomain = "duet/v1/relay-token"

// tokenKeySize is the size of the HMAC-SHA256 key shared by all relay nodes.
const tokenKeySize = 32

// tokens issues and verifies stateless bearer tokens. A token is
//
//	"v1." || alias || "." || expiry_unix_seconds || "." || base64url(HMAC-SHA256(key, tokenDomain || alias || "." || expiry))
//
// The key lives in the directory's config bucket, so a token from one node is
// accepted by every node sharing the NATS. Tokens cannot be revoked before
// they expire; they only grant key lookups and ICE configuration.
type tokens struct {
	key []byte
	now func() time.Time
}

func (t *tokens) mac(alias identity.Alias, exp int64) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(tokenDomain))
	m.Write([]byte(alias))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, exp, 10))
	return m.Sum(nil)
}

// Issue returns a token for alias valid for ttl (TokenTTL but in tests).
func (t *tokens) Issue(alias identity.Alias, ttl time.Duration) string {
	exp := t.now().Add(ttl).Unix()
	return "v1." + string(alias) + "." + strconv.FormatInt(exp, 10) + "." +
		base64.RawURLEncoding.EncodeToString(t.mac(alias, exp))
}

// Verify checks tok and returns the alias it was issued to.
func (t *tokens) Verify(tok string) (identity.Alias, error) {
	if len(tok) > 256 {
		return "", fmt.Errorf("%w: token too long", ErrUnauthorized)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthorized)
	}
	alias, err := identity.ParseAlias(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthorized)
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || strconv.FormatInt(exp, 10) != parts[2] {
		return "", fmt.Errorf("%w: malformed token", ErrUnauthorized)
	}
	sum, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || !hmac.Equal(sum, t.mac(alias, exp)) {
		return "", fmt.Errorf("%w: bad token signature", ErrUnauthorized)
	}
	if !t.now().Before(time.Unix(exp, 0)) {
		return "", fmt.Errorf("%w: token expired, authenticate again over the WebSocket", ErrUnauthorized)
	}
	return alias, nil
}
