package wire

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/duetcall/duet/identity"
)

// EPKSize is the size of an ephemeral X25519 public key carried in
// call_offer, call_answer and call_rekey.
const EPKSize = 32

// MaxEpoch is the largest call_rekey epoch: media frame counters carry the
// epoch in 32 bits (docs/PROTOCOL.md §5.2).
const MaxEpoch = 1<<32 - 1

// MaxSDPMLine is the largest sdp_mline (W3C sdpMLineIndex is an unsigned short).
const MaxSDPMLine = 65535

// Reason says why a call was rejected or hung up (docs/PROTOCOL.md §3).
type Reason string

// The reason set.
const (
	ReasonUserHangup   Reason = "user_hangup"
	ReasonDeclined     Reason = "declined"
	ReasonBusy         Reason = "busy"
	ReasonNoAnswer     Reason = "no_answer"
	ReasonICEFailed    Reason = "ice_failed"
	ReasonMediaTimeout Reason = "media_timeout"
	ReasonDisconnected Reason = "disconnected"
	ReasonError        Reason = "error"
)

// Reasons lists the reason set.
var Reasons = []Reason{ReasonUserHangup, ReasonDeclined, ReasonBusy, ReasonNoAnswer, ReasonICEFailed, ReasonMediaTimeout, ReasonDisconnected, ReasonError}

// Valid reports whether r is in the reason set.
func (r Reason) Valid() bool {
	switch r {
	case ReasonUserHangup, ReasonDeclined, ReasonBusy, ReasonNoAnswer, ReasonICEFailed, ReasonMediaTimeout, ReasonDisconnected, ReasonError:
		return true
	}
	return false
}

func (r Reason) validate() error {
	if !r.Valid() {
		return malformedf("reason %q is not in the reason set (user_hangup, declined, busy, no_answer, ice_failed, media_timeout, disconnected, error)", truncate(string(r), 32))
	}
	return nil
}

// Body is the type-specific part of a call message. It is one of
// OfferPayload, AnswerPayload, ICEPayload, RejectPayload, HangupPayload,
// RekeyPayload, SelectPayload and MediaPayload; Open always returns these as values, not pointers.
type Body interface {
	// MessageType is the message type that carries this body.
	MessageType() Type
	// Validate checks the fields as Open does; errors wrap ErrMalformed.
	Validate() error
	// appendMembers appends the body's fields as inner-payload members.
	appendMembers(dst []member) []member
}

// OfferPayload is the body of call_offer. An ICE restart is an offer with the
// current call_id, ICERestart set and the caller's current EPK.
type OfferPayload struct {
	SDP        string `json:"sdp"`
	EPK        []byte `json:"epk"` // the caller's ephemeral X25519 public key, EPKSize bytes
	ICERestart bool   `json:"ice_restart,omitempty"`
	// Renegotiate: a change of the call's media (audio to video and back,
	// PROTOCOL §10.10) within the call: the current call_id and the
	// sender's current EPK; either side may send it. Not with ICERestart.
	Renegotiate bool `json:"renegotiate,omitempty"`
}

// AnswerPayload is the body of call_answer.
type AnswerPayload struct {
	SDP string `json:"sdp"`
	EPK []byte `json:"epk"` // the callee's ephemeral X25519 public key, EPKSize bytes
}

// ICEPayload is the body of call_ice, in canonical form: its JSON encoding
// uses the keys sdp_mid and sdp_mline, null when absent. Decoding it with
// encoding/json accepts the browser spelling too (see NormalizeICE). An empty
// Candidate is the end-of-candidates marker.
type ICEPayload struct {
	Candidate string  `json:"candidate"`
	SDPMid    *string `json:"sdp_mid"`
	SDPMLine  *int    `json:"sdp_mline"`
}

// RejectPayload is the body of call_reject.
type RejectPayload struct {
	Reason Reason `json:"reason"`
}

// HangupPayload is the body of call_hangup.
type HangupPayload struct {
	Reason Reason `json:"reason"`
}

// Outcome says which response of a callee device the caller took
// (call_select, PROTOCOL §10.4).
type Outcome string

// Outcomes.
const (
	OutcomeAnswered Outcome = "answered"
	OutcomeDeclined Outcome = "declined"
	OutcomeBusy     Outcome = "busy"
)

