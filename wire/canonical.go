package wire

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Limits of the canonical JSON parser (docs/PROTOCOL.md §4.2). They bound the
// memory and stack any input can cost.
const (
	MaxJSONSize    = 64 << 10  // bytes of JSON text
	MaxJSONDepth   = 32        // nested objects and arrays
	MaxSafeInteger = 1<<53 - 1 // largest magnitude of a JSON number
)

// ErrInvalidJSON is wrapped by every error of Canonicalize and CanonicalMarshal:
// the input is not JSON, or it leaves the subset signed payloads may use
// (integers only, no duplicate keys, valid UTF-8, no lone surrogates, within
// MaxJSONSize and MaxJSONDepth).
var ErrInvalidJSON = errors.New("wire: invalid JSON for canonicalization")

// Canonicalize parses data strictly and returns its RFC 8785 (JCS) canonical
// form: no insignificant whitespace, object members sorted by key as UTF-16
// code units, minimal string escapes and integers in plain decimal.
//
// Only the subset of docs/PROTOCOL.md §4.2 is accepted: numbers must be
// integers within ±MaxSafeInteger written without fraction, exponent or
// leading zeros, and -0 is refused; duplicate keys, invalid UTF-8, lone
// surrogates in \u escapes, nesting deeper than MaxJSONDepth and inputs larger
// than MaxJSONSize are errors. It never panics.
func Canonicalize(data []byte) ([]byte, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	return appendValue(make([]byte, 0, len(data)), &v), nil
}

// CanonicalMarshal returns the canonical JSON of v: encoding/json's encoding
// of v, canonicalized. Values whose encoding leaves the §4.2 subset (such as a
// float with a fraction) are errors wrapping ErrInvalidJSON.
func CanonicalMarshal(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding %T: %w", ErrInvalidJSON, v, err)
	}
	return Canonicalize(data)
}

// kind is the type of a parsed JSON value.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
	kindInvalid // not the start of a JSON value
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindFalse, kindTrue:
		return "boolean"
	case kindNumber:
		return "integer"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	}
	return "invalid"
}

// value is a parsed JSON value. Objects keep their members sorted by key in
// canonical (UTF-16) order, without duplicates.
type value struct {
	kind kind
	num  int64
	str  string
	arr  []value
	obj  []member
}

type member struct {
	key string
	val value
}

func stringValue(s string) value { return value{kind: kindString, str: s} }
func numberValue(n int64) value  { return value{kind: kindNumber, num: n} }

func boolValue(b bool) value {
	if b {
		return value{kind: kindTrue}
	}
	return value{kind: kindFalse}
}

// sortMembers sorts object members into canonical order.
func sortMembers(m []member) {
	slices.SortFunc(m, func(a, b member) int { return compareUTF16(a.key, b.key) })
}

// compareUTF16 compares two valid UTF-8 strings as sequences of UTF-16 code
// units (RFC 8785 §3.2.3). It differs from byte order only where a character
// above U+FFFF (a surrogate pair, 0xD800..0xDBFF first) meets one in
// U+E000..U+FFFF.
func compareUTF16(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return cmp.Compare(len(a), len(b))
	}
	// The common prefix is identical, so a rune boundary in a is one in b.
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	ra, _ := utf8.DecodeRuneInString(a[i:])
	rb, _ := utf8.DecodeRuneInString(b[i:])
	return cmp.Compare(utf16Key(ra), utf16Key(rb))
}

// utf16Key orders runes by their UTF-16 code units: the first unit in the
// high half, the second (if any) in the low half.
func utf16Key(r rune) uint32 {
	if r < 0x10000 {
		return uint32(r) << 16
	}
	hi, lo := utf16.EncodeRune(r)
	return uint32(hi)<<16 | uint32(lo)
}

// parseJSON parses one JSON value under the §4.2 rules.
func parseJSON(data []byte) (value, error) {
	if len(data) > MaxJSONSize {
		return value{}, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrInvalidJSON, len(data), MaxJSONSize)
	}
	p := parser{data: data}
	p.skipWS()
	v, err := p.value()
	if err != nil {
		return value{}, err
	}
	p.skipWS()
	if p.pos != len(p.data) {
		return value{}, p.errorf("trailing data after the JSON value")
	}
	return v, nil
}

type parser struct {
	data  []byte
	pos   int
	depth int
	buf   []byte // scratch for strings with escapes or non-ASCII text
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrInvalidJSON, fmt.Sprintf(format, args...), p.pos)
}

func (p *parser) skipWS() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// next reports whether the next byte is c.
func (p *parser) next(c byte) bool { return p.pos < len(p.data) && p.data[p.pos] == c }

