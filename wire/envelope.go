package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

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
	TypeCallMedia  Type = "call_media"
)

// CallTypes lists every call message type.
var CallTypes = []Type{TypeCallOffer, TypeCallAnswer, TypeCallICE, TypeCallReject, TypeCallHangup, TypeCallRekey, TypeCallSelect, TypeCallMedia}

// IsCall reports whether t is one of the call message types.
func (t Type) IsCall() bool {
	switch t {
	case TypeCallOffer, TypeCallAnswer, TypeCallICE, TypeCallReject, TypeCallHangup, TypeCallRekey, TypeCallSelect, TypeCallMedia:
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
// ErrCryptoVersion for crypto_v). A crypto_v other than 2 is reported after
// the JSON, the field names and the field types, before the other field
// rules (docs/PROTOCOL.md §4.4, steps 0 and 1). It never panics.
//
// It decodes in one pass and stops at the first fault: an unknown or
// duplicate key, or a value of the wrong JSON type, is refused before the
// rest of the input is read, and no value other than a string or an integer
// is ever parsed (an object or array in a field is refused at its first
// byte), so the members and nesting of a refused input cost nothing to
// build. An envelope has at most len(envelopeFields) members.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	return decodeEnvelope(data, false)
}

// DecodeEnvelopeBorrowed is DecodeEnvelope, except that the Payload of the
// envelope it returns shares data's memory instead of being a copy (when it
// has no escape, as a base64 payload never has): it is valid only while
// data is unchanged. For the relay, which re-encodes an envelope
// (AppendJSON) before it reads the next frame into the same buffer: a bulk
// envelope is then copied once instead of twice.
func DecodeEnvelopeBorrowed(data []byte) (*Envelope, error) {
	return decodeEnvelope(data, true)
}

func decodeEnvelope(data []byte, borrow bool) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrEnvelope, len(data), MaxEnvelopeSize)
	}
	var e Envelope
	if err := decodeEnvelopeInto(data, &e, borrow); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// envelopeFields are the keys of an envelope, in the bit order of the
// duplicate check.
var envelopeFields = [...]string{"type", "to", "from", "call_id", "crypto_v", "payload", "id"}

// decodeEnvelopeInto is DecodeEnvelope's single pass over the JSON object.
func decodeEnvelopeInto(data []byte, e *Envelope, borrow bool) error {
	p := parser{data: data}
	p.skipWS()
	if !p.next('{') {
		// Judged by the first byte: nothing else is parsed.
		switch k := kindAt(p.data[p.pos:]); k {
		case kindInvalid:
			if p.pos >= len(p.data) {
				return fmt.Errorf("%w: %w", ErrEnvelope, p.errorf("unexpected end of input"))
			}
			return fmt.Errorf("%w: %w", ErrEnvelope, p.errorf("unexpected character %q", p.data[p.pos]))
		default:
			return fmt.Errorf("%w: a JSON %s, want an object", ErrEnvelope, k)
		}
	}
	var seen uint8
	for more := !p.openObject(); more; {
		k, keyEnd, err := p.memberKey()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrEnvelope, err)
		}
		field := -1
		for i, f := range envelopeFields {
			if k == f {
				field = i
				break
			}
		}
		if field < 0 {
			return fmt.Errorf("%w: unknown field %q", ErrEnvelope, truncate(k, 32))
		}
		if seen&(1<<field) != 0 {
			return fmt.Errorf("%w: %w", ErrEnvelope, fmt.Errorf("%w: duplicate object key %q at byte %d", ErrInvalidJSON, k, keyEnd))
		}
		seen |= 1 << field
		if err := p.envelopeField(k, e, borrow); err != nil {
			return err
		}
		var ok bool
		if more, ok = p.memberEnd(); !ok {
			return fmt.Errorf("%w: %w", ErrEnvelope, p.errMemberEnd())
		}
	}
	p.skipWS()
	if p.pos != len(p.data) {
		return fmt.Errorf("%w: %w", ErrEnvelope, p.errorf("trailing data after the JSON value"))
	}
	return nil
}

