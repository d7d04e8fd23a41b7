// Package client is the Go SDK's connection to a duet relay: it registers or
// restores an identity (the relay assigns the alias), authenticates the
// WebSocket session, reconnects with capped, jittered backoff, sends and
// receives signaling envelopes, fetches and pins peers' public keys, and
// fetches the ICE configuration. The relay API is docs/PROTOCOL.md §9.
//
// Peer keys are pinned on first use: a later key that differs is refused
// with ErrKeyChanged until the application calls AcceptKey, so a compromised
// relay cannot silently substitute a peer's keys.
package client
