package relay

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// errorCode is the code of an "error" notice: a client frame refused while
// the session stays open (docs/PROTOCOL.md §9.2).
type errorCode string

// The error notice codes.
const (
	codeMalformed     errorCode = "malformed"
	codeUnknownType   errorCode = "unknown_type"
	codeSpoofedFrom   errorCode = "spoofed_from"
	codeCryptoVersion errorCode = "crypto_version"
	codeRateLimited   errorCode = "rate_limited"
)

// frameError is a refused client frame: the notice to send back.
type frameError struct {
	Code    errorCode
	Message string
	ID      string // the frame's id when it had a valid one
}

func (e *frameError) Error() string { return string(e.Code) + ": " + e.Message }

// decodeFrame decodes one client frame of an authenticated session. It
// returns the envelope to route, with from checked against self, or the
// notice explaining the refusal. It never panics. The envelope's Payload
// shares data's memory (wire.DecodeEnvelopeBorrowed): it is valid until
// the session reads its next message into the same buffer, and is used
// only to re-encode the envelope (router.publish).
func decodeFrame(data []byte, self identity.Alias) (*wire.Envelope, *frameError) {
	env, err := wire.DecodeEnvelopeBorrowed(data)
	if err == nil {
		switch {
		case !env.Type.IsCall():
			return nil, &frameError{codeUnknownType, "unknown message type", env.ID}
		case env.From != self:
			return nil, &frameError{codeSpoofedFrom, "from must be the authenticated alias " + string(self), env.ID}
		}
		return env, nil
	}
	// Classify the failure for the notice, on a lenient second look that
	// builds nothing (wire.EnvelopeHead).
	h, ok := wire.EnvelopeHead(data)
	if !ok || !h.HasType {
		return nil, &frameError{Code: codeMalformed, Message: "a frame must be a JSON object with a string type"}
	}
	id := h.ID
	if !validNoticeID(id) {
		id = ""
	}
	switch {
	case !h.Type.IsCall():
		return nil, &frameError{codeUnknownType, "unknown message type", id}
	case errors.Is(err, wire.ErrCryptoVersion):
		return nil, &frameError{codeCryptoVersion, "call frames need crypto_v 2", id}
	}
	return nil, &frameError{codeMalformed, "invalid envelope: " + trimErr(err), id}
}

// trimErr keeps an error message short and free of client-supplied bulk.
func trimErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// validNoticeID reports whether id may be echoed in a notice (the envelope id
// syntax of §2).
func validNoticeID(id string) bool {
	if id == "" || len(id) > wire.MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// authFrame is the client's answer to the WebSocket challenge.
type authFrame struct {
	Type      string         `json:"type"`
	Alias     identity.Alias `json:"alias"`
	Signature string         `json:"signature"`
}

// errNotAuth is returned by decodeAuth for anything but a valid auth frame.
var errNotAuth = errors.New("expected an auth frame")

// decodeAuth strictly decodes an auth frame; the alias is syntactically valid
// and the signature 64 bytes.
func decodeAuth(data []byte) (identity.Alias, []byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f authFrame
	if err := dec.Decode(&f); err != nil || dec.More() || f.Type != "auth" {
		return "", nil, errNotAuth
	}
	if !f.Alias.Valid() {
		return "", nil, fmt.Errorf("%w: invalid alias", errNotAuth)
	}
	sig, err := wire.DecodeBase64(f.Signature, ed25519.SignatureSize)
	if err != nil {
		return "", nil, fmt.Errorf("%w: signature must be base64 of 64 bytes", errNotAuth)
	}
	return f.Alias, sig, nil
}

// Relay -> client frames.

type challengeFrame struct {
	Type      string `json:"type"` // "challenge"
	Challenge []byte `json:"challenge"`
}

type readyFrame struct {
	Type           string         `json:"type"` // "ready"
	Alias          identity.Alias `json:"alias"`
	Token          string         `json:"token"`
	TokenExpiresIn int            `json:"token_expires_in"`
	Time           int64          `json:"time"` // the relay's clock, Unix ms: clients report their skew
}

// pongFrame answers a client's {"type":"ping"} (§9.2 liveness).
var pongFrame = []byte(`{"type":"pong"}`)

// isPingFrame reports whether data is the client liveness frame
// {"type":"ping"} (other members ignored).
func isPingFrame(data []byte) bool {
	var head struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(data, &head) == nil && head.Type == "ping"
}

type errorFrame struct {
	Type    string    `json:"type"` // "error"
	Code    errorCode `json:"code"`
	Message string    `json:"message"`
	ID      string    `json:"id,omitempty"`
}

type undeliverableFrame struct {
	Type   string         `json:"type"` // "undeliverable"
	ID     string         `json:"id"`
	To     identity.Alias `json:"to"`
	Reason string         `json:"reason"`
}

// reconnectFrame is sent to every session when the node shuts down.
var reconnectFrame = []byte(`{"type":"reconnect"}`)

// encodeFrame marshals a relay-built frame. These types hold only strings,
// integers and byte slices, which always marshal.
func encodeFrame(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
