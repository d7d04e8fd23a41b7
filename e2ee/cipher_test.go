package e2ee

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

type frameCase struct {
	name  string
	frame []byte
	kind  FrameKind
	h     int // expected clear header length
}

func frameCases() []frameCase {
	cs := []frameCase{
		{"vp8 key", testFrame(1200, vp8Key), KindVP8, 10},
		{"vp8 delta", testFrame(1200, vp8Delta), KindVP8, 3},
		{"vp8 key 11", testFrame(11, vp8Key), KindVP8, 10},
		{"vp8 delta 4", testFrame(4, vp8Delta), KindVP8, 3},
		{"opus", testFrame(160, opusTOC), KindOpus, 1},
		{"opus 2", testFrame(2, opusTOC), KindOpus, 1},
		{"opus 1", testFrame(1, opusTOC), KindOpus, 1},
		{"other", testFrame(500, 0x42), KindOther, 0},
		{"other 1", testFrame(1, 0x42), KindOther, 0},
		{"vp8 large", testFrame(64<<10, vp8Key), KindVP8, 10},
	}
	for n := 1; n <= 10; n++ {
		cs = append(cs, frameCase{fmt.Sprintf("vp8 key %d", n), testFrame(n, vp8Key), KindVP8, n})
	}
	for n := 1; n <= 3; n++ {
		cs = append(cs, frameCase{fmt.Sprintf("vp8 delta %d", n), testFrame(n, vp8Delta), KindVP8, n})
	}
	return cs
}

func TestRoundTrip(t *testing.T) {
	p := newPair(t, nil)
	var encBuf, decBuf []byte
	for i, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.frame)
			enc, err := p.enc.Encrypt(encBuf, tc.frame, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			encBuf = enc
			if !bytes.Equal(tc.frame, orig) {
				t.Fatal("Encrypt modified its input")
			}
			if len(enc) != len(tc.frame)+Overhead {
				t.Fatalf("len = %d, want %d", len(enc), len(tc.frame)+Overhead)
			}
			h := tc.h
			if !bytes.Equal(enc[:h], tc.frame[:h]) {
				t.Errorf("clear header % x, want % x", enc[:h], tc.frame[:h])
			}
			if got, want := Counter(binary.BigEndian.Uint64(enc[h:])), MakeCounter(0, uint32(i)); got != want {
				t.Errorf("counter %v, want %v", got, want)
			}
			if body := tc.frame[h:]; len(body) >= 8 && bytes.Contains(enc, body[:8]) {
				t.Error("body appears in the clear")
			}
			dec, err := p.dec.Decrypt(decBuf, enc, tc.kind)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			decBuf = dec
			if !bytes.Equal(dec, tc.frame) {
				t.Error("decrypted frame differs from the original")
			}
		})
	}
}

// TestLayout rebuilds a frame from docs/PROTOCOL.md §5.2 with bare AES-GCM.
func TestLayout(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, &EncryptorOptions{FirstSeq: 0x00abcdef})
			p.rekey(t, 0x01020304) // a non-zero epoch exercises the counter's high half
			send, _ := keysFor(t, p.alice, p.bob, 0x01020304)
			p.enc.mu.Lock()
			p.enc.frames = 0x00abcdef
			p.enc.mu.Unlock()

			got := p.encrypt(t, tc.frame, tc.kind)

			counter := uint64(0x01020304)<<32 | 0x00abcdef
			iv := send.BaseIV
			for i := range 8 {
				iv[i] ^= byte(counter >> (8 * i)) // u64le into bytes 0..7
			}
			block, _ := aes.NewCipher(send.Key[:])
			gcm, _ := cipher.NewGCM(block)
			want := append([]byte(nil), tc.frame[:tc.h]...)
			want = binary.BigEndian.AppendUint64(want, counter)
			want = gcm.Seal(want, iv[:], tc.frame[tc.h:], bytes.Clone(want))
			if !bytes.Equal(got, want) {
				t.Errorf("frame differs from the §5.2 layout\n got % x\nwant % x", got, want)
			}
		})
	}
}

