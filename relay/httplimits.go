package relay

import (
	"crypto/sha256"
	"math/bits"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// HTTP limits (docs/PROTOCOL.md §9.1, §9.3). Registration and key lookups
// are free to call, so they are limited per client address (and lookups per
// alias too); past a limit the answer is 429 rate_limited with Retry-After.
const (
	// RegisterRate and RegisterBurst limit POST /api/v1/challenge and
	// /api/v1/register together, per client address: a registration costs
	// two requests.
	RegisterRate  = 5
	RegisterBurst = 20
	// LookupRate and LookupBurst limit GET /api/v1/keys/{alias} and
	// /api/v1/calls/ice-config together, per alias (the token's) and, at
	// twice the rate, per client address.
	LookupRate  = 20
	LookupBurst = 50
	// BodyTimeout bounds reading an API request's body: a client that sends
	// it slowly is cut off (the answer never comes).
	BodyTimeout = 10 * time.Second
	// MaxRegisterPoWBits is the largest proof of work a relay may ask for.
	MaxRegisterPoWBits = 28
	// limiterTableSize bounds each table of per-key limiters; a full table
	// forgets its idle keys (and, if that is not enough, all of them).
	limiterTableSize = 100_000
	// RefuseDelay: a request refused by one of these limits is answered
	// (429) this long after it came, the Retry-After it names, rather than
	// at once: a client retrying in a loop without waiting then makes a
	// request a second per connection instead of thousands, and its
	// refusals cost the relay a parked goroutine instead of a core. At most
	// maxHeldPerClient requests of one client address, and maxHeldRefusals
	// in all, wait so; past those a refusal is answered at once.
	RefuseDelay      = time.Second
	maxHeldPerClient = 16
	maxHeldRefusals  = 512
)

// PoWContext is the prefix of the registration proof of work's hash
// (docs/PROTOCOL.md §9.1).
const PoWContext = "duet/v1/register-pow"

// limiterTable holds a token bucket per key (a client address, an alias).
type limiterTable struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*tableEntry
}

type tableEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiterTable(r float64, burst int) *limiterTable {
	return &limiterTable{limit: rate.Limit(r), burst: burst, m: make(map[string]*tableEntry)}
}

// allow takes a token of key's bucket; the key "" is not limited.
func (t *limiterTable) allow(key string, now time.Time) bool {
	if key == "" {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[key]
	if e == nil {
		if len(t.m) >= limiterTableSize {
			refill := time.Duration(float64(t.burst) / float64(t.limit) * float64(time.Second))
			for k, x := range t.m {
				if now.Sub(x.last) > refill { // its bucket is full again
					delete(t.m, k)
				}
			}
			if len(t.m) >= limiterTableSize {
				clear(t.m) // fail open rather than grow
			}
		}
		e = &tableEntry{lim: rate.NewLimiter(t.limit, t.burst)}
		t.m[key] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1)
}

// clientKey is the rate-limit key of the request's client: its address
// (an IPv6 address's /64), taken from X-Forwarded-For when the connection
// comes from a trusted proxy: the rightmost address that is not a trusted
// proxy itself. It is "" (not limited) for a loopback client: the same
// machine (tests, local tools), or a reverse proxy on it that is not named
// in TrustedProxies, whose clients would otherwise all share one limit.
func clientKey(r *http.Request, trusted []netip.Prefix) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if isTrusted(ip, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a garbled hop: trust nothing left of it
			}
			ip = a.Unmap()
			if !isTrusted(ip, trusted) {
				break
			}
		}
	}
	switch {
	case ip.IsLoopback():
		return ""
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// tooMany answers 429 rate_limited to the client key (see clientKey) after
// RefuseDelay, unless the refusals held already are at their limits (see
// RefuseDelay) or the client leaves first.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, key, what string) {
	if s.held.take(key) {
		t := time.NewTimer(s.tun.refuseDelay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		s.held.give(key)
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "rate_limited", "too many "+what+"; retry after a second")
}

// heldRefusals counts the refused requests waiting to be answered, per
// client key and in all.
type heldRefusals struct {
	mu    sync.Mutex
	byKey map[string]int
	total int
}

// take counts a refusal of key as held, or reports false when key ("" is
// a loopback client: not held) or the node holds its most already.
func (h *heldRefusals) take(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if key == "" || h.total >= maxHeldRefusals || h.byKey[key] >= maxHeldPerClient {
		return false
	}
	if h.byKey == nil {
		h.byKey = make(map[string]int)
	}
	h.byKey[key]++
	h.total++
	return true
}

func (h *heldRefusals) give(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.byKey[key]--; h.byKey[key] == 0 {
		delete(h.byKey, key)
	}
}

// limitRegistration wraps the challenge and register handlers: the per
// address limit, and a deadline for reading the body.
func (s *Server) limitRegistration(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.tun.bodyTimeout))
		if key := clientKey(r, s.opts.TrustedProxies); !s.regLimits.allow(key, s.now()) {
			s.tooMany(w, r, key, "registration requests from this address")
			return
		}
		h(w, r)
	}
}

// allowLookup applies the per-alias and per-address lookup limits.
func (s *Server) allowLookup(w http.ResponseWriter, r *http.Request, alias identity.Alias) bool {
	now := s.now()
	key := clientKey(r, s.opts.TrustedProxies)
	if !s.lookupAlias.allow(string(alias), now) || !s.lookupAddr.allow(key, now) {
		s.tooMany(w, r, key, "key and ICE lookups")
		return false
	}
	return true
}

// checkPoW reports whether nonce (base64) is a proof of work of bitsWanted
// for challenge: SHA-256(PoWContext || challenge || nonce) starts with
// bitsWanted zero bits.
func checkPoW(challenge []byte, nonceB64 string, bitsWanted int) bool {
	if bitsWanted <= 0 {
		return true
	}
	nonce, err := wire.DecodeBase64(nonceB64, -1)
	if err != nil || len(nonce) == 0 || len(nonce) > 64 {
		return false
	}
	h := sha256.New()
	h.Write([]byte(PoWContext))
	h.Write(challenge)
	h.Write(nonce)
	return leadingZeroBits(h.Sum(nil)) >= bitsWanted
}

func leadingZeroBits(b []byte) int {
	n := 0
	for _, x := range b {
		if x != 0 {
			return n + bits.LeadingZeros8(x)
		}
		n += 8
	}
	return n
}
