package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Ogg page layout (RFC 3533 section 6), little-endian:
//
//	 0  4  "OggS"
//	 4  1  version, 0
//	 5  1  flags: 0x01 continues a packet, 0x02 first page (BOS), 0x04 last (EOS)
//	 6  8  granule position: for Opus, 48 kHz samples up to the end of the
//	       last packet completed on this page, pre-skip included (RFC 7845)
//	14  4  stream serial number
//	18  4  page sequence number
//	22  4  CRC-32 (poly 0x04c11db7, not reflected, init 0) of the page with
//	       this field zeroed
//	26  1  number of segments n
//	27  n  lacing values: a packet is the concatenation of segments up to and
//	       including the first one shorter than 255 bytes
//	       then the segments
//
// An Ogg Opus stream (RFC 7845) starts with an OpusHead packet on a page of
// its own, then OpusTags, then one Opus packet per audio packet.
const (
	oggMagic         = "OggS"
	oggPageHeaderLen = 27
	oggFlagContinued = 0x01
	oggFlagBOS       = 0x02
	oggFlagEOS       = 0x04
	// oggMaxPagePacket is the largest packet that fits one page: 255
	// lacing values, 254 of 255 bytes and a last one of at most 254.
	oggMaxPagePacket = 255*255 - 1
	// OggPreSkip is the pre-skip OggSink writes in OpusHead: libopus's
	// encoder delay at 48 kHz (6.5 ms), what Chromium's and ffmpeg's Opus
	// encoders put first.
	OggPreSkip = 312
	// defaultOpusDuration is used for a packet whose TOC byte is malformed.
	defaultOpusDuration = 20 * time.Millisecond
)

var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

func oggCRC(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^b]
	}
	return crc
}

// OggReader reads Opus packets from an Ogg Opus file. It is a [Source] that
// returns packets as fast as they are asked for; wrap it in a [PacedSource]
// to send them in real time. Only the first logical stream is read (pages of
// other serial numbers are skipped). It is not safe for concurrent use.
type OggReader struct {
	r        io.Reader
	skipCRC  bool // for fuzzing only
	serial   uint32
	page     int   // index of the next page
	offset   int64 // file offset of the next page
	queue    [][]byte
	partial  []byte
	inPacket bool // partial holds the start of an unfinished packet
	eos      bool

	channels  int
	preSkip   int
	inputRate int
}

// OpenOgg reads the Ogg Opus headers (OpusHead, OpusTags) from r and returns
// a reader positioned at the first audio packet. Anything but Opus is
// rejected with ErrFormat. r is read sequentially and never seeked; an
// unbuffered r is read through a bufio.Reader.
func OpenOgg(r io.Reader) (*OggReader, error) { return openOgg(r, false) }

func openOgg(r io.Reader, skipCRC bool) (*OggReader, error) {
	o := &OggReader{r: buffered(r), skipCRC: skipCRC}
	head, err := o.nextPacket()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: ogg: no OpusHead packet", ErrTruncated)
		}
		return nil, err
	}
	if len(head) < 8 || string(head[:8]) != "OpusHead" {
		return nil, fmt.Errorf("%w: ogg: first packet is not OpusHead (only Opus is supported)", ErrFormat)
	}
	if len(head) < 19 {
		return nil, fmt.Errorf("%w: ogg: OpusHead of %d bytes, want at least 19", ErrCorrupt, len(head))
	}
	if head[8]>>4 != 0 {
		return nil, fmt.Errorf("%w: ogg: OpusHead version %d, only 0.x is known", ErrFormat, head[8])
	}
	o.channels = int(head[9])
	o.preSkip = int(binary.LittleEndian.Uint16(head[10:12]))
	o.inputRate = int(binary.LittleEndian.Uint32(head[12:16]))
	if o.channels == 0 {
		return nil, fmt.Errorf("%w: ogg: OpusHead with 0 channels", ErrCorrupt)
	}
	tags, err := o.nextPacket()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: ogg: no OpusTags packet", ErrTruncated)
		}
		return nil, err
	}
	if len(tags) < 8 || string(tags[:8]) != "OpusTags" {
		return nil, fmt.Errorf("%w: ogg: second packet is not OpusTags", ErrCorrupt)
	}
	return o, nil
}

// Codec returns CodecOpus.
func (o *OggReader) Codec() string { return CodecOpus }

// Info returns the codec and the OpusHead channel count.
func (o *OggReader) Info() Info { return Info{Codec: CodecOpus, Channels: o.channels} }

// Channels returns the OpusHead channel count.
func (o *OggReader) Channels() int { return o.channels }

// PreSkip returns the OpusHead pre-skip, in 48 kHz samples.
func (o *OggReader) PreSkip() int { return o.preSkip }