func TestTamperFailsAuth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first byte
		h     int
	}{{"vp8 key", vp8Key, 10}, {"vp8 delta", vp8Delta, 3}, {"opus", opusTOC, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			kind := KindVP8
			if tc.first == opusTOC {
				kind = KindOpus
			}
			p := newPair(t, nil)
			frame := testFrame(100, tc.first)
			enc := p.encrypt(t, frame, kind)
			region := func(i int) string {
				switch {
				case i < tc.h:
					return "header"
				case i < tc.h+4:
					return "counter epoch"
				case i < tc.h+8:
					return "counter seq"
				case i < len(enc)-TagSize:
					return "body"
				}
				return "tag"
			}
			for i := range enc {
				for _, bit := range []byte{0x01, 0x80} {
					bad := bytes.Clone(enc)
					bad[i] ^= bit
					_, err := p.dec.Decrypt(nil, bad, kind)
					want := ErrAuth
					if region(i) == "counter epoch" {
						want = ErrUnknownEpoch
					}
					if i == 0 && bit == 1 && kind == KindVP8 && errors.Is(err, ErrUnknownEpoch) {
						continue // the P bit moves the counter: see TestFlippedPBitFailsAuth
					}
					if !errors.Is(err, want) {
						t.Fatalf("%s byte %d ^ %#x: err = %v, want %v", region(i), i, bit, err, want)
					}
				}
			}
			// Failed frames do not touch the replay window.
			got, err := p.dec.Decrypt(nil, enc, kind)
			if err != nil || !bytes.Equal(got, frame) {
				t.Fatalf("genuine frame after tampered copies: %v", err)
			}
		})
	}
}

// A flipped P bit changes the clear header length, so the receiver reads the
// counter from elsewhere and refuses the frame: for an unknown epoch there,
// or failing authentication when the misread epoch is the current one.
func TestFlippedPBitFailsAuth(t *testing.T) {
	for _, first := range []byte{vp8Key, vp8Delta} {
		p := newPair(t, nil)
		for _, n := range []int{100, 5, 2} { // also frames shorter than the header
			enc := p.encrypt(t, testFrame(n, first), KindVP8)
			enc[0] ^= 1
			if _, err := p.dec.Decrypt(nil, enc, KindVP8); !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnknownEpoch) {
				t.Errorf("first byte %#x, %d bytes, P bit flipped: err = %v, want ErrAuth or ErrUnknownEpoch", first, n, err)
			}
		}
	}
	// A key frame whose bytes 3..6 are zero: read as a delta frame, the
	// counter's epoch is 0, the current one, and authentication must fail.
	for _, n := range []int{100, 8, 2} {
		p := newPair(t, nil)
		frame := testFrame(n, vp8Key)
		for i := 3; i < min(7, n); i++ {
			frame[i] = 0
		}
		enc := p.encrypt(t, frame, KindVP8)
		enc[0] ^= 1
		if _, err := p.dec.Decrypt(nil, enc, KindVP8); !errors.Is(err, ErrAuth) {
			t.Errorf("%d-byte key frame read as delta: err = %v, want ErrAuth", n, err)
		}
	}
}

func TestWrongKindFailsAuth(t *testing.T) {
	p := newPair(t, nil)
	enc := p.encrypt(t, testFrame(100, vp8Key), KindVP8)
	for _, kind := range []FrameKind{KindOpus, KindOther} {
		if _, err := p.dec.Decrypt(nil, enc, kind); !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnknownEpoch) {
			t.Errorf("VP8 frame decrypted as %v: err = %v, want ErrAuth or ErrUnknownEpoch", kind, err)
		}
	}
	if _, err := p.dec.Decrypt(nil, enc, 0); !errors.Is(err, ErrInvalidKind) {
		t.Errorf("kind 0: err = %v, want ErrInvalidKind", err)
	}
}

