package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Facts about the committed fixtures (scripts/make-fixtures.sh).
const (
	fixtureVideoFrames = 90
	fixtureVideoKeyint = 30
	fixtureAudioPkts   = 151 // 3 s plus one packet for the 312-sample pre-skip
	fixtureFrameDur    = time.Second / 30
	fixtureOpusDur     = 20 * time.Millisecond
)

// readAll drains a Source.
func readAll(t testing.TB, src Source) []Frame {
	t.Helper()
	var out []Frame
	for {
		f, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, f)
	}
}

// drain reads a Source to its end and returns the frame count and the
// error that ended it (nil for a clean io.EOF).
func drain(src Source) (int, error) {
	for n := 0; ; n++ {
		_, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// ivfFile builds an IVF file with time base 1/30 and one frame per tick.
func ivfFile(w, h int, frames ...[]byte) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], uint16(w))
	binary.LittleEndian.PutUint16(hdr[14:], uint16(h))
	binary.LittleEndian.PutUint32(hdr[16:], 30)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], uint32(len(frames)))
	b.Write(hdr)
	for i, f := range frames {
		var fh [12]byte
		binary.LittleEndian.PutUint32(fh[0:], uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		b.Write(fh[:])
		b.Write(f)
	}
	return b.Bytes()
}

// vp8Key returns a minimal VP8 key frame header of the given size.
func vp8Key(w, h int) []byte {
	f := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0, 0xaa, 0xbb}
	binary.LittleEndian.PutUint16(f[6:], uint16(w))
	binary.LittleEndian.PutUint16(f[8:], uint16(h))
	return f
}

// vp8Delta returns a minimal VP8 inter frame.
func vp8Delta() []byte { return []byte{0x31, 0x02, 0x00, 0xcc} }

// oggPage builds one Ogg page with a correct CRC.
func oggPage(flags byte, granule uint64, serial, seq uint32, lacing []byte, body []byte) []byte {
	b := []byte("OggS")
	b = append(b, 0, flags)
	b = binary.LittleEndian.AppendUint64(b, granule)
	b = binary.LittleEndian.AppendUint32(b, serial)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, byte(len(lacing)))
	b = append(b, lacing...)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b[22:], oggCRC(0, b))
	return b
}

// lace returns the lacing values of one whole packet of n bytes.
func lace(n int) []byte {
	l := bytes.Repeat([]byte{255}, n/255)
	return append(l, byte(n%255))
}

func opusHead(channels byte) []byte {
	h := []byte("OpusHead")
	h = append(h, 1, channels, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0)
	return h
}

func opusTags() []byte {
	t := []byte("OpusTags")
	t = binary.LittleEndian.AppendUint32(t, 4)
	t = append(t, "test"...)
	return binary.LittleEndian.AppendUint32(t, 0)
}

// ffprobe runs ffprobe and returns its output. These tests need ffmpeg and
// fail (never skip) without it.
func ffprobe(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatalf("ffprobe not found; this test needs ffmpeg: apt-get install -y ffmpeg (%v)", err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// stepClock is a fake clock on which waiting costs no real time: a new
// timer moves the clock to its deadline and fires at once. Elapsed fake time
// is then exactly the time a paced consumer would have waited.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func newStepClock() *stepClock { return &stepClock{now: time.Unix(1_700_000_000, 0)} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return chanTimer(ch)
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type chanTimer chan time.Time

func (t chanTimer) C() <-chan time.Time { return t }
func (t chanTimer) Stop() bool          { return true }

// manualClock is a fake clock whose timers fire only when Advance moves
// the time past their deadline. Each new timer is announced on created.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*manualTimer
	created chan time.Duration
}

type manualTimer struct {
	at time.Time
	ch chan time.Time
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }
func (t *manualTimer) Stop() bool          { return true }

func newManualClock() *manualClock {
	return &manualClock{now: time.Unix(1_700_000_000, 0), created: make(chan time.Duration, 16)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	t := &manualTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.created <- d
	return t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}
