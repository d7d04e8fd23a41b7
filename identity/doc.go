// Package identity holds a duet user's identity: the BIP39 mnemonic, the
// Ed25519 signing and X25519 agreement keys derived from it, the relay-assigned
// alias, safety numbers for out-of-band key comparison, and the keystore file.
//
// The derivations are specified in docs/PROTOCOL.md §1 and checked against
// testdata/vectors.
package identity