func TestWrongDirectionFailsAuth(t *testing.T) {
	p := newPair(t, nil)
	_, aliceRecv := keysFor(t, p.alice, p.bob, 0)
	d, err := NewDecryptor(aliceRecv, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := p.encrypt(t, testFrame(100, opusTOC), KindOpus)
	if _, err := d.Decrypt(nil, enc, KindOpus); !errors.Is(err, ErrAuth) {
		t.Errorf("Alice's own frame under her receive key: err = %v, want ErrAuth", err)
	}
}

func TestDecryptShortFrames(t *testing.T) {
	p := newPair(t, nil)
	for n := 0; n <= Overhead; n++ {
		for _, kind := range []FrameKind{KindVP8, KindOpus, KindOther} {
			if _, err := p.dec.Decrypt(nil, make([]byte, n), kind); !errors.Is(err, ErrShortFrame) {
				t.Errorf("%d-byte %v frame: err = %v, want ErrShortFrame", n, kind, err)
			}
		}
	}
	garbage := make([]byte, Overhead+1)
	if _, err := p.dec.Decrypt(nil, garbage, KindOther); !errors.Is(err, ErrAuth) {
		t.Errorf("25 zero bytes: err = %v, want ErrAuth", err)
	}
}

func TestEncryptRefuses(t *testing.T) {
	p := newPair(t, nil)
	if _, err := p.enc.Encrypt(nil, nil, KindVP8); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("empty frame: err = %v, want ErrEmptyFrame", err)
	}
	if _, err := p.enc.Encrypt(nil, []byte{1}, FrameKind(7)); !errors.Is(err, ErrInvalidKind) {
		t.Errorf("invalid kind: err = %v, want ErrInvalidKind", err)
	}
	if u := p.enc.Usage(); u.Frames != 0 || u.Bytes != 0 {
		t.Errorf("refused frames were counted: %+v", u)
	}
	if _, err := NewEncryptor(DirectionKey{}, nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero key: err = %v, want ErrInvalidKey", err)
	}
	if _, err := NewDecryptor(DirectionKey{}, nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero key: err = %v, want ErrInvalidKey", err)
	}
	send, _ := keysFor(t, p.alice, p.bob, 0)
	if _, err := NewEncryptor(send, &EncryptorOptions{FirstSeq: MaxFramesPerKey + 1}); err == nil {
		t.Error("FirstSeq past the frame limit accepted")
	}
	var zeroEnc Encryptor
	if _, err := zeroEnc.Encrypt(nil, []byte{1}, KindOther); err == nil {
		t.Error("zero Encryptor encrypted")
	}
	var zeroDec Decryptor
	if _, err := zeroDec.Decrypt(nil, make([]byte, 30), KindOther); err == nil {
		t.Error("zero Decryptor decrypted")
	}
}

func TestReplayRefused(t *testing.T) {
	p := newPair(t, nil)
	enc := p.encrypt(t, testFrame(160, opusTOC), KindOpus)
	if _, err := p.dec.Decrypt(nil, enc, KindOpus); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dec.Decrypt(nil, enc, KindOpus); !errors.Is(err, ErrReplay) {
		t.Errorf("second copy: err = %v, want ErrReplay", err)
	}
}

func TestOutOfOrderWithinWindow(t *testing.T) {
	p := newPair(t, nil)
	frames := make([][]byte, ReplayWindow)
	for i := range frames {
		frames[i] = p.encrypt(t, testFrame(20+i%7, opusTOC), KindOpus)
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(frames))
	// Deliver the newest first, so every other frame is behind the anchor.
	order = append([]int{len(frames) - 1}, order...)
	seen := map[int]bool{}
	for _, i := range order {
		_, err := p.dec.Decrypt(nil, frames[i], KindOpus)
		switch {
		case seen[i] && !errors.Is(err, ErrReplay):
			t.Fatalf("frame %d again: err = %v, want ErrReplay", i, err)
		case !seen[i] && err != nil:
			t.Fatalf("frame %d out of order: %v", i, err)
		}
		seen[i] = true
	}
	for i, f := range frames {
		if _, err := p.dec.Decrypt(nil, f, KindOpus); !errors.Is(err, ErrReplay) {
			t.Fatalf("frame %d replayed after all arrived: err = %v, want ErrReplay", i, err)
		}
	}
}

