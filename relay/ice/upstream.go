package ice

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// upstreamDeps are what HTTP providers share.
type upstreamDeps struct {
	client *http.Client
	now    func() time.Time
}

// do sends req and returns the body of a response whose status is one of
// want. The body is bounded to maxUpstreamBody. Errors never carry the
// request URL's path or query (Metered puts its API key in the query) nor
// anything from the response body.
func (u upstreamDeps) do(req *http.Request, want ...int) ([]byte, error) {
	req.Header.Set("Accept", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(req.URL)
		}
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUpstream, req.Method, redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: reading response: %w", ErrUpstream, req.Method, redactURL(req.URL), err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (check the provider credentials)"
		}
		return nil, fmt.Errorf("%w: %s %s: status %d%s", ErrUpstream, req.Method, redactURL(req.URL), resp.StatusCode, hint)
	}
	if len(body) > maxUpstreamBody {
		return nil, fmt.Errorf("%w: %s %s: response larger than %d bytes", ErrUpstream, req.Method, redactURL(req.URL), maxUpstreamBody)
	}
	return body, nil
}

// redactURL keeps only scheme and host: paths hold account ids and key ids,
// queries hold API keys.
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/…"
}
