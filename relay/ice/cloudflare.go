package ice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// cloudflare asks Cloudflare Realtime TURN for credentials:
//
//	POST {base}/v1/turn/keys/{key id}/credentials/generate-ice-servers
//	Authorization: Bearer {API token}
//	{"ttl": seconds}
//
// answered 201 with {"iceServers": [{"urls": [...]}, {"urls": [...],
// "username": ..., "credential": ...}]}. The legacy .../credentials/generate
// answers iceServers as one object; both are accepted, and 200 as well as 201.
// The answer carries no lifetime: the credentials are taken to expire ttl
// after the request was sent.
type cloudflare struct {
	upstreamDeps
	base, keyID, token string
	ttl                time.Duration
}

func (c *cloudflare) fetch(ctx context.Context, started time.Time) (fetched, error) {
	ttl := int64(c.ttl / time.Second)
	body, _ := json.Marshal(map[string]int64{"ttl": ttl})
	endpoint := c.base + "/v1/turn/keys/" + url.PathEscape(c.keyID) + "/credentials/generate-ice-servers"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fetched{}, fmt.Errorf("%w: cloudflare: %w", ErrUpstream, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req, http.StatusCreated, http.StatusOK)
	if err != nil {
		return fetched{}, fmt.Errorf("cloudflare: %w", err)
	}
	servers, err := parseCloudflare(resp)
	if err != nil {
		return fetched{}, fmt.Errorf("cloudflare: %w", err)
	}
	return fetched{servers: servers, expires: started.Add(time.Duration(ttl) * time.Second)}, nil
}

// parseCloudflare decodes and sanitises a Cloudflare answer.
func parseCloudflare(body []byte) ([]Server, error) {
	var resp struct {
		ICEServers json.RawMessage `json:"iceServers"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("%w: decoding answer: %w", ErrUpstream, err)
	}
	raw := bytes.TrimSpace(resp.ICEServers)
	var entries []upstreamServer
	switch {
	case len(raw) > 0 && raw[0] == '[':
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, fmt.Errorf("%w: decoding iceServers: %w", ErrUpstream, err)
		}
	case len(raw) > 0 && raw[0] == '{':
		var one upstreamServer
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("%w: decoding iceServers: %w", ErrUpstream, err)
		}
		entries = []upstreamServer{one}
	default:
		return nil, fmt.Errorf("%w: answer has no iceServers array or object", ErrUpstream)
	}
	return sanitize(entries)
}