func TestTooOld(t *testing.T) {
	p := newPair(t, nil)
	frames := make([][]byte, ReplayWindow+2)
	for i := range frames {
		frames[i] = p.encrypt(t, []byte{opusTOC, byte(i)}, KindOpus)
	}
	newest := len(frames) - 1 // seq 2049
	if _, err := p.dec.Decrypt(nil, frames[newest], KindOpus); err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[int]error{0: ErrTooOld, 1: ErrTooOld, 2: nil, newest - 1: nil} {
		if _, err := p.dec.Decrypt(nil, frames[seq], KindOpus); !errors.Is(err, want) {
			t.Errorf("seq %d with highest %d: err = %v, want %v", seq, newest, err, want)
		}
	}
}

// TestRekeyGrace: the previous epoch's key keeps decrypting until
// RekeyGrace after the first frame under the new key authenticates (the
// peer switched), however long that takes; then it is dropped.
func TestRekeyGrace(t *testing.T) {
	p := newPair(t, nil)
	old := make([][]byte, 5)
	for i := range old {
		old[i] = p.encrypt(t, testFrame(50, vp8Delta), KindVP8)
	}
	if _, err := p.dec.Decrypt(nil, old[0], KindVP8); err != nil {
		t.Fatal(err)
	}

	p.rekey(t, 1)
	if u := p.enc.Usage(); u.Epoch != 1 || u.Frames != 0 || u.Bytes != 0 {
		t.Fatalf("usage after SetKey = %+v, want epoch 1 and zero counts", u)
	}
	if p.dec.Epoch() != 1 {
		t.Fatalf("Decryptor epoch = %d, want 1", p.dec.Epoch())
	}
	// No epoch-1 frame yet (the peer has not switched: the new key's
	// exchange is slow): epoch 0 still decrypts, long after AddKey.
	p.clock.Advance(3 * RekeyGrace)
	if _, err := p.dec.Decrypt(nil, old[1], KindVP8); err != nil {
		t.Fatalf("epoch 0 frame before any epoch 1 frame, 3 graces after AddKey: %v", err)
	}
	fresh := p.encrypt(t, testFrame(50, vp8Delta), KindVP8)
	if c, _ := FrameCounter(fresh, KindVP8); c != MakeCounter(1, 0) {
		t.Fatalf("first frame after rekey has counter %v, want 1:0", c)
	}
	// Each key has its own replay window: seq 0 of epoch 1 is new.
	if _, err := p.dec.Decrypt(nil, fresh, KindVP8); err != nil {
		t.Fatalf("epoch 1 frame: %v", err)
	}

	p.clock.Advance(RekeyGrace - time.Nanosecond)
	if _, err := p.dec.Decrypt(nil, old[2], KindVP8); err != nil {
		t.Fatalf("epoch 0 frame within the grace: %v", err)
	}
	if _, err := p.dec.Decrypt(nil, old[1], KindVP8); !errors.Is(err, ErrReplay) {
		t.Fatalf("epoch 0 replay within the grace: err = %v, want ErrReplay", err)
	}
	p.clock.Advance(time.Nanosecond)
	for _, f := range old[3:] {
		if _, err := p.dec.Decrypt(nil, f, KindVP8); !errors.Is(err, ErrUnknownEpoch) {
			t.Fatalf("epoch 0 frame after the grace: err = %v, want ErrUnknownEpoch", err)
		}
	}
	if _, err := p.dec.Decrypt(nil, p.encrypt(t, testFrame(50, vp8Delta), KindVP8), KindVP8); err != nil {
		t.Fatalf("epoch 1 frame after the grace: %v", err)
	}
}

