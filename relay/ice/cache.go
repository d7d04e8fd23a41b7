package ice

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Cache policy for upstream providers. The seed caches Cloudflare's answer
// for 9 minutes; duet applies the same to Twilio and Metered, whose answers
// are not per user either.
const (
	// cacheFor is the longest an upstream answer is reused.
	cacheFor = 9 * time.Minute
	// minRemaining is the least credential lifetime an answer must have
	// left to be handed out (fresh, cached or stale).
	minRemaining = time.Minute
	// errorBackoff is how long a provider is skipped after it failed, so an
	// outage costs one upstream timeout per backoff period, not one per
	// request.
	errorBackoff = 10 * time.Second
)

// fetched is one upstream answer.
type fetched struct {
	servers []Server
	expires time.Time // when the credentials stop working
}

// fetchFunc asks the upstream provider. started is when the request was
// sent: lifetimes counted from it are never longer than the real ones.
type fetchFunc func(ctx context.Context, started time.Time) (fetched, error)

// served tells how sharedCache answered.
type served int

const (
	servedFetched served = iota // this caller's request went upstream
	servedCached                // from cache, or joined another caller's request
	servedStale                 // upstream failed; still-valid older answer
)

// sharedCache holds one provider's answer for all users and collapses
// concurrent misses into one upstream call (a small singleflight).
type sharedCache struct {
	name    string // provider, for logs
	fetch   fetchFunc
	timeout time.Duration // bound on one upstream call
	now     func() time.Time
	log     *slog.Logger
	// observe, when set, records each upstream call's duration and error.
	observe func(d time.Duration, err error)

	mu          sync.Mutex
	entry       *cacheEntry
	flight      *flight
	failedUntil time.Time
	lastErr     error
	joined      int // callers that joined another's upstream call (tests wait on it)
}

type cacheEntry struct {
	fetched
	freshUntil time.Time
}

type flight struct {
	done  chan struct{}
	entry *cacheEntry // set on success
	err   error       // set on failure
}

// usable reports whether e may still be handed out at now.
func (e *cacheEntry) usable(now time.Time) bool {
	return e != nil && e.expires.Sub(now) >= minRemaining
}

// get returns the provider's answer: fresh from cache, from a new upstream
// call (shared with concurrent callers), or stale when upstream fails (or
// failed less than errorBackoff ago) but the older credentials remain valid.
// The upstream call is not cancelled when ctx is (others may wait for it); it
// is bounded by c.timeout. Upstream failures are logged once per call, here.
func (c *sharedCache) get(ctx context.Context) (fetched, served, error) {
	c.mu.Lock()
	now := c.now()
	if c.entry != nil && now.Before(c.entry.freshUntil) && c.entry.usable(now) {
		e := c.entry
		c.mu.Unlock()
		return e.fetched, servedCached, nil
	}
	if now.Before(c.failedUntil) {
		e, lastErr, until := c.entry, c.lastErr, c.failedUntil
		c.mu.Unlock()
		if e.usable(now) {
			return e.fetched, servedStale, nil
		}
		return fetched{}, 0, fmt.Errorf("%w (until %s); last error: %w", errBackoff, until.UTC().Format(time.RFC3339), lastErr)
	}
	f, leader := c.flight, false
	if f == nil {
		f, leader = &flight{done: make(chan struct{})}, true
		c.flight = f
		go c.run(context.WithoutCancel(ctx), f, now)
	} else {
		c.joined++
	}
	c.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return fetched{}, 0, ctx.Err()
	}
	if f.err == nil {
		how := servedCached
		if leader {
			how = servedFetched
		}
		return f.entry.fetched, how, nil
	}
	c.mu.Lock()
	e := c.entry
	now = c.now()
	c.mu.Unlock()
	if e.usable(now) {
		return e.fetched, servedStale, nil
	}
	return fetched{}, 0, f.err
}

// run performs one upstream call for flight f and publishes its result.
func (c *sharedCache) run(ctx context.Context, f *flight, started time.Time) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	t0 := time.Now()
	res, err := c.fetch(ctx, started)
	if c.observe != nil {
		c.observe(time.Since(t0), err)
	}
	if err == nil && res.expires.Sub(started) < 2*minRemaining {
		err = fmt.Errorf("%w: credentials expire at %s, too soon to hand out",
			ErrNoUsableServers, res.expires.UTC().Format(time.RFC3339))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		f.err = err
		c.lastErr = err
		c.failedUntil = c.now().Add(errorBackoff)
		c.log.Warn("ice: upstream provider failed", "provider", c.name, "err", err,
			"retry_after", errorBackoff, "serving_stale", c.entry.usable(c.now()))
	} else {
		// Reuse for at most cacheFor and at most half the lifetime, so a
		// cached answer always has at least half its lifetime left.
		fresh := min(cacheFor, res.expires.Sub(started)/2)
		f.entry = &cacheEntry{fetched: res, freshUntil: started.Add(fresh)}
		c.entry = f.entry
		c.failedUntil, c.lastErr = time.Time{}, nil
	}
	c.flight = nil
	close(f.done)
}
