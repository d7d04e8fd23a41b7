package identity

import "errors"

// Sentinel errors. Functions in this package return them wrapped, with a
// message that names what failed and what to do; test with errors.Is.
var (
	// ErrWordCount: a mnemonic does not have 12 or 24 words.
	ErrWordCount = errors.New("identity: a mnemonic has 12 or 24 words")
	// ErrUnknownWord: a mnemonic word is not in the BIP39 English word
	// list. The returned error is a *WordError naming the word.
	ErrUnknownWord = errors.New("identity: a word is not in the BIP39 English word list")
	// ErrChecksum: every word is known but the BIP39 checksum does not
	// match, so a word was mistyped into another valid word or two words
	// were swapped.
	ErrChecksum = errors.New("identity: mnemonic checksum does not match (a word is wrong or the order is changed)")
	// ErrEntropySize: MnemonicFromEntropy got neither 16 nor 32 bytes.
	ErrEntropySize = errors.New("identity: mnemonic entropy must be 16 or 32 bytes")
	// ErrInvalidPublicKey: a peer's public key has the wrong size, is not a
	// valid curve point, or is a low-order point that would void signatures
	// or key agreement.
	ErrInvalidPublicKey = errors.New("identity: invalid public key")
	// ErrKeystorePermissions: the keystore file can be read or written by
	// group or others. Fix it with chmod 600.
	ErrKeystorePermissions = errors.New("identity: keystore file permissions are too open; run chmod 600 on it")
	// ErrKeystoreCorrupt: the keystore file is not the JSON of §1.5 or
	// holds an invalid mnemonic or alias.
	ErrKeystoreCorrupt = errors.New("identity: keystore file is corrupt")
	// ErrKeystoreVersion: the keystore file has a version this build does
	// not read.
	ErrKeystoreVersion = errors.New("identity: keystore version is not supported")
)

// detailError is an error with its own message that still matches one or
// more sentinels (and causes) with errors.Is and errors.As. It lets a
// message read naturally instead of as a chain of "a: b: c" prefixes.
type detailError struct {
	msg  string
	errs []error
}

func (e *detailError) Error() string   { return e.msg }
func (e *detailError) Unwrap() []error { return e.errs }

// newError returns an error with message msg that wraps errs.
func newError(msg string, errs ...error) error {
	return &detailError{msg: msg, errs: errs}
}