// envelopeField decodes the value of the envelope field k at p.pos.
// With borrow, a payload without escapes is not copied (see
// DecodeEnvelopeBorrowed).
func (p *parser) envelopeField(k string, e *Envelope, borrow bool) error {
	got := kindAt(p.data[p.pos:])
	if k == "crypto_v" {
		if got != kindNumber {
			return fmt.Errorf("%w: crypto_v is a JSON %s, want an integer", ErrEnvelope, got)
		}
		v, err := p.number()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrEnvelope, err)
		}
		// A value other than 2 is refused by Validate, after every field's
		// name and JSON type (docs/PROTOCOL.md §4.4, steps 0 and 1).
		e.CryptoV = int(max(min(v.num, 1<<31-1), -1<<31))
		return nil
	}
	if got != kindString {
		if got == kindInvalid {
			_, err := p.value()
			return fmt.Errorf("%w: %w", ErrEnvelope, err)
		}
		return fmt.Errorf("%w: %s is a JSON %s, want a string", ErrEnvelope, k, got)
	}
	s, err := p.stringOf(borrow && k == "payload")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	switch k {
	case "type":
		e.Type = Type(s)
	case "to":
		e.To = identity.Alias(s)
	case "from":
		e.From = identity.Alias(s)
	case "call_id":
		e.CallID = s
	case "payload":
		e.Payload = s
	case "id":
		if s == "" { // Validate reads "" as absent
			return fmt.Errorf("%w: id must be 1..%d characters of [A-Za-z0-9_-]; leave it out instead of empty", ErrEnvelope, MaxIDLen)
		}
		e.ID = s
	}
	return nil
}

// kindAt is the kind of the JSON value starting at data[0], judged by its
// first byte only (kindInvalid when none fits).
func kindAt(data []byte) kind {
	if len(data) == 0 {
		return kindInvalid
	}
	switch c := data[0]; {
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == '"':
		return kindString
	case c == 't', c == 'f':
		return kindTrue
	case c == 'n':
		return kindNull
	case c == '-' || c >= '0' && c <= '9':
		return kindNumber
	}
	return kindInvalid
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

// Encode returns the envelope's JSON encoding (AppendJSON).
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e.AppendJSON(nil), nil
}

