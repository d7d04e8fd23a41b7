package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Official BIP39 English test vectors (trezor/python-mnemonic vectors.json,
// passphrase "TREZOR"): every 12- and 24-word entry.
var bip39Vectors = []struct{ entropy, mnemonic, seed string }{
	{"00000000000000000000000000000000",
		"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
		"c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"},
	{"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
		"legal winner thank year wave sausage worth useful legal winner thank yellow",
		"2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607"},
	{"80808080808080808080808080808080",
		"letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
		"d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8"},
	{"ffffffffffffffffffffffffffffffff",
		"zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
		"ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069"},
	{"0000000000000000000000000000000000000000000000000000000000000000",
		"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
		"bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8"},
	{"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
		"legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
		"bc09fca1804f7e69da93c2f2028eb238c227f2e9dda30cd63699232578480a4021b146ad717fbb7e451ce9eb835f43620bf5c514db0f8add49f5d121449d3e87"},
	{"8080808080808080808080808080808080808080808080808080808080808080",
		"letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless",
		"c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f"},
	{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote",
		"dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad"},
	{"9e885d952ad362caeb4efe34a8e91bd2",
		"ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic",
		"274ddc525802f7c828d8ef7ddbcdc5304e87ac3535913611fbbfa986d0c9e5476c91689f9c8a54fd55bd38606aa6a8595ad213d4c9c9f9aca3fb217069a41028"},
	{"68a79eaca2324873eacc50cb9c6eca8cc68ea5d936f98787c60c7ebc74e6ce7c",
		"hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length",
		"64c87cde7e12ecf6704ab95bb1408bef047c22db4cc7491c4271d170a1b213d20b385bc1588d9c7b38f1b39d415665b8a9030c9ec653d75e65f847d8fc1fc440"},
	{"c0ba5a8e914111210f2bd131f3d5e08d",
		"scheme spot photo card baby mountain device kick cradle pact join borrow",
		"ea725895aaae8d4c1cf682c1bfd2d358d52ed9f0f0591131b559e2724bb234fca05aa9c02c57407e04ee9dc3b454aa63fbff483a8b11de949624b9f1831a9612"},
	{"9f6a2878b2520799a44ef18bc7df394e7061a224d2c33cd015b157d746869863",
		"panda eyebrow bullet gorilla call smoke muffin taste mesh discover soft ostrich alcohol speed nation flash devote level hobby quick inner drive ghost inside",
		"72be8e052fc4919d2adf28d5306b5474b0069df35b02303de8c1729c9538dbb6fc2d731d5f832193cd9fb6aeecbc469594a70e3dd50811b5067f3b88b28c3e8d"},
	{"23db8160a31d3e0dca3688ed941adbf3",
		"cat swing flag economy stadium alone churn speed unique patch report train",
		"deb5f45449e615feff5640f2e49f933ff51895de3b4381832b3139941c57b59205a42480c52175b6efcffaa58a2503887c1e8b363a707256bdd2b587b46541f5"},
	{"066dca1a2bb7e8a1db2832148ce9933eea0f3ac9548d793112d9a95c9407efad",
		"all hour make first leader extend hole alien behind guard gospel lava path output census museum junior mass reopen famous sing advance salt reform",
		"26e975ec644423f4a4c4f4215ef09b4bd7ef924e85d1d17c4cf3f136c2863cf6df0a475045652c57eb5fb41513ca2a2d67722b77e954b4b3fc11f7590449191d"},
	{"f30f8c1da665478f49b001d94c5fc452",
		"vessel ladder alter error federal sibling chat ability sun glass valve picture",
		"2aaa9242daafcee6aa9d7269f17d4efe271e1b9a529178d7dc139cd18747090bf9d60295d0ce74309a78852a9caadf0af48aae1c6253839624076224374bc63f"},
	{"f585c11aec520db57dd353c69554b21a89b20fb0650966fa0a9d6f74fd989d8f",
		"void come effort suffer camp survey warrior heavy shoot primary clutch crush open amazing screen patrol group space point ten exist slush involve unfold",
		"01f5bced59dec48e362f2c45b5de68b9fd6c92c6634f44d6d40aab69056506f0e35524a518034ddc1192e1dacd32c1ed3eaa3c3b131c88ed8e7e54c49a5d0998"},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWordList(t *testing.T) {
	if got := sha256.Sum256([]byte(englishTxt)); hex.EncodeToString(got[:]) != "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda" {
		t.Fatalf("english.txt SHA-256 = %x; not the official BIP39 English list", got)
	}
	if len(wordList) != 2048 || len(wordIndex) != 2048 {
		t.Fatalf("%d words, %d distinct; want 2048", len(wordList), len(wordIndex))
	}
	if !slices.IsSorted(wordList) || wordList[0] != "abandon" || wordList[2047] != "zoo" {
		t.Fatal("word list is not the sorted abandon..zoo list")
	}
	for i, w := range wordList {
		if wordIndex[w] != i {
			t.Fatalf("wordIndex[%q] = %d; want %d", w, wordIndex[w], i)
		}
	}
}

func TestBIP39Vectors(t *testing.T) {
	for _, v := range bip39Vectors {
		name := strings.Join(strings.Fields(v.mnemonic)[:2], "_")
		t.Run(name, func(t *testing.T) {
			entropy := mustHex(t, v.entropy)
			m, err := MnemonicFromEntropy(entropy)
			if err != nil || m != v.mnemonic {
				t.Fatalf("MnemonicFromEntropy(%s) = %q, %v; want %q", v.entropy, m, err, v.mnemonic)
			}
			if err := ValidateMnemonic(v.mnemonic); err != nil {
				t.Fatalf("ValidateMnemonic: %v", err)
			}
			got, err := decodeMnemonic(strings.Fields(v.mnemonic))
			if err != nil || !bytes.Equal(got, entropy) {
				t.Fatalf("decodeMnemonic = %x, %v; want %s", got, err, v.entropy)
			}
			seed, err := seedWithPassphrase(v.mnemonic, "TREZOR")
			if err != nil || hex.EncodeToString(seed) != v.seed {
				t.Fatalf("seed = %x, %v; want %s", seed, err, v.seed)
			}
			// The public API uses the empty passphrase, which gives another seed.
			pub, err := Seed(v.mnemonic)
			if err != nil || len(pub) != 64 || bytes.Equal(pub, seed) {
				t.Fatalf("Seed = %x, %v; want 64 bytes unlike the TREZOR seed", pub, err)
			}
		})
	}
}

func TestSeedEmptyPassphrase(t *testing.T) {
	// BIP39 seed of the all-zero 12-word mnemonic with the empty passphrase,
	// as every BIP39 wallet computes it (e.g. Ian Coleman's bip39 tool).
	const m = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
	const want = "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4"
	seed, err := Seed(m)
	if err != nil || hex.EncodeToString(seed) != want {
		t.Fatalf("Seed = %x, %v; want %s", seed, err, want)
	}
	same, err := seedWithPassphrase(m, "")
	if err != nil || !bytes.Equal(same, seed) {
		t.Fatalf("seedWithPassphrase(m, \"\") = %x, %v; want Seed(m)", same, err)
	}
	// Seed normalises before hashing.
	messy, err := Seed("  ABANDON abandon\tabandon abandon abandon abandon abandon abandon abandon abandon abandon\n About ")
	if err != nil || !bytes.Equal(messy, seed) {
		t.Fatalf("Seed(messy) = %x, %v; want the normalised seed", messy, err)
	}
	if _, err := Seed("abandon abandon abandon"); !errors.Is(err, ErrWordCount) {
		t.Fatalf("Seed(3 words) err = %v; want ErrWordCount", err)
	}
}

func TestNewMnemonic(t *testing.T) {
	for _, tc := range []struct{ ask, want int }{{0, 12}, {12, 12}, {24, 24}} {
		a, err := NewMnemonic(tc.ask)
		if err != nil {
			t.Fatalf("NewMnemonic(%d): %v", tc.ask, err)
		}
		if n := len(strings.Split(a, " ")); n != tc.want {
			t.Fatalf("NewMnemonic(%d) has %d words; want %d: %q", tc.ask, n, tc.want, a)
		}
		if err := ValidateMnemonic(a); err != nil {
			t.Fatalf("NewMnemonic(%d) = %q is invalid: %v", tc.ask, a, err)
		}
		b, err := NewMnemonic(tc.ask)
		if err != nil || a == b {
			t.Fatalf("two NewMnemonic(%d) calls gave %q and %q (%v); want fresh randomness", tc.ask, a, b, err)
		}
	}
	for _, n := range []int{-1, 1, 11, 13, 15, 18, 21, 25, 48} {
		m, err := NewMnemonic(n)
		if !errors.Is(err, ErrWordCount) || m != "" {
			t.Errorf("NewMnemonic(%d) = %q, %v; want ErrWordCount", n, m, err)
		}
	}
	if _, err := NewMnemonic(13); err == nil || err.Error() != "identity: cannot make a 13-word mnemonic; use 12 or 24 words" {
		t.Errorf("NewMnemonic(13) message = %v", err)
	}
}

func TestMnemonicFromEntropyErrors(t *testing.T) {
	for _, n := range []int{0, 1, 15, 17, 20, 24, 28, 31, 33, 64} {
		m, err := MnemonicFromEntropy(make([]byte, n))
		if !errors.Is(err, ErrEntropySize) || m != "" {
			t.Errorf("MnemonicFromEntropy(%d bytes) = %q, %v; want ErrEntropySize", n, m, err)
		}
	}
	if _, err := MnemonicFromEntropy(nil); err == nil || err.Error() != "identity: mnemonic entropy is 0 bytes; want 16 (12 words) or 32 (24 words)" {
		t.Errorf("MnemonicFromEntropy(nil) message = %v", err)
	}
}

func TestMnemonicRoundTrip(t *testing.T) {
	for i := range 200 {
		entropy := make([]byte, 16+16*(i%2))
		rand.Read(entropy)
		m, err := MnemonicFromEntropy(entropy)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateMnemonic(m); err != nil {
			t.Fatalf("ValidateMnemonic(%q): %v", m, err)
		}
		got, err := decodeMnemonic(strings.Fields(m))
		if err != nil || !bytes.Equal(got, entropy) {
			t.Fatalf("entropy %x -> %q -> %x, %v", entropy, m, got, err)
		}
		if NormalizeMnemonic(strings.ToUpper(m)) != m {
			t.Fatalf("NormalizeMnemonic(upper(%q)) differs", m)
		}
	}
}

func TestNormalizeMnemonic(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"   \t\n ":                       "",
		"Abandon  ABOUT":                 "abandon about",
		"\tabandon\r\nabout \v\f zoo \n": "abandon about zoo",
		"abandon\u00a0about\u3000zoo":    "abandon about zoo",  // no-break and ideographic spaces
		"ÄBANDON abandön":                "Äbandon abandön",    // only ASCII letters are lowered
		"\u212Aite":                      "\u212Aite",          // the Kelvin sign is not a k
		"abandon\u200babout":             "abandon\u200babout", // zero-width space is not white space
		"a b  c   d":                     "a b c d",
		"ZOO":                            "zoo",
		"already lower case stays as is": "already lower case stays as is",
	} {
		if got := NormalizeMnemonic(in); got != want {
			t.Errorf("NormalizeMnemonic(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestValidateMnemonicNormalises(t *testing.T) {
	for _, m := range []string{
		"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
		"  ABANDON Abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon ABOUT  ",
		"abandon\tabandon\nabandon\r\nabandon abandon    abandon abandon abandon abandon abandon abandon about\n",
		"abandon\u00a0abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
	} {
		if err := ValidateMnemonic(m); err != nil {
			t.Errorf("ValidateMnemonic(%q): %v", m, err)
		}
	}
}

func TestValidateMnemonicErrors(t *testing.T) {
	twelve := strings.Fields(bip39Vectors[1].mnemonic) // legal winner ... yellow
	join := func(w []string) string { return strings.Join(w, " ") }
	with := func(i int, w string) string {
		c := slices.Clone(twelve)
		c[i] = w
		return join(c)
	}
	swapped := slices.Clone(twelve)
	swapped[0], swapped[11] = swapped[11], swapped[0]

	for _, tc := range []struct {
		name, m string
		want    error
		msg     string // exact message, if not empty
	}{
		{"empty", "", ErrWordCount, "identity: mnemonic has 0 words; want 12 or 24"},
		{"one word", "abandon", ErrWordCount, "identity: mnemonic has 1 word; want 12 or 24"},
		{"11 words", join(twelve[:11]), ErrWordCount, "identity: mnemonic has 11 words; want 12 or 24"},
		{"13 words", join(append(slices.Clone(twelve), "yellow")), ErrWordCount, ""},
		// A valid 18-word BIP39 mnemonic: duet allows 12 or 24 words only.
		{"18 words", "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon agent", ErrWordCount, "identity: mnemonic has 18 words; want 12 or 24"},
		{"unknown word", with(4, "abandn"), ErrUnknownWord, `identity: word 5 "abandn" is not in the BIP39 English word list`},
		{"unknown first word", with(0, "Legall"), ErrUnknownWord, `identity: word 1 "legall" is not in the BIP39 English word list`},
		{"non-ASCII word", with(11, "yellöw"), ErrUnknownWord, `identity: word 12 "yellöw" is not in the BIP39 English word list`},
		{"punctuation", with(11, "yellow."), ErrUnknownWord, `identity: word 12 "yellow." is not in the BIP39 English word list`},
		{"unknown word and wrong count", "abandon abandonabandon", ErrUnknownWord, `identity: word 2 "abandonabandon" is not in the BIP39 English word list`},
		{"long word truncated", with(2, strings.Repeat("x", 100)), ErrUnknownWord, `identity: word 3 "` + strings.Repeat("x", 32) + `..." is not in the BIP39 English word list`},
		{"checksum: wrong last word", with(11, "zoo"), ErrChecksum, "identity: mnemonic checksum does not match (a word is wrong or the order is changed)"},
		{"checksum: swapped words", join(swapped), ErrChecksum, ""},
		{"checksum: all abandon", strings.Repeat("abandon ", 12), ErrChecksum, ""},
		{"checksum: 24 words", strings.Repeat("zoo ", 24), ErrChecksum, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateMnemonic(tc.m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v; want %v", err, tc.want)
			}
			for _, other := range []error{ErrWordCount, ErrUnknownWord, ErrChecksum} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err %v also matches %v", err, other)
				}
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message = %q; want %q", err.Error(), tc.msg)
			}
		})
	}

	var we *WordError
	if err := ValidateMnemonic(with(6, "Foo")); !errors.As(err, &we) || we.Position != 7 || we.Word != "foo" {
		t.Fatalf("errors.As(*WordError) = %+v from %v; want position 7 word foo", we, err)
	}
}

// Every single-word substitution into a valid mnemonic is caught by the
// word list or, in 15 of 16 cases for 12 words, by the checksum; the ones
// that pass must decode to different entropy.
func TestValidateMnemonicSubstitutions(t *testing.T) {
	m := strings.Fields(bip39Vectors[8].mnemonic)
	passed, caught := 0, 0
	for _, w := range wordList[:256] {
		c := slices.Clone(m)
		c[3] = w
		switch err := ValidateMnemonic(strings.Join(c, " ")); {
		case err == nil:
			passed++
		case errors.Is(err, ErrChecksum):
			caught++
		default:
			t.Fatalf("substituting %q: unexpected %v", w, err)
		}
	}
	if passed == 0 || caught == 0 || caught < 10*passed {
		t.Fatalf("checksum caught %d and passed %d of 256 substitutions; want about 15:1", caught, passed)
	}
}

func ExampleValidateMnemonic() {
	fmt.Println(ValidateMnemonic("legal winner thank year wave sausage worth useful legal winner thank yellow"))
	fmt.Println(ValidateMnemonic("legal winner thank year wave sausage worth useful legal winner thank yelow"))
	fmt.Println(ValidateMnemonic("winner legal thank year wave sausage worth useful legal winner thank yellow"))
	// Output:
	// <nil>
	// identity: word 12 "yelow" is not in the BIP39 English word list
	// identity: mnemonic checksum does not match (a word is wrong or the order is changed)
}

func ExampleMnemonicFromEntropy() {
	m, _ := MnemonicFromEntropy(bytes.Repeat([]byte{0x7f}, 16))
	fmt.Println(m)
	// Output: legal winner thank year wave sausage worth useful legal winner thank yellow
}