func TestRekeyKeepsOnlyPreviousEpoch(t *testing.T) {
	p := newPair(t, nil)
	e0 := p.encrypt(t, testFrame(50, opusTOC), KindOpus)
	p.rekey(t, 1)
	e1 := p.encrypt(t, testFrame(50, opusTOC), KindOpus)
	p.rekey(t, 2)
	if _, err := p.dec.Decrypt(nil, e0, KindOpus); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("epoch 0 frame at epoch 2: err = %v, want ErrUnknownEpoch", err)
	}
	if _, err := p.dec.Decrypt(nil, e1, KindOpus); err != nil {
		t.Errorf("epoch 1 frame within its grace: %v", err)
	}
}

func TestUnknownEpochRefused(t *testing.T) {
	p := newPair(t, nil)
	send3, _ := keysFor(t, p.alice, p.bob, 3)
	ahead, err := NewEncryptor(send3, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ahead.Encrypt(nil, testFrame(40, vp8Key), KindVP8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.dec.Decrypt(nil, f, KindVP8); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("epoch 3 frame at epoch 0: err = %v, want ErrUnknownEpoch", err)
	}
}

func TestEpochOrder(t *testing.T) {
	p := newPair(t, nil)
	p.rekey(t, 2)
	for _, n := range []uint32{0, 1, 2} {
		send, _ := keysFor(t, p.alice, p.bob, n)
		_, recv := keysFor(t, p.bob, p.alice, n)
		if err := p.enc.SetKey(send); !errors.Is(err, ErrEpochOrder) {
			t.Errorf("SetKey(epoch %d) at epoch 2: err = %v, want ErrEpochOrder", n, err)
		}
		if err := p.dec.AddKey(recv); !errors.Is(err, ErrEpochOrder) {
			t.Errorf("AddKey(epoch %d) at epoch 2: err = %v, want ErrEpochOrder", n, err)
		}
	}
	if err := p.enc.SetKey(DirectionKey{Epoch: 9}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("SetKey(zero key): err = %v, want ErrInvalidKey", err)
	}
	if err := p.dec.AddKey(DirectionKey{Epoch: 9}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("AddKey(zero key): err = %v, want ErrInvalidKey", err)
	}
}

// rekeyRecorder counts OnRekeyNeeded calls.
type rekeyRecorder struct {
	mu     sync.Mutex
	epochs []uint32
}

func (r *rekeyRecorder) on(epoch uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epochs = append(r.epochs, epoch)
}

func (r *rekeyRecorder) calls() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint32(nil), r.epochs...)
}

func TestFrameLimit(t *testing.T) {
	var rec rekeyRecorder
	p := newPair(t, &EncryptorOptions{OnRekeyNeeded: rec.on})
	// Internal hook: a 10-frame key that asks for a rekey at 8.
	p.enc.lim = limits{maxFrames: 10, rekeyFrames: 8, maxBytes: MaxBytesPerKey, rekeyBytes: RekeyBytes}
	frame := testFrame(30, vp8Delta)

	for epoch := uint32(0); epoch < 2; epoch++ {
		for i := 1; i <= 10; i++ {
			if _, err := p.enc.Encrypt(nil, frame, KindVP8); err != nil {
				t.Fatalf("epoch %d frame %d: %v", epoch, i, err)
			}
			wantCalls := int(epoch)
			if i >= 8 {
				wantCalls++
			}
			if got := rec.calls(); len(got) != wantCalls {
				t.Fatalf("epoch %d after %d frames: %d rekey signals (%v), want %d", epoch, i, len(got), got, wantCalls)
			}
			if got := p.enc.Usage().RekeyNeeded; got != (i >= 8) {
				t.Fatalf("epoch %d after %d frames: RekeyNeeded = %v", epoch, i, got)
			}
		}
		for range 2 {
			if _, err := p.enc.Encrypt(nil, frame, KindVP8); !errors.Is(err, ErrKeyExhausted) {
				t.Fatalf("epoch %d frame 11: err = %v, want ErrKeyExhausted", epoch, err)
			}
		}
		if u := p.enc.Usage(); u.Frames != 10 || u.Bytes != 270 {
			t.Fatalf("usage = %+v, want 10 frames and 270 body bytes", u)
		}
		if got := rec.calls(); got[len(got)-1] != epoch {
			t.Fatalf("signalled epochs %v, want the last to be %d", got, epoch)
		}
		p.rekey(t, epoch+1) // SetKey lifts the refusal and resets the counts
	}
}

