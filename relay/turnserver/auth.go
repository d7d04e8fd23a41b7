package turnserver

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST scheme (coturn use-auth-secret) specifies.
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Credentials returns ephemeral TURN credentials for user under the TURN REST
// scheme (draft-uberti-behave-turn-rest-00, coturn "use-auth-secret"):
//
//	username = "<expiry unix seconds>:<user>"
//	password = base64(HMAC-SHA1(secret, username))
//
// The same scheme is understood by coturn with static-auth-secret and by the
// embedded server started with [Start]; relay/ice uses it for both.
func Credentials(secret []byte, user string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	return username, restPassword(secret, username)
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username)) // hash.Hash.Write never fails
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Reasons for a credential the auth handler refuses before any integrity
// check; they label duet_turn_auth_failures_total.
const (
	authMalformed    = "malformed"     // username is not "<expiry>:<user>"
	authExpired      = "expired"       // expiry is not in the future
	authBadIntegrity = "bad_integrity" // wrong password (MESSAGE-INTEGRITY check failed)
)

// parseRESTUsername splits "<expiry>:<user>". It reports ok=false for anything
// else, including an empty user or a non-decimal expiry.
func parseRESTUsername(username string) (expiry time.Time, user string, ok bool) {
	ts, user, found := strings.Cut(username, ":")
	if !found || user == "" || ts == "" || len(ts) > 12 {
		return time.Time{}, "", false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, "", false
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(sec, 0), user, true
}

// authHandler is pion/turn's LongTermTURNRESTAuthHandler with an injectable
// clock, the configured realm, metrics and slog. It returns the long-term key
// MD5(username:realm:password); pion then checks MESSAGE-INTEGRITY with it.
//
// Expiry is enforced when an allocation is created, not on the requests that
// keep it alive (Refresh, CreatePermission, ChannelBind, Connect): a call that
// outlasts its credentials keeps its relay, as it would with a long-term
// password, while expired credentials cannot create anything new. Those
// requests only succeed for the client's own existing allocation, and still
// need the HMAC password.
func (s *Server) authHandler(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	expiry, user, ok := parseRESTUsername(ra.Username)
	if !ok {
		s.authFailures.WithLabelValues(authMalformed).Inc()
		s.log.Debug("turn: refused malformed username", "src", ra.SrcAddr, "method", ra.Method.String())
		return "", nil, false
	}
	if ra.Method == stun.MethodAllocate && !s.now().Before(expiry) {
		s.authFailures.WithLabelValues(authExpired).Inc()
		s.log.Debug("turn: refused expired credentials", "src", ra.SrcAddr, "user", user,
			"expired", expiry.UTC().Format(time.RFC3339))
		return "", nil, false
	}
	password := restPassword(s.secret, ra.Username)
	return user, turn.GenerateAuthKey(ra.Username, s.realm, password), true
}
