package vectors

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mbits "math/bits"
	"strings"

	"github.com/duetcall/duet/identity"
)

// NormalisationCase is a mnemonic as a user may type it and its §1.1
// normal form; Error is the mnemonic error of the normal form ("" if valid).
type NormalisationCase struct {
	Name       string `json:"name"`
	Input      string `json:"input"`
	Normalised string `json:"normalised"`
	Error      string `json:"error"` // "", word_count, unknown_word, checksum
}

// InvalidPublicKey is a peer key block every implementation refuses
// (ErrInvalidPublicKey), with the reason.
type InvalidPublicKey struct {
	Name    string `json:"name"`
	Ed25519 string `json:"ed25519"`
	X25519  string `json:"x25519"`
}

// wordAt returns BIP39 English word i, read through MnemonicFromEntropy so
// that the list has one source.
func wordAt(i int) string {
	e := make([]byte, 16)
	e[0], e[1] = byte(i>>3), byte(i<<5)
	m, err := identity.MnemonicFromEntropy(e)
	if err != nil {
		panic(err)
	}
	return strings.Fields(m)[0]
}

// bip39Words encodes entropy of any BIP39 size (16..32 bytes, a multiple of
// 4) with its checksum: the valid 15-, 18- and 21-word mnemonics that duet
// refuses for their word count.
func bip39Words(entropy []byte) string {
	sum := sha256.Sum256(entropy)
	buf := append(append([]byte{}, entropy...), sum[0])
	n := (len(entropy)*8 + len(entropy)/4) / 11
	words := make([]string, n)
	for i := range words {
		idx := 0
		for b := i * 11; b < (i+1)*11; b++ {
			idx = idx<<1 | int(buf[b/8]>>(7-b%8)&1)
		}
		words[i] = wordAt(idx)
	}
	return strings.Join(words, " ")
}

func moreInvalidMnemonics() []InvalidMnemonic {
	words12 := strings.Fields(AliceMnemonic)
	return []InvalidMnemonic{
		{bip39Words(seq(20, 0x7f)), "word_count"}, // 15 words, valid BIP39 checksum
		{bip39Words(seq(24, 0x7f)), "word_count"}, // 18 words
		{bip39Words(seq(28, 0x7f)), "word_count"}, // 21 words
		{strings.Join(append(words12, "abandon"), " "), "word_count"},
		{"", "word_count"},
		{strings.Replace(Mnemonic24, "bless", "abandon", 1), "checksum"},
		{strings.Join(append(append([]string{}, words12[:11]...), "zzz", "abandon"), " "), "unknown_word"}, // unknown word and 13 words: unknown_word wins
		{strings.Join(words12[:11], " ") + " abandon abandon abandon", "word_count"},                       // 14 words, checksum meaningless: word_count wins
		{strings.Replace(AliceMnemonic, "about", "ａｂｏｕｔ", 1), "unknown_word"},                              // fullwidth letters: NFKD would map them, §1.1 does not
		{strings.Replace(AliceMnemonic, "about", "abou\u0301t", 1), "unknown_word"},                        // a combining accent
		{strings.Replace(AliceMnemonic, "about", "ABOUT\u200b", 1), "unknown_word"},                        // zero-width space is not White_Space
		{strings.Replace(AliceMnemonic, "about", "Ａbout", 1), "unknown_word"},
	}
}

