package turnserver

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "turn.secret")
	first, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(first) != SecretSize {
		t.Fatalf("secret is %d bytes, want %d", len(first), SecretSize)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.TrimSpace(string(raw)) != hex.EncodeToString(first) {
		t.Errorf("file holds %q, want the hex secret", raw)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the secret (temporary file left behind?)", len(entries))
	}

	again, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(first, again) {
		t.Fatal("second start returned a different secret")
	}

	other, err := LoadOrCreateSecret(filepath.Join(t.TempDir(), "turn.secret"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, other) {
		t.Fatal("two fresh secrets are equal")
	}
}

func TestLoadSecretFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, content []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := bytes.Repeat([]byte{0xfe}, SecretSize)
	hex16 := "00112233445566778899aabbccddeeff"

	got, err := LoadOrCreateSecret(write("raw", raw, 0o600))
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("raw 32 bytes: %x, %v", got, err)
	}
	got, err = LoadOrCreateSecret(write("hex16", []byte(" "+hex16+"\n"), 0o600))
	if err != nil || hex.EncodeToString(got) != hex16 {
		t.Errorf("operator hex: %x, %v", got, err)
	}

	for name, content := range map[string]string{
		"empty":   "",
		"short":   "abcd\n",
		"garbage": strings.Repeat("z", 70),
	} {
		if _, err := LoadOrCreateSecret(write(name, []byte(content), 0o600)); !errors.Is(err, ErrSecretFile) {
			t.Errorf("%s: error %v, want ErrSecretFile", name, err)
		}
	}
	if runtime.GOOS != "windows" {
		p := write("wide", []byte(hex.EncodeToString(raw)), 0o644)
		if _, err := LoadOrCreateSecret(p); !errors.Is(err, ErrSecretFile) {
			t.Errorf("mode 0644: error %v, want ErrSecretFile", err)
		}
	}
	if _, err := LoadOrCreateSecret(dir); !errors.Is(err, ErrSecretFile) {
		t.Errorf("directory: error %v, want ErrSecretFile", err)
	}
}