func (p *parser) value() (value, error) {
	if p.pos >= len(p.data) {
		return value{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		return stringValue(s), err
	case c == 't':
		return p.literal("true", value{kind: kindTrue})
	case c == 'f':
		return p.literal("false", value{kind: kindFalse})
	case c == 'n':
		return p.literal("null", value{kind: kindNull})
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return value{}, p.errorf("unexpected character %q", c)
	}
}

func (p *parser) literal(lit string, v value) (value, error) {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return value{}, p.errorf("invalid literal (want %s)", lit)
	}
	p.pos += len(lit)
	return v, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxJSONDepth {
		return p.errorf("nesting deeper than %d levels", MaxJSONDepth)
	}
	return nil
}

// The object scanner: openObject, memberKey and memberEnd walk an object's
// members one at a time and leave each value to their caller, which may
// build it (object), refuse its key before the value is read
// (DecodeEnvelope), or skip it (EnvelopeHead).

// openObject moves past the '{' at p.pos and the whitespace after it. It
// reports whether the object is empty, having moved past its '}' then.
func (p *parser) openObject() (empty bool) {
	p.pos++ // '{'
	p.skipWS()
	if p.next('}') {
		p.pos++
		return true
	}
	return false
}

// memberKey reads a member's key (after any whitespace) and the ':' after
// it, and stops at the member's value; keyEnd is the offset just past the
// key, for errors about it.
func (p *parser) memberKey() (k string, keyEnd int, err error) {
	p.skipWS()
	if !p.next('"') {
		return "", 0, p.errorf("expected a string object key")
	}
	if k, err = p.string(); err != nil {
		return "", 0, err
	}
	keyEnd = p.pos
	if !p.colon() {
		return "", 0, p.errorf("expected ':' after object key")
	}
	return k, keyEnd, nil
}

// colon moves past the ':' after an object key and the whitespace around
// it; false when there is none.
func (p *parser) colon() bool {
	p.skipWS()
	if !p.next(':') {
		return false
	}
	p.pos++
	p.skipWS()
	return true
}

// memberEnd moves past what follows a member's value: a ',' (more is
// true; memberKey reads the next key) or the object's closing '}'. ok is
// false when neither is there; errMemberEnd says so.
func (p *parser) memberEnd() (more, ok bool) {
	p.skipWS()
	if p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ',':
			p.pos++
			return true, true
		case '}':
			p.pos++
			return false, true
		}
	}
	return false, false
}

// errMemberEnd is the error for a member not followed by ',' or '}'.
func (p *parser) errMemberEnd() error { return p.errorf("expected ',' or '}' in object") }

func (p *parser) object() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	if p.openObject() {
		p.depth--
		return value{kind: kindObject}, nil
	}
	// One allocation for the objects of this protocol (envelopes and
	// payloads have at most 10 members), instead of four as append grows.
	members := make([]member, 0, 10)
	for more := true; more; {
		k, _, err := p.memberKey()
		if err != nil {
			return value{}, err
		}
		v, err := p.value()
		if err != nil {
			return value{}, err
		}
		members = append(members, member{key: k, val: v})
		var ok bool
		if more, ok = p.memberEnd(); !ok {
			return value{}, p.errMemberEnd()
		}
	}
	sortMembers(members)
	for i := 1; i < len(members); i++ {
		if members[i].key == members[i-1].key {
			return value{}, fmt.Errorf("%w: duplicate object key %q in the object ending at byte %d", ErrInvalidJSON, truncate(members[i].key, 32), p.pos)
		}
	}
	p.depth--
	return value{kind: kindObject, obj: members}, nil
}

func (p *parser) array() (value, error) {
	if err := p.enter(); err != nil {
		return value{}, err
	}
	p.pos++ // '['
	p.skipWS()
	var elems []value
	if p.next(']') {
		p.pos++
		p.depth--
		return value{kind: kindArray, arr: elems}, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return value{}, err
		}
		elems = append(elems, v)
		p.skipWS()
		if p.next(',') {
			p.pos++
			p.skipWS()
			continue
		}
		if p.next(']') {
			p.pos++
			break
		}
		return value{}, p.errorf("expected ',' or ']' in array")
	}
	p.depth--
	return value{kind: kindArray, arr: elems}, nil
}

