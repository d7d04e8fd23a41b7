package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/hot"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// ConnState is the state of the relay connection.
type ConnState string

// Connection states.
const (
	StateConnecting   ConnState = "connecting"   // dialling or authenticating
	StateConnected    ConnState = "connected"    // authenticated; envelopes flow
	StateDisconnected ConnState = "disconnected" // waiting to reconnect
	StateClosed       ConnState = "closed"       // Close was called
)

// Errors returned by the client.
var (
	ErrNotConnected = errors.New("client: not connected to the relay (it reconnects by itself; try again shortly)")
	ErrClosed       = errors.New("client: closed")
	ErrUnauthorized = errors.New("client: the relay refused authentication")
	// ErrTooManySessions: the alias has the relay's maximum of concurrent
	// sessions (devices) already; the newest is refused (PROTOCOL §9.2).
	// A reconnecting client keeps trying with backoff.
	ErrTooManySessions = errors.New("client: the relay refused the session: too many sessions of this alias")
)

// Undeliverable is the relay's notice that an envelope with a client id could
// not be delivered: Reason is ReasonOffline (no device of the recipient is
// connected), ReasonUnavailable or ReasonRecipientBusy (the client already
// sent it once more).
type Undeliverable struct {
	ID     string         `json:"id"`
	To     identity.Alias `json:"to"`
	Reason string         `json:"reason"`
}

// RelayError is a frame the relay refused while keeping the session open.
type RelayError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id"`
}

// Options configure a Client.
type Options struct {
	// RelayURL is the relay, http(s)://host:port, or several nodes of one
	// deployment separated by commas; RelayURLs adds more. The client
	// connects to any that answers and, when it loses its relay, moves to
	// the next one at once.
	RelayURL  string
	RelayURLs []string
	Identity  *identity.Identity // this user's keys
	Alias     identity.Alias     // this user's alias, from Register or the keystore
	Pins      *PinStore          // pinned peer keys; nil keeps them in memory

	// Handlers run on the client's read goroutine and must not block.
	OnEnvelope      func(*wire.Envelope)
	OnUndeliverable func(Undeliverable)
	OnRelayError    func(RelayError)

	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Backoff bounds for reconnecting: full jitter between backoffMin and an
// exponentially growing cap, at most backoffMax.
var (
	backoffMin = 250 * time.Millisecond
	backoffMax = 10 * time.Second
)

// Client is an authenticated, self-reconnecting connection to a relay.
type Client struct {
	opts  Options
	bases []string // the relays, normalised (relayList)
	log   *slog.Logger
	hc    *http.Client
	state *hot.Value[ConnState]

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	conn       *websocket.Conn
	token      string
	tokenRenew time.Time // after it, bearer reconnects for a fresh token (token.go)
	baseIdx    int       // the relay of bases connected to, or last tried

	sent   sentLog    // recent envelopes with an id, for recipient_busy
	writes writeWatch // Send's writes, for keepAlive
	// Liveness (liveness.go).
	wsHC      *http.Client     // hc, recording the WebSocket's local address
	wsLocal   localAddrTracker // the local address of the WebSocket's connection
	immediate atomic.Bool      // the next reconnect skips the backoff wait
	renewing  atomic.Bool      // the connection was closed to renew the token
	skew      atomic.Int64     // ClockSkew, in nanoseconds

	iceMu   sync.Mutex
	ice     *ICEConfig
	iceExp  time.Time
	iceBase string           // the relay node ice came from: each node may name its own TURN
	now     func() time.Time // the ICE cache's clock: time.Now, but in tests
}

// Connect connects and authenticates to the relay and keeps the connection
// up, reconnecting with capped, jittered backoff, until Close. It returns
// once the first authentication succeeded, or with the error of the first
// attempt if the relay refused it (ErrUnauthorized) or ctx ended.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Identity == nil {
		return nil, errors.New("client: Options.Identity is required")
	}
	if !opts.Alias.Valid() {
		return nil, fmt.Errorf("client: Options.Alias %q is not an alias; register first", opts.Alias)
	}
	bases, err := relayList(opts.RelayURL, opts.RelayURLs)
	if err != nil {
		return nil, err
	}
	if opts.Pins == nil {
		opts.Pins, _ = OpenPinStore("")
	}
	c := &Client{
		opts:  opts,
		bases: bases,
		log:   opts.Logger,
		hc:    opts.HTTPClient,
		state: hot.New(StateConnecting),
		done:  make(chan struct{}),
		now:   time.Now,
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	c.wsHC = wsHTTPClient(c.hc, &c.wsLocal)
	c.ctx, c.cancel = context.WithCancel(context.Background())

	conn, err := c.dialAny(ctx, c.firstRelay())
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(conn)
	return c, nil
}