// SelectPayload is the body of call_select: the caller took device
// Selected's response (its answer, its decline or its busy); every other
// device of the callee stops.
type SelectPayload struct {
	Selected string  `json:"selected"` // a device id (ValidDevice)
	Outcome  Outcome `json:"outcome"`
}

// MediaPayload is the body of call_media: the sender's media state
// (PROTOCOL §3), sent once when the call connects and on every change.
// AudioMuted and VideoOff are required; Screen is optional (senders omit
// it when false).
type MediaPayload struct {
	AudioMuted bool `json:"audio_muted"` // the microphone is muted (silence is sent)
	VideoOff   bool `json:"video_off"`   // the camera is off (no picture is sent)
	Screen     bool `json:"screen,omitempty"`
}

// Validate has nothing to check: every combination is a media state.
func (MediaPayload) Validate() error { return nil }

func (p MediaPayload) appendMembers(dst []member) []member {
	dst = append(dst, member{"audio_muted", boolValue(p.AudioMuted)}, member{"video_off", boolValue(p.VideoOff)})
	if p.Screen {
		dst = append(dst, member{"screen", boolValue(true)})
	}
	return dst
}

// RekeyPayload is the body of call_rekey.
type RekeyPayload struct {
	Epoch int    `json:"epoch"` // 1..MaxEpoch
	EPK   []byte `json:"epk"`   // a fresh ephemeral X25519 public key, EPKSize bytes
}

func (OfferPayload) MessageType() Type  { return TypeCallOffer }
func (AnswerPayload) MessageType() Type { return TypeCallAnswer }
func (ICEPayload) MessageType() Type    { return TypeCallICE }
func (RejectPayload) MessageType() Type { return TypeCallReject }
func (HangupPayload) MessageType() Type { return TypeCallHangup }
func (RekeyPayload) MessageType() Type  { return TypeCallRekey }
func (SelectPayload) MessageType() Type { return TypeCallSelect }
func (MediaPayload) MessageType() Type  { return TypeCallMedia }

// Validate checks the device id and the outcome.
func (p SelectPayload) Validate() error {
	if !ValidDevice(p.Selected) {
		return malformedf("selected must be a device id: 1..%d characters of [A-Za-z0-9_-]", MaxIDLen)
	}
	switch p.Outcome {
	case OutcomeAnswered, OutcomeDeclined, OutcomeBusy:
		return nil
	}
	return malformedf("outcome %q is not answered, declined or busy", truncate(string(p.Outcome), 32))
}

func (p SelectPayload) appendMembers(dst []member) []member {
	return append(dst, member{"selected", stringValue(p.Selected)}, member{"outcome", stringValue(string(p.Outcome))})
}

// ValidDevice reports whether d is a device id: 1..MaxIDLen characters of
// [A-Za-z0-9_-], like a call_id (PROTOCOL §3).
func ValidDevice(d string) bool { return validID(d) }

// Validate checks that the SDP is non-empty UTF-8, the EPK is EPKSize
// bytes, and the offer is not both an ICE restart and a renegotiation.
func (p OfferPayload) Validate() error {
	if err := validateSDP(p.SDP); err != nil {
		return err
	}
	if p.ICERestart && p.Renegotiate {
		return malformedf("an offer is an ICE restart or a renegotiation, not both")
	}
	return validateEPK(p.EPK)
}

// Validate checks that the SDP is non-empty UTF-8 and the EPK is EPKSize bytes.
func (p AnswerPayload) Validate() error {
	if err := validateSDP(p.SDP); err != nil {
		return err
	}
	return validateEPK(p.EPK)
}

// Validate checks that the strings are UTF-8 and SDPMLine is 0..MaxSDPMLine.
func (p ICEPayload) Validate() error {
	if !utf8.ValidString(p.Candidate) {
		return malformedf("candidate is not valid UTF-8")
	}
	if p.SDPMid != nil && !utf8.ValidString(*p.SDPMid) {
		return malformedf("sdp_mid is not valid UTF-8")
	}
	if p.SDPMLine != nil && (*p.SDPMLine < 0 || *p.SDPMLine > MaxSDPMLine) {
		return malformedf("sdp_mline %d out of the range 0..%d", *p.SDPMLine, MaxSDPMLine)
	}
	return nil
}

