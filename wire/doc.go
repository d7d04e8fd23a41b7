// Package wire defines duet's signaling wire format: the envelope the relay
// forwards, the call message types and their payloads, RFC 8785 canonical
// JSON, signaling crypto v2 (Seal and Open, with the replay guard) and ICE
// candidate normalisation. The byte-level specification is
// docs/PROTOCOL.md §2–§4; testdata/vectors holds examples every
// implementation verifies.
//
// The pieces, in the order a frame meets them:
//
//   - DecodeEnvelope strictly decodes what arrives from the relay (§2).
//   - SessionKey derives the pairwise signaling key from long-term keys
//     (§4.1); a Session holds it with our signing key, the peer's pinned
//     signing key, a ReplayGuard and a clock.
//   - Session.Seal turns a Message (route fields and a typed Body) into an
//     Envelope (§4.3); Session.Open runs the ten checks of §4.4 in order
//     and returns the Message, or an error wrapping one sentinel per check.
//     DropReason maps that error to a metric label.
//   - Canonicalize and CanonicalMarshal produce the RFC 8785 form that is
//     signed (§4.2), from a strict parser that refuses anything outside the
//     integer-only subset.
//   - NormalizeICE reads either ICE candidate spelling (§3.1).
//
// Every decoder bounds its input (MaxEnvelopeSize, MaxJSONSize,
// MaxJSONDepth) and never panics; the replay guard never grows past its
// capacity.
package wire
