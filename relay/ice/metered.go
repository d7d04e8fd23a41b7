package ice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// metered fetches an app's TURN credentials from Metered:
//
//	GET {base}/api/v1/turn/credentials?apiKey={key}
//
// answered 200 with a bare JSON array of ice servers, urls a single string.
// Metered states no lifetime; see meteredAssumedLifetime.
type metered struct {
	upstreamDeps
	base, apiKey string
}

func (m *metered) fetch(ctx context.Context, started time.Time) (fetched, error) {
	endpoint := m.base + "/api/v1/turn/credentials?" + url.Values{"apiKey": {m.apiKey}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fetched{}, fmt.Errorf("%w: metered: bad request", ErrUpstream) // the URL holds the key: not wrapped
	}
	body, err := m.do(req, http.StatusOK)
	if err != nil {
		return fetched{}, fmt.Errorf("metered: %w", err)
	}
	servers, err := parseMetered(body)
	if err != nil {
		return fetched{}, fmt.Errorf("metered: %w", err)
	}
	return fetched{servers: servers, expires: started.Add(meteredAssumedLifetime)}, nil
}

// parseMetered decodes and sanitises a Metered answer.
func parseMetered(body []byte) ([]Server, error) {
	var entries []upstreamServer
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("%w: decoding answer (want a JSON array): %w", ErrUpstream, err)
	}
	return sanitize(entries)
}
