package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIVFReaderFixture(t *testing.T) {
	r, err := OpenIVF(bytes.NewReader(VideoFixture()))
	if err != nil {
		t.Fatal(err)
	}
	info := r.Info()
	if info != (Info{Codec: CodecVP8, Width: 1280, Height: 720, FPS: 30}) {
		t.Fatalf("Info = %+v", info)
	}
	frames := readAll(t, r)
	if len(frames) != fixtureVideoFrames {
		t.Fatalf("%d frames, want %d", len(frames), fixtureVideoFrames)
	}
	var total time.Duration
	var bytesTotal int
	for i, f := range frames {
		wantKey := i%fixtureVideoKeyint == 0
		if f.Keyframe != wantKey {
			t.Errorf("frame %d: Keyframe %v, want %v", i, f.Keyframe, wantKey)
		}
		if f.Duration != fixtureFrameDur {
			t.Errorf("frame %d: Duration %v, want %v", i, f.Duration, fixtureFrameDur)
		}
		key, w, h, ok := VP8FrameInfo(f.Data)
		if !ok || key != wantKey || (key && (w != 1280 || h != 720)) {
			t.Errorf("frame %d: VP8FrameInfo = %v %dx%d ok=%v", i, key, w, h, ok)
		}
		total += f.Duration
		bytesTotal += len(f.Data)
	}
	if total < 2999*time.Millisecond || total > 3001*time.Millisecond {
		t.Errorf("total duration %v, want 3s", total)
	}
	// About 1.5 Mbps over 3 s.
	if kbps := bytesTotal * 8 / 3 / 1000; kbps < 1200 || kbps > 1800 {
		t.Errorf("bitrate %d kbit/s, want about 1500", kbps)
	}
	// The end is sticky.
	for range 2 {
		if _, err := r.Next(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("after the end: %v, want io.EOF", err)
		}
	}
}

func TestOggReaderFixture(t *testing.T) {
	r, err := OpenOgg(bytes.NewReader(AudioFixture()))
	if err != nil {
		t.Fatal(err)
	}
	if info := r.Info(); info != (Info{Codec: CodecOpus, Channels: 1}) {
		t.Fatalf("Info = %+v", info)
	}
	if r.PreSkip() != 312 {
		t.Errorf("PreSkip %d, want 312", r.PreSkip())
	}
	frames := readAll(t, r)
	if len(frames) != fixtureAudioPkts {
		t.Fatalf("%d packets, want %d", len(frames), fixtureAudioPkts)
	}
	for i, f := range frames {
		if f.Duration != fixtureOpusDur || f.Keyframe {
			t.Errorf("packet %d: Duration %v Keyframe %v", i, f.Duration, f.Keyframe)
		}
		if bytes.HasPrefix(f.Data, []byte("Opus")) {
			t.Errorf("packet %d is a header packet", i)
		}
	}
}

func TestOpenSniffsFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"ivf", VideoFixture(), CodecVP8},
		{"ogg", AudioFixture(), CodecOpus},
	} {
		src, err := BytesOpener(tc.data)()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if src.Codec() != tc.want || InfoOf(src).Codec != tc.want {
			t.Errorf("%s: codec %q, want %q", tc.name, src.Codec(), tc.want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("DK"), []byte("RIFF....WAVE")} {
		if _, err := Open(bytes.NewReader(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("Open(%q) = %v, want ErrFormat", bad, err)
		}
	}
}

func TestFileOpener(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.ogg")
	if err := os.WriteFile(path, AudioFixture(), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := FileOpener(path)()
	if err != nil {
		t.Fatal(err)
	}
	if got := InfoOf(src); got.Codec != CodecOpus || got.Channels != 1 {
		t.Errorf("Info = %+v", got)
	}
	if n, err := drain(src); err != nil || n != fixtureAudioPkts {
		t.Errorf("drain = %d, %v", n, err)
	}
	if err := src.(io.Closer).Close(); err != nil {
		t.Error(err)
	}
	if _, err := FileOpener(filepath.Join(dir, "missing.ivf"))(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	junk := filepath.Join(dir, "junk.ivf")
	os.WriteFile(junk, []byte("not media at all"), 0o600)
	if _, err := FileOpener(junk)(); !errors.Is(err, ErrFormat) {
		t.Errorf("junk file: %v, want ErrFormat", err)
	}
}

func TestIVFReaderDurationsFromTimestamps(t *testing.T) {
	// Time base 1/1000 with timestamps 0, 40, 40 (not increasing), 100:
	// durations 40 ms, then the previous one where the gap is unusable,
	// 60 ms, and the last frame repeats the one before.
	data := ivfFile(64, 48, vp8Key(64, 48), vp8Delta(), vp8Delta(), vp8Delta())
	binary.LittleEndian.PutUint32(data[16:], 1000)
	pts := []uint64{0, 40, 40, 100}
	off := 32
	for _, p := range pts {
		binary.LittleEndian.PutUint64(data[off+4:], p)
		off += 12 + int(binary.LittleEndian.Uint32(data[off:]))
	}
	r, err := OpenIVF(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.FPS() != 1000 || r.Width() != 64 || r.Height() != 48 {
		t.Errorf("FPS %v size %dx%d", r.FPS(), r.Width(), r.Height())
	}
	want := []time.Duration{40 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond, 60 * time.Millisecond}
	frames := readAll(t, r)
	if len(frames) != len(want) {
		t.Fatalf("%d frames", len(frames))
	}
	for i, f := range frames {
		if f.Duration != want[i] {
			t.Errorf("frame %d: %v, want %v", i, f.Duration, want[i])
		}
	}
	if !frames[0].Keyframe || frames[1].Keyframe {
		t.Error("key frame flags wrong")
	}
}

func TestIVFReaderSkipsEmptyFramesAndExtraHeader(t *testing.T) {
	base := ivfFile(64, 48, vp8Key(64, 48), nil, vp8Delta())
	// Grow the header to 40 bytes; the reader must skip the extra 8.
	data := append(append(append([]byte{}, base[:32]...), make([]byte, 8)...), base[32:]...)
	binary.LittleEndian.PutUint16(data[6:], 40)
	r, err := OpenIVF(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	frames := readAll(t, r)
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2 (the empty one skipped)", len(frames))
	}
	if frames[0].Duration != 2*fixtureFrameDur {
		t.Errorf("frame before the empty one lasts %v, want %v", frames[0].Duration, 2*fixtureFrameDur)
	}
}

func TestIVFReaderErrors(t *testing.T) {
	good := ivfFile(64, 48, vp8Key(64, 48), vp8Delta())
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	for _, tc := range []struct {
		name string
		data []byte
		want error // from OpenIVF or, if it opens, from reading
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:20], ErrTruncated},
		{"bad magic", mut(func(b []byte) []byte { copy(b, "RIFF"); return b }), ErrFormat},
		{"bad magic short", []byte("RIFF0000"), ErrFormat},
		{"version 1", mut(func(b []byte) []byte { b[4] = 1; return b }), ErrFormat},
		{"VP9", mut(func(b []byte) []byte { copy(b[8:], "VP90"); return b }), ErrFormat},
		{"header size 8", mut(func(b []byte) []byte { b[6] = 8; return b }), ErrCorrupt},
		{"header size huge", mut(func(b []byte) []byte { b[6], b[7] = 0xff, 0xff; return b }), ErrCorrupt},
		{"header size past end", mut(func(b []byte) []byte { b[6], b[7] = 0x00, 0x02; return b[:60] }), ErrTruncated},
		{"zero rate", mut(func(b []byte) []byte { clear(b[16:20]); return b }), ErrCorrupt},
		{"zero scale", mut(func(b []byte) []byte { clear(b[20:24]); return b }), ErrCorrupt},
		{"truncated frame header", good[:32+5], ErrTruncated},
		{"truncated frame", good[:len(good)-2], ErrTruncated},
		{"huge frame size", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[32:], 0xffffffff)
			return b
		}), ErrCorrupt},
		{"frame size past end", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[32:], 1<<20)
			return b
		}), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := OpenIVF(bytes.NewReader(tc.data))
			if err == nil {
				_, err = drain(r)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestIVFReaderTruncatedEverywhere(t *testing.T) {
	// Cut a file of a few real frames at every length: it opens and reads
	// cleanly up to the cut, and the cut is reported as ErrTruncated unless
	// it falls between frames.
	full := VideoFixture()
	r, _ := OpenIVF(bytes.NewReader(full))
	frames := readAll(t, r)[:3]
	var parts [][]byte
	for _, f := range frames {
		parts = append(parts, f.Data[:min(len(f.Data), 40)])
	}
	data := ivfFile(1280, 720, parts...)
	boundaries := map[int]int{32: 0}
	off := 32
	for i, p := range parts {
		off += 12 + len(p)
		boundaries[off] = i + 1
	}
	for n := 0; n < len(data); n++ {
		r, err := OpenIVF(bytes.NewReader(data[:n]))
		if err == nil {
			var got int
			got, err = drain(r)
			if want, clean := boundaries[n]; clean {
				if err != nil || got != want {
					t.Fatalf("cut at %d: %d frames, %v; want %d, nil", n, got, err, want)
				}
				continue
			}
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", n, err)
		}
	}
}

func TestOggReaderErrors(t *testing.T) {
	const serial = 7
	head := oggPage(oggFlagBOS, 0, serial, 0, lace(19), opusHead(1))
	tags := oggPage(0, 0, serial, 1, lace(len(opusTags())), opusTags())
	pkt := []byte{0xfc, 1, 2, 3}
	audio := oggPage(oggFlagEOS, 960, serial, 2, lace(len(pkt)), pkt)
	good := bytes.Join([][]byte{head, tags, audio}, nil)
	if n, err := drainOgg(good); err != nil || n != 1 {
		t.Fatalf("good file: %d, %v", n, err)
	}
	flip := func(at int) []byte {
		b := append([]byte{}, good...)
		b[at] ^= 0x40
		return b
	}
	vorbis := append([]byte{1}, "vorbis"...)
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"bad magic", []byte("RIFF0000000000000000000000000000"), ErrFormat},
		{"vorbis", oggPage(oggFlagBOS, 0, 1, 0, lace(len(vorbis)), vorbis), ErrFormat},
		{"short page header", good[:10], ErrTruncated},
		{"truncated segment table", good[:27], ErrTruncated},
		{"truncated body", good[:len(head)-3], ErrTruncated},
		{"no tags", head, ErrTruncated},
		{"checksum", flip(len(head) + len(tags) + 30), ErrCorrupt},
		{"version", func() []byte { b := append([]byte{}, good...); b[4] = 1; return b }(), ErrCorrupt},
		{"not BOS", oggPage(0, 0, serial, 0, lace(19), opusHead(1)), ErrCorrupt},
		{"zero channels", oggPage(oggFlagBOS, 0, serial, 0, lace(19), opusHead(0)), ErrCorrupt},
		{"short OpusHead", oggPage(oggFlagBOS, 0, serial, 0, lace(12), opusHead(1)[:12]), ErrCorrupt},
		{"OpusHead v1.x", func() []byte {
			h := opusHead(1)
			h[8] = 0x10
			return oggPage(oggFlagBOS, 0, serial, 0, lace(19), h)
		}(), ErrFormat},
		{"tags not tags", bytes.Join([][]byte{head, oggPage(0, 0, serial, 1, lace(4), []byte("junk"))}, nil), ErrCorrupt},
		{"garbage between pages", bytes.Join([][]byte{head, tags, []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")}, nil), ErrCorrupt},
		{"ends inside a packet", bytes.Join([][]byte{head, tags,
			oggPage(0, 0, serial, 2, []byte{255}, make([]byte, 255))}, nil), ErrTruncated},
		{"page does not continue", bytes.Join([][]byte{head, tags,
			oggPage(0, 0, serial, 2, []byte{255}, make([]byte, 255)),
			oggPage(0, 960, serial, 3, []byte{1}, []byte{0xfc})}, nil), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := drainOgg(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func drainOgg(data []byte) (int, error) {
	r, err := OpenOgg(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	return drain(r)
}

func TestOggReaderAssemblesPackets(t *testing.T) {
	const serial = 42
	// A 600-byte OpusTags packet across two pages, then pages holding:
	// two packets; a packet of exactly 255 bytes (lacing 255, 0); a
	// packet split over two pages; a page of another stream (skipped); an
	// empty packet (skipped).
	tags := append(opusTags(), make([]byte, 600-len(opusTags()))...)
	p1 := []byte{0xfc, 1}    // CELT FB 20 ms, 1 frame
	p2 := []byte{0xf1, 2, 3} // CELT FB 10 ms, code 1: 2 frames = 20 ms
	p3 := make([]byte, 255)  // code 3, 3 frames of 20 ms = 60 ms
	p3[0], p3[1] = 0xfb, 3
	p4 := make([]byte, 400)
	p4[0] = 0x18 // SILK NB 60 ms
	file := bytes.Join([][]byte{
		oggPage(oggFlagBOS, 0, serial, 0, lace(19), opusHead(2)),
		oggPage(0, 0, serial, 1, []byte{255, 255}, tags[:510]),
		oggPage(oggFlagContinued, 0, serial, 2, []byte{90}, tags[510:]),
		oggPage(0, 1920, serial, 3, append(lace(len(p1)), lace(len(p2))...), append(append([]byte{}, p1...), p2...)),
		oggPage(0, 4800, serial, 4, lace(len(p3)), p3),
		oggPage(0, 4800, serial, 5, []byte{255}, p4[:255]),
		oggPage(oggFlagBOS, 0, serial+1, 0, lace(5), []byte("other")),
		oggPage(oggFlagContinued, 7680, serial, 6, []byte{145, 0}, p4[255:]),
		oggPage(oggFlagEOS, 7680, serial, 7, nil, nil),
		[]byte("trailing junk after the end-of-stream page is never read"),
	}, nil)
	r, err := OpenOgg(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if r.Channels() != 2 {
		t.Errorf("Channels %d", r.Channels())
	}
	frames := readAll(t, r)
	want := []struct {
		data []byte
		dur  time.Duration
	}{{p1, 20 * time.Millisecond}, {p2, 20 * time.Millisecond}, {p3, 60 * time.Millisecond}, {p4, 60 * time.Millisecond}}
	if len(frames) != len(want) {
		t.Fatalf("%d packets, want %d", len(frames), len(want))
	}
	for i, w := range want {
		if !bytes.Equal(frames[i].Data, w.data) || frames[i].Duration != w.dur {
			t.Errorf("packet %d: %d bytes %v, want %d bytes %v", i, len(frames[i].Data), frames[i].Duration, len(w.data), w.dur)
		}
	}
}

func TestOggReaderPacketLimit(t *testing.T) {
	// A packet that never ends: pages of 255 full segments each. The
	// reader gives up at MaxPacketSize instead of growing without bound.
	const serial = 1
	pages := [][]byte{
		oggPage(oggFlagBOS, 0, serial, 0, lace(19), opusHead(1)),
		oggPage(0, 0, serial, 1, lace(len(opusTags())), opusTags()),
	}
	body := make([]byte, 255*255)
	full := bytes.Repeat([]byte{255}, 255)
	for i := range MaxPacketSize/len(body) + 2 {
		flags := byte(oggFlagContinued)
		if i == 0 {
			flags = 0
		}
		pages = append(pages, oggPage(flags, 0, serial, uint32(2+i), full, body))
	}
	_, err := drainOgg(bytes.Join(pages, nil))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestOpusPacketSamples(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		n    int
		ok   bool
		name string
	}{
		{nil, 0, false, "empty"},
		{[]byte{0xfc}, 960, true, "CELT FB 20ms"},
		{[]byte{0x78}, 960, true, "hybrid FB 20ms"},
		{[]byte{0x80}, 120, true, "CELT NB 2.5ms"},
		{[]byte{0x18}, 2880, true, "SILK NB 60ms"},
		{[]byte{0x19}, 5760, true, "SILK 60ms x2 = 120ms"},
		{[]byte{0x1b}, 0, false, "code 3 without count"},
		{[]byte{0x1b, 0x03}, 0, false, "SILK 60ms x3 = 180ms, too long"},
		{[]byte{0xfb, 0x00}, 0, false, "zero frames"},
		{[]byte{0xfb, 0x06}, 5760, true, "CELT 20ms x6"},
	} {
		n, ok := opusPacketSamples(tc.p)
		if n != tc.n || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}

func TestVP8FrameInfo(t *testing.T) {
	big := vp8Key(1280, 720)
	big[7] |= 0x40 // a scaling mode in the top bits is not part of the width
	for _, tc := range []struct {
		name string
		f    []byte
		key  bool
		w, h int
		ok   bool
	}{
		{"nil", nil, false, 0, 0, false},
		{"2 bytes", []byte{0x00, 0x01}, false, 0, 0, false},
		{"key 1280x720 scaled", big, true, 1280, 720, true},
		{"key 640x480", vp8Key(640, 480), true, 640, 480, true},
		{"inter", vp8Delta(), false, 0, 0, true},
		{"key without start code", []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2b, 1, 0, 1, 0}, true, 0, 0, false},
		{"key cut short", vp8Key(640, 480)[:8], true, 0, 0, false},
		{"key zero size", vp8Key(0, 480), true, 0, 480, false},
	} {
		key, w, h, ok := VP8FrameInfo(tc.f)
		if key != tc.key || w != tc.w || h != tc.h || ok != tc.ok {
			t.Errorf("%s: %v %dx%d %v, want %v %dx%d %v", tc.name, key, w, h, ok, tc.key, tc.w, tc.h, tc.ok)
		}
	}
}

func TestReaderHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, _ := OpenIVF(bytes.NewReader(VideoFixture()))
	o, _ := OpenOgg(bytes.NewReader(AudioFixture()))
	for _, src := range []Source{v, o} {
		if _, err := src.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", src.Codec(), err)
		}
		if _, err := src.Next(context.Background()); err != nil {
			t.Errorf("%s after a cancelled call: %v", src.Codec(), err)
		}
	}
}
