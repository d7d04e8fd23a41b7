package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// relayList parses the relays of Options: RelayURL (one URL, or several
// separated by commas) followed by RelayURLs, normalised, duplicates
// dropped.
func relayList(relayURL string, more []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, u := range append(strings.Split(relayURL, ","), more...) {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		b, err := baseURL(u)
		if err != nil {
			return nil, err
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("client: no relay URL (Options.RelayURL or RelayURLs)")
	}
	return out, nil
}

// relayBase is the relay the client is connected to (or last was): the
// HTTP requests go there; a token of one node is valid on every node.
func (c *Client) relayBase() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.baseIdx]
}

// dialAny tries each relay once, starting with the one at index start, and
// returns the first connection. ErrUnauthorized stops it: every node of a
// deployment shares the directory.
func (c *Client) dialAny(ctx context.Context, start int) (*websocket.Conn, error) {
	var errs []error
	for i := range c.bases {
		idx := (start + i) % len(c.bases)
		conn, err := c.dial(ctx, idx)
		if err == nil {
			return conn, nil
		}
		if errors.Is(err, ErrUnauthorized) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, fmt.Errorf("client: no relay of %d answered: %w", len(c.bases), errors.Join(errs...))
}

// firstRelay is where Connect starts: a random relay of the list, so that
// clients spread over the nodes.
func (c *Client) firstRelay() int { return rand.N(len(c.bases)) }

// failoverJitter spreads the reconnects of the clients of a lost node over
// the other nodes' first moments.
const failoverJitter = 100 * time.Millisecond

// reconnectWait is the pause before a reconnect: none (beyond a jitter)
// when another relay of the list is there to try, else the backoff.
func (c *Client) reconnectWait(attempt int) time.Duration {
	if len(c.bases) > 1 && attempt == 0 {
		return rand.N(failoverJitter)
	}
	return backoff(attempt)
}

// RelayURL is the relay node the client is connected to (or last tried),
// normalised.
func (c *Client) RelayURL() string { return c.relayBase() }
