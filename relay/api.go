package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// maxFrameSize is the WebSocket read limit; larger frames close with 1009.
const maxFrameSize = wire.MaxEnvelopeSize

// maxBodySize bounds HTTP request bodies.
const maxBodySize = 4 << 10

// apiError is the body of every HTTP error (docs/PROTOCOL.md §9).
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// CORS answers for /api/: the methods and request headers the API uses.
const (
	corsAllowMethods = "GET, POST, OPTIONS"
	corsAllowHeaders = "Authorization, Content-Type"
	corsMaxAge       = "600" // seconds a browser may cache a preflight answer
)

// apiCORS lets pages of any origin use the API (browser SDKs loaded from
// another site): every /api/ response carries Access-Control-Allow-Origin:
// *, and an OPTIONS request (a CORS preflight) is answered 204 with the
// allowed methods and headers. Allowing every origin is safe because the
// relay honours no ambient credentials: registration is proven by a
// signature, the WebSocket by a signed challenge and the other endpoints by
// a bearer token the page holds, never cookies, so no credentials are
// allowed either (no Access-Control-Allow-Credentials).
func apiCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method != http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		h.Set("Allow", corsAllowMethods)
		w.WriteHeader(http.StatusNoContent)
	})
}

type challengeResponse struct {
	Challenge []byte `json:"challenge"`
	ExpiresIn int    `json:"expires_in"`
	PoWBits   int    `json:"pow_bits,omitempty"`
}

// handleChallenge: POST /api/v1/challenge (§9.1 step 1).
func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) {
	ch, err := s.dir.NewChallenge(r.Context())
	if err != nil {
		s.log.Warn("relay: issuing a challenge failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the directory is unavailable, retry later")
		return
	}
	writeJSON(w, http.StatusOK, challengeResponse{Challenge: ch, ExpiresIn: int(ChallengeTTL.Seconds()), PoWBits: s.opts.RegisterPoWBits})
}

type registerRequest struct {
	Ed25519   string `json:"ed25519"`
	X25519    string `json:"x25519"`
	Challenge string `json:"challenge"`
	Signature string `json:"signature"`
	PoW       string `json:"pow,omitempty"`
}

type registerResponse struct {
	Alias   identity.Alias `json:"alias"`
	Created bool           `json:"created"`
}

// handleRegister: POST /api/v1/register (§9.1 step 2).
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodySize))
	dec.DisallowUnknownFields()
	var req registerRequest
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "bad_request", "the body must be a JSON object with ed25519, x25519, challenge and signature")
		return
	}
	var fields [4][]byte
	for i, f := range []struct{ name, val string }{
		{"ed25519", req.Ed25519}, {"x25519", req.X25519}, {"challenge", req.Challenge}, {"signature", req.Signature},
	} {
		b, err := wire.DecodeBase64(f.val, -1)
		if err != nil || len(b) == 0 {
			writeError(w, http.StatusBadRequest, "bad_request", f.name+" must be standard base64")
			return
		}
		fields[i] = b
	}
	// The keys the SDKs refuse in a peer (§1.2) are refused here too: a
	// small-order Ed25519 key verifies one signature for many messages,
	// a low-order X25519 key gives a shared secret anyone knows.
	if len(fields[0]) == identity.PublicKeySize && len(fields[1]) == identity.PublicKeySize {
		if _, err := identity.ParsePublicKeys(fields[0], fields[1]); err != nil {
			s.authFailure("register_bad_key")
			writeError(w, http.StatusBadRequest, "bad_request", strings.TrimPrefix(strings.ReplaceAll(err.Error(), "the peer's key is broken or forged", "use keys derived as in PROTOCOL §1.2"), "identity: "))
			return
		}
	}
	if !checkPoW(fields[2], req.PoW, s.opts.RegisterPoWBits) {
		s.authFailure("register_bad_pow")
		writeError(w, http.StatusUnauthorized, "bad_pow", fmt.Sprintf("this relay wants a proof of work: pow = base64 of a nonce such that SHA-256(%q || challenge || nonce) starts with %d zero bits", PoWContext, s.opts.RegisterPoWBits))
		return
	}
	alias, created, err := s.dir.Register(r.Context(), fields[0], fields[1], fields[2], fields[3])
	switch {
	case errors.Is(err, ErrBadKey):
		writeError(w, http.StatusBadRequest, "bad_request", "ed25519 and x25519 must be 32-byte public keys")
		return
	case errors.Is(err, ErrBadChallenge):
		s.authFailure("register_bad_challenge")
		writeError(w, http.StatusUnauthorized, "bad_challenge", "unknown, expired or used challenge; request a new one")
		return
	case errors.Is(err, ErrBadSignature):
		s.authFailure("register_bad_signature")
		writeError(w, http.StatusUnauthorized, "bad_signature", `signature must be Ed25519 over "duet/v1/register" || challenge || x25519`)
		return
	case err != nil:
		s.log.Warn("relay: registration failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the directory is unavailable, retry later")
		return
	}
	result := "existing"
	if created {
		result = "created"
	}
	s.metrics.registrations.WithLabelValues(result).Inc()
	s.log.Info("relay: registered", "alias", alias, "created", created)
	writeJSON(w, http.StatusOK, registerResponse{Alias: alias, Created: created})
}

type keysResponse struct {
	Alias   identity.Alias `json:"alias"`
	Ed25519 []byte         `json:"ed25519"`
	X25519  []byte         `json:"x25519"`
}

// handleKeys: GET /api/v1/keys/{alias} (§9.1 step 3).
func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request, _ identity.Alias) {
	alias, err := identity.ParseAlias(r.PathValue("alias"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "not an alias: want u followed by 8 digits")
		return
	}
	rec, err := s.dir.Lookup(r.Context(), alias)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such alias")
		return
	}
	if err != nil {
		s.log.Warn("relay: key lookup failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the directory is unavailable, retry later")
		return
	}
	writeJSON(w, http.StatusOK, keysResponse{Alias: alias, Ed25519: rec.Ed25519, X25519: rec.X25519})
}

// handleICEConfig: GET /api/v1/calls/ice-config (§9.4).
func (s *Server) handleICEConfig(w http.ResponseWriter, r *http.Request, user identity.Alias) {
	if s.opts.ICE == nil {
		writeError(w, http.StatusServiceUnavailable, "ice_unavailable", "this relay has no ICE configuration")
		return
	}
	cfg, err := s.opts.ICE.Get(r.Context(), user)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("relay: ice config failed", "err", err)
		}
		writeError(w, http.StatusServiceUnavailable, "ice_unavailable", "no ICE servers available, retry later")
		return
	}
	writeJSON(w, http.StatusOK, cfg)
}

// authed wraps a handler that needs a bearer token (§9.3).
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, identity.Alias)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			s.authFailure("token_missing")
			writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> with the token from the WebSocket ready frame")
			return
		}
		alias, err := s.tokens.Verify(tok)
		if err != nil {
			s.authFailure("token_invalid")
			writeError(w, http.StatusUnauthorized, "unauthorized", "invalid or expired token; authenticate again over the WebSocket")
			return
		}
		if !s.allowLookup(w, r, alias) {
			return
		}
		h(w, r, alias)
	}
}