func normalisationCases() []NormalisationCase {
	m := AliceMnemonic
	words := strings.Fields(m)
	return []NormalisationCase{
		{"upper case", strings.ToUpper(m), m, ""},
		{"mixed case", "Abandon aBandon " + strings.Join(words[2:], " "), m, ""},
		{"leading, trailing and repeated spaces", "  " + strings.Join(words, "   ") + " ", m, ""},
		{"tabs and line breaks (one word per line)", strings.Join(words, "\n") + "\n", m, ""},
		{"CRLF line breaks", strings.Join(words, "\r\n") + "\r\n", m, ""},
		{"no-break space U+00A0, ideographic space U+3000, NEL U+0085, line separator U+2028", strings.Join(words[:3], "\u00a0") + "\u3000" + strings.Join(words[3:6], "\u0085") + "\u2028" + strings.Join(words[6:], " "), m, ""},
		{"24 words in capitals over two lines", strings.ToUpper(strings.Join(strings.Fields(Mnemonic24)[:12], " ")) + "\n" + strings.Join(strings.Fields(Mnemonic24)[12:], " "), Mnemonic24, ""},
		{"a zero-width space is not white space", strings.Replace(m, " about", "\u200b about", 1), strings.Replace(m, " about", "\u200b about", 1), "unknown_word"},
		{"fullwidth capitals are not lower-cased", strings.Replace(m, "about", "ＡＢＯＵＴ", 1), strings.Replace(m, "about", "ＡＢＯＵＴ", 1), "unknown_word"},
		{"only white space", " \t\n\u3000", "", "word_count"},
	}
}

