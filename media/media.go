// Package media reads and writes the encoded media a duet call carries:
// VP8 video in IVF files and Opus audio in Ogg files.
//
// Readers ([OpenIVF], [OpenOgg], [Open]) turn a file into a sequence of
// [Frame]s: one VP8 frame or one Opus packet each, with its duration. A
// [PacedSource] hands those frames out at real-time pace, looping at the end
// of the file, which is what a WebRTC sender wants to feed
// TrackLocalStaticSample.WriteSample with. Sinks ([IVFSink], [OggSink]) write
// the whole frames a receiver rebuilds from RTP packets (and, in duet,
// after decryption) back into files that ffmpeg can decode.
//
// Two small fixtures made with ffmpeg by scripts/make-fixtures.sh are
// embedded ([Fixtures], [VideoFixture], [AudioFixture]) so that a duet binary
// can send media with no file at hand.
//
// Every reader is bounded (frame, packet and page sizes are capped) and never
// panics on a corrupt or truncated file: it returns an error wrapping one of
// [ErrFormat], [ErrCorrupt] or [ErrTruncated].
package media

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Codec names, the same strings as pion/webrtc's MimeTypeVP8 and MimeTypeOpus.
const (
	CodecVP8  = "video/VP8"
	CodecOpus = "audio/opus"
)

// Errors. Returned errors wrap one of these (test with errors.Is) and say
// where in the file the problem is.
var (
	// ErrFormat: the input is not a file this package reads (wrong magic,
	// unsupported version or codec).
	ErrFormat = errors.New("media: unsupported file format")
	// ErrCorrupt: the file has the right format but its structure is
	// invalid (bad checksum, impossible size, size over a limit).
	ErrCorrupt = errors.New("media: corrupt file")
	// ErrTruncated: the file ends in the middle of a header, frame or packet.
	ErrTruncated = errors.New("media: truncated file")
	// ErrNoFrames: a file holds no media frame at all, so there is nothing
	// to send (a looping source would otherwise spin).
	ErrNoFrames = errors.New("media: file holds no frames")
	// ErrInvalidFrame: a sink was given a frame it cannot write (empty,
	// too large).
	ErrInvalidFrame = errors.New("media: invalid frame")
	// ErrClosed: the source or sink has been closed.
	ErrClosed = errors.New("media: closed")
)

// Limits that keep every reader and writer bounded.
const (
	// MaxFrameSize caps one VP8 frame (read or written). A 1280x720 key
	// frame at 1.5 Mbps is about 60 KB; 4 MiB is far above any real frame.
	MaxFrameSize = 4 << 20
	// MaxPacketSize caps one Ogg packet (Opus audio packets are at most
	// 120 ms * 510 kbit/s = 7.6 KB; OpusTags may be larger).
	MaxPacketSize = 1 << 20
	// maxFrameDuration: durations above this are taken as broken
	// timestamps and replaced with the nominal duration.
	maxFrameDuration = time.Second
)

// Frame is one encoded media frame: a whole VP8 frame or one Opus packet.
type Frame struct {
	// Data is the encoded frame. A reader returns a fresh slice the caller
	// owns (it may encrypt it in place).
	Data []byte
	// Duration is how long the frame plays: the gap to the next frame's
	// timestamp for IVF, the packet's own duration (from its TOC byte) for
	// Opus.
	Duration time.Duration
	// Keyframe is true for a VP8 key frame (always false for audio).
	Keyframe bool
}

// Source yields frames in order. Next returns io.EOF after the last frame
// of a non-looping source. The readers in this package are Sources that
// return frames as fast as they are asked; [PacedSource] paces them.
type Source interface {
	// Codec is CodecVP8 or CodecOpus.
	Codec() string
	// Next returns the next frame.
	Next(ctx context.Context) (Frame, error)
}

// Sink takes received frames: [IVFSink] for VP8, [OggSink] for Opus.
type Sink interface {
	WriteFrame(f Frame) error
	Close() error
}

var (
	_ Sink   = (*IVFSink)(nil)
	_ Sink   = (*OggSink)(nil)
	_ Source = (*IVFReader)(nil)
	_ Source = (*OggReader)(nil)
	_ Source = (*PacedSource)(nil)
)

// Opener opens a fresh Source positioned at the start of its media. A
// [PacedSource] calls it once at creation and again each time it loops. If
// the Source it returns is also an io.Closer, it is closed when done with.
type Opener func() (Source, error)

// Open reads the first bytes of r to tell IVF from Ogg and returns the
// matching reader.
func Open(r io.Reader) (Source, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %d bytes, too short to tell IVF from Ogg", ErrFormat, len(magic))
		}
		return nil, fmt.Errorf("media: reading file magic: %w", err)
	}
	switch string(magic) {
	case ivfMagic:
		return OpenIVF(br)
	case oggMagic:
		return OpenOgg(br)
	}
	return nil, fmt.Errorf("%w: magic %q is neither IVF (DKIF) nor Ogg (OggS)", ErrFormat, magic)
}

// BytesOpener returns an Opener over an in-memory IVF or Ogg file (for
// example [VideoFixture]). The bytes are not copied and must not change.
func BytesOpener(data []byte) Opener {
	return func() (Source, error) { return Open(bytes.NewReader(data)) }
}

// FileOpener returns an Opener that opens the IVF or Ogg file at path each
// time it is called. The Sources it returns close the file when closed.
func FileOpener(path string) Opener {
	return func() (Source, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
		src, err := Open(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &fileSource{Source: src, f: f}, nil
	}
}

// fileSource is a Source that owns the file it reads.
type fileSource struct {
	Source
	f *os.File
}

func (s *fileSource) Close() error { return s.f.Close() }

// Info passes through to the reader.
func (s *fileSource) Info() Info { return InfoOf(s.Source) }

// Info describes the media of a Source.
type Info struct {
	Codec string // CodecVP8 or CodecOpus
	// Width and Height are the IVF header's frame size (0 for audio).
	Width, Height int
	// FPS is the IVF header's time base as a rate (rate/scale), which
	// ffmpeg and libvpx set to the frame rate; 0 for audio and when a tick
	// is under 1 ms (a 90 kHz time base, as IVFSink writes).
	FPS float64
	// Channels is the OpusHead channel count (0 for video).
	Channels int
}

// InfoOf returns src.Info() when src has such a method (the readers in this
// package and PacedSource do), else an Info with only the codec filled in.
func InfoOf(src Source) Info {
	if i, ok := src.(interface{ Info() Info }); ok {
		return i.Info()
	}
	return Info{Codec: src.Codec()}
}

// buffered returns r itself when it is already buffered or in memory (an
// io.ByteReader: bufio.Reader, bytes.Reader, strings.Reader), else r behind
// a bufio.Reader, so that the readers' small header reads do not each cost
// a system call.
func buffered(r io.Reader) io.Reader {
	if _, ok := r.(io.ByteReader); ok {
		return r
	}
	return bufio.NewReaderSize(r, 64<<10)
}

// readFull reads exactly n bytes, growing the buffer only as data arrives,
// so a corrupt size field cannot make it allocate more than the input holds
// (plus one chunk).
func readFull(r io.Reader, n int) ([]byte, error) {
	const chunk = 64 << 10
	if n <= chunk {
		buf := make([]byte, n)
		got, err := io.ReadFull(r, buf)
		return buf[:got], err
	}
	var b bytes.Buffer
	got, err := b.ReadFrom(io.LimitReader(r, int64(n)))
	if err == nil && got < int64(n) {
		err = io.ErrUnexpectedEOF
	}
	return b.Bytes(), err
}