// Next returns the next Opus packet, io.EOF after the last one, or an error
// wrapping ErrTruncated or ErrCorrupt. Its duration comes from the packet's
// TOC byte (RFC 6716 section 3.1), 20 ms if that is malformed. Empty packets
// are skipped.
func (o *OggReader) Next(ctx context.Context) (Frame, error) {
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	for {
		p, err := o.nextPacket()
		if err != nil {
			return Frame{}, err
		}
		if len(p) == 0 {
			continue
		}
		d := defaultOpusDuration
		if n, ok := opusPacketSamples(p); ok {
			d = samplesToDuration(int64(n))
		}
		return Frame{Data: p, Duration: d}, nil
	}
}

// nextPacket returns the next complete packet of the stream.
func (o *OggReader) nextPacket() ([]byte, error) {
	for len(o.queue) == 0 {
		if o.eos {
			return nil, io.EOF
		}
		if err := o.readPage(); err != nil {
			if errors.Is(err, io.EOF) && o.inPacket {
				return nil, fmt.Errorf("%w: ogg: stream ends inside a packet (%d bytes so far)", ErrTruncated, len(o.partial))
			}
			return nil, err
		}
	}
	p := o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	return p, nil
}

// readPage reads one page and queues the packets it completes.
func (o *OggReader) readPage() error {
	var h [oggPageHeaderLen + 255]byte
	n, err := io.ReadFull(o.r, h[:oggPageHeaderLen])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			if o.page == 0 {
				return fmt.Errorf("%w: ogg: empty file", ErrTruncated)
			}
			return io.EOF
		}
		return o.readErr(err, fmt.Sprintf("header: %d of %d bytes", n, oggPageHeaderLen))
	}
	if string(h[:4]) != oggMagic {
		if o.page == 0 {
			return fmt.Errorf("%w: ogg: magic %q, want %q", ErrFormat, h[:4], oggMagic)
		}
		return o.corrupt("capture pattern %q, want %q", h[:4], oggMagic)
	}
	if h[4] != 0 {
		return o.corrupt("version %d, want 0", h[4])
	}
	flags := h[5]
	serial := binary.LittleEndian.Uint32(h[14:18])
	nseg := int(h[26])
	if n, err := io.ReadFull(o.r, h[oggPageHeaderLen:oggPageHeaderLen+nseg]); err != nil {
		return o.readErr(err, fmt.Sprintf("segment table: %d of %d bytes", n, nseg))
	}
	lacing := h[oggPageHeaderLen : oggPageHeaderLen+nseg]
	size := 0
	for _, l := range lacing {
		size += int(l)
	}
	body := make([]byte, size) // at most 255*255 bytes
	if n, err := io.ReadFull(o.r, body); err != nil {
		return o.readErr(err, fmt.Sprintf("body: %d of %d bytes", n, size))
	}
	if !o.skipCRC {
		want := binary.LittleEndian.Uint32(h[22:26])
		clear(h[22:26])
		got := oggCRC(oggCRC(0, h[:oggPageHeaderLen+nseg]), body)
		if got != want {
			return o.corrupt("checksum %08x, page says %08x", got, want)
		}
	}
	first := o.page == 0
	o.page++
	o.offset += int64(oggPageHeaderLen + nseg + size)
	if first {
		if flags&oggFlagBOS == 0 {
			return fmt.Errorf("%w: ogg: first page is not a beginning-of-stream page", ErrCorrupt)
		}
		o.serial = serial
	} else if serial != o.serial {
		return nil // another logical stream: not ours
	}

	continued := flags&oggFlagContinued != 0
	skipping := continued && !o.inPacket // tail of a packet we never saw start
	if o.inPacket && !continued {
		return o.corrupt("page does not continue the unfinished packet before it")
	}
	pos := 0
	for _, l := range lacing {
		seg := body[pos : pos+int(l)]
		pos += int(l)
		if skipping {
			if l < 255 {
				skipping = false
			}
			continue
		}
		if len(o.partial)+len(seg) > MaxPacketSize {
			return o.corrupt("packet over the %d byte limit", MaxPacketSize)
		}
		o.partial = append(o.partial, seg...)
		o.inPacket = true
		if l < 255 {
			o.queue = append(o.queue, o.partial)
			o.partial = nil
			o.inPacket = false
		}
	}
	if flags&oggFlagEOS != 0 {
		o.eos = true
	}
	return nil
}

func (o *OggReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: ogg: page %d at offset %d: %s", ErrCorrupt, o.page, o.offset, fmt.Sprintf(format, args...))
}

func (o *OggReader) readErr(err error, what string) error {
	what = fmt.Sprintf("ogg: page %d at offset %d: %s", o.page, o.offset, what)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s", ErrTruncated, what)
	}
	return fmt.Errorf("media: %s: %w", what, err)
}

// OggSink writes received Opus packets to an Ogg Opus file (RFC 7845):
// OpusHead (channel count from the first packet's TOC stereo flag, pre-skip
// OggPreSkip), OpusTags, then one packet per page with the granule position
// counting 48 kHz samples from each packet's TOC. The newest packet is held
// back until the next one arrives or Close, so that the last page carries
// the end-of-stream flag. OggSink is safe for concurrent use.
type OggSink struct {
	mu      sync.Mutex
	w       io.Writer
	c       io.Closer
	serial  uint32
	seq     uint32
	granule uint64
	started bool
	closed  bool
	err     error
	held    []byte // newest packet, not yet written
	heldN   int    // samples in held; 0 when nothing is held
	stats   OggSinkStats
	buf     []byte
}