func invalidPublicKeys() []InvalidPublicKey {
	ed := hex.EncodeToString(mustIdentity(AliceMnemonic).PublicKeys().Signing)
	x := hex.EncodeToString(mustIdentity(AliceMnemonic).PublicKeys().Agreement)
	var out []InvalidPublicKey
	for _, k := range []struct{ name, hex string }{
		{"Ed25519 identity point (order 1)", "0100000000000000000000000000000000000000000000000000000000000000"},
		{"Ed25519 point of order 2 (y = -1)", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"Ed25519 point of order 4 (y = 0)", "0000000000000000000000000000000000000000000000000000000000000000"},
		{"Ed25519 point of order 4 (y = 0, x negative)", "0000000000000000000000000000000000000000000000000000000000000080"},
		{"Ed25519 point of order 8", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"},
		{"Ed25519 point of order 8, x negative", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"},
		{"Ed25519 point of order 8 (other)", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"},
		{"Ed25519 point of order 8 (other), x negative", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"},
		{"Ed25519 y = p (not canonical)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"Ed25519 y = 2^255 - 1 (not canonical)", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
		{"Ed25519 identity with the sign bit set (x = 0 negative, not canonical)", "0100000000000000000000000000000000000000000000000000000000000080"},
		{"Ed25519 y = 2: not on the curve", "0200000000000000000000000000000000000000000000000000000000000000"},
		{"Ed25519 key of 31 bytes", ed[:62]},
	} {
		out = append(out, InvalidPublicKey{k.name, k.hex, x})
	}
	for _, k := range LowOrderX25519 {
		out = append(out, InvalidPublicKey{k.Name, ed, k.Hex})
	}
	out = append(out, InvalidPublicKey{"X25519 key of 33 bytes", ed, x + "00"})
	return out
}

// LowOrderX25519 are the X25519 public keys for which X25519(k, pub) is all
// zeros for every k (the points of order 1, 2, 4 and 8 and their
// non-canonical encodings, also with bit 255 set, which X25519 ignores).
var LowOrderX25519 = []struct{ Name, Hex string }{
	{"X25519 u = 0 (all zeros)", "0000000000000000000000000000000000000000000000000000000000000000"},
	{"X25519 u = 1", "0100000000000000000000000000000000000000000000000000000000000000"},
	{"X25519 point of order 8", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"},
	{"X25519 point of order 8 (other)", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"},
	{"X25519 u = p - 1", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"X25519 u = p (= 0)", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"X25519 u = p + 1 (= 1)", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"},
	{"X25519 u = 0 with bit 255 set", "0000000000000000000000000000000000000000000000000000000000000080"},
	{"X25519 point of order 8 with bit 255 set", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880"},
}

// RelayAuthFile is relay_auth.json: the signatures of §9.1 and §9.2.
type RelayAuthFile struct {
	Description   string            `json:"description"`
	Mnemonic      string            `json:"mnemonic"`
	Ed25519Public string            `json:"ed25519_public"`
	X25519Public  string            `json:"x25519_public"`
	Register      SignedChallenge   `json:"register"`
	RegisterBody  map[string]string `json:"register_request"`
	WSAuth        SignedChallenge   `json:"ws_auth"`
	WSAuthFrame   map[string]string `json:"ws_auth_frame"`
	RegisterPoW   RegisterPoW       `json:"register_pow"`
}

// RegisterPoW is the registration proof of work of §9.1 for the register
// challenge: the first 8-byte big-endian counter whose hash starts with
// Bits zero bits (what the SDKs send), and the request body with it.
type RegisterPoW struct {
	Domain string            `json:"domain"`
	Bits   int               `json:"bits"`
	Nonce  string            `json:"nonce"`
	Hash   string            `json:"hash"`
	Body   map[string]string `json:"register_request"`
}

// FirstPoW is the first 8-byte big-endian counter n such that
// SHA-256(domain || challenge || n) starts with bits zero bits, and the hash.
func FirstPoW(domain string, challenge []byte, bits int) (nonce, hash []byte) {
	for n := uint64(0); ; n++ {
		nonce = binary.BigEndian.AppendUint64(nil, n)
		h := sha256.Sum256(append(append([]byte(domain), challenge...), nonce...))
		z := 0
		for _, b := range h {
			if b != 0 {
				z += mbits.LeadingZeros8(b)
				break
			}
			z += 8
		}
		if z >= bits {
			return nonce, h[:]
		}
	}
}

// SignedChallenge is a challenge, the message signed over it and the
// signature (Ed25519 is deterministic).
type SignedChallenge struct {
	Domain    string `json:"domain"`
	Challenge string `json:"challenge"`
	Message   string `json:"message"`
	Signature string `json:"signature"`
}

func genRelayAuth() (any, error) {
	id := mustIdentity(AliceMnemonic)
	pub := id.PublicKeys()
	b64 := base64.StdEncoding.EncodeToString
	regChal, wsChal := seq(32, 0xc0), seq(32, 0xe0)
	regMsg := append(append([]byte("duet/v1/register"), regChal...), pub.Agreement...)
	wsMsg := append([]byte("duet/v1/ws-auth"), wsChal...)
	regSig, wsSig := ed25519.Sign(id.SigningKey, regMsg), ed25519.Sign(id.SigningKey, wsMsg)
	f := RelayAuthFile{
		Description:   "PROTOCOL.md §9.1 and §9.2: the registration signature Ed25519(\"duet/v1/register\" || challenge || x25519_public) and the WebSocket auth signature Ed25519(\"duet/v1/ws-auth\" || challenge), with the request body and auth frame that carry them (alias u10000001). Bytes in hex; the request and frame as sent (base64).",
		Mnemonic:      AliceMnemonic,
		Ed25519Public: hex.EncodeToString(pub.Signing),
		X25519Public:  hex.EncodeToString(pub.Agreement),
		Register:      SignedChallenge{"duet/v1/register", hex.EncodeToString(regChal), hex.EncodeToString(regMsg), hex.EncodeToString(regSig)},
		RegisterBody:  map[string]string{"ed25519": b64(pub.Signing), "x25519": b64(pub.Agreement), "challenge": b64(regChal), "signature": b64(regSig)},
		WSAuth:        SignedChallenge{"duet/v1/ws-auth", hex.EncodeToString(wsChal), hex.EncodeToString(wsMsg), hex.EncodeToString(wsSig)},
		WSAuthFrame:   map[string]string{"type": "auth", "alias": string(AliceAlias), "signature": b64(wsSig)},
	}
	nonce, hash := FirstPoW("duet/v1/register-pow", regChal, 12)
	f.RegisterPoW = RegisterPoW{Domain: "duet/v1/register-pow", Bits: 12, Nonce: hex.EncodeToString(nonce), Hash: hex.EncodeToString(hash),
		Body: map[string]string{"ed25519": b64(pub.Signing), "x25519": b64(pub.Agreement), "challenge": b64(regChal), "signature": b64(regSig), "pow": b64(nonce)}}
	f.Description += " register_pow: the proof of work for the register challenge when the relay answers pow_bits 12: the first 8-byte big-endian counter nonce with SHA-256(\"duet/v1/register-pow\" || challenge || nonce) starting with 12 zero bits, and the request then sent."
	if !ed25519.Verify(pub.Signing, regMsg, regSig) {
		return nil, fmt.Errorf("register signature does not verify")
	}
	return f, nil
}
