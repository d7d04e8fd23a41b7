package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"time"
)

// IVF layout (https://wiki.multimedia.cx/index.php/IVF), all little-endian:
//
//	file header, 32 bytes:
//	  0  4  "DKIF"
//	  4  2  version, 0
//	  6  2  header size in bytes, 32
//	  8  4  codec FourCC, "VP80"
//	 12  2  width
//	 14  2  height
//	 16  4  time base denominator (rate; frames per second when scale is 1)
//	 20  4  time base numerator (scale)
//	 24  4  length: libvpx writes the number of frames; ffmpeg reads and
//	        writes the stream's duration in time base units (ffprobe shows
//	        it as the duration). IVFSink writes the duration, which equals
//	        the frame count when a frame is one tick (libvpx's files).
//	 28  4  unused
//	frame header, 12 bytes, then the frame:
//	  0  4  frame size in bytes
//	  4  8  presentation timestamp in time base units
const (
	ivfMagic          = "DKIF"
	ivfFourCCVP8      = "VP80"
	ivfFileHeaderLen  = 32
	ivfFrameHeaderLen = 12
	// ivfMaxHeaderLen bounds the header size field (extra bytes are skipped).
	ivfMaxHeaderLen = 1024
	// ivfSinkRate is the time base IVFSink writes: the 90 kHz RTP video clock.
	ivfSinkRate = 90000
	// defaultFrameDuration is used when a file's timestamps say nothing
	// usable: 30 fps, duet's frame rate.
	defaultFrameDuration = time.Second / 30
)

// IVFReader reads VP8 frames from an IVF file. It is a [Source] that returns
// frames as fast as they are asked for; wrap it in a [PacedSource] to send
// them in real time. It is not safe for concurrent use.
type IVFReader struct {
	r             io.Reader
	width, height int
	rate, scale   uint64 // time base: scale/rate seconds per tick
	nominal       time.Duration
	fps           float64

	started bool
	index   int   // index of the next frame header to read
	offset  int64 // file offset of the next frame header
	pending *ivfRaw
	err     error // error that follows pending (io.EOF at the end)
	lastDur time.Duration
}

type ivfRaw struct {
	data []byte
	pts  uint64
}

// OpenIVF reads the IVF file header from r and returns a reader positioned
// at the first frame. Only VP8 ("VP80") is accepted. r is read sequentially
// and never seeked, so a bytes.Reader, a file or a pipe all work; an
// unbuffered r is read through a bufio.Reader.
func OpenIVF(r io.Reader) (*IVFReader, error) {
	r = buffered(r)
	var h [ivfFileHeaderLen]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n >= 4 && string(h[:4]) != ivfMagic {
			return nil, fmt.Errorf("%w: ivf: magic %q, want %q", ErrFormat, h[:4], ivfMagic)
		}
		return nil, ivfReadErr(err, fmt.Sprintf("ivf: file header: %d of %d bytes", n, ivfFileHeaderLen))
	}
	if string(h[:4]) != ivfMagic {
		return nil, fmt.Errorf("%w: ivf: magic %q, want %q", ErrFormat, h[:4], ivfMagic)
	}
	if v := binary.LittleEndian.Uint16(h[4:6]); v != 0 {
		return nil, fmt.Errorf("%w: ivf: version %d, only version 0 is known", ErrFormat, v)
	}
	if cc := string(h[8:12]); cc != ivfFourCCVP8 {
		return nil, fmt.Errorf("%w: ivf: codec %q, only VP8 (%q) is supported", ErrFormat, cc, ivfFourCCVP8)
	}
	hlen := int(binary.LittleEndian.Uint16(h[6:8]))
	if hlen < ivfFileHeaderLen || hlen > ivfMaxHeaderLen {
		return nil, fmt.Errorf("%w: ivf: header size %d, want %d..%d", ErrCorrupt, hlen, ivfFileHeaderLen, ivfMaxHeaderLen)
	}
	v := &IVFReader{
		r:      r,
		width:  int(binary.LittleEndian.Uint16(h[12:14])),
		height: int(binary.LittleEndian.Uint16(h[14:16])),
		rate:   uint64(binary.LittleEndian.Uint32(h[16:20])),
		scale:  uint64(binary.LittleEndian.Uint32(h[20:24])),
		offset: int64(hlen),
	}
	if v.rate == 0 || v.scale == 0 {
		return nil, fmt.Errorf("%w: ivf: time base %d/%d has a zero term", ErrCorrupt, v.scale, v.rate)
	}
	if extra := hlen - ivfFileHeaderLen; extra > 0 {
		if n, err := io.CopyN(io.Discard, r, int64(extra)); err != nil {
			return nil, ivfReadErr(err, fmt.Sprintf("ivf: file header: %d of %d bytes", ivfFileHeaderLen+int(n), hlen))
		}
	}
	v.nominal = defaultFrameDuration
	if d, ok := v.ticks(1); ok && d >= time.Millisecond {
		v.nominal = d
		v.fps = float64(v.rate) / float64(v.scale)
	}
	return v, nil
}

