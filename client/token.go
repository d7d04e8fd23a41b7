package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// The relay's bearer token (PROTOCOL.md §9.2 and §9.3) lasts
// token_expires_in seconds from ready (an hour; the relay counts whole
// seconds, so up to a second less). Like the browser SDK, the client renews
// it by reconnecting, when a request needs it and it expires within
// tokenMargin (or a tenth of its lifetime, if that is shorter), and once
// more if the relay refuses it anyway (401): a long-lived client (a `duet
// answer` daemon) keeps looking up keys and ICE servers.
const (
	tokenMargin = 30 * time.Second
	// defaultTokenTTL is assumed when ready carries no token_expires_in.
	defaultTokenTTL = time.Hour
)

// setToken installs a new connection and its token, valid for ttlSeconds
// from now (0: defaultTokenTTL).
func (c *Client) setToken(conn *websocket.Conn, token string, ttlSeconds int) {
	ttl := time.Duration(ttlSeconds) * time.Second
	if ttl <= 0 {
		ttl = defaultTokenTTL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn, c.token = conn, token
	c.tokenRenew = time.Now().Add(ttl - time.Second - min(tokenMargin, ttl/10))
}

// authedGET gets path from the relay with the bearer token into out; when
// the relay refuses the token (401), it renews it and tries once more.
func (c *Client) authedGET(ctx context.Context, path string, out any) error {
	token, err := c.bearer(ctx)
	if err != nil {
		return err
	}
	err = doJSON(ctx, c.hc, http.MethodGet, c.relayBase()+path, token, nil, out)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		return err
	}
	c.mu.Lock()
	if c.token == token {
		c.tokenRenew = time.Time{} // renew at the next bearer
	}
	c.mu.Unlock()
	if token, err = c.bearer(ctx); err != nil {
		return err
	}
	return doJSON(ctx, c.hc, http.MethodGet, c.relayBase()+path, token, nil, out)
}

// bearer returns a token for an HTTP request: the current one, or, when it
// is about to expire, the one of a fresh connection (it reconnects and waits
// for it, up to ctx's end or authTimeout plus the longest backoff).
func (c *Client) bearer(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, renew, conn := c.token, c.tokenRenew, c.conn
	c.mu.Unlock()
	switch {
	case tok == "" && c.ctx.Err() != nil:
		return "", ErrClosed
	case tok == "":
		return "", ErrNotConnected
	case time.Now().Before(renew):
		return tok, nil
	}
	sub := c.state.Subscribe()
	defer sub.Unsubscribe()
	c.log.Info("relay token expires soon; reconnecting for a fresh one")
	c.immediate.Store(true)
	c.renewing.Store(true)
	go conn.Close(websocket.StatusNormalClosure, "renewing the token")
	ctx, cancel := context.WithTimeout(ctx, authTimeout+backoffMax)
	defer cancel()
	for {
		c.mu.Lock()
		fresh := c.token
		c.mu.Unlock()
		if fresh != "" && fresh != tok {
			return fresh, nil
		}
		select {
		case _, ok := <-sub.C():
			if !ok {
				return "", ErrClosed
			}
		case <-ctx.Done():
			if c.ctx.Err() != nil {
				return "", ErrClosed
			}
			return "", fmt.Errorf("%w: renewing the relay token: %w", ErrNotConnected, ctx.Err())
		}
	}
}
