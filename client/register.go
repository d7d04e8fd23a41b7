package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// Domain-separation prefixes of the relay's signatures (PROTOCOL.md §9).
const (
	registerContext = "duet/v1/register"
	wsAuthContext   = "duet/v1/ws-auth"
)

// ErrRelay wraps an error response from the relay; the message carries the
// relay's error code and text.
var ErrRelay = errors.New("client: relay refused the request")

// APIError is an error response from the relay's HTTP API.
type APIError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("client: relay answered %d %s: %s", e.Status, e.Code, e.Message)
}

func (e *APIError) Unwrap() error { return ErrRelay }

// Register proves possession of id's signing key to the relay at relayURL and
// returns the alias the relay assigned. Registering the same identity again
// returns the same alias (restore on a new device); created reports whether
// the alias is new. relayURL may name several nodes of one deployment,
// separated by commas: a node that cannot be reached, or answers 5xx, passes
// the registration to the next.
func Register(ctx context.Context, hc *http.Client, relayURL string, id *identity.Identity) (alias identity.Alias, created bool, err error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	bases, err := relayList(relayURL, nil)
	if err != nil {
		return "", false, err
	}
	for _, base := range bases {
		alias, created, err = registerAt(ctx, hc, base, id)
		var apiErr *APIError
		if err == nil || ctx.Err() != nil || errors.As(err, &apiErr) && apiErr.Status < 500 {
			break
		}
	}
	return alias, created, err
}

// registerAt is Register with one relay.
func registerAt(ctx context.Context, hc *http.Client, base string, id *identity.Identity) (alias identity.Alias, created bool, err error) {
	var ch struct {
		Challenge string `json:"challenge"`
		PoWBits   int    `json:"pow_bits"`
	}
	if err := doJSON(ctx, hc, http.MethodPost, base+"/api/v1/challenge", "", nil, &ch); err != nil {
		return "", false, fmt.Errorf("client: register: get challenge: %w", err)
	}
	chal, err := wire.DecodeBase64(ch.Challenge, -1)
	if err != nil || len(chal) == 0 {
		return "", false, fmt.Errorf("client: register: relay sent an invalid challenge")
	}
	pub := id.PublicKeys()
	msg := append(append([]byte(registerContext), chal...), pub.Agreement...)
	req := map[string]string{
		"ed25519":   base64.StdEncoding.EncodeToString(pub.Signing),
		"x25519":    base64.StdEncoding.EncodeToString(pub.Agreement),
		"challenge": ch.Challenge,
		"signature": base64.StdEncoding.EncodeToString(ed25519.Sign(id.SigningKey, msg)),
	}
	if ch.PoWBits > 0 {
		if ch.PoWBits > MaxRegisterPoWBits {
			return "", false, fmt.Errorf("client: register: the relay asks for a proof of work of %d bits, more than the %d this client does", ch.PoWBits, MaxRegisterPoWBits)
		}
		nonce, err := solvePoW(ctx, chal, ch.PoWBits)
		if err != nil {
			return "", false, fmt.Errorf("client: register: %w", err)
		}
		req["pow"] = base64.StdEncoding.EncodeToString(nonce)
	}
	var resp struct {
		Alias   string `json:"alias"`
		Created bool   `json:"created"`
	}
	if err := doJSON(ctx, hc, http.MethodPost, base+"/api/v1/register", "", req, &resp); err != nil {
		return "", false, fmt.Errorf("client: register: %w", err)
	}
	a, err := identity.ParseAlias(resp.Alias)
	if err != nil {
		return "", false, fmt.Errorf("client: register: relay assigned %w", err)
	}
	return a, resp.Created, nil
}

// baseURL normalises a relay URL to "http(s)://host[:port][/prefix]".
func baseURL(relayURL string) (string, error) {
	u, err := url.Parse(strings.TrimRight(relayURL, "/"))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("client: relay URL %q: want http://host:port", relayURL)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("client: relay URL %q: scheme must be http or https", relayURL)
	}
	return u.String(), nil
}

// maxResponse bounds what the client reads from any relay response.
const maxResponse = 1 << 20

// notAPI describes a response body that is not the relay's JSON, without
// pasting it: a web page or proxy error can be kilobytes of HTML.
func notAPI(resp *http.Response, data []byte) string {
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && (mt == "text/plain" || mt == "application/json") && len(data) <= 200 {
		if s := strings.TrimSpace(string(data)); s != "" && utf8.ValidString(s) && !strings.ContainsAny(s, "\r\n") {
			return s
		}
	}
	if ct == "" {
		ct = "no Content-Type"
	}
	return fmt.Sprintf("a %d-byte %s body, not the duet API: is the relay URL right?", len(data), ct)
}

func doJSON(ctx context.Context, hc *http.Client, method, u, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, apiErr) != nil || apiErr.Code == "" {
			apiErr.Code, apiErr.Message = http.StatusText(resp.StatusCode), notAPI(resp, data)
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: the answer from %s is not the duet API's JSON (%s): is the relay URL right?", ErrRelay, u, notAPI(resp, data))
	}
	return nil
}

// The registration proof of work (docs/PROTOCOL.md §9.1).
const (
	registerPoWContext = "duet/v1/register-pow"
	// MaxRegisterPoWBits is the most work Register does: a relay asking
	// for more is refused.
	MaxRegisterPoWBits = 28
)

// solvePoW finds a nonce (an 8-byte big-endian counter) such that
// SHA-256(registerPoWContext || challenge || nonce) starts with bits zero
// bits.
func solvePoW(ctx context.Context, challenge []byte, bits int) ([]byte, error) {
	prefix := append([]byte(registerPoWContext), challenge...)
	buf := make([]byte, len(prefix)+8)
	copy(buf, prefix)
	for n := uint64(0); ; n++ {
		if n&0xffff == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("proof of work: %w", ctx.Err())
		}
		binary.BigEndian.PutUint64(buf[len(prefix):], n)
		h := sha256.Sum256(buf)
		if zeroBits(h[:]) >= bits {
			return bytes.Clone(buf[len(prefix):]), nil
		}
	}
}

func zeroBits(h []byte) int {
	n := 0
	for _, b := range h {
		if b != 0 {
			return n + bits.LeadingZeros8(b)
		}
		n += 8
	}
	return n
}
