package turnserver

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// SecretSize is the length of a secret made by [LoadOrCreateSecret].
const SecretSize = 32

// MinSecretSize is the shortest secret [Start] accepts.
const MinSecretSize = 16

var (
	// ErrSecretFile is returned (wrapped) when a secret file exists but cannot
	// be used: unreadable, wrong content, or readable by other users.
	ErrSecretFile = errors.New("turnserver: unusable secret file")
)

// LoadOrCreateSecret returns the REST secret stored at path. On first use it
// creates the file (and its directory, mode 0700) holding SecretSize random
// bytes as hex, mode 0600; later calls return the same bytes. The file may
// also hold a hex secret written by an operator (at least MinSecretSize
// bytes once decoded) or exactly SecretSize raw bytes.
//
// On Unix a file that group or others can access is refused rather than
// trusted: fix it with chmod 600.
func LoadOrCreateSecret(path string) ([]byte, error) {
	secret, err := loadSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("turnserver: create secret directory: %w", err)
	}
	secret = make([]byte, SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("turnserver: generate secret: %w", err)
	}
	// Write a temporary file completely, then hard-link it into place: a
	// crash never leaves a half-written secret, and if another process won
	// the race its secret is kept and returned.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".turn-secret-*")
	if err != nil {
		return nil, fmt.Errorf("turnserver: create secret file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeSecret(tmp, secret); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadSecret(path)
		}
		return nil, fmt.Errorf("turnserver: install secret file: %w", err)
	}
	return secret, nil
}

func writeSecret(f *os.File, secret []byte) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(hex.EncodeToString(secret) + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("turnserver: write secret file: %w", err)
	}
	return nil
}

func loadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w %s: %w", ErrSecretFile, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrSecretFile, path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrSecretFile, path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %v lets other users read the TURN secret; run chmod 600 on it",
			ErrSecretFile, path, st.Mode().Perm())
	}
	raw, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrSecretFile, path, err)
	}
	if text := bytes.TrimSpace(raw); len(text)%2 == 0 && len(text) >= 2*MinSecretSize {
		if secret, err := hex.DecodeString(string(text)); err == nil {
			return secret, nil
		}
	}
	if len(raw) == SecretSize {
		return bytes.Clone(raw), nil
	}
	return nil, fmt.Errorf("%w %s: want %d hex-encoded or %d raw bytes (delete it to generate a new secret)",
		ErrSecretFile, path, SecretSize, SecretSize)
}