// Validate checks that the reason is in the reason set.
func (p RejectPayload) Validate() error { return p.Reason.validate() }

// Validate checks that the reason is in the reason set.
func (p HangupPayload) Validate() error { return p.Reason.validate() }

// Validate checks that the epoch is 1..MaxEpoch and the EPK is EPKSize bytes.
func (p RekeyPayload) Validate() error {
	if p.Epoch < 1 || int64(p.Epoch) > MaxEpoch {
		return malformedf("epoch %d out of the range 1..%d", p.Epoch, int64(MaxEpoch))
	}
	return validateEPK(p.EPK)
}

func validateSDP(sdp string) error {
	if sdp == "" {
		return malformedf("empty sdp")
	}
	if !utf8.ValidString(sdp) {
		return malformedf("sdp is not valid UTF-8")
	}
	return nil
}

func validateEPK(epk []byte) error {
	if len(epk) != EPKSize {
		return malformedf("epk is %d bytes, want %d", len(epk), EPKSize)
	}
	return nil
}

func b64Value(b []byte) value { return stringValue(base64.StdEncoding.EncodeToString(b)) }

func (p OfferPayload) appendMembers(dst []member) []member {
	dst = append(dst, member{"sdp", stringValue(p.SDP)}, member{"epk", b64Value(p.EPK)})
	if p.ICERestart { // optional, default false: senders omit it when false
		dst = append(dst, member{"ice_restart", boolValue(true)})
	}
	if p.Renegotiate { // likewise
		dst = append(dst, member{"renegotiate", boolValue(true)})
	}
	return dst
}

func (p AnswerPayload) appendMembers(dst []member) []member {
	return append(dst, member{"sdp", stringValue(p.SDP)}, member{"epk", b64Value(p.EPK)})
}

func (p ICEPayload) appendMembers(dst []member) []member {
	mid, mline := value{kind: kindNull}, value{kind: kindNull}
	if p.SDPMid != nil {
		mid = stringValue(*p.SDPMid)
	}
	if p.SDPMLine != nil {
		mline = numberValue(int64(*p.SDPMLine))
	}
	return append(dst, member{"candidate", stringValue(p.Candidate)}, member{"sdp_mid", mid}, member{"sdp_mline", mline})
}

func (p RejectPayload) appendMembers(dst []member) []member {
	return append(dst, member{"reason", stringValue(string(p.Reason))})
}

func (p HangupPayload) appendMembers(dst []member) []member {
	return append(dst, member{"reason", stringValue(string(p.Reason))})
}

func (p RekeyPayload) appendMembers(dst []member) []member {
	return append(dst, member{"epoch", numberValue(int64(p.Epoch))}, member{"epk", b64Value(p.EPK)})
}

// Message is a call message in the clear: the route fields, which the
// envelope repeats, and the typed body. Seal turns it into an Envelope and
// Open turns an Envelope back into it.
type Message struct {
	Type   Type
	From   identity.Alias
	To     identity.Alias
	CallID string
	// Device is the sender's device id (the optional inner field device,
	// PROTOCOL §3 and §10.4); "" when absent.
	Device string
	Body   Body // its MessageType must equal Type
}

// Validate checks the route fields and the body; errors wrap ErrMalformed.
func (m Message) Validate() error {
	switch {
	case !m.Type.IsCall():
		return malformedf("unknown message type %q", truncate(string(m.Type), 32))
	case !m.From.Valid():
		return malformedf("from %q is not an alias (u followed by 8 digits)", truncate(string(m.From), 32))
	case !m.To.Valid():
		return malformedf("to %q is not an alias (u followed by 8 digits)", truncate(string(m.To), 32))
	case !validID(m.CallID):
		return malformedf("call_id must be 1..%d characters of [A-Za-z0-9_-]", MaxIDLen)
	case m.Device != "" && !ValidDevice(m.Device):
		return malformedf("device must be 1..%d characters of [A-Za-z0-9_-]", MaxIDLen)
	case m.Body == nil || isNilPointer(m.Body):
		return malformedf("%s message without a body", m.Type)
	case m.Body.MessageType() != m.Type:
		return malformedf("%s message with a %s body (%T)", m.Type, m.Body.MessageType(), m.Body)
	}
	if err := m.Body.Validate(); err != nil {
		return fmt.Errorf("%s: %w", m.Type, err)
	}
	return nil
}