// OggSinkStats counts what an OggSink did.
type OggSinkStats struct {
	Packets  int // packets accepted
	Bytes    int64
	Duration time.Duration // sum of the packets' durations
}

// NewOggSink returns a sink writing to w. Nothing is written before the
// first packet (or Close).
func NewOggSink(w io.Writer) *OggSink {
	return &OggSink{w: w, serial: rand.Uint32()}
}

// CreateOgg creates (or truncates) the file at path and returns a sink
// writing to it; Close closes the file.
func CreateOgg(path string) (*OggSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	s := NewOggSink(f)
	s.c = f
	return s, nil
}

// WriteFrame appends one Opus packet. Its duration comes from its TOC byte;
// f.Duration is not used. It returns an error wrapping ErrInvalidFrame for
// an empty, malformed (bad TOC) or oversized packet, ErrClosed after Close,
// and the writer's error if a write failed.
func (s *OggSink) WriteFrame(f Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.err != nil:
		return s.err
	case len(f.Data) == 0:
		return fmt.Errorf("%w: empty Opus packet", ErrInvalidFrame)
	case len(f.Data) > oggMaxPagePacket:
		return fmt.Errorf("%w: Opus packet of %d bytes over the %d byte limit", ErrInvalidFrame, len(f.Data), oggMaxPagePacket)
	}
	n, ok := opusPacketSamples(f.Data)
	if !ok {
		return fmt.Errorf("%w: malformed Opus packet (TOC %#02x, %d bytes)", ErrInvalidFrame, f.Data[0], len(f.Data))
	}
	if !s.started {
		ch := 1
		if opusStereo(f.Data) {
			ch = 2
		}
		if err := s.writeHeaders(ch, false); err != nil {
			return err
		}
	}
	if s.heldN > 0 {
		if err := s.flushHeld(0); err != nil {
			return err
		}
	}
	s.held = append(s.held[:0], f.Data...)
	s.heldN = n
	s.stats.Packets++
	s.stats.Duration += samplesToDuration(int64(n))
	return nil
}

func (s *OggSink) flushHeld(flags byte) error {
	s.granule += uint64(s.heldN)
	s.heldN = 0
	return s.writePage(flags, s.granule, s.held)
}

// writeHeaders writes the OpusHead and OpusTags pages; eos marks the tags
// page as the last (a stream with no audio).
func (s *OggSink) writeHeaders(channels int, eos bool) error {
	s.started = true
	head := make([]byte, 19)
	copy(head, "OpusHead")
	head[8] = 1 // version
	head[9] = byte(channels)
	binary.LittleEndian.PutUint16(head[10:12], OggPreSkip)
	binary.LittleEndian.PutUint32(head[12:16], opusSampleRate)
	// output gain 0, channel mapping family 0 (mono or stereo)
	if err := s.writePage(oggFlagBOS, 0, head); err != nil {
		return err
	}
	const vendor = "duet"
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, uint32(len(vendor)))
	tags = append(tags, vendor...)
	tags = binary.LittleEndian.AppendUint32(tags, 0) // no comments
	var flags byte
	if eos {
		flags = oggFlagEOS
	}
	return s.writePage(flags, 0, tags)
}

// writePage writes one page holding exactly one packet (len(p) is at most
// oggMaxPagePacket).
func (s *OggSink) writePage(flags byte, granule uint64, p []byte) error {
	nseg := len(p)/255 + 1
	b := append(s.buf[:0], oggMagic...)
	b = append(b, 0, flags)
	b = binary.LittleEndian.AppendUint64(b, granule)
	b = binary.LittleEndian.AppendUint32(b, s.serial)
	b = binary.LittleEndian.AppendUint32(b, s.seq)
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC, filled in below
	b = append(b, byte(nseg))
	for range nseg - 1 {
		b = append(b, 255)
	}
	b = append(b, byte(len(p)%255))
	b = append(b, p...)
	binary.LittleEndian.PutUint32(b[22:26], oggCRC(0, b))
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		s.err = fmt.Errorf("media: writing Ogg page %d: %w", s.seq, err)
		return s.err
	}
	s.seq++
	s.stats.Bytes += int64(len(b))
	return nil
}

// Stats returns what the sink has accepted so far.
func (s *OggSink) Stats() OggSinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close writes the held-back packet on an end-of-stream page (or, if no
// packet came, the headers alone, with a stereo OpusHead) and closes the
// file the sink created. Calling it again returns nil.
func (s *OggSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.err
	if err == nil {
		if !s.started {
			err = s.writeHeaders(2, true)
		} else if s.heldN > 0 {
			err = s.flushHeld(oggFlagEOS)
		}
	}
	if s.c != nil {
		if cerr := s.c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("media: closing Ogg file: %w", cerr)
		}
	}
	return err
}