// AppendJSON appends the envelope's JSON encoding to b: byte for byte what
// json.Marshal makes of it (the fields in order, id left out when empty),
// without reflection and, for strings that need no escaping, without
// allocating beyond b. It does not validate the envelope (Encode does).
func (e *Envelope) AppendJSON(b []byte) []byte {
	b = slices.Grow(b, len(`{"type":"","to":"","from":"","call_id":"","crypto_v":-2147483648,"payload":"","id":""}`)+
		len(e.Type)+len(e.To)+len(e.From)+len(e.CallID)+len(e.Payload)+len(e.ID))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"to":`...)
	b = appendJSONString(b, string(e.To))
	b = append(b, `,"from":`...)
	b = appendJSONString(b, string(e.From))
	b = append(b, `,"call_id":`...)
	b = appendJSONString(b, e.CallID)
	b = append(b, `,"crypto_v":`...)
	b = strconv.AppendInt(b, int64(e.CryptoV), 10)
	b = append(b, `,"payload":`...)
	b = appendJSONString(b, e.Payload)
	if e.ID != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, e.ID)
	}
	return append(b, '}')
}

// appendJSONString appends s quoted as json.Marshal quotes it: copied when
// it is printable ASCII that json.Marshal leaves alone, else by
// json.Marshal (escapes, HTML-safe characters, invalid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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

// Head is what EnvelopeHead reads of a frame.
type Head struct {
	Type    Type   // "" when absent or not a string
	HasType bool   // "type" is a string (possibly empty)
	ID      string // "" when absent or not a string; unchecked
}

// EnvelopeHead reads the "type" and "id" of a top-level JSON object without
// building it, for explaining why a frame was refused: members are skipped
// over, not decoded, and nesting deeper than MaxJSONDepth, or anything that
// is not JSON, stops it with ok false. It never panics and costs a scan of
// the input.
func EnvelopeHead(data []byte) (h Head, ok bool) {
	if len(data) > MaxEnvelopeSize {
		return Head{}, false
	}
	p := parser{data: data}
	p.skipWS()
	if !p.next('{') {
		return Head{}, false
	}
	for more := !p.openObject(); more; {
		p.skipWS()
		if !p.next('"') {
			return Head{}, false
		}
		// Keys are compared raw (a key spelled with escapes is skipped).
		k := ""
		if rest := p.data[p.pos:]; bytes.HasPrefix(rest, []byte(`"type"`)) {
			k = "type"
		} else if bytes.HasPrefix(rest, []byte(`"id"`)) {
			k = "id"
		}
		if !p.skipString() || !p.colon() {
			return Head{}, false
		}
		if k != "" && p.next('"') {
			v, err := p.string()
			if err != nil {
				return Head{}, false
			}
			if k == "type" {
				h.Type, h.HasType = Type(v), true
			} else {
				h.ID = v
			}
		} else if !p.skipValue() {
			return Head{}, false
		} else if k == "type" { // the last of duplicate keys counts
			h.Type, h.HasType = "", false
		} else if k == "id" {
			h.ID = ""
		}
		var ok bool
		if more, ok = p.memberEnd(); !ok {
			return Head{}, false
		}
	}
	p.skipWS()
	return h, p.pos == len(p.data)
}

// skipValue moves past one JSON value without building it. It checks the
// structure (brackets, separators, nesting up to MaxJSONDepth) and the
// strings' quoting, not the §4.2 rules for numbers and escapes.
func (p *parser) skipValue() bool {
	depth := 0
	for {
		p.skipWS()
		if p.pos >= len(p.data) {
			return false
		}
		switch c := p.data[p.pos]; {
		case c == '{' || c == '[':
			depth++
			if depth > MaxJSONDepth {
				return false
			}
			p.pos++
			p.skipWS()
			if p.next('}') || p.next(']') {
				p.pos++
				depth--
				break
			}
			if c == '{' {
				if !p.skipKey() {
					return false
				}
			}
			continue
		case c == '"':
			if !p.skipString() {
				return false
			}
		default:
			start := p.pos
			for p.pos < len(p.data) {
				c := p.data[p.pos]
				if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
					break
				}
				p.pos++
			}
			if p.pos == start {
				return false
			}
		}
		// After a value: close containers or go on to the next element.
		for {
			p.skipWS()
			if depth == 0 {
				return true
			}
			if p.next(']') || p.next('}') {
				p.pos++
				depth--
				continue
			}
			if !p.next(',') {
				return false
			}
			p.pos++
			p.skipWS()
			if p.next('"') && p.inObjectKeyPosition() {
				if !p.skipKey() {
					return false
				}
			}
			break
		}
	}
}

// inObjectKeyPosition reports whether the string at p.pos is an object key:
// one followed by ':'.
func (p *parser) inObjectKeyPosition() bool {
	save := p.pos
	defer func() { p.pos = save }()
	if !p.skipString() {
		return false
	}
	p.skipWS()
	return p.next(':')
}

// skipKey moves past an object key and its ':'.
func (p *parser) skipKey() bool {
	return p.next('"') && p.skipString() && p.colon()
}

// skipString moves past a JSON string starting at its opening quote.
func (p *parser) skipString() bool {
	p.pos++
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '"':
			p.pos++
			return true
		case '\\':
			p.pos += 2
		default:
			p.pos++
		}
	}
	return false
}