// Alias returns the client's own alias.
func (c *Client) Alias() identity.Alias { return c.opts.Alias }

// Identity returns the client's identity.
func (c *Client) Identity() *identity.Identity { return c.opts.Identity }

// State returns the connection state as a hot value: a subscriber gets the
// current state at once.
func (c *Client) State() *hot.Value[ConnState] { return c.state }

// Send sends one envelope. Its From is set to the client's alias.
func (c *Client) Send(ctx context.Context, env *wire.Envelope) error {
	env.From = c.opts.Alias
	data, err := env.Encode()
	if err != nil {
		return err
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return ErrNotConnected
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: sending %s to %s: %w", env.Type, env.To, err)
	}
	// coder/websocket closes the whole connection when a write's context
	// ends mid-write, so the write does not get the caller's
	// cancellation: one caller's cancelled context must not cut every
	// other exchange on the shared connection. Nor a deadline of its own,
	// which would cost a context, a timer and an AfterFunc per frame: the
	// write watch bounds it (keepAlive).
	c.sent.add(env.ID, data)
	c.writes.start()
	err = conn.Write(context.Background(), websocket.MessageText, data)
	c.writes.done()
	if err != nil {
		return fmt.Errorf("client: sending %s to %s: %w", env.Type, env.To, err)
	}
	return nil
}

// writeTimeout bounds the writes to the relay: a connection whose writes
// made no progress for this long (a write under way and none finished) is
// treated as gone, and the client reconnects (keepAlive checks it every
// watchInterval). Tests shorten it.
var writeTimeout = 10 * time.Second

// writeWatch tells whether the relay connection's writes are stuck.
type writeWatch struct {
	inflight atomic.Int32
	progress atomic.Int64 // since watchEpoch: the last write that finished, or began with none under way
}

// watchEpoch is the origin of writeWatch's monotonic readings.
var watchEpoch = time.Now()

func (w *writeWatch) start() {
	if w.inflight.Load() == 0 {
		w.progress.Store(int64(time.Since(watchEpoch)))
	}
	w.inflight.Add(1)
}

func (w *writeWatch) done() {
	w.progress.Store(int64(time.Since(watchEpoch)))
	w.inflight.Add(-1)
}

// stalled is how long writes have been under way without progress (0:
// none under way).
func (w *writeWatch) stalled() time.Duration {
	if w.inflight.Load() == 0 {
		return 0
	}
	return time.Since(watchEpoch) - time.Duration(w.progress.Load())
}

// Close closes the connection and stops reconnecting.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.Close(websocket.StatusNormalClosure, "client closing")
	}
	<-c.done
	c.state.Set(StateClosed)
	c.state.Close()
	return nil
}

// run reads from conn, then reconnects until the client is closed.
func (c *Client) run(conn *websocket.Conn) {
	defer close(c.done)
	attempt := 0
	var lost time.Time
	for {
		if conn != nil {
			attempt = 0
			kctx, stopKeepAlive := context.WithCancel(c.ctx)
			kdone := make(chan struct{})
			go func() {
				defer close(kdone)
				c.keepAlive(kctx, conn)
			}()
			err := c.readLoop(conn)
			stopKeepAlive()
			<-kdone
			c.setConn(nil, "")
			if c.ctx.Err() != nil {
				return
			}
			lost = time.Now()
			c.log.Info("relay connection lost; reconnecting", "relay", c.relayBase(), "relays", len(c.bases), "err", err)
		}
		c.state.Set(StateDisconnected)
		if c.immediate.Swap(false) {
			// A dead connection found by keepAlive: dial at once.
		} else if !sleepCtx(c.ctx, c.reconnectWait(attempt)) {
			return
		}
		attempt++
		c.mu.Lock()
		next := c.baseIdx + 1 // the relay just lost (or failed) goes last
		c.mu.Unlock()
		if c.renewing.Swap(false) {
			next-- // closed to renew the token (token.go): the same relay first
		}
		var err error
		conn, err = c.dialAny(c.ctx, next)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("relay reconnect failed", "attempt", attempt, "err", err)
			conn = nil
		} else {
			c.log.Info("relay reconnected", "relay", c.relayBase(), "attempt", attempt, "after", time.Since(lost).Round(time.Millisecond))
		}
	}
}