// number parses an integer within ±MaxSafeInteger. Fractions, exponents,
// leading zeros and -0 are errors.
func (p *parser) number() (value, error) {
	neg := p.next('-')
	if neg {
		p.pos++
	}
	if p.pos >= len(p.data) || p.data[p.pos] < '0' || p.data[p.pos] > '9' {
		return value{}, p.errorf("expected a digit")
	}
	var n int64
	if p.data[p.pos] == '0' {
		p.pos++
		if p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			return value{}, p.errorf("number with a leading zero")
		}
	} else {
		digits := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			digits++
			if digits > 16 { // MaxSafeInteger has 16 digits; stop before overflowing
				return value{}, p.errorf("integer out of the range ±%d", MaxSafeInteger)
			}
			n = n*10 + int64(p.data[p.pos]-'0')
			p.pos++
		}
		if n > MaxSafeInteger {
			return value{}, p.errorf("integer out of the range ±%d", MaxSafeInteger)
		}
	}
	if p.next('.') {
		return value{}, p.errorf("number with a fraction (only integers are allowed)")
	}
	if p.next('e') || p.next('E') {
		return value{}, p.errorf("number with an exponent (only plain integers are allowed)")
	}
	if neg {
		if n == 0 {
			return value{}, p.errorf("-0 is not allowed")
		}
		n = -n
	}
	return numberValue(n), nil
}

// string parses a JSON string starting at its opening quote.
func (p *parser) string() (string, error) { return p.stringOf(false) }

// stringOf is string; with borrow, a string without escapes shares p.data's
// memory.
func (p *parser) stringOf(borrow bool) (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: printable ASCII without escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			var s string
			if borrow {
				s = unsafe.String(unsafe.SliceData(p.data[start:]), p.pos-start)
			} else {
				s = string(p.data[start:p.pos])
			}
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.pos++
	}
	buf := append(p.buf[:0], p.data[start:p.pos]...)
	defer func() { p.buf = buf[:0] }()
	for {
		if p.pos >= len(p.data) {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c == '\\':
			var err error
			if buf, err = p.escape(buf); err != nil {
				return "", err
			}
		case c < 0x20:
			return "", p.errorf("unescaped control character U+%04X in string", c)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf("invalid UTF-8 in string")
			}
			buf = append(buf, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
}

// escape decodes one backslash escape at p.pos and appends it to buf.
func (p *parser) escape(buf []byte) ([]byte, error) {
	p.pos++ // backslash
	if p.pos >= len(p.data) {
		return buf, p.errorf("unterminated escape")
	}
	e := p.data[p.pos]
	p.pos++
	switch e {
	case '"', '\\', '/':
		return append(buf, e), nil
	case 'b':
		return append(buf, '\b'), nil
	case 'f':
		return append(buf, '\f'), nil
	case 'n':
		return append(buf, '\n'), nil
	case 'r':
		return append(buf, '\r'), nil
	case 't':
		return append(buf, '\t'), nil
	case 'u':
		r, err := p.hex4()
		if err != nil {
			return buf, err
		}
		if utf16.IsSurrogate(r) {
			if r >= 0xDC00 {
				return buf, p.errorf("lone low surrogate \\u%04x", r)
			}
			if len(p.data)-p.pos < 2 || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
				return buf, p.errorf("lone high surrogate \\u%04x", r)
			}
			p.pos += 2
			lo, err := p.hex4()
			if err != nil {
				return buf, err
			}
			if lo < 0xDC00 || lo > 0xDFFF {
				return buf, p.errorf("high surrogate \\u%04x not followed by a low surrogate", r)
			}
			r = utf16.DecodeRune(r, lo)
		}
		return utf8.AppendRune(buf, r), nil
	default:
		return buf, p.errorf("invalid escape \\%c", e)
	}
}

func (p *parser) hex4() (rune, error) {
	if len(p.data)-p.pos < 4 {
		return 0, p.errorf("truncated \\u escape")
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.errorf("invalid hex digit %q in \\u escape", c)
		}
	}
	p.pos += 4
	return r, nil
}

// appendValue appends the canonical JSON of v.
func appendValue(dst []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindFalse:
		return append(dst, "false"...)
	case kindTrue:
		return append(dst, "true"...)
	case kindNumber:
		return strconv.AppendInt(dst, v.num, 10)
	case kindString:
		return appendString(dst, v.str)
	case kindArray:
		dst = append(dst, '[')
		for i := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, &v.arr[i])
		}
		return append(dst, ']')
	default: // kindObject
		return appendObject(dst, v.obj)
	}
}

// appendObject appends the canonical JSON of an object whose members are
// already sorted.
func appendObject(dst []byte, members []member) []byte {
	dst = append(dst, '{')
	for i := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, members[i].key)
		dst = append(dst, ':')
		dst = appendValue(dst, &members[i].val)
	}
	return append(dst, '}')
}

const lowerHex = "0123456789abcdef"

// appendString appends s as a JSON string with RFC 8785's minimal escapes. s
// must be valid UTF-8; everything from U+0020 up except '"' and '\' is literal.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
