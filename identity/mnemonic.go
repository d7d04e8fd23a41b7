package identity

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"fmt"
	"strings"
	"unicode"
)

// The BIP39 English word list, one word per line, 2048 lines, sorted:
// https://github.com/bitcoin/bips/blob/master/bip-0039/english.txt.
// SHA-256 of the file: 2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda.
//
//go:embed english.txt
var englishTxt string

var (
	// wordList[i] is the word for the 11-bit value i.
	wordList = strings.Split(strings.TrimSuffix(englishTxt, "\n"), "\n")
	// wordIndex is the inverse of wordList.
	wordIndex = func() map[string]int {
		m := make(map[string]int, len(wordList))
		for i, w := range wordList {
			m[w] = i
		}
		return m
	}()
)

const (
	// DefaultWords is the length of a new mnemonic unless 24 is asked for.
	DefaultWords = 12

	bitsPerWord = 11
	bip39Rounds = 2048
	seedSize    = 64
)

// WordError reports a mnemonic word that is not in the BIP39 English word
// list. It matches ErrUnknownWord with errors.Is.
type WordError struct {
	Position int    // 1-based position of the word in the mnemonic
	Word     string // the word as normalised (lower-case)
}

func (e *WordError) Error() string {
	return fmt.Sprintf("identity: word %d %q is not in the BIP39 English word list", e.Position, truncate(e.Word, 32))
}

// Unwrap returns ErrUnknownWord.
func (e *WordError) Unwrap() error { return ErrUnknownWord }

// NewMnemonic returns a fresh BIP39 English mnemonic of 12 words (128 bits
// of entropy; also when words is 0) or 24 words (256 bits), with entropy
// from crypto/rand. Any other word count is an error wrapping ErrWordCount.
func NewMnemonic(words int) (string, error) {
	if words == 0 {
		words = DefaultWords
	}
	if words != 12 && words != 24 {
		return "", newError(fmt.Sprintf("identity: cannot make a %d-word mnemonic; use 12 or 24 words", words), ErrWordCount)
	}
	entropy := make([]byte, words*4/3) // 16 or 32 bytes
	if _, err := rand.Read(entropy); err != nil {
		return "", fmt.Errorf("identity: reading random entropy for a mnemonic: %w", err)
	}
	return MnemonicFromEntropy(entropy)
}

// MnemonicFromEntropy encodes 16 bytes (12 words) or 32 bytes (24 words) of
// entropy as a BIP39 English mnemonic (docs/PROTOCOL.md §1.1): the entropy
// followed by the first len(entropy)/4 bits of its SHA-256, split into
// 11-bit word indexes. Other sizes are an error wrapping ErrEntropySize.
func MnemonicFromEntropy(entropy []byte) (string, error) {
	if len(entropy) != 16 && len(entropy) != 32 {
		return "", newError(fmt.Sprintf("identity: mnemonic entropy is %d bytes; want 16 (12 words) or 32 (24 words)", len(entropy)), ErrEntropySize)
	}
	sum := sha256.Sum256(entropy)
	// entropy || first checksum byte; only its top len/4 bits are used.
	buf := append(append(make([]byte, 0, len(entropy)+1), entropy...), sum[0])
	n := (len(entropy)*8 + len(entropy)/4) / bitsPerWord
	words := make([]string, n)
	for i := range words {
		idx := 0
		for b := i * bitsPerWord; b < (i+1)*bitsPerWord; b++ {
			idx = idx<<1 | int(buf[b/8]>>(7-b%8)&1)
		}
		words[i] = wordList[idx]
	}
	return strings.Join(words, " "), nil
}

// NormalizeMnemonic returns m lower-cased (ASCII letters only) with every run
// of white space (Unicode White_Space) replaced by one ASCII space and
// leading and trailing white space removed. It does not validate.
func NormalizeMnemonic(m string) string {
	return strings.Join(normalizedWords(m), " ")
}

func normalizedWords(m string) []string {
	fields := strings.FieldsFunc(m, unicode.IsSpace)
	for i, f := range fields {
		fields[i] = asciiLower(f)
	}
	return fields
}

// asciiLower lower-cases A-Z only, so that Go and the browser SDK agree
// byte for byte: full Unicode case mapping differs between languages, and
// no BIP39 English word has a non-ASCII letter anyway.
func asciiLower(s string) string {
	hasUpper := false
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			hasUpper = true
			break
		}
	}
	if !hasUpper {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// ValidateMnemonic reports whether m, after NormalizeMnemonic, is a valid
// 12- or 24-word BIP39 English mnemonic. The error wraps ErrUnknownWord
// (as a *WordError naming the first unknown word and its position),
// ErrWordCount or ErrChecksum, checked in that order.
func ValidateMnemonic(m string) error {
	_, err := decodeMnemonic(normalizedWords(m))
	return err
}

// decodeMnemonic checks words (already normalised) and returns the entropy.
func decodeMnemonic(words []string) ([]byte, error) {
	idx := make([]int, len(words))
	for i, w := range words {
		j, ok := wordIndex[w]
		if !ok {
			return nil, &WordError{Position: i + 1, Word: w}
		}
		idx[i] = j
	}
	if len(words) != 12 && len(words) != 24 {
		what := fmt.Sprintf("%d words", len(words))
		if len(words) == 1 {
			what = "1 word"
		}
		return nil, newError(fmt.Sprintf("identity: mnemonic has %s; want 12 or 24", what), ErrWordCount)
	}
	// 12 words = 132 bits = 128 entropy + 4 checksum; 24 = 256 + 8.
	buf := make([]byte, (len(words)*bitsPerWord+7)/8)
	for i, j := range idx {
		for k := 0; k < bitsPerWord; k++ {
			if j>>(bitsPerWord-1-k)&1 == 1 {
				b := i*bitsPerWord + k
				buf[b/8] |= 0x80 >> (b % 8)
			}
		}
	}
	entLen := len(words) * 4 / 3 // bytes: 16 or 32
	csBits := entLen / 4         // 4 or 8
	entropy := buf[:entLen]
	sum := sha256.Sum256(entropy)
	if buf[entLen]>>(8-csBits) != sum[0]>>(8-csBits) {
		return nil, ErrChecksum
	}
	return entropy, nil
}

// Seed validates mnemonic and returns its 64-byte BIP39 seed with the empty
// passphrase (docs/PROTOCOL.md §1.1):
//
//	PBKDF2-HMAC-SHA512(NormalizeMnemonic(mnemonic), "mnemonic", 2048, 64)
//
// BIP39 applies NFKD to the mnemonic; a valid English mnemonic is ASCII, on
// which NFKD is the identity.
func Seed(mnemonic string) ([]byte, error) {
	return seedWithPassphrase(mnemonic, "")
}

// seedWithPassphrase is Seed with a BIP39 passphrase, for the official test
// vectors (passphrase "TREZOR"). duet always uses the empty passphrase. The
// passphrase must already be NFKD-normalised (ASCII is).
func seedWithPassphrase(mnemonic, passphrase string) ([]byte, error) {
	words := normalizedWords(mnemonic)
	if _, err := decodeMnemonic(words); err != nil {
		return nil, err
	}
	seed, err := pbkdf2.Key(sha512.New, strings.Join(words, " "), []byte("mnemonic"+passphrase), bip39Rounds, seedSize)
	if err != nil {
		return nil, fmt.Errorf("identity: deriving the BIP39 seed: %w", err)
	}
	return seed, nil
}