func TestByteLimit(t *testing.T) {
	var rec rekeyRecorder
	p := newPair(t, &EncryptorOptions{OnRekeyNeeded: rec.on})
	// Internal hook: a 1000-byte key that asks for a rekey at 800.
	p.enc.lim = limits{maxFrames: MaxFramesPerKey, rekeyFrames: RekeyFrames, maxBytes: 1000, rekeyBytes: 800}
	key110 := testFrame(110, vp8Key) // 10 clear + 100 body bytes: only the body counts

	for i := 1; i <= 9; i++ {
		if _, err := p.enc.Encrypt(nil, key110, KindVP8); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got, want := len(rec.calls()), map[bool]int{false: 0, true: 1}[i >= 8]; got != want {
			t.Fatalf("after %d00 bytes: %d rekey signals, want %d", i, got, want)
		}
	}
	// 900 used: 101 body bytes would pass 1000, 100 reach it exactly.
	if _, err := p.enc.Encrypt(nil, testFrame(111, vp8Key), KindVP8); !errors.Is(err, ErrKeyExhausted) {
		t.Fatalf("frame passing the byte limit: err = %v, want ErrKeyExhausted", err)
	}
	if _, err := p.enc.Encrypt(nil, key110, KindVP8); err != nil {
		t.Fatalf("frame reaching the byte limit exactly: %v", err)
	}
	if _, err := p.enc.Encrypt(nil, []byte{vp8Key}, KindVP8); err != nil {
		t.Fatalf("header-only frame at the byte limit: %v", err) // no body bytes
	}
	if _, err := p.enc.Encrypt(nil, testFrame(11, vp8Key), KindVP8); !errors.Is(err, ErrKeyExhausted) {
		t.Fatalf("1 body byte past the limit: err = %v, want ErrKeyExhausted", err)
	}
	if u := p.enc.Usage(); u.Bytes != 1000 || u.Frames != 11 || !u.RekeyNeeded {
		t.Fatalf("usage = %+v", u)
	}
	if got := rec.calls(); len(got) != 1 || got[0] != 0 {
		t.Fatalf("rekey signals = %v, want exactly one for epoch 0", got)
	}
}

func TestFirstSeq(t *testing.T) {
	var rec rekeyRecorder
	p := newPair(t, &EncryptorOptions{FirstSeq: RekeyFrames - 1, OnRekeyNeeded: rec.on})
	enc := p.encrypt(t, testFrame(50, opusTOC), KindOpus)
	if c, _ := FrameCounter(enc, KindOpus); c != MakeCounter(0, RekeyFrames-1) {
		t.Errorf("first counter %v, want 0:%d", c, RekeyFrames-1)
	}
	if got := rec.calls(); len(got) != 1 {
		t.Errorf("rekey signals = %v, want one at frame %d", got, RekeyFrames)
	}
	if dec, err := p.dec.Decrypt(nil, enc, KindOpus); err != nil || !bytes.Equal(dec, testFrame(50, opusTOC)) {
		t.Errorf("Decrypt: %v", err)
	}

	p = newPair(t, &EncryptorOptions{FirstSeq: MaxFramesPerKey})
	if _, err := p.enc.Encrypt(nil, testFrame(50, opusTOC), KindOpus); !errors.Is(err, ErrKeyExhausted) {
		t.Errorf("FirstSeq at the limit: err = %v, want ErrKeyExhausted", err)
	}
}

func TestRekeyCallbackMaySetKey(t *testing.T) {
	var p *pair
	p = newPair(t, &EncryptorOptions{OnRekeyNeeded: func(epoch uint32) {
		send, _ := keysFor(t, p.alice, p.bob, epoch+1)
		if err := p.enc.SetKey(send); err != nil {
			t.Errorf("SetKey from the callback: %v", err)
		}
	}})
	p.enc.lim.rekeyFrames = 2
	for range 5 {
		p.encrypt(t, testFrame(20, vp8Delta), KindVP8)
	}
	if u := p.enc.Usage(); u.Epoch != 2 || u.Frames != 1 {
		t.Errorf("usage = %+v, want epoch 2 after 1 frame", u)
	}
}

