// Package wire defines duet's signaling wire format: the envelope the relay
// forwards, the call message types and their payloads, RFC 8785 canonical
// JSON, signaling crypto v2 (Seal and Open, with the replay guard) and ICE
// candidate normalisation. The byte-level specification is
// docs/PROTOCOL.md §2–§4; testdata/vectors holds examples every
// implementation verifies.
package wire