func backoff(attempt int) time.Duration {
	limit := backoffMin << min(attempt, 16)
	if limit > backoffMax || limit <= 0 {
		limit = backoffMax
	}
	return backoffMin/2 + rand.N(limit)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// frame is the union of the relay's control frames (PROTOCOL.md §9.2).
type frame struct {
	Type      string `json:"type"`
	Challenge string `json:"challenge,omitempty"`
	Alias     string `json:"alias,omitempty"`
	Signature string `json:"signature,omitempty"`
	Token     string `json:"token,omitempty"`
	// TokenExpiresIn is ready's token lifetime in seconds.
	TokenExpiresIn int   `json:"token_expires_in,omitempty"`
	Time           int64 `json:"time,omitempty"` // ready: the relay's clock, Unix ms
}

// authTimeout bounds the whole handshake.
const authTimeout = 10 * time.Second

// dial connects and authenticates to relay idx of bases; on success the
// connection is installed.
func (c *Client) dial(ctx context.Context, idx int) (*websocket.Conn, error) {
	c.state.Set(StateConnecting)
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	base := c.bases[idx]
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/api/v1/ws"
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c.wsHC})
	if err != nil {
		return nil, fmt.Errorf("client: dialling %s: %w", wsURL, err)
	}
	conn.SetReadLimit(wire.MaxEnvelopeSize)
	fail := func(err error) (*websocket.Conn, error) {
		conn.CloseNow()
		return nil, err
	}
	var ch frame
	if err := readFrame(ctx, conn, &ch); err != nil {
		return fail(fmt.Errorf("client: waiting for the relay's challenge: %w", err))
	}
	chal, err := wire.DecodeBase64(ch.Challenge, -1)
	if ch.Type != "challenge" || err != nil || len(chal) == 0 {
		return fail(fmt.Errorf("client: the relay sent %q instead of a valid challenge", ch.Type))
	}
	sig := ed25519.Sign(c.opts.Identity.SigningKey, append([]byte(wsAuthContext), chal...))
	auth, _ := json.Marshal(frame{Type: "auth", Alias: string(c.opts.Alias), Signature: base64.StdEncoding.EncodeToString(sig)})
	sent := time.Now()
	if err := conn.Write(ctx, websocket.MessageText, auth); err != nil {
		return fail(fmt.Errorf("client: sending auth: %w", err))
	}
	var ready frame
	if err := readFrame(ctx, conn, &ready); err != nil {
		if websocket.CloseStatus(err) == 4001 {
			return fail(fmt.Errorf("%w: %v (is %s registered on this relay?)", ErrUnauthorized, err, c.opts.Alias))
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.StatusTryAgainLater && ce.Reason == "too_many_sessions" {
			return fail(fmt.Errorf("%w (%s on this relay node); close another device's session or try again later", ErrTooManySessions, c.opts.Alias))
		}
		return fail(fmt.Errorf("client: waiting for ready: %w", err))
	}
	if ready.Type != "ready" || ready.Token == "" {
		return fail(fmt.Errorf("client: the relay sent %q instead of ready", ready.Type))
	}
	c.noteSkew(ready.Time, sent, time.Now())
	c.mu.Lock()
	c.baseIdx = idx
	c.mu.Unlock()
	c.setToken(conn, ready.Token, ready.TokenExpiresIn)
	c.state.Set(StateConnected)
	c.log.Info("connected to the relay", "relay", base, "alias", c.opts.Alias)
	return conn, nil
}

