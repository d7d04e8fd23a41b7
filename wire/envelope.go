package wire

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/duetcall/duet/identity"
)

// Type is a message type carried in an envelope's "type" field.
type Type string

// The call message types (docs/PROTOCOL.md §3).
const (
	TypeCallOffer  Type = "call_offer"
	TypeCallAnswer Type = "call_answer"
	TypeCallICE    Type = "call_ice"
	TypeCallReject Type = "call_reject"
	TypeCallHangup Type = "call_hangup"
	TypeCallRekey  Type = "call_rekey"
	TypeCallSelect Type = "call_select"
)

// CallTypes lists every call message type.
var CallTypes = []Type{TypeCallOffer, TypeCallAnswer, TypeCallICE, TypeCallReject, TypeCallHangup, TypeCallRekey, TypeCallSelect}

// IsCall reports whether t is one of the call message types.
func (t Type) IsCall() bool {
	switch t {
	case TypeCallOffer, TypeCallAnswer, TypeCallICE, TypeCallReject, TypeCallHangup, TypeCallRekey, TypeCallSelect:
		return true
	}
	return false
}

// CryptoV2 is the only signaling crypto version duet accepts.
const CryptoV2 = 2

// Limits on envelopes (docs/PROTOCOL.md §2).
const (
	MaxEnvelopeSize = 64 << 10 // an encoded envelope, the relay's frame limit
	MaxPayloadSize  = 48 << 10 // the base64 payload text
	MaxIDLen        = 64       // call_id and id
)

// Envelope errors. Decoding failures wrap ErrEnvelope; a crypto_v other than 2
// wraps ErrCryptoVersion too.
var (
	ErrEnvelope      = errors.New("wire: invalid envelope")
	ErrCryptoVersion = errors.New("wire: unsupported crypto_v (only 2 is accepted)")
)

// Envelope is what the relay sees and forwards: route fields and an opaque,
// sealed payload (docs/PROTOCOL.md §2).
type Envelope struct {
	Type    Type           `json:"type"`
	To      identity.Alias `json:"to"`
	From    identity.Alias `json:"from"`
	CallID  string         `json:"call_id"`
	CryptoV int            `json:"crypto_v"`
	Payload string         `json:"payload"`
	ID      string         `json:"id,omitempty"`
}

// DecodeEnvelope strictly decodes and validates one envelope: JSON outside
// the §4.2 subset (duplicate keys, invalid UTF-8, non-integer numbers),
// unknown fields (keys match exactly, case-sensitively), wrong types
// (including null), trailing data, missing or invalid route fields, oversized
// fields and any crypto_v other than 2 are errors wrapping ErrEnvelope (and
// ErrCryptoVersion for crypto_v). A crypto_v other than 2 is reported before
// the other field rules but after the JSON, the field names and the field
// types (docs/PROTOCOL.md §4.4, step 0 and 1). It never panics.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrEnvelope, len(data), MaxEnvelopeSize)
	}
	v, err := parseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	if v.kind != kindObject {
		return nil, fmt.Errorf("%w: a JSON %s, want an object", ErrEnvelope, v.kind)
	}
	var e Envelope
	for i := range v.obj {
		f := &v.obj[i]
		var dst *string
		switch f.key {
		case "type":
			dst = (*string)(&e.Type)
		case "to":
			dst = (*string)(&e.To)
		case "from":
			dst = (*string)(&e.From)
		case "call_id":
			dst = &e.CallID
		case "payload":
			dst = &e.Payload
		case "id":
			dst = &e.ID
		case "crypto_v":
			if f.val.kind != kindNumber {
				return nil, fmt.Errorf("%w: crypto_v is a JSON %s, want an integer", ErrEnvelope, f.val.kind)
			}
			// Checked after every field's name and JSON type
			// (docs/PROTOCOL.md §4.4, step 1), by Validate.
			e.CryptoV = int(max(min(f.val.num, 1<<31-1), -1<<31))
			continue
		default:
			return nil, fmt.Errorf("%w: unknown field %q", ErrEnvelope, truncate(f.key, 32))
		}
		if f.val.kind != kindString {
			return nil, fmt.Errorf("%w: %s is a JSON %s, want a string", ErrEnvelope, f.key, f.val.kind)
		}
		if f.key == "id" && f.val.str == "" { // Validate reads "" as absent
			return nil, fmt.Errorf("%w: id must be 1..%d characters of [A-Za-z0-9_-]; leave it out instead of empty", ErrEnvelope, MaxIDLen)
		}
		*dst = f.val.str
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Validate checks the envelope's fields as DecodeEnvelope does.
func (e *Envelope) Validate() error {
	switch {
	case e.CryptoV != CryptoV2: // first: docs/PROTOCOL.md §4.4 step 1
		return fmt.Errorf("%w: %w: got %d", ErrEnvelope, ErrCryptoVersion, e.CryptoV)
	case e.Type == "":
		return fmt.Errorf("%w: missing type", ErrEnvelope)
	case len(e.Type) > MaxIDLen:
		return fmt.Errorf("%w: type longer than %d bytes", ErrEnvelope, MaxIDLen)
	case !e.To.Valid():
		return fmt.Errorf("%w: to: %w", ErrEnvelope, aliasErr(e.To))
	case !e.From.Valid():
		return fmt.Errorf("%w: from: %w", ErrEnvelope, aliasErr(e.From))
	case !validID(e.CallID):
		return fmt.Errorf("%w: call_id must be 1..%d characters of [A-Za-z0-9_-]", ErrEnvelope, MaxIDLen)
	case e.ID != "" && !validID(e.ID):
		return fmt.Errorf("%w: id must be 1..%d characters of [A-Za-z0-9_-]", ErrEnvelope, MaxIDLen)
	case e.Payload == "":
		return fmt.Errorf("%w: missing payload", ErrEnvelope)
	case len(e.Payload) > MaxPayloadSize:
		return fmt.Errorf("%w: payload of %d bytes exceeds the %d-byte limit", ErrEnvelope, len(e.Payload), MaxPayloadSize)
	}
	return nil
}

// Encode returns the envelope's JSON encoding.
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

func aliasErr(a identity.Alias) error {
	_, err := identity.ParseAlias(string(a))
	return err
}

// validID reports whether s is 1..MaxIDLen characters of [A-Za-z0-9_-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
