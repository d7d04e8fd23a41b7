package client

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/duetcall/duet/identity"
)

// ErrKeyChanged is returned when a peer's keys from the relay differ from the
// keys pinned for that peer. Signaling with the peer is refused until the
// application compares safety numbers out of band and calls AcceptKey.
var ErrKeyChanged = errors.New("client: peer's keys changed since they were pinned")

// KeyChangedError describes a key change; it wraps ErrKeyChanged.
type KeyChangedError struct {
	Peer    identity.Alias
	Pinned  identity.PublicKeys
	Offered identity.PublicKeys
}

func (e *KeyChangedError) Error() string {
	return fmt.Sprintf("client: the keys of %s changed since they were pinned; compare safety numbers with them out of band, then accept the new key (AcceptKey) to call them again", e.Peer)
}

func (e *KeyChangedError) Unwrap() error { return ErrKeyChanged }

// PinStore keeps the pinned public keys of peers. A PinStore with an empty
// path keeps them in memory only. It is safe for concurrent use, and several
// processes may share one file (a running `duet answer` and a `duet id
// accept`): the store reads the file again whenever another writer replaced
// it (every save renames a new file into place), before each look-up and
// each change, and changes hold a lock on the file (path + ".lock", flock),
// so an accepted key takes effect at once and a save never overwrites a pin
// another process made. A file removed while the store is open forgets
// nothing (the next save writes it again); a file that turns corrupt makes
// Check and Accept fail until it is repaired, while Pinned answers from the
// pins read last.
type PinStore struct {
	path string
	mu   sync.Mutex
	pins map[identity.Alias]pin
	file os.FileInfo // the file the pins were read from or written to; nil: none yet
}

type pin struct {
	Signing   []byte    `json:"ed25519"`
	Agreement []byte    `json:"x25519"`
	PinnedAt  time.Time `json:"pinned_at"`
}

type pinFile struct {
	Version int                    `json:"version"`
	Peers   map[identity.Alias]pin `json:"peers"`
}

// OpenPinStore loads the pin file at path (created on first pin). An empty
// path gives an in-memory store.
func OpenPinStore(path string) (*PinStore, error) {
	s := &PinStore{path: path, pins: make(map[identity.Alias]pin)}
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// refreshLocked reads the pin file again if it is not the one last read or
// written (another process saved it). s.mu is held, or s is not shared yet.
func (s *PinStore) refreshLocked() error {
	if s.path == "" {
		return nil
	}
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since: keep the pins (fail closed), saved again on the next change
	}
	if err != nil {
		return fmt.Errorf("client: reading pinned keys: %w", err)
	}
	if s.file != nil && os.SameFile(s.file, fi) && fi.ModTime().Equal(s.file.ModTime()) && fi.Size() == s.file.Size() {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("client: reading pinned keys: %w", err)
	}
	var f pinFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("client: pinned keys file %s is corrupt (%v); restore it from a backup or remove it to re-pin every peer on next contact", s.path, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("client: pinned keys file %s has unknown version %d", s.path, f.Version)
	}
	pins := make(map[identity.Alias]pin, len(f.Peers))
	for a, p := range f.Peers {
		if !a.Valid() || len(p.Signing) != ed25519.PublicKeySize || len(p.Agreement) != 32 {
			return fmt.Errorf("client: pinned keys file %s has an invalid entry for %q", s.path, a)
		}
		pins[a] = p
	}
	s.pins, s.file = pins, fi
	return nil
}

// Check compares keys with the pin for peer. With no pin yet, it pins keys
// (trust on first use). A difference gives a *KeyChangedError.
func (s *PinStore) Check(peer identity.Alias, keys identity.PublicKeys) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshLocked(); err != nil {
		return err
	}
	p, ok := s.pins[peer]
	if !ok {
		err := s.changeLocked(func() error {
			if p, ok = s.pins[peer]; ok {
				return nil // pinned by another process meanwhile: compare below
			}
			return s.setLocked(peer, keys)
		})
		if err != nil || !ok {
			return err
		}
	}
	pinned := identity.PublicKeys{Signing: p.Signing, Agreement: p.Agreement}
	if !pinned.Equal(keys) {
		return &KeyChangedError{Peer: peer, Pinned: pinned, Offered: keys}
	}
	return nil
}

// Pinned returns the pinned keys of peer. When the pin file cannot be read
// again, it answers from the pins read last.
func (s *PinStore) Pinned(peer identity.Alias) (identity.PublicKeys, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.refreshLocked() // Check and Accept report the error
	p, ok := s.pins[peer]
	return identity.PublicKeys{Signing: p.Signing, Agreement: p.Agreement}, ok
}

// Accept replaces the pin for peer with keys.
func (s *PinStore) Accept(peer identity.Alias, keys identity.PublicKeys) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changeLocked(func() error { return s.setLocked(peer, keys) })
}

// changeLocked runs change with the pin file locked and read again, so that
// it applies to what other processes saved. s.mu is held.
func (s *PinStore) changeLocked(change func() error) error {
	if s.path != "" {
		unlock, err := lockPins(s.path)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if err := s.refreshLocked(); err != nil {
		return err
	}
	return change()
}

func (s *PinStore) setLocked(peer identity.Alias, keys identity.PublicKeys) error {
	old, had := s.pins[peer]
	s.pins[peer] = pin{Signing: keys.Signing, Agreement: keys.Agreement, PinnedAt: time.Now().UTC()}
	if err := s.saveLocked(); err != nil {
		if had {
			s.pins[peer] = old
		} else {
			delete(s.pins, peer)
		}
		return err
	}
	return nil
}

// pinFileSync flushes a new pin file to disk before it replaces the old
// one; tests make it fail.
var pinFileSync = (*os.File).Sync

func (s *PinStore) saveLocked() error {
	if s.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(pinFile{Version: 1, Peers: s.pins}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("client: saving pinned keys: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".pins-*")
	if err != nil {
		return fmt.Errorf("client: saving pinned keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = pinFileSync(tmp)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	// The new file's identity, taken before the rename (which keeps it), is
	// what refreshLocked compares with.
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(tmp.Name())
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("client: saving pinned keys to %s: %w", s.path, err)
	}
	s.file = fi
	return nil
}