// isNilPointer reports whether b is a nil pointer to a payload type (whose
// value-receiver methods would panic).
func isNilPointer(b Body) bool {
	switch b := b.(type) {
	case *OfferPayload:
		return b == nil
	case *AnswerPayload:
		return b == nil
	case *ICEPayload:
		return b == nil
	case *RejectPayload:
		return b == nil
	case *HangupPayload:
		return b == nil
	case *RekeyPayload:
		return b == nil
	case *SelectPayload:
		return b == nil
	case *MediaPayload:
		return b == nil
	}
	return false
}

// OfferSendsVideo reports whether the sender of an SDP offer sends video
// in it: an m=video section with a port other than 0 whose direction is
// sendrecv or sendonly (sendrecv when absent). A renegotiation's video
// (docs/PROTOCOL.md §10.10) is read this way.
func OfferSendsVideo(sdp string) bool {
	in, sends := false, false
	flush := func() bool { return in && sends }
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, "m=") {
			if flush() {
				return true
			}
			f := strings.Fields(line)
			in = len(f) > 1 && f[0] == "m=video" && f[1] != "0"
			sends = true
			continue
		}
		if !in {
			continue
		}
		switch line {
		case "a=recvonly", "a=inactive":
			sends = false
		case "a=sendrecv", "a=sendonly":
			sends = true
		}
	}
	return flush()
}

// IsVideoOffer reports whether an SDP offers video: it has a line starting
// with "m=video " (docs/PROTOCOL.md §3).
func IsVideoOffer(sdp string) bool {
	return strings.HasPrefix(sdp, "m=video ") || strings.Contains(sdp, "\nm=video ")
}

// Inner-payload keys of the route and seal fields.
const (
	keyType   = "type"
	keyFrom   = "from"
	keyTo     = "to"
	keyCallID = "call_id"
	keyDevice = "device"
	keyTS     = "_ts"
	keyNonce  = "_nonce"
	keySig    = "_sig"
)

