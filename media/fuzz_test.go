package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// readerErrOK reports whether err is one a reader may return for bad input.
func readerErrOK(err error) bool {
	return errors.Is(err, ErrFormat) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated)
}

func FuzzIVFReader(f *testing.F) {
	frames := readAll(f, mustOpen(f, VideoFixture()))
	var cut [][]byte
	for _, fr := range frames[:4] {
		cut = append(cut, fr.Data[:64])
	}
	f.Add(ivfFile(1280, 720, cut...))
	f.Add(ivfFile(64, 48, vp8Key(64, 48), nil, vp8Delta()))
	f.Add(ivfFile(64, 48))
	f.Add(VideoFixture()[:2000])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenIVF(bytes.NewReader(data))
		if err != nil {
			if !readerErrOK(err) {
				t.Fatalf("OpenIVF: unexpected error %v", err)
			}
			return
		}
		_ = r.Info()
		for n := 0; ; n++ {
			fr, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !readerErrOK(err) {
					t.Fatalf("frame %d: unexpected error %v", n, err)
				}
				break
			}
			if len(fr.Data) == 0 || len(fr.Data) > MaxFrameSize {
				t.Fatalf("frame %d: %d bytes", n, len(fr.Data))
			}
			if fr.Duration <= 0 || fr.Duration > maxFrameDuration {
				t.Fatalf("frame %d: duration %v", n, fr.Duration)
			}
			key, _, _, _ := VP8FrameInfo(fr.Data)
			if key != fr.Keyframe {
				t.Fatalf("frame %d: Keyframe %v, VP8FrameInfo says %v", n, fr.Keyframe, key)
			}
		}
	})
}

func FuzzOggReader(f *testing.F) {
	const serial = 9
	head := oggPage(oggFlagBOS, 0, serial, 0, lace(19), opusHead(2))
	tags := oggPage(0, 0, serial, 1, lace(len(opusTags())), opusTags())
	f.Add(AudioFixture()[:1500], false)
	f.Add(bytes.Join([][]byte{head, tags,
		oggPage(0, 960, serial, 2, append(lace(2), lace(3)...), []byte{0xfc, 1, 0xf1, 2, 3}),
		oggPage(0, 960, serial, 3, []byte{255}, make([]byte, 255)),
		oggPage(oggFlagContinued|oggFlagEOS, 1920, serial, 4, []byte{10}, make([]byte, 10)),
	}, nil), true)
	f.Add(bytes.Join([][]byte{head, tags,
		oggPage(oggFlagBOS, 0, serial+1, 0, lace(4), []byte("vp80")),
		oggPage(oggFlagContinued, 0, serial, 2, []byte{4, 0}, []byte{1, 2, 3, 4}),
	}, nil), false)
	f.Fuzz(func(t *testing.T, data []byte, skipCRC bool) {
		// skipCRC lets the fuzzer past the checksum, into packet assembly.
		r, err := openOgg(bytes.NewReader(data), skipCRC)
		if err != nil {
			if !readerErrOK(err) {
				t.Fatalf("OpenOgg: unexpected error %v", err)
			}
			return
		}
		if r.Channels() == 0 {
			t.Fatal("opened with 0 channels")
		}
		for n := 0; ; n++ {
			fr, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !readerErrOK(err) {
					t.Fatalf("packet %d: unexpected error %v", n, err)
				}
				break
			}
			if len(fr.Data) == 0 || len(fr.Data) > MaxPacketSize {
				t.Fatalf("packet %d: %d bytes", n, len(fr.Data))
			}
			if fr.Duration <= 0 || fr.Duration > 120*time.Millisecond {
				t.Fatalf("packet %d: duration %v", n, fr.Duration)
			}
		}
	})
}
