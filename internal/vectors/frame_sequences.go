package vectors

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/duetcall/duet/e2ee"
)

// EpochKey is the caller-to-callee key of one epoch.
type EpochKey struct {
	Epoch  uint32 `json:"epoch"`
	Key    string `json:"key"`
	BaseIV string `json:"base_iv"`
}

// FrameStep is one step of a receiver's frame sequence.
type FrameStep struct {
	// Op is "decrypt" (Frame, of Kind) or "add_key" (the key of Epoch).
	Op    string `json:"op"`
	Note  string `json:"note"`
	AtMs  int64  `json:"at_ms"` // the receiver's clock
	Epoch uint32 `json:"epoch"`
	Frame string `json:"frame"`
	Kind  string `json:"kind"`
	Plain string `json:"plaintext,omitempty"`
	// Error is the Go sentinel name (ErrAuth, ErrReplay, ErrTooOld,
	// ErrUnknownEpoch, ErrShortFrame, ErrEpochOrder), "" for success.
	Error string `json:"error"`
}

// FrameSequence runs on a fresh receiver holding the epoch-0 key.
type FrameSequence struct {
	Name  string      `json:"name"`
	Steps []FrameStep `json:"steps"`
}

// EncryptStep is one frame a sender encrypts.
type EncryptStep struct {
	Kind        string `json:"kind"`
	Plain       string `json:"plaintext"`
	Encrypted   string `json:"encrypted,omitempty"`
	Error       string `json:"error"` // "" or ErrKeyExhausted
	RekeyNeeded bool   `json:"rekey_needed_after"`
}

// EncryptLimitCase is a sender under the epoch-0 key whose first frame has
// sequence number FirstSeq (the frames before count as used).
type EncryptLimitCase struct {
	Name     string        `json:"name"`
	FirstSeq uint32        `json:"first_seq"`
	Steps    []EncryptStep `json:"steps"`
}

// FrameLimits are §5.3–§6's constants.
type FrameLimits struct {
	Overhead        int    `json:"overhead"`
	ReplayWindow    int    `json:"replay_window"`
	MaxFramesPerKey uint64 `json:"max_frames_per_key"`
	RekeyFrames     uint64 `json:"rekey_frames"`
	MaxBytesPerKey  uint64 `json:"max_bytes_per_key"`
	RekeyBytes      uint64 `json:"rekey_bytes"`
	RekeyGraceMs    int64  `json:"rekey_grace_ms"`
}

// FrameSequenceFile is frame_sequences.json.
type FrameSequenceFile struct {
	Description   string             `json:"description"`
	Keys          []EpochKey         `json:"keys"`
	Limits        FrameLimits        `json:"limits"`
	Sequences     []FrameSequence    `json:"sequences"`
	EncryptLimits []EncryptLimitCase `json:"encrypt_limits"`
}

