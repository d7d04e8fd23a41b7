package e2ee

import (
	"errors"
	"testing"
)

func TestConstants(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"Overhead", Overhead, 24},
		{"ReplayWindow", ReplayWindow, 2048},
		{"MaxFramesPerKey", MaxFramesPerKey, 16777216},
		{"MaxBytesPerKey", MaxBytesPerKey, 17179869184},
		{"RekeyFrames", RekeyFrames, 13421772},
		{"RekeyBytes", RekeyBytes, 13743895347},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d (docs/PROTOCOL.md §5, §6)", tc.name, tc.got, tc.want)
		}
	}
	if RekeyGrace.Seconds() != 10 {
		t.Errorf("RekeyGrace = %v, want 10s", RekeyGrace)
	}
	if defaultLimits != (limits{MaxFramesPerKey, MaxBytesPerKey, RekeyFrames, RekeyBytes}) {
		t.Errorf("defaultLimits = %+v", defaultLimits)
	}
}

func TestClearHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		kind  FrameKind
		want  int
		err   error
	}{
		{"vp8 key", testFrame(100, vp8Key), KindVP8, 10, nil},
		{"vp8 key, P bit only", testFrame(100, 0xfe), KindVP8, 10, nil},
		{"vp8 delta", testFrame(100, vp8Delta), KindVP8, 3, nil},
		{"vp8 delta, P bit only", testFrame(100, 0x01), KindVP8, 3, nil},
		{"vp8 key of 10 bytes", testFrame(10, vp8Key), KindVP8, 10, nil},
		{"vp8 key of 5 bytes", testFrame(5, vp8Key), KindVP8, 5, nil},
		{"vp8 delta of 2 bytes", testFrame(2, vp8Delta), KindVP8, 2, nil},
		{"vp8 of 1 byte", testFrame(1, vp8Key), KindVP8, 1, nil},
		{"opus", testFrame(160, opusTOC), KindOpus, 1, nil},
		{"opus of 1 byte", testFrame(1, opusTOC), KindOpus, 1, nil},
		{"other", testFrame(50, 0), KindOther, 0, nil},
		{"empty", nil, KindVP8, 0, ErrEmptyFrame},
		{"zero kind", testFrame(50, 0), 0, 0, ErrInvalidKind},
		{"unknown kind", testFrame(50, 0), 99, 0, ErrInvalidKind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClearHeaderLen(tc.frame, tc.kind)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("ClearHeaderLen = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFrameKindString(t *testing.T) {
	for k, want := range map[FrameKind]string{KindVP8: "vp8", KindOpus: "opus", KindOther: "other", 0: "FrameKind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestCounter(t *testing.T) {
	c := MakeCounter(3, 0xfffffffe)
	if uint64(c) != 3<<32|0xfffffffe {
		t.Errorf("MakeCounter = %#x", uint64(c))
	}
	if c.Epoch() != 3 || c.Seq() != 0xfffffffe {
		t.Errorf("Epoch, Seq = %d, %d", c.Epoch(), c.Seq())
	}
	if got := c.String(); got != "3:4294967294" {
		t.Errorf("String = %q", got)
	}
}

func TestFrameCounter(t *testing.T) {
	p := newPair(t, &EncryptorOptions{FirstSeq: 41})
	p.encrypt(t, testFrame(30, vp8Key), KindVP8)
	for _, tc := range []struct {
		n     int
		first byte
		kind  FrameKind
	}{{100, vp8Key, KindVP8}, {100, vp8Delta, KindVP8}, {4, vp8Key, KindVP8}, {9, opusTOC, KindOpus}, {9, 0, KindOther}} {
		enc := p.encrypt(t, testFrame(tc.n, tc.first), tc.kind)
		got, err := FrameCounter(enc, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		want := MakeCounter(0, uint32(p.enc.Usage().Frames-1))
		if got != want {
			t.Errorf("%d-byte %v frame: counter %v, want %v", tc.n, tc.kind, got, want)
		}
	}
	if _, err := FrameCounter(make([]byte, Overhead), KindOther); !errors.Is(err, ErrShortFrame) {
		t.Errorf("24-byte frame: err = %v, want ErrShortFrame", err)
	}
}
