package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIVFSinkRoundTripFFprobe(t *testing.T) {
	frames := readAll(t, mustOpen(t, VideoFixture()))
	path := filepath.Join(t.TempDir(), "rec.ivf")
	s, err := CreateIVF(path)
	if err != nil {
		t.Fatal(err)
	}
	// What a receiver that joins late sees: inter frames before the first
	// key frame. They are dropped (nothing could decode them).
	for _, f := range frames[25:] {
		if err := s.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	written := frames[30:]
	st := s.Stats()
	if st.Frames != len(written) || st.SkippedNoKey != 5 || st.Width != 1280 || st.Height != 720 {
		t.Fatalf("Stats %+v", st)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(len(data)) {
		t.Errorf("Stats.Bytes %d, file has %d", st.Bytes, len(data))
	}
	var total time.Duration
	for _, f := range written {
		total += f.Duration
	}
	// Each frame's duration is rounded to a tick.
	if n, want := int(binary.LittleEndian.Uint32(data[24:])), int(total*90000/time.Second); n < want-len(written) || n > want+len(written) {
		t.Errorf("header length %d, want the duration %d (90 kHz ticks)", n, want)
	}
	// Our reader gets the same frames back.
	r, err := OpenIVF(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Width() != 1280 || r.Height() != 720 {
		t.Errorf("header size %dx%d", r.Width(), r.Height())
	}
	got := readAll(t, r)
	if len(got) != len(written) {
		t.Fatalf("read back %d frames, want %d", len(got), len(written))
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, written[i].Data) || got[i].Keyframe != written[i].Keyframe {
			t.Fatalf("frame %d differs", i)
		}
		if d := got[i].Duration - written[i].Duration; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("frame %d: duration %v, wrote %v", i, got[i].Duration, written[i].Duration)
		}
	}
	// And ffmpeg decodes every frame.
	out := ffprobe(t, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames,width,height,codec_name", "-of", "default=noprint_wrappers=1", path)
	want := "codec_name=vp8\nwidth=1280\nheight=720\nnb_read_frames=" + strconv.Itoa(len(written))
	if out != want {
		t.Fatalf("ffprobe:\n%s\nwant:\n%s", out, want)
	}
	// ffprobe reports the recording's real duration (it read 0.001 s when
	// the header held the frame count in 90 kHz units).
	out = ffprobe(t, "-v", "error", "-show_entries", "format=duration", "-of", "default=noprint_wrappers=1:nokey=1", path)
	secs, err := strconv.ParseFloat(out, 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", out, err)
	}
	if d := secs - total.Seconds(); d < -0.001 || d > 0.001 {
		t.Errorf("ffprobe duration %.3f s, want %.3f s", secs, total.Seconds())
	}
}

func TestOggSinkRoundTripFFprobe(t *testing.T) {
	packets := readAll(t, mustOpen(t, AudioFixture()))
	path := filepath.Join(t.TempDir(), "rec.ogg")
	s, err := CreateOgg(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packets {
		if err := s.WriteFrame(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Packets != len(packets) || st.Duration != time.Duration(len(packets))*fixtureOpusDur {
		t.Fatalf("Stats %+v", st)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(len(data)) {
		t.Errorf("Stats.Bytes %d, file has %d", st.Bytes, len(data))
	}
	r, err := OpenOgg(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Channels() != 1 || r.PreSkip() != OggPreSkip {
		t.Errorf("OpusHead: %d channels, pre-skip %d", r.Channels(), r.PreSkip())
	}
	got := readAll(t, r)
	if len(got) != len(packets) {
		t.Fatalf("read back %d packets, want %d", len(got), len(packets))
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, packets[i].Data) || got[i].Duration != packets[i].Duration {
			t.Fatalf("packet %d differs", i)
		}
	}
	checkOggPages(t, data, len(packets))

	out := ffprobe(t, "-v", "error", "-count_packets", "-select_streams", "a:0",
		"-show_entries", "stream=codec_name,channels,sample_rate,nb_read_packets:format=duration",
		"-of", "default=noprint_wrappers=1", path)
	want := "codec_name=opus\nsample_rate=48000\nchannels=1\nnb_read_packets=" + strconv.Itoa(len(packets))
	if !strings.HasPrefix(out, want+"\nduration=") {
		t.Fatalf("ffprobe:\n%s\nwant:\n%s\nduration=...", out, want)
	}
	dur, err := strconv.ParseFloat(strings.TrimPrefix(out, want+"\nduration="), 64)
	if err != nil {
		t.Fatal(err)
	}
	// ffprobe's format duration is the last granule position (the sum of
	// the packets' durations); it does not take off the pre-skip.
	wantDur := st.Duration.Seconds()
	if d := dur - wantDur; d < -0.001 || d > 0.001 {
		t.Errorf("ffprobe duration %.4f s, want %.4f s", dur, wantDur)
	}
}

// checkOggPages walks the pages of a file OggSink wrote: sequence numbers
// count up, BOS only first and EOS only last, and each audio page's granule
// position is the running sample count.
func checkOggPages(t *testing.T, data []byte, packets int) {
	t.Helper()
	var serial uint32
	var granule uint64
	var page int
	for off := 0; off < len(data); page++ {
		h := data[off:]
		nseg := int(h[26])
		size := 0
		for _, l := range h[27 : 27+nseg] {
			size += int(l)
		}
		flags, g := h[5], binary.LittleEndian.Uint64(h[6:])
		if page == 0 {
			serial = binary.LittleEndian.Uint32(h[14:])
		}
		if s := binary.LittleEndian.Uint32(h[14:]); s != serial {
			t.Fatalf("page %d: serial %d, want %d", page, s, serial)
		}
		if seq := binary.LittleEndian.Uint32(h[18:]); seq != uint32(page) {
			t.Fatalf("page %d: sequence %d", page, seq)
		}
		off += 27 + nseg + size
		if want := page == 0; (flags&oggFlagBOS != 0) != want {
			t.Fatalf("page %d: BOS flag %v", page, !want)
		}
		if want := off == len(data); (flags&oggFlagEOS != 0) != want {
			t.Fatalf("page %d: EOS flag %v", page, !want)
		}
		if page >= 2 {
			granule += 960
		}
		if g != granule {
			t.Fatalf("page %d: granule %d, want %d", page, g, granule)
		}
	}
	if page != packets+2 {
		t.Fatalf("%d pages, want %d (headers + one per packet)", page, packets+2)
	}
}

func TestIVFSinkUnseekableWriter(t *testing.T) {
	var buf bytes.Buffer
	s := NewIVFSink(&buf)
	frames := [][]byte{vp8Key(320, 240), vp8Delta(), vp8Delta()}
	for _, f := range frames {
		if err := s.WriteFrame(Frame{Data: f}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFrame(Frame{Data: vp8Delta()}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	r, err := OpenIVF(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.Width() != 320 || r.Height() != 240 {
		t.Errorf("size %dx%d", r.Width(), r.Height())
	}
	got := readAll(t, r)
	if len(got) != 3 {
		t.Fatalf("%d frames", len(got))
	}
	for _, f := range got {
		if f.Duration != time.Second/30 { // zero durations are written as 1/30 s
			t.Errorf("duration %v", f.Duration)
		}
	}
}

func TestIVFSinkNoKeyframe(t *testing.T) {
	var buf bytes.Buffer
	s := NewIVFSink(&buf)
	s.WriteFrame(Frame{Data: vp8Delta()})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A header alone: a valid, empty IVF file.
	r, err := OpenIVF(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(r); n != 0 || err != nil {
		t.Fatalf("%d frames, %v", n, err)
	}
	if s.Stats().SkippedNoKey != 1 {
		t.Errorf("Stats %+v", s.Stats())
	}
}

func TestSinksRejectBadFrames(t *testing.T) {
	iv := NewIVFSink(&bytes.Buffer{})
	og := NewOggSink(&bytes.Buffer{})
	for _, tc := range []struct {
		name string
		s    interface{ WriteFrame(Frame) error }
		data []byte
	}{
		{"ivf empty", iv, nil},
		{"ivf too large", iv, make([]byte, MaxFrameSize+1)},
		{"ogg empty", og, nil},
		{"ogg too large", og, append([]byte{0xfc}, make([]byte, 70000)...)},
		{"ogg bad TOC", og, []byte{0x1b}},
	} {
		if err := tc.s.WriteFrame(Frame{Data: tc.data}); !errors.Is(err, ErrInvalidFrame) {
			t.Errorf("%s: %v, want ErrInvalidFrame", tc.name, err)
		}
	}
}

func TestOggSinkEmptyAndStereo(t *testing.T) {
	var buf bytes.Buffer
	s := NewOggSink(&buf)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenOgg(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(r); n != 0 || err != nil {
		t.Fatalf("empty recording: %d packets, %v", n, err)
	}

	buf.Reset()
	s = NewOggSink(&buf)
	big := make([]byte, 1000) // spans several lacing values
	big[0] = 0xfc | 0x04      // stereo
	if err := s.WriteFrame(Frame{Data: big}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.WriteFrame(Frame{Data: big}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	r, err = OpenOgg(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Channels() != 2 {
		t.Errorf("channels %d, want 2 from the TOC stereo flag", r.Channels())
	}
	got := readAll(t, r)
	if len(got) != 1 || !bytes.Equal(got[0].Data, big) {
		t.Fatal("packet not read back")
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after == 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

func TestSinksStickyWriteError(t *testing.T) {
	iv := NewIVFSink(&failWriter{after: 2})
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		err = iv.WriteFrame(Frame{Data: vp8Key(64, 48)})
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("IVF: %v", err)
	}
	if err2 := iv.WriteFrame(Frame{Data: vp8Delta()}); err2 != err {
		t.Errorf("IVF error not sticky: %v", err2)
	}
	if iv.Close() == nil {
		t.Error("IVF Close hid the write error")
	}

	og := NewOggSink(&failWriter{after: 3})
	err = nil
	for i := 0; i < 5 && err == nil; i++ {
		err = og.WriteFrame(Frame{Data: []byte{0xfc, 1}})
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Ogg: %v", err)
	}
	if og.Close() == nil {
		t.Error("Ogg Close hid the write error")
	}
}

func TestSinksConcurrentUse(t *testing.T) {
	// Frames from one goroutine, Stats and Close from others (run with -race).
	iv := NewIVFSink(&bytes.Buffer{})
	og := NewOggSink(&bytes.Buffer{})
	var wg sync.WaitGroup
	wg.Go(func() {
		iv.WriteFrame(Frame{Data: vp8Key(64, 48)})
		for range 100 {
			iv.WriteFrame(Frame{Data: vp8Delta()})
			og.WriteFrame(Frame{Data: []byte{0xfc, 1}})
		}
	})
	wg.Go(func() {
		for range 100 {
			iv.Stats()
			og.Stats()
		}
	})
	wg.Wait()
	wg.Go(func() { iv.Close() })
	wg.Go(func() { og.Close() })
	wg.Wait()
	if iv.Stats().Frames != 101 || og.Stats().Packets != 100 {
		t.Errorf("IVF %+v, Ogg %+v", iv.Stats(), og.Stats())
	}
}
