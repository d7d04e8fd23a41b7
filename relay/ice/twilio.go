package ice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// twilio asks Twilio's Network Traversal Service for a token:
//
//	POST {base}/2010-04-01/Accounts/{sid}/Tokens.json
//	Authorization: Basic base64(sid:auth token)
//	Ttl=seconds (form)
//
// answered 201 with {"date_created": RFC 1123 date, "ttl": "seconds",
// "ice_servers": [{"url": "...", "urls": "...", "username": ..., "credential": ...}]}
// (urls a single string, ttl a string). There is no expiry field: the
// credentials expire ttl after date_created, or ttl after the request was
// sent if that is earlier (a Twilio clock ahead of ours must not lengthen
// the lifetime we advertise).
type twilio struct {
	upstreamDeps
	base, sid, token string
	ttl              time.Duration
}

func (t *twilio) fetch(ctx context.Context, started time.Time) (fetched, error) {
	ttl := int64(t.ttl / time.Second)
	form := url.Values{"Ttl": {strconv.FormatInt(ttl, 10)}}
	endpoint := t.base + "/2010-04-01/Accounts/" + url.PathEscape(t.sid) + "/Tokens.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fetched{}, fmt.Errorf("%w: twilio: %w", ErrUpstream, err)
	}
	req.SetBasicAuth(t.sid, t.token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body, err := t.do(req, http.StatusCreated, http.StatusOK)
	if err != nil {
		return fetched{}, fmt.Errorf("twilio: %w", err)
	}
	tok, err := parseTwilio(body)
	if err != nil {
		return fetched{}, fmt.Errorf("twilio: %w", err)
	}
	lifetime := time.Duration(ttl) * time.Second
	if tok.ttl > 0 {
		lifetime = tok.ttl
	}
	expires := started.Add(lifetime)
	if !tok.created.IsZero() && tok.created.Add(lifetime).Before(expires) {
		expires = tok.created.Add(lifetime)
	}
	return fetched{servers: tok.servers, expires: expires}, nil
}

// twilioToken is what duet uses of a Twilio token.
type twilioToken struct {
	servers []Server
	ttl     time.Duration // 0 when absent or unparsable
	created time.Time     // zero when absent or unparsable
}

// parseTwilio decodes and sanitises a Twilio token.
func parseTwilio(body []byte) (twilioToken, error) {
	var resp struct {
		DateCreated looseString      `json:"date_created"`
		TTL         looseString      `json:"ttl"`
		ICEServers  []upstreamServer `json:"ice_servers"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return twilioToken{}, fmt.Errorf("%w: decoding token: %w", ErrUpstream, err)
	}
	servers, err := sanitize(resp.ICEServers)
	if err != nil {
		return twilioToken{}, err
	}
	tok := twilioToken{servers: servers}
	if secs, err := strconv.ParseInt(string(resp.TTL), 10, 64); err == nil && secs > 0 && secs <= int64(twilioMaxTTL/time.Second) {
		tok.ttl = time.Duration(secs) * time.Second
	}
	for _, layout := range []string{time.RFC1123Z, time.RFC1123} {
		if t, err := time.Parse(layout, string(resp.DateCreated)); err == nil {
			tok.created = t
			break
		}
	}
	return tok, nil
}
