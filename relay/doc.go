// Package relay is duet's relay server: the HTTP API (registration, key
// lookup, ICE configuration), the authenticated WebSocket sessions and the
// blind routing of envelopes between them (docs/PROTOCOL.md §9).
//
// All state lives in NATS, so several nodes on one NATS behave as one relay:
// the directory (alias -> public keys, signing key -> alias, single-use
// registration challenges, the bearer-token key) is in JetStream KV, and
// envelopes travel on one subject per alias, to which every node holding a
// session of that alias subscribes once. By default a node runs an embedded
// nats-server in-process; with Options.NATSURL it joins an external one. The
// code path is the same: the node always talks to NATS through nats.go,
// except that a node on the embedded server, which no other node can share,
// delivers an envelope for an alias with sessions on the node directly.
//
// The relay never decrypts payloads and never logs payloads or tokens. Every
// queue is bounded and every drop is counted (duet_relay_drops_total) by
// reason: see DropReason, SendQueueLen and routeQueueLen.
package relay