func TestOverlappingBuffers(t *testing.T) {
	p := newPair(t, &EncryptorOptions{})
	ref := newPair(t, &EncryptorOptions{})
	frame := testFrame(300, vp8Key)
	want := ref.encrypt(t, frame, KindVP8)

	buf := make([]byte, len(frame), len(frame)+Overhead)
	copy(buf, frame)
	got, err := p.enc.Encrypt(buf[:0], buf, KindVP8) // dst aliases frame
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("in-place Encrypt: %v, equal = %v", err, bytes.Equal(got, want))
	}
	dec, err := p.dec.Decrypt(got[5:5], got, KindVP8) // dst inside frame
	if err != nil || !bytes.Equal(dec, frame) {
		t.Fatalf("overlapping Decrypt: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	p := newPair(t, nil)
	const writers, perWriter = 4, 200
	frames := make(chan []byte, writers*perWriter)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var buf []byte
			for i := range perWriter {
				out, err := p.enc.Encrypt(buf, testFrame(100+w, byte(i)), KindVP8)
				if err != nil {
					t.Error(err)
					return
				}
				frames <- bytes.Clone(out)
				buf = out
			}
		})
	}
	wg.Wait()
	close(frames)

	var mu sync.Mutex
	seen := map[Counter]bool{}
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			var buf []byte
			for f := range frames {
				out, err := p.dec.Decrypt(buf, f, KindVP8)
				if err != nil {
					t.Error(err)
					continue
				}
				buf = out
				c, _ := FrameCounter(f, KindVP8)
				mu.Lock()
				if seen[c] {
					t.Errorf("counter %v used twice", c)
				}
				seen[c] = true
				mu.Unlock()
			}
		})
	}
	readers.Wait()
	if len(seen) != writers*perWriter {
		t.Errorf("%d frames decrypted, want %d", len(seen), writers*perWriter)
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	p := newPair(t, nil)
	frame := testFrame(1200, vp8Delta)
	encBuf := make([]byte, 0, len(frame)+Overhead)
	decBuf := make([]byte, 0, len(frame))
	var err error
	allocs := testing.AllocsPerRun(200, func() {
		if encBuf, err = p.enc.Encrypt(encBuf, frame, KindVP8); err != nil {
			t.Fatal(err)
		}
		if decBuf, err = p.dec.Decrypt(decBuf, encBuf, KindVP8); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Encrypt+Decrypt allocate %v times per frame, want 0", allocs)
	}
}

// TestClose: a closed Encryptor or Decryptor has dropped its keys: nothing
// encrypts or decrypts any more, and no key can be installed again.
func TestClose(t *testing.T) {
	a, b := newParty(t, 1), newParty(t, 2)
	send, _ := keysFor(t, a, b, 0)
	enc, err := NewEncryptor(send, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecryptor(send, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := []byte{0xfc, 1, 2, 3, 4}
	ct, err := enc.Encrypt(nil, frame, KindOpus)
	if err != nil {
		t.Fatal(err)
	}
	enc.Close()
	dec.Close()
	if _, err := enc.Encrypt(nil, frame, KindOpus); !errors.Is(err, ErrClosed) {
		t.Errorf("Encrypt after Close: %v", err)
	}
	if _, err := dec.Decrypt(nil, ct, KindOpus); !errors.Is(err, ErrClosed) {
		t.Errorf("Decrypt after Close: %v", err)
	}
	next := send
	next.Epoch = 1
	if err := enc.SetKey(next); !errors.Is(err, ErrClosed) {
		t.Errorf("SetKey after Close: %v", err)
	}
	if err := dec.AddKey(next); !errors.Is(err, ErrClosed) {
		t.Errorf("AddKey after Close: %v", err)
	}
	if enc.baseIV != [BaseIVSize]byte{} {
		t.Error("the Encryptor's base IV was not zeroed")
	}
}
