package wire

import "fmt"

// NormalizeICE decodes an ICE candidate in either shape of
// docs/PROTOCOL.md §3.1 and returns it in canonical form:
//
//	browser:   {"candidate": "...", "sdpMid": "0", "sdpMLineIndex": 0}
//	canonical: {"candidate": "...", "sdp_mid": "0", "sdp_mline": 0}
//
// candidate is required; the mid and line index may be null or absent. If
// both spellings of a field are present they must agree (null agrees only
// with null). Any other key, a value of the wrong type, JSON outside the §4.2
// subset and an sdp_mline outside 0..MaxSDPMLine are errors wrapping
// ErrMalformed. Encoding the result with encoding/json or CanonicalMarshal
// always gives the canonical keys. It never panics.
func NormalizeICE(raw []byte) (ICEPayload, error) {
	v, err := parseJSON(raw)
	if err != nil {
		return ICEPayload{}, fmt.Errorf("%w: ICE candidate: %w", ErrMalformed, err)
	}
	if v.kind != kindObject {
		return ICEPayload{}, malformedf("ICE candidate is a JSON %s, want an object", v.kind)
	}
	b, err := decodeICE(v.obj)
	if err != nil {
		return ICEPayload{}, err
	}
	p := b.(ICEPayload)
	if err := p.Validate(); err != nil {
		return ICEPayload{}, err
	}
	return p, nil
}

// UnmarshalJSON decodes either candidate shape, as NormalizeICE does.
func (p *ICEPayload) UnmarshalJSON(data []byte) error {
	v, err := NormalizeICE(data)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// decodeICE decodes the members of an ICE candidate object (inside call_ice:
// the type fields) in either shape.
func decodeICE(fields []member) (Body, error) {
	var (
		p                          ICEPayload
		haveCandidate              bool
		mid, midAlt, line, lineAlt *member // sdp_mid, sdpMid, sdp_mline, sdpMLineIndex
	)
	for i := range fields {
		f := &fields[i]
		switch f.key {
		case "candidate":
			s, err := fieldString(f)
			if err != nil {
				return nil, err
			}
			p.Candidate, haveCandidate = s, true
		case "sdp_mid":
			mid = f
		case "sdpMid":
			midAlt = f
		case "sdp_mline":
			line = f
		case "sdpMLineIndex":
			lineAlt = f
		default:
			return nil, unknownField(f.key)
		}
	}
	if !haveCandidate {
		return nil, malformedf("missing field candidate")
	}
	var err error
	if p.SDPMid, err = agree(mid, midAlt, iceMid); err != nil {
		return nil, err
	}
	if p.SDPMLine, err = agree(line, lineAlt, iceMLine); err != nil {
		return nil, err
	}
	return p, nil
}

// agree decodes the canonical and the browser spelling of a field, either of
// which may be absent (nil), and requires them to agree when both are present.
func agree[T comparable](canonical, browser *member, decode func(*member) (*T, error)) (*T, error) {
	a, err := decode(canonical)
	if err != nil {
		return nil, err
	}
	b, err := decode(browser)
	if err != nil {
		return nil, err
	}
	switch {
	case canonical == nil:
		return b, nil
	case browser == nil:
		return a, nil
	case (a == nil) != (b == nil) || a != nil && *a != *b:
		return nil, malformedf("%s and %s are both present and disagree", canonical.key, browser.key)
	}
	return a, nil
}

// iceMid decodes sdp_mid or sdpMid: a string or null.
func iceMid(f *member) (*string, error) {
	if f == nil || f.val.kind == kindNull {
		return nil, nil
	}
	if f.val.kind != kindString {
		return nil, malformedf("%s is a JSON %s, want a string or null", f.key, f.val.kind)
	}
	s := f.val.str
	return &s, nil
}

// iceMLine decodes sdp_mline or sdpMLineIndex: an integer in 0..MaxSDPMLine
// or null.
func iceMLine(f *member) (*int, error) {
	if f == nil || f.val.kind == kindNull {
		return nil, nil
	}
	if f.val.kind != kindNumber {
		return nil, malformedf("%s is a JSON %s, want an integer or null", f.key, f.val.kind)
	}
	if n := f.val.num; n < 0 || n > MaxSDPMLine {
		return nil, malformedf("%s %d out of the range 0..%d", f.key, n, MaxSDPMLine)
	}
	n := int(f.val.num)
	return &n, nil
}
