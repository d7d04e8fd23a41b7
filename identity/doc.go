// Package identity holds a duet user's identity: the BIP39 mnemonic, the
// Ed25519 signing and X25519 agreement keys derived from it, the relay-assigned
// alias, safety numbers for out-of-band key comparison, and the keystore file.
//
// The derivations are specified in docs/PROTOCOL.md §1 and checked against
// testdata/vectors.
//
// A new user:
//
//	m, err := identity.NewMnemonic(0) // 12 words; show them once, to write down
//	id, err := identity.FromMnemonic(m)
//	err = identity.SaveKeystore(path, identity.Keystore{Mnemonic: m})
//
// A returning user:
//
//	ks, err := identity.LoadKeystore(path) // refuses a file others can read
//	id, err := identity.FromMnemonic(ks.Mnemonic)
//
// A peer's keys from the relay directory go through ParsePublicKeys, which
// rejects malformed and low-order keys; SafetyNumber(mine, theirs) is what
// the two users read to each other.
//
// Identity and Keystore print and log without their secrets.
package identity