func readFrame(ctx context.Context, conn *websocket.Conn, v any) error {
	_, data, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func (c *Client) setConn(conn *websocket.Conn, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn, c.token = conn, token
}

// readLoop dispatches frames until the connection fails.
//
// It reads each frame into one buffer of the connection's, and nothing
// decoded from a frame keeps a reference to it; the client's end (c.ctx)
// closes the connection through one watch for the connection, where
// reading with c.ctx would arm one per frame (coder/websocket's read
// timeout). A process holding thousands of clients (duet loadtest) made
// ~1.5 KiB of garbage per frame with conn.Read and c.ctx.
func (c *Client) readLoop(conn *websocket.Conn) error {
	defer conn.CloseNow()
	stop := context.AfterFunc(c.ctx, func() { conn.CloseNow() })
	defer stop()
	var buf bytes.Buffer
	for {
		if buf.Cap() > maxKeptReadBuffer {
			buf = bytes.Buffer{} // a large frame's buffer is not kept
		}
		buf.Reset()
		_, r, err := conn.Reader(context.Background())
		if err == nil {
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			return err
		}
		data := buf.Bytes()
		head, ok := wire.EnvelopeHead(data)
		if !ok {
			c.log.Warn("relay sent a frame that is not a JSON object; ignored")
			continue
		}
		switch head.Type {
		case "undeliverable":
			var u Undeliverable
			if json.Unmarshal(data, &u) != nil || u.Reason == ReasonRecipientBusy && c.onBusy(u) {
				continue
			}
			if c.opts.OnUndeliverable != nil {
				c.opts.OnUndeliverable(u)
			}
		case "error":
			var e RelayError
			if json.Unmarshal(data, &e) == nil {
				c.log.Warn("relay refused a frame", "code", e.Code, "message", e.Message, "id", e.ID)
				if c.opts.OnRelayError != nil {
					c.opts.OnRelayError(e)
				}
			}
		case "reconnect":
			c.log.Info("relay is restarting; reconnecting")
			return errors.New("relay asked to reconnect")
		default:
			env, err := wire.DecodeEnvelope(data)
			if err != nil {
				c.log.Warn("relay delivered an invalid envelope; dropped", "err", err)
				continue
			}
			if env.To != c.opts.Alias {
				c.log.Warn("relay delivered an envelope for another alias; dropped", "to", env.To)
				continue
			}
			if c.opts.OnEnvelope != nil {
				c.opts.OnEnvelope(env)
			}
		}
	}
}

// maxKeptReadBuffer is the largest read buffer a connection keeps between
// frames (an envelope's limit is 64 KiB; most are under 2 KiB).
const maxKeptReadBuffer = 8 << 10

// PeerKeys returns peer's public keys, fetched from the relay and checked
// against the pin store (pinned on first use). A key that differs from the
// pinned one gives a *KeyChangedError (errors.Is ErrKeyChanged).
func (c *Client) PeerKeys(ctx context.Context, peer identity.Alias) (identity.PublicKeys, error) {
	keys, err := c.fetchKeys(ctx, peer)
	if err != nil {
		return identity.PublicKeys{}, err
	}
	if err := c.opts.Pins.Check(peer, keys); err != nil {
		return identity.PublicKeys{}, err
	}
	return keys, nil
}

// RelayKeys returns the keys the relay serves for peer now, neither checked
// against nor added to the pin store: show their safety number to the user
// (identity.SafetyNumber) before pinning them with PinStore.Accept.
func (c *Client) RelayKeys(ctx context.Context, peer identity.Alias) (identity.PublicKeys, error) {
	return c.fetchKeys(ctx, peer)
}

// AcceptKey fetches peer's current keys from the relay and pins them,
// replacing an earlier pin. Call it only after the user compared the new
// safety number out of band.
func (c *Client) AcceptKey(ctx context.Context, peer identity.Alias) (identity.PublicKeys, error) {
	keys, err := c.fetchKeys(ctx, peer)
	if err != nil {
		return identity.PublicKeys{}, err
	}
	return keys, c.opts.Pins.Accept(peer, keys)
}

// PinnedKeys returns the keys pinned for peer, from the local pin store
// (no request to the relay). The call module uses it to check that a
// signaling session it holds still matches the pin, e.g. after AcceptKey.
func (c *Client) PinnedKeys(peer identity.Alias) (identity.PublicKeys, bool) {
	return c.opts.Pins.Pinned(peer)
}

// SafetyNumber returns the safety number between this user and peer, from
// peer's pinned keys.
func (c *Client) SafetyNumber(peer identity.Alias) (string, bool) {
	keys, ok := c.opts.Pins.Pinned(peer)
	if !ok {
		return "", false
	}
	return identity.SafetyNumber(c.opts.Identity.PublicKeys(), keys), true
}

func (c *Client) fetchKeys(ctx context.Context, peer identity.Alias) (identity.PublicKeys, error) {
	if !peer.Valid() {
		return identity.PublicKeys{}, fmt.Errorf("client: %q is not an alias", peer)
	}
	var resp struct {
		Alias     string `json:"alias"`
		Signing   []byte `json:"ed25519"`
		Agreement []byte `json:"x25519"`
	}
	if err := c.authedGET(ctx, "/api/v1/keys/"+string(peer), &resp); err != nil {
		return identity.PublicKeys{}, fmt.Errorf("client: fetching the keys of %s: %w", peer, err)
	}
	if resp.Alias != string(peer) {
		return identity.PublicKeys{}, fmt.Errorf("client: the relay answered keys of %q for %s", resp.Alias, peer)
	}
	keys, err := identity.ParsePublicKeys(resp.Signing, resp.Agreement)
	if err != nil {
		return identity.PublicKeys{}, fmt.Errorf("client: the relay sent invalid keys for %s: %w", peer, err)
	}
	return keys, nil
}
