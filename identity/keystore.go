package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeystoreVersion is the keystore file format version this package writes
// and reads.
const KeystoreVersion = 1

// maxKeystoreSize bounds what LoadKeystore reads; a real file is ~300 bytes.
const maxKeystoreSize = 64 << 10

// Keystore is the content of the keystore file (docs/PROTOCOL.md §1.5):
//
//	{"version": 1, "mnemonic": "<12 or 24 words>", "alias": "u12345678"}
//
// Alias is empty before the relay has assigned one. String, GoString and
// LogValue leave the mnemonic out.
type Keystore struct {
	Version  int    `json:"version"`
	Mnemonic string `json:"mnemonic"`
	Alias    Alias  `json:"alias"`
}

func (ks Keystore) String() string {
	return fmt.Sprintf("keystore(version %d, alias %q, mnemonic redacted)", ks.Version, ks.Alias)
}

// GoString is String, so that %#v does not print the mnemonic.
func (ks Keystore) GoString() string { return ks.String() }

// LogValue keeps the mnemonic out of slog output.
func (ks Keystore) LogValue() slog.Value { return slog.StringValue(ks.String()) }

// SaveKeystore writes ks to path atomically: it validates the mnemonic and
// alias, creates the parent directory (mode 0700) if missing, writes a
// temporary file (mode 0600) in the same directory, fsyncs it and renames
// it over path, so path holds either the old or the new keystore, never a
// partial one. A zero Version means KeystoreVersion; the mnemonic is
// stored normalised.
func SaveKeystore(path string, ks Keystore) error {
	data, err := encodeKeystore(path, ks)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// encodeKeystore validates ks and returns the file content; path is for
// error messages only.
func encodeKeystore(path string, ks Keystore) ([]byte, error) {
	if ks.Version == 0 {
		ks.Version = KeystoreVersion
	}
	if ks.Version != KeystoreVersion {
		return nil, newError(fmt.Sprintf("identity: not saving keystore %s: version %d is not supported; use %d", path, ks.Version, KeystoreVersion), ErrKeystoreVersion)
	}
	if err := ValidateMnemonic(ks.Mnemonic); err != nil {
		return nil, newError(fmt.Sprintf("identity: not saving keystore %s: %s", path, strings.TrimPrefix(err.Error(), "identity: ")), err)
	}
	if ks.Alias != "" {
		if _, err := ParseAlias(string(ks.Alias)); err != nil {
			return nil, newError(fmt.Sprintf("identity: not saving keystore %s: %s", path, strings.TrimPrefix(err.Error(), "identity: ")), err)
		}
	}
	ks.Mnemonic = NormalizeMnemonic(ks.Mnemonic)
	data, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("identity: encoding keystore: %w", err)
	}
	return append(data, '\n'), nil
}

// writeFileAtomic replaces path with data (mode 0600) through a synced
// temporary file in the same directory, creating the directory if needed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: creating the keystore directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("identity: creating a temporary keystore file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("identity: setting keystore permissions: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("identity: writing keystore: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("identity: flushing keystore to disk: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("identity: writing keystore: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("identity: replacing keystore %s: %w", path, err)
	}
	// Make the rename itself durable. Best effort: some platforms and file
	// systems cannot fsync a directory, and the keystore is in place.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// LoadKeystore reads and checks the keystore file at path. Errors:
//
//   - the file does not exist: wraps fs.ErrNotExist;
//   - group or others have any permission on it: ErrKeystorePermissions,
//     checked before the content is read (not on Windows);
//   - it is not exactly the JSON object of §1.5 (unknown fields, trailing
//     data, wrong types, over 64 KiB): ErrKeystoreCorrupt;
//   - its version is not KeystoreVersion: ErrKeystoreVersion;
//   - its mnemonic or alias is invalid: ErrKeystoreCorrupt and the mnemonic
//     or alias error (ErrChecksum, ErrUnknownWord, ErrInvalidAlias, ...).
//
// The returned mnemonic is normalised.
func LoadKeystore(path string) (Keystore, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Keystore{}, newError(fmt.Sprintf("identity: no keystore at %s; create a new identity or restore one from its mnemonic", path), err)
		}
		return Keystore{}, fmt.Errorf("identity: opening keystore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Keystore{}, fmt.Errorf("identity: reading keystore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Keystore{}, newError(fmt.Sprintf("identity: keystore %s is not a regular file (mode %s)", path, fi.Mode()), ErrKeystoreCorrupt)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		what := "accessible" // execute bits only
		switch {
		case perm&0o044 != 0:
			what = "readable"
		case perm&0o022 != 0:
			what = "writable"
		}
		return Keystore{}, newError(fmt.Sprintf("identity: keystore %s is %s by others (mode %04o); run chmod 600 %s", path, what, perm, path), ErrKeystorePermissions)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeystoreSize+1))
	if err != nil {
		return Keystore{}, fmt.Errorf("identity: reading keystore: %w", err)
	}
	return decodeKeystore(path, data)
}

// decodeKeystore parses and checks the file content data; path is for error
// messages only.
func decodeKeystore(path string, data []byte) (Keystore, error) {
	corrupt := func(detail string, errs ...error) error {
		return newError(fmt.Sprintf("identity: keystore %s is corrupt: %s; restore it from your mnemonic", path, detail), append([]error{ErrKeystoreCorrupt}, errs...)...)
	}
	if len(data) > maxKeystoreSize {
		return Keystore{}, corrupt(fmt.Sprintf("larger than %d KiB", maxKeystoreSize>>10))
	}
	var ks Keystore
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ks); err != nil {
		return Keystore{}, corrupt("invalid JSON: " + strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Keystore{}, corrupt("data after the JSON object")
	}
	if ks.Version != KeystoreVersion {
		hint := "it was not written by duet"
		if ks.Version > KeystoreVersion {
			hint = "upgrade duet to read it"
		}
		return Keystore{}, newError(fmt.Sprintf("identity: keystore %s has version %d; this duet reads version %d (%s)", path, ks.Version, KeystoreVersion, hint), ErrKeystoreVersion)
	}
	if err := ValidateMnemonic(ks.Mnemonic); err != nil {
		detail := strings.TrimPrefix(err.Error(), "identity: ")
		if we := (*WordError)(nil); errors.As(err, &we) {
			// Do not echo part of the secret into logs.
			detail = fmt.Sprintf("word %d is not in the BIP39 English word list", we.Position)
		}
		return Keystore{}, corrupt("invalid mnemonic: "+detail, err)
	}
	if ks.Alias != "" {
		if _, err := ParseAlias(string(ks.Alias)); err != nil {
			return Keystore{}, corrupt(strings.TrimPrefix(err.Error(), "identity: "), err)
		}
	}
	ks.Mnemonic = NormalizeMnemonic(ks.Mnemonic)
	return ks, nil
}
