package e2ee

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzKeys are Alice's send keys and Bob's matching receive keys for epochs
// 0 and 1, derived once per fuzz target.
type fuzzKeys struct {
	send, recv [2]DirectionKey
}

func newFuzzKeys(t testing.TB) fuzzKeys {
	alice, bob := newParty(t, 1), newParty(t, 2)
	var k fuzzKeys
	for n := range uint32(2) {
		k.send[n], _ = keysFor(t, alice, bob, n)
		_, k.recv[n] = keysFor(t, bob, alice, n)
	}
	return k
}

var decryptErrors = []error{ErrShortFrame, ErrInvalidKind, ErrUnknownEpoch, ErrAuth, ErrReplay, ErrTooOld}

// FuzzDecrypt feeds arbitrary frames to a Decryptor holding epochs 0
// (within its grace) and 1. It must never panic, must fail only with its
// documented errors, and a frame that decrypts must come out of an
// Encryptor at the same counter byte for byte, and be refused as a replay.
func FuzzDecrypt(f *testing.F) {
	keys := newFuzzKeys(f)
	kinds := []FrameKind{KindVP8, KindOpus, KindOther}
	for epoch := range uint32(2) {
		enc, err := NewEncryptor(keys.send[epoch], &EncryptorOptions{FirstSeq: 5000 * epoch})
		if err != nil {
			f.Fatal(err)
		}
		for _, n := range []int{1, 2, 3, 4, 9, 10, 11, 40, 300} {
			for i, first := range []byte{vp8Key, vp8Delta, opusTOC} {
				frame, err := enc.Encrypt(nil, testFrame(n, first), kinds[i])
				if err != nil {
					f.Fatal(err)
				}
				f.Add(frame, uint8(kinds[i]))
				f.Add(frame, uint8(KindOther))
			}
		}
	}
	f.Add([]byte{}, uint8(KindVP8))
	f.Add(make([]byte, Overhead+1), uint8(0))

	f.Fuzz(func(t *testing.T, frame []byte, k uint8) {
		kind := FrameKind(k % 5) // includes the invalid kinds 0 and 4
		clock := newFakeClock()
		dec, err := NewDecryptor(keys.recv[0], &DecryptorOptions{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.AddKey(keys.recv[1]); err != nil {
			t.Fatal(err)
		}
		orig := bytes.Clone(frame)
		out, err := dec.Decrypt(nil, frame, kind)
		if !bytes.Equal(frame, orig) {
			t.Fatal("Decrypt modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatal("Decrypt returned data with an error")
			}
			for _, e := range decryptErrors {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}

		if len(out) != len(frame)-Overhead {
			t.Fatalf("decrypted %d bytes from %d", len(out), len(frame))
		}
		ctr, err := FrameCounter(frame, kind)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := NewEncryptor(keys.send[ctr.Epoch()], &EncryptorOptions{FirstSeq: ctr.Seq()})
		if err != nil {
			t.Fatal(err)
		}
		again, err := enc.Encrypt(nil, out, kind)
		if err != nil {
			t.Fatalf("re-encrypting a decrypted frame: %v", err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("re-encrypted frame differs\n got % x\nwant % x", again, frame)
		}
		if _, err := dec.Decrypt(nil, frame, kind); !errors.Is(err, ErrReplay) {
			t.Fatalf("second Decrypt: err = %v, want ErrReplay", err)
		}
	})
}

// FuzzRoundTrip encrypts arbitrary frames at arbitrary counters and checks
// the layout and that decryption returns the frame.
func FuzzRoundTrip(f *testing.F) {
	keys := newFuzzKeys(f)
	f.Add([]byte{vp8Key, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, uint8(KindVP8), uint32(0))
	f.Add([]byte{vp8Delta, 1}, uint8(KindVP8), uint32(RekeyFrames))
	f.Add([]byte{opusTOC}, uint8(KindOpus), uint32(MaxFramesPerKey-1))
	f.Add([]byte{0}, uint8(KindOther), uint32(1))
	f.Add([]byte{}, uint8(KindOther), uint32(1))

	f.Fuzz(func(t *testing.T, frame []byte, k uint8, seq uint32) {
		kind := FrameKind(k % 5)
		seq %= MaxFramesPerKey
		enc, err := NewEncryptor(keys.send[1], &EncryptorOptions{FirstSeq: seq})
		if err != nil {
			t.Fatal(err)
		}
		out, err := enc.Encrypt(nil, frame, kind)
		h, herr := ClearHeaderLen(frame, kind)
		if (err == nil) != (herr == nil) {
			t.Fatalf("Encrypt err %v, ClearHeaderLen err %v", err, herr)
		}
		if err != nil {
			if !errors.Is(err, ErrEmptyFrame) && !errors.Is(err, ErrInvalidKind) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if len(out) != len(frame)+Overhead || !bytes.Equal(out[:h], frame[:h]) {
			t.Fatal("wrong length or header not in the clear")
		}
		if c, err := FrameCounter(out, kind); err != nil || c != MakeCounter(1, seq) {
			t.Fatalf("counter %v (%v), want %v", c, err, MakeCounter(1, seq))
		}
		dec, err := NewDecryptor(keys.recv[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dec.Decrypt(make([]byte, 0, 3), out, kind)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(back, frame) {
			t.Fatal("round trip changed the frame")
		}
	})
}