// e2eeErrName is the sentinel name of an e2ee error.
func e2eeErrName(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{e2ee.ErrAuth, "ErrAuth"}, {e2ee.ErrReplay, "ErrReplay"}, {e2ee.ErrTooOld, "ErrTooOld"},
		{e2ee.ErrUnknownEpoch, "ErrUnknownEpoch"}, {e2ee.ErrShortFrame, "ErrShortFrame"},
		{e2ee.ErrEpochOrder, "ErrEpochOrder"}, {e2ee.ErrKeyExhausted, "ErrKeyExhausted"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

// E2EEErrors maps frame_sequences.json's error names to the Go sentinels.
var E2EEErrors = map[string]error{
	"ErrAuth": e2ee.ErrAuth, "ErrReplay": e2ee.ErrReplay, "ErrTooOld": e2ee.ErrTooOld,
	"ErrUnknownEpoch": e2ee.ErrUnknownEpoch, "ErrShortFrame": e2ee.ErrShortFrame,
	"ErrEpochOrder": e2ee.ErrEpochOrder, "ErrKeyExhausted": e2ee.ErrKeyExhausted,
}

// KindOf is the frame kind of a vector kind name.
func KindOf(name string) e2ee.FrameKind {
	switch name {
	case "vp8":
		return e2ee.KindVP8
	case "opus":
		return e2ee.KindOpus
	}
	return e2ee.KindOther
}

// seqStart is the receiver clock at the start of every sequence.
const seqStart = 1_000_000

func genFrameSequences() (any, error) {
	keys := map[uint32]e2ee.DirectionKey{}
	f := FrameSequenceFile{
		Description: "PROTOCOL.md §5.2–§5.4: what a receiver does with a sequence of caller-to-callee frames (keys: the key of each epoch, derived as in frames.json). " +
			"Each sequence starts a fresh receiver holding the epoch-0 key; each step decrypts a frame of the kind given at the receiver clock at_ms (giving the plaintext, or the error named by its Go sentinel) or installs the key of an epoch (add_key). " +
			"encrypt_limits: a sender under the epoch-0 key whose first sequence number is first_seq (the frames before it count as used) encrypts each step's plaintext in turn; rekey_needed_after is its rekey-needed signal after that step. limits are the constants of §5.3–§6. Hex.",
		Limits: FrameLimits{
			Overhead: e2ee.Overhead, ReplayWindow: e2ee.ReplayWindow,
			MaxFramesPerKey: e2ee.MaxFramesPerKey, RekeyFrames: e2ee.RekeyFrames,
			MaxBytesPerKey: e2ee.MaxBytesPerKey, RekeyBytes: e2ee.RekeyBytes,
			RekeyGraceMs: e2ee.RekeyGrace.Milliseconds(),
		},
	}
	for _, epoch := range append([]uint32{0}, RekeyEpochs...) {
		k, _, err := CallKeys(epoch)
		if err != nil {
			return nil, err
		}
		keys[epoch] = k
		f.Keys = append(f.Keys, EpochKey{Epoch: epoch, Key: hex.EncodeToString(k.Key[:]), BaseIV: hex.EncodeToString(k.BaseIV[:])})
	}
	encFrame := func(epoch, seq uint32, kind e2ee.FrameKind, data []byte) []byte {
		e, err := e2ee.NewEncryptor(keys[epoch], &e2ee.EncryptorOptions{FirstSeq: seq})
		if err != nil {
			panic(err)
		}
		out, err := e.Encrypt(nil, data, kind)
		if err != nil {
			panic(err)
		}
		return out
	}
	opus := func(epoch, seq uint32) []byte {
		return encFrame(epoch, seq, e2ee.KindOpus, []byte{0xfc, byte(seq >> 8), byte(seq)})
	}
	vp8Key := framePlaintexts()[0].data

	// Each sequence is written as steps whose outcome the generator takes
	// from the Go implementation; run checks them against what the
	// protocol says (want), so a vector never records a Go bug.
	type step struct {
		FrameStep
		frame []byte
		want  string
	}
	run := func(name string, steps []step) error {
		now := int64(seqStart)
		d, err := e2ee.NewDecryptor(keys[0], &e2ee.DecryptorOptions{Now: func() time.Time { return time.UnixMilli(now) }})
		if err != nil {
			return err
		}
		seq := FrameSequence{Name: name}
		for i, s := range steps {
			now = seqStart + s.AtMs
			st := s.FrameStep
			st.AtMs = now
			switch st.Op {
			case "add_key":
				st.Error = e2eeErrName(d.AddKey(keys[st.Epoch]))
			case "decrypt":
				if st.Kind == "" {
					st.Kind = "opus"
				}
				st.Frame = hex.EncodeToString(s.frame)
				out, err := d.Decrypt(nil, s.frame, KindOf(st.Kind))
				st.Error = e2eeErrName(err)
				if err == nil {
					st.Plain = hex.EncodeToString(out)
				}
			}
			if st.Error != s.want {
				return fmt.Errorf("sequence %q step %d (%s): Go gives %q, the protocol says %q", name, i, st.Note, st.Error, s.want)
			}
			seq.Steps = append(seq.Steps, st)
		}
		f.Sequences = append(f.Sequences, seq)
		return nil
	}
	dec := func(note string, at int64, frame []byte, want string) step {
		return step{FrameStep: FrameStep{Op: "decrypt", Note: note, AtMs: at}, frame: frame, want: want}
	}
	decKind := func(note, kind string, frame []byte, want string) step {
		s := dec(note, 0, frame, want)
		s.Kind = kind
		return s
	}
	addKey := func(note string, at int64, epoch uint32, want string) step {
		return step{FrameStep: FrameStep{Op: "add_key", Note: note, AtMs: at, Epoch: epoch}, want: want}
	}
	flip := func(b []byte, at int, mask byte) []byte {
		b = append([]byte{}, b...)
		if at < 0 {
			at += len(b)
		}
		b[at] ^= mask
		return b
	}

	key := encFrame(0, 7, e2ee.KindVP8, vp8Key)
	big := RekeyEpochs[1]
	for _, seq := range []struct {
		name  string
		steps []step
	}{
		{"replay window", []step{
			dec("seq 3000: the highest so far", 0, opus(0, 3000), ""),
			dec("seq 952 is 2048 behind: too old", 0, opus(0, 952), "ErrTooOld"),
			dec("seq 953 is 2047 behind: inside the window", 0, opus(0, 953), ""),
			dec("seq 953 again", 0, opus(0, 953), "ErrReplay"),
			dec("seq 3000 again", 0, opus(0, 3000), "ErrReplay"),
			dec("seq 2999, out of order", 0, opus(0, 2999), ""),
			dec("seq 5047 moves the window", 0, opus(0, 5047), ""),
			dec("seq 2999 is now 2048 behind: too old, though seen", 0, opus(0, 2999), "ErrTooOld"),
			dec("seq 3000 is 2047 behind and seen: a replay", 0, opus(0, 3000), "ErrReplay"),
			dec("seq 4000, never seen, inside the window", 0, opus(0, 4000), ""),
			dec("seq 100000: a jump forward", 0, opus(0, 100000), ""),
			dec("seq 5047 is now far behind", 0, opus(0, 5047), "ErrTooOld"),
		}},
		{"a frame that fails authentication does not move the window", []step{
			dec("seq 10", 0, opus(0, 10), ""),
			dec("seq 3000 with a flipped tag bit", 0, flip(opus(0, 3000), -1, 0x01), "ErrAuth"),
			dec("seq 952 is still inside the window", 0, opus(0, 952), ""),
			dec("seq 3000 intact", 0, opus(0, 3000), ""),
		}},
		{"tampered, truncated and short frames", []step{
			decKind("vp8 key frame: a clear header byte flipped", "vp8", flip(key, 5, 0x01), "ErrAuth"),
			decKind("vp8 key frame: the P bit flipped, so the receiver reads a 3-byte header and the counter at the wrong place (epoch 0x9d012a80)", "vp8", flip(key, 0, 0x01), "ErrUnknownEpoch"),
			decKind("vp8 key frame: the counter's last byte flipped (seq 6)", "vp8", flip(key, 10+7, 0x01), "ErrAuth"),
			decKind("vp8 key frame: the counter's epoch byte flipped (epoch 1, not installed)", "vp8", flip(key, 10+3, 0x01), "ErrUnknownEpoch"),
			decKind("vp8 key frame: a body byte flipped", "vp8", flip(key, 20, 0x80), "ErrAuth"),
			decKind("vp8 key frame: the last tag byte flipped", "vp8", flip(key, -1, 0x80), "ErrAuth"),
			decKind("vp8 key frame: truncated by one byte", "vp8", key[:len(key)-1], "ErrAuth"),
			decKind("vp8 key frame: a byte appended", "vp8", append(append([]byte{}, key...), 0), "ErrAuth"),
			decKind("vp8 key frame read as opus (1 clear byte)", "opus", key, "ErrUnknownEpoch"),
			decKind("vp8 key frame read as other (0 clear bytes)", "other", key, "ErrUnknownEpoch"),
			decKind("vp8 key frame intact", "vp8", key, ""),
			decKind("empty frame", "opus", []byte{}, "ErrShortFrame"),
			decKind("24 bytes: no room for anything after the counter and tag", "opus", key[:24], "ErrShortFrame"),
			decKind("one-byte opus frame: 25 bytes, all clear header", "opus", encFrame(0, 8, e2ee.KindOpus, []byte{0xfc}), ""),
			decKind("vp8 delta frame of 2 bytes: 26 bytes, the clear header is 2", "vp8", encFrame(0, 9, e2ee.KindVP8, []byte{0x01, 0x02}), ""),
		}},
		{"rekey grace", []step{
			addKey("install epoch 1", 0, 1, ""),
			dec("epoch 0, 30 s later: no epoch-1 frame yet, the grace has not started", 30_000, opus(0, 1), ""),
			dec("the first epoch-1 frame starts the 10 s grace", 30_000, opus(1, 0), ""),
			dec("epoch 0, 9 999 ms into the grace", 39_999, opus(0, 2), ""),
			dec("epoch 0, exactly 10 s after the first epoch-1 frame", 40_000, opus(0, 3), "ErrUnknownEpoch"),
			dec("epoch 0 after the grace, again", 40_001, opus(0, 4), "ErrUnknownEpoch"),
			dec("epoch 1 after the grace", 40_001, opus(1, 1), ""),
		}},
		{"unknown and previous epochs", []step{
			dec("epoch 1 before its key is installed", 0, opus(1, 0), "ErrUnknownEpoch"),
			addKey("install epoch 1", 0, 1, ""),
			addKey("install epoch 1 again", 0, 1, "ErrEpochOrder"),
			addKey("install epoch 0 after epoch 1", 0, 0, "ErrEpochOrder"),
			dec(fmt.Sprintf("epoch %d, not installed", big), 0, opus(big, 0), "ErrUnknownEpoch"),
			addKey(fmt.Sprintf("install epoch %d: epoch 0 is dropped, epoch 1 is the previous one", big), 0, big, ""),
			dec("epoch 0 is neither current nor previous", 0, opus(0, 0), "ErrUnknownEpoch"),
			dec("epoch 1, the previous epoch", 0, opus(1, 5), ""),
			dec(fmt.Sprintf("epoch %d", big), 0, opus(big, 70000), ""),
			dec("epoch 1 at the end of its grace", 10_000, opus(1, 6), "ErrUnknownEpoch"),
			dec(fmt.Sprintf("epoch %d, seq 0 after seq 70000 (inside the window? no: too old)", big), 10_000, opus(big, 0), "ErrTooOld"),
		}},
		{"each key has its own replay window", []step{
			dec("epoch 0 seq 5", 0, opus(0, 5), ""),
			addKey("install epoch 1", 0, 1, ""),
			dec("epoch 1 seq 5", 0, opus(1, 5), ""),
			dec("epoch 0 seq 5 again", 0, opus(0, 5), "ErrReplay"),
			dec("epoch 1 seq 5 again", 0, opus(1, 5), "ErrReplay"),
		}},
	} {
		if err := run(seq.name, seq.steps); err != nil {
			return nil, err
		}
	}

	// Usage limits of the sender.
	for _, c := range []struct {
		name     string
		firstSeq uint32
		n        int
	}{
		{"the frame before the rekey threshold does not signal", e2ee.RekeyFrames - 2, 2},
		{"the frame that brings the count to 80 % signals rekey-needed", e2ee.RekeyFrames - 1, 1},
		{"the last frame of a key (seq 2^24-1), then refusal", e2ee.MaxFramesPerKey - 1, 2},
	} {
		e, err := e2ee.NewEncryptor(keys[0], &e2ee.EncryptorOptions{FirstSeq: c.firstSeq})
		if err != nil {
			return nil, err
		}
		lc := EncryptLimitCase{Name: c.name, FirstSeq: c.firstSeq}
		for i := 0; i < c.n; i++ {
			plain := []byte{0xfc, byte(i)}
			out, err := e.Encrypt(nil, plain, e2ee.KindOpus)
			st := EncryptStep{Kind: "opus", Plain: hex.EncodeToString(plain), Error: e2eeErrName(err), RekeyNeeded: e.Usage().RekeyNeeded}
			if err == nil {
				st.Encrypted = hex.EncodeToString(out)
			}
			lc.Steps = append(lc.Steps, st)
		}
		f.EncryptLimits = append(f.EncryptLimits, lc)
	}
	return f, nil
}