// Codec returns CodecVP8.
func (v *IVFReader) Codec() string { return CodecVP8 }

// Info returns the codec and the header's frame size and frame rate.
func (v *IVFReader) Info() Info {
	return Info{Codec: CodecVP8, Width: v.width, Height: v.height, FPS: v.fps}
}

// Width returns the frame width from the file header.
func (v *IVFReader) Width() int { return v.width }

// Height returns the frame height from the file header.
func (v *IVFReader) Height() int { return v.height }

// FPS returns the file header's time base as a rate (the frame rate in
// files from ffmpeg and libvpx), or 0 when a tick is under 1 ms.
func (v *IVFReader) FPS() float64 { return v.fps }

// Next returns the next frame, io.EOF after the last one, or an error
// wrapping ErrTruncated or ErrCorrupt. Empty frames are skipped. A frame's
// duration is the gap to the next frame's timestamp; the last frame gets
// the duration of the one before it.
func (v *IVFReader) Next(ctx context.Context) (Frame, error) {
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	if !v.started {
		v.started = true
		v.pending, v.err = v.readRaw()
	}
	cur := v.pending
	if cur == nil {
		return Frame{}, v.err
	}
	v.pending, v.err = v.readRaw()
	dur := v.lastDur
	if dur == 0 {
		dur = v.nominal
	}
	if v.pending != nil && v.pending.pts > cur.pts {
		if d, ok := v.ticks(v.pending.pts - cur.pts); ok {
			dur = d
		}
	}
	v.lastDur = dur
	return Frame{Data: cur.data, Duration: dur, Keyframe: vp8Keyframe(cur.data)}, nil
}

// readRaw reads the next non-empty frame.
func (v *IVFReader) readRaw() (*ivfRaw, error) {
	for {
		var h [ivfFrameHeaderLen]byte
		n, err := io.ReadFull(v.r, h[:])
		if err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, ivfReadErr(err, fmt.Sprintf("ivf: frame %d header at offset %d: %d of %d bytes", v.index, v.offset, n, ivfFrameHeaderLen))
		}
		size := binary.LittleEndian.Uint32(h[0:4])
		pts := binary.LittleEndian.Uint64(h[4:12])
		if size > MaxFrameSize {
			return nil, fmt.Errorf("%w: ivf: frame %d at offset %d: size %d over the %d byte limit", ErrCorrupt, v.index, v.offset, size, MaxFrameSize)
		}
		data, err := readFull(v.r, int(size))
		if err != nil {
			return nil, ivfReadErr(err, fmt.Sprintf("ivf: frame %d at offset %d: %d of %d bytes", v.index, v.offset, len(data), size))
		}
		v.index++
		v.offset += ivfFrameHeaderLen + int64(size)
		if size > 0 {
			return &ivfRaw{data: data, pts: pts}, nil
		}
	}
}

// ticks converts n time base ticks to a duration; ok is false when the
// result is zero or over maxFrameDuration (a broken timestamp).
func (v *IVFReader) ticks(n uint64) (time.Duration, bool) {
	// n * scale * 1e9 / rate without overflow: scale < 2^32, so scale*1e9
	// fits in 64 bits and the product in 128.
	hi, lo := bits.Mul64(n, v.scale*uint64(time.Second))
	if hi >= v.rate {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, v.rate)
	d := time.Duration(q)
	if q > uint64(maxFrameDuration) || d <= 0 {
		return 0, false
	}
	return d, true
}

// ivfReadErr turns a short read into ErrTruncated and keeps other I/O errors.
func ivfReadErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s", ErrTruncated, what)
	}
	return fmt.Errorf("media: %s: %w", what, err)
}

// IVFSink writes received VP8 frames to an IVF file that ffmpeg and vpxdec
// play. Frames before the first key frame are dropped (nothing can decode
// them) and counted; the header's width and height come from that first key
// frame. Timestamps are the running sum of frame durations in a 90 kHz time
// base. When the writer is an io.WriteSeeker (a file), Close writes the
// recording's duration into the header's length field (in time base units,
// as ffmpeg reads it: ffprobe then reports the real duration). Each frame goes out in one Write, unbuffered,
// so a recording cut short by a crash keeps every frame written before it.
// IVFSink is safe for concurrent use.
type IVFSink struct {
	mu      sync.Mutex
	w       io.Writer
	c       io.Closer // closed by Close when the sink owns the file
	started bool      // header written
	closed  bool
	err     error // first write error, returned from then on
	stats   IVFSinkStats
	pts     uint64
	buf     []byte
}

