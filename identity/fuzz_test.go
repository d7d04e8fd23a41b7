package identity

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func FuzzValidateMnemonic(f *testing.F) {
	for _, v := range bip39Vectors {
		f.Add(v.mnemonic)
	}
	for _, s := range []string{"", " ", "abandon", "ABANDON abandon\tabandon", "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo",
		"abandon\u00a0abandon", "\xff\xfe", "abandön", strings.Repeat("abandon ", 25)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, m string) {
		err := ValidateMnemonic(m)
		norm := NormalizeMnemonic(m)
		if NormalizeMnemonic(norm) != norm {
			t.Fatalf("NormalizeMnemonic is not idempotent on %q", m)
		}
		if err2 := ValidateMnemonic(norm); (err == nil) != (err2 == nil) {
			t.Fatalf("ValidateMnemonic(%q) = %v but on its normal form %v", m, err, err2)
		}
		if err != nil {
			n := 0
			for _, e := range []error{ErrWordCount, ErrUnknownWord, ErrChecksum} {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("ValidateMnemonic(%q) = %v matches %d sentinels; want 1", m, err, n)
			}
			return
		}
		// A valid mnemonic is its entropy's canonical encoding.
		entropy, err := decodeMnemonic(strings.Split(norm, " "))
		if err != nil {
			t.Fatal(err)
		}
		again, err := MnemonicFromEntropy(entropy)
		if err != nil || again != norm {
			t.Fatalf("round trip of %q gave %q, %v", norm, again, err)
		}
	})
}

var aliasRE = regexp.MustCompile(`^u[0-9]{8}$`)

func FuzzParseAlias(f *testing.F) {
	for _, s := range []string{"u12345678", "", "u1234567", "U12345678", "u１2345678", "u123456789", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAlias(s)
		if want := aliasRE.MatchString(s); want != (err == nil) || want != Alias(s).Valid() {
			t.Fatalf("ParseAlias(%q) = %q, %v; regexp says %v", s, a, err, want)
		}
		if err == nil && a.String() != s {
			t.Fatalf("ParseAlias(%q) = %q", s, a)
		}
		if err != nil && (!errors.Is(err, ErrInvalidAlias) || a != "") {
			t.Fatalf("ParseAlias(%q) = %q, %v", s, a, err)
		}
	})
}

func FuzzLoadKeystore(f *testing.F) {
	f.Add([]byte(`{"version":1,"mnemonic":"` + mnemonicA + `","alias":"u12345678"}`))
	f.Add([]byte(`{"version":1,"mnemonic":"` + mnemonicB + `","alias":""}` + "\n"))
	f.Add([]byte(`{"version":1,"mnemonic":"` + mnemonicA + `"}`))
	f.Add([]byte(`{"version":2,"mnemonic":"` + mnemonicA + `"}`))
	f.Add([]byte(`{"version":1,"mnemonic":"` + mnemonicA + `","x":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Add([]byte{})
	const path = "/fuzz/ks.json"
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := decodeKeystore(path, data)
		if err != nil {
			if !errors.Is(err, ErrKeystoreCorrupt) && !errors.Is(err, ErrKeystoreVersion) {
				t.Fatalf("decodeKeystore(%q) = %v; want ErrKeystoreCorrupt or ErrKeystoreVersion", data, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		// Whatever loads is valid, and saving it loads back the same.
		if ks.Version != KeystoreVersion || ValidateMnemonic(ks.Mnemonic) != nil || ks.Mnemonic != NormalizeMnemonic(ks.Mnemonic) || (ks.Alias != "" && !ks.Alias.Valid()) {
			t.Fatalf("decodeKeystore(%q) accepted %+v", data, ks)
		}
		out, err := encodeKeystore(path, ks)
		if err != nil {
			t.Fatalf("encodeKeystore(loaded %q): %v", data, err)
		}
		again, err := decodeKeystore(path, out)
		if err != nil || again != ks {
			t.Fatalf("re-encoded keystore %s decodes as %+v, %v; want %+v", out, again, err, ks)
		}
	})
}

func FuzzParsePublicKeys(f *testing.F) {
	pk := PublicKeys{
		Signing:   mustHex(f, fixedKeys[0].ed),
		Agreement: mustHex(f, fixedKeys[0].x),
	}
	f.Add([]byte(pk.Signing), pk.Agreement)
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add([]byte{1}, []byte{})
	f.Fuzz(func(t *testing.T, sign, agree []byte) {
		got, err := ParsePublicKeys(sign, agree)
		if err != nil {
			if !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("err = %v; want ErrInvalidPublicKey", err)
			}
			return
		}
		if !bytes.Equal(got.Signing, sign) || !bytes.Equal(got.Agreement, agree) || len(sign) != 32 || len(agree) != 32 {
			t.Fatalf("ParsePublicKeys(%x, %x) = %x, %x", sign, agree, got.Signing, got.Agreement)
		}
		if SafetyNumber(got, pk) == "" {
			t.Fatal("no safety number for accepted keys")
		}
	})
}
