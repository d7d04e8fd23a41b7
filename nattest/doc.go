// Package nattest is the NAT test suite: it builds a small internet out of
// network namespaces (a "public" bridge with the relay, and each peer
// behind its own router namespace doing nftables NAT and filtering) and
// runs real duet processes through it: cone NATs connect directly,
// symmetric NATs fall back to TURN, blocked UDP to TURN over TCP, a network
// that lets only TCP 443 out to TURN over TLS on the relay's HTTPS port, no
// TURN with symmetric NATs fails fast with a reason, and a callee whose
// address changed while idle still rings. Every address lives inside the
// namespaces the suite creates, and every namespace is removed at the end,
// also when a test fails. It needs root, ip (iproute2) and nft (nftables):
// `make nattest`.
package nattest