// decodeBody decodes the type fields of an inner payload (every member but
// the route and seal fields) into the body of a t message.
func decodeBody(t Type, fields []member) (Body, error) {
	var (
		b   Body
		err error
	)
	switch t {
	case TypeCallOffer:
		b, err = decodeOffer(fields)
	case TypeCallAnswer:
		b, err = decodeAnswer(fields)
	case TypeCallICE:
		b, err = decodeICE(fields)
	case TypeCallReject:
		var r Reason
		r, err = decodeReason(fields)
		b = RejectPayload{Reason: r}
	case TypeCallHangup:
		var r Reason
		r, err = decodeReason(fields)
		b = HangupPayload{Reason: r}
	case TypeCallRekey:
		b, err = decodeRekey(fields)
	case TypeCallSelect:
		b, err = decodeSelect(fields)
	case TypeCallMedia:
		b, err = decodeMedia(fields)
	default:
		return nil, malformedf("unknown message type %q", truncate(string(t), 32))
	}
	if err == nil {
		err = b.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	return b, nil
}

func decodeOffer(fields []member) (Body, error) {
	var p OfferPayload
	var haveSDP, haveEPK bool
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.key {
		case "sdp":
			p.SDP, err = fieldString(f)
			haveSDP = true
		case "epk":
			p.EPK, err = fieldEPK(f)
			haveEPK = true
		case "ice_restart":
			p.ICERestart, err = fieldBool(f)
		case "renegotiate":
			p.Renegotiate, err = fieldBool(f)
		default:
			err = unknownField(f.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := missing(haveSDP, "sdp", haveEPK, "epk"); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeAnswer(fields []member) (Body, error) {
	var p AnswerPayload
	var haveSDP, haveEPK bool
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.key {
		case "sdp":
			p.SDP, err = fieldString(f)
			haveSDP = true
		case "epk":
			p.EPK, err = fieldEPK(f)
			haveEPK = true
		default:
			err = unknownField(f.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := missing(haveSDP, "sdp", haveEPK, "epk"); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeReason(fields []member) (Reason, error) {
	var r Reason
	var have bool
	for i := range fields {
		f := &fields[i]
		if f.key != "reason" {
			return "", unknownField(f.key)
		}
		s, err := fieldString(f)
		if err != nil {
			return "", err
		}
		r, have = Reason(s), true
	}
	if !have {
		return "", malformedf("missing field reason")
	}
	return r, nil
}

func decodeSelect(fields []member) (Body, error) {
	var p SelectPayload
	var haveSel, haveOutcome bool
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.key {
		case "selected":
			p.Selected, err = fieldString(f)
			haveSel = true
		case "outcome":
			var o string
			o, err = fieldString(f)
			p.Outcome, haveOutcome = Outcome(o), true
		default:
			err = unknownField(f.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := missing(haveSel, "selected", haveOutcome, "outcome"); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeMedia(fields []member) (Body, error) {
	var p MediaPayload
	var haveAudio, haveVideo bool
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.key {
		case "audio_muted":
			p.AudioMuted, err = fieldBool(f)
			haveAudio = true
		case "video_off":
			p.VideoOff, err = fieldBool(f)
			haveVideo = true
		case "screen":
			p.Screen, err = fieldBool(f)
		default:
			err = unknownField(f.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := missing(haveAudio, "audio_muted", haveVideo, "video_off"); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeRekey(fields []member) (Body, error) {
	var p RekeyPayload
	var haveEpoch, haveEPK bool
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.key {
		case "epoch":
			var n int64
			n, err = fieldInt(f)
			if err == nil && (n < 1 || n > MaxEpoch) {
				err = malformedf("epoch %d out of the range 1..%d", n, int64(MaxEpoch))
			}
			if err == nil && int64(int(n)) != n { // 32-bit platforms
				err = malformedf("epoch %d does not fit in an int on this platform", n)
			}
			p.Epoch = int(n)
			haveEpoch = true
		case "epk":
			p.EPK, err = fieldEPK(f)
			haveEPK = true
		default:
			err = unknownField(f.key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := missing(haveEpoch, "epoch", haveEPK, "epk"); err != nil {
		return nil, err
	}
	return p, nil
}

func missing(haveA bool, a string, haveB bool, b string) error {
	if !haveA {
		return malformedf("missing field %s", a)
	}
	if !haveB {
		return malformedf("missing field %s", b)
	}
	return nil
}

func unknownField(key string) error {
	return malformedf("unknown field %q", truncate(key, 32))
}

func fieldString(f *member) (string, error) {
	if f.val.kind != kindString {
		return "", malformedf("%s is a JSON %s, want a string", f.key, f.val.kind)
	}
	return f.val.str, nil
}

func fieldBool(f *member) (bool, error) {
	switch f.val.kind {
	case kindTrue:
		return true, nil
	case kindFalse:
		return false, nil
	}
	return false, malformedf("%s is a JSON %s, want a boolean", f.key, f.val.kind)
}

func fieldInt(f *member) (int64, error) {
	if f.val.kind != kindNumber {
		return 0, malformedf("%s is a JSON %s, want an integer", f.key, f.val.kind)
	}
	return f.val.num, nil
}

func fieldEPK(f *member) ([]byte, error) {
	s, err := fieldString(f)
	if err != nil {
		return nil, err
	}
	b, err := decodeBase64(s, EPKSize)
	if err != nil {
		return nil, malformedf("epk: %v", err)
	}
	return b, nil
}

// DecodeBase64 decodes standard, padded base64 as strictly as the protocol
// requires everywhere (docs/PROTOCOL.md, conventions): see decodeBase64.
// With size < 0 any length is taken.
func DecodeBase64(s string, size int) ([]byte, error) {
	return decodeBase64(s, size)
}

// decodeBase64 decodes standard, padded base64 strictly: no line breaks or
// other characters outside the alphabet, no non-zero padding bits. With
// size ≥ 0 the result must be exactly size bytes.
func decodeBase64(s string, size int) ([]byte, error) {
	if size >= 0 && len(s) != base64.StdEncoding.EncodedLen(size) {
		return nil, fmt.Errorf("want base64 of %d bytes (%d characters), got %d characters", size, base64.StdEncoding.EncodedLen(size), len(s))
	}
	if strings.ContainsAny(s, "\r\n") { // encoding/base64 would skip them
		return nil, fmt.Errorf("line break in base64")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	if size >= 0 && len(b) != size { // 65 bytes encode to as many characters as 64
		return nil, fmt.Errorf("want base64 of %d bytes, got %d bytes", size, len(b))
	}
	return b, nil
}