// IVFSinkStats counts what an IVFSink did.
type IVFSinkStats struct {
	Frames        int // frames written
	Bytes         int64
	SkippedNoKey  int // frames dropped while waiting for the first key frame
	Width, Height int // from the first key frame
}

// NewIVFSink returns a sink writing to w. The header is written with the
// first key frame (or at Close if none came).
func NewIVFSink(w io.Writer) *IVFSink { return &IVFSink{w: w} }

// CreateIVF creates (or truncates) the file at path and returns a sink
// writing to it; Close closes the file.
func CreateIVF(path string) (*IVFSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	s := NewIVFSink(f)
	s.c = f
	return s, nil
}

// WriteFrame appends one whole VP8 frame. f.Duration is the gap to the next
// frame; zero (or over a second) counts as 1/30 s. It returns an error
// wrapping ErrInvalidFrame for an empty frame or one over MaxFrameSize,
// ErrClosed after Close, and the writer's error if a write failed.
func (s *IVFSink) WriteFrame(f Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.err != nil:
		return s.err
	case len(f.Data) == 0:
		return fmt.Errorf("%w: empty VP8 frame", ErrInvalidFrame)
	case len(f.Data) > MaxFrameSize:
		return fmt.Errorf("%w: VP8 frame of %d bytes over the %d byte limit", ErrInvalidFrame, len(f.Data), MaxFrameSize)
	}
	if !s.started {
		key, w, h, ok := VP8FrameInfo(f.Data)
		if !key || !ok {
			s.stats.SkippedNoKey++
			return nil
		}
		s.stats.Width, s.stats.Height = w, h
		if err := s.writeHeader(); err != nil {
			return err
		}
	}
	s.buf = binary.LittleEndian.AppendUint32(s.buf[:0], uint32(len(f.Data)))
	s.buf = binary.LittleEndian.AppendUint64(s.buf, s.pts)
	s.buf = append(s.buf, f.Data...)
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = fmt.Errorf("media: writing IVF frame %d: %w", s.stats.Frames, err)
		return s.err
	}
	s.stats.Frames++
	s.stats.Bytes += int64(len(s.buf))
	d := f.Duration
	if d <= 0 || d > maxFrameDuration {
		d = defaultFrameDuration
	}
	s.pts += uint64((d*ivfSinkRate + time.Second/2) / time.Second)
	return nil
}

func (s *IVFSink) header() []byte {
	h := make([]byte, ivfFileHeaderLen)
	copy(h[0:4], ivfMagic)
	binary.LittleEndian.PutUint16(h[6:8], ivfFileHeaderLen)
	copy(h[8:12], ivfFourCCVP8)
	binary.LittleEndian.PutUint16(h[12:14], uint16(s.stats.Width))
	binary.LittleEndian.PutUint16(h[14:16], uint16(s.stats.Height))
	binary.LittleEndian.PutUint32(h[16:20], ivfSinkRate)
	binary.LittleEndian.PutUint32(h[20:24], 1)
	return h
}

func (s *IVFSink) writeHeader() error {
	s.started = true
	if _, err := s.w.Write(s.header()); err != nil {
		s.err = fmt.Errorf("media: writing IVF header: %w", err)
		return s.err
	}
	s.stats.Bytes += ivfFileHeaderLen
	return nil
}

// Stats returns what the sink has written so far.
func (s *IVFSink) Stats() IVFSinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close writes the header if no key frame came (an empty but valid file),
// fixes up the length (duration) when the writer can seek, and closes the file
// the sink created. Calling it again returns nil.
func (s *IVFSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.err
	if err == nil && !s.started {
		err = s.writeHeader()
	}
	if ws, ok := s.w.(io.WriteSeeker); ok && err == nil && s.stats.Frames > 0 {
		// A pipe behind an *os.File is a WriteSeeker that cannot seek:
		// leave its count at 0, which players ignore anyway.
		if _, serr := ws.Seek(0, io.SeekCurrent); serr == nil {
			err = s.fixLength(ws)
		}
	}
	if s.c != nil {
		if cerr := s.c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("media: closing IVF file: %w", cerr)
		}
	}
	return err
}

// fixLength writes the duration of the frames written (the end of the
// last one, in 90 kHz ticks; 13 hours fit) into the header's length field.
func (s *IVFSink) fixLength(ws io.WriteSeeker) error {
	if _, err := ws.Seek(24, io.SeekStart); err != nil {
		return fmt.Errorf("media: IVF header length: %w", err)
	}
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(min(s.pts, 1<<32-1)))
	if _, err := ws.Write(n[:]); err != nil {
		return fmt.Errorf("media: IVF header length: %w", err)
	}
	if _, err := ws.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("media: IVF header length: %w", err)
	}
	return nil
}
