package call

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// Clock rates and timestamp steps of the test streams.
const (
	vp8Clock  = 90000
	vp8Step   = 3000 // 30 fps
	opusClock = 48000
	opusStep  = 960 // 20 ms
)

// vp8Dur and opusDur are the durations the steps give.
var (
	vp8Dur  = time.Duration(vp8Step) * time.Second / vp8Clock
	opusDur = 20 * time.Millisecond
)

// testFrame is a frame the tests send: its packets and the data its
// depacketized payloads concatenate to.
type testFrame struct {
	pkts []*rtp.Packet
	data []byte
}

// vp8Frames cuts n frames of the given packet counts into VP8 RTP packets
// from sequence number seq: a one-byte payload descriptor (S set on the
// first packet), the marker on the last, a timestamp per frame. Frame i's
// bytes are all byte(i+1) so a wrong concatenation shows.
func vp8Frames(seq uint16, ts uint32, sizes ...int) []testFrame {
	var out []testFrame
	for i, n := range sizes {
		var f testFrame
		for j := range n {
			body := bytes.Repeat([]byte{byte(i + 1)}, 10+j)
			desc := byte(0)
			if j == 0 {
				desc = 0x10
			}
			f.pkts = append(f.pkts, &rtp.Packet{
				Header:  rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: j == n-1},
				Payload: append([]byte{desc}, body...),
			})
			f.data = append(f.data, body...)
			seq++
		}
		ts += vp8Step
		out = append(out, f)
	}
	return out
}

// opusFrames returns n one-packet Opus frames from seq, frame i's payload
// being three bytes of i's low byte.
func opusFrames(seq uint16, ts uint32, n int) []testFrame {
	out := make([]testFrame, n)
	for i := range out {
		b := bytes.Repeat([]byte{byte(i)}, 3)
		out[i] = testFrame{
			pkts: []*rtp.Packet{{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: i == 0}, Payload: b}},
			data: b,
		}
		seq++
		ts += opusStep
	}
	return out
}

// packets flattens frames into their packets, in order.
func packets(frames []testFrame) []*rtp.Packet {
	var out []*rtp.Packet
	for _, f := range frames {
		out = append(out, f.pkts...)
	}
	return out
}

// popped is a frame an assembler emitted, with its data copied.
type popped struct {
	data []byte
	dur  time.Duration
}

// popAll pops every ready frame of a, copying the data, and checks a's
// invariants.
func popAll(t testing.TB, a *frameAssembler) []popped {
	t.Helper()
	var out []popped
	for f, ok := a.Pop(); ok; f, ok = a.Pop() {
		out = append(out, popped{bytes.Clone(f.Data), f.Duration})
	}
	checkAssembler(t, a)
	return out
}

// pushAll pushes pkts into a and returns the frames popped after each push.
func pushAll(t testing.TB, a *frameAssembler, pkts []*rtp.Packet) []popped {
	t.Helper()
	var out []popped
	for _, p := range pkts {
		a.Push(p)
		out = append(out, popAll(t, a)...)
	}
	return out
}

// checkAssembler fails if a's window is wider than maxLate or its ring
// holds a packet outside the window or in the wrong slot.
func checkAssembler(t testing.TB, a *frameAssembler) {
	t.Helper()
	if w := a.tail - a.head; w > a.maxLate {
		t.Fatalf("window [%d, %d) holds %d > maxLate %d", a.head, a.tail, w, a.maxLate)
	}
	for i, p := range a.ring {
		if p == nil {
			continue
		}
		if s := p.SequenceNumber; s-a.head >= a.tail-a.head || s&a.mask != uint16(i) {
			t.Fatalf("slot %d holds packet %d, window [%d, %d)", i, s, a.head, a.tail)
		}
	}
	if a.pending != nil {
		t.Fatalf("packet %d still pending after Pop returned nothing", a.pending.SequenceNumber)
	}
}

// wantFrames fails unless got are the data of want, in order, each with
// duration dur except the ones in short (index to duration).
func wantFrames(t *testing.T, got []popped, want []testFrame, dur time.Duration, short map[int]time.Duration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("frame %d: data %x, want %x", i, got[i].data, want[i].data)
		}
		d := dur
		if s, ok := short[i]; ok {
			d = s
		}
		if got[i].dur != d {
			t.Errorf("frame %d: duration %v, want %v", i, got[i].dur, d)
		}
	}
}

func TestFrameAssemblerAudioInOrder(t *testing.T) {
	frames := opusFrames(1000, 5, 50)
	a := newFrameAssembler(maxLateAudio, &codecs.OpusPacket{}, opusClock)
	for i, f := range frames {
		a.Push(f.pkts[0])
		got := popAll(t, a)
		if i == 0 {
			if len(got) != 0 {
				t.Fatalf("first packet: %d frames out before the next packet is in", len(got))
			}
			continue
		}
		// Each packet completes the previous frame, and only it.
		wantFrames(t, got, frames[i-1:i], opusDur, nil)
	}
	if c := a.counters(); c.Frames != 49 || c.Dropped+c.Lost+c.Late+c.Duplicates != 0 {
		t.Errorf("counters %+v, want 49 frames and nothing else", c)
	}
}

func TestFrameAssemblerVP8InOrder(t *testing.T) {
	frames := vp8Frames(7, 90000, 1, 3, 5, 2, 50, 1, 4)
	a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	var got []popped
	for _, f := range frames {
		for j, p := range f.pkts {
			a.Push(p)
			out := popAll(t, a)
			// The previous frame comes out with this frame's first
			// packet, never in the middle of a frame.
			if j > 0 && len(out) != 0 {
				t.Fatalf("a frame came out at packet %d of a frame", j)
			}
			got = append(got, out...)
		}
	}
	wantFrames(t, got, frames[:len(frames)-1], vp8Dur, nil)
}

// Flush, when the track ends, hands out the last complete frame (timed like
// the one before it: no packet follows it) and drops an incomplete one.
func TestFrameAssemblerFlush(t *testing.T) {
	flush := func(a *frameAssembler) []popped {
		var out []popped
		for f, ok := a.Flush(); ok; f, ok = a.Flush() {
			out = append(out, popped{bytes.Clone(f.Data), f.Duration})
		}
		return out
	}
	frames := vp8Frames(7, 90000, 2, 3, 2)
	a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	got := pushAll(t, a, packets(frames))
	wantFrames(t, got, frames[:2], vp8Dur, nil)
	wantFrames(t, append(got, flush(a)...), frames, vp8Dur, nil)
	if c := a.counters(); c.Frames != 3 || c.Dropped != 0 {
		t.Errorf("counters %+v, want 3 frames, none dropped", c)
	}

	// The last frame lacks its last packet.
	pkts := packets(frames)
	a = newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	got = pushAll(t, a, pkts[:len(pkts)-1])
	wantFrames(t, append(got, flush(a)...), frames[:2], vp8Dur, nil)
	if c := a.counters(); c.Frames != 2 || c.Dropped != 1 {
		t.Errorf("counters %+v, want 2 frames and the incomplete one dropped", c)
	}
}

// A VP8 frame without a marker ends at the packet with the next timestamp.
func TestFrameAssemblerTimestampChangeEndsFrame(t *testing.T) {
	frames := vp8Frames(100, 0, 3, 2, 2)
	frames[0].pkts[2].Marker = false
	got := pushAll(t, newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock), packets(frames))
	wantFrames(t, got, frames[:2], vp8Dur, nil)
}

func TestFrameAssemblerReorder(t *testing.T) {
	frames := vp8Frames(65000, 1, 3, 1, 7, 2, 2, 9, 1, 1, 4, 6, 3)
	pkts := packets(frames)
	// Swap packets up to 5 apart: every packet arrives, but not in order.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		i := rng.IntN(len(pkts) - 5)
		j := i + 1 + rng.IntN(5)
		pkts[i], pkts[j] = pkts[j], pkts[i]
	}
	a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	got := pushAll(t, a, pkts)
	wantFrames(t, got, frames[:len(frames)-1], vp8Dur, nil)
	if c := a.counters(); c.Dropped+c.Lost+c.Late+c.Duplicates != 0 {
		t.Errorf("counters %+v, want nothing dropped", c)
	}
}

// The first packet of the first frame arriving after the second one still
// makes the first frame.
func TestFrameAssemblerFirstPacketReordered(t *testing.T) {
	frames := vp8Frames(10, 0, 3, 2, 1)
	pkts := packets(frames)
	pkts[0], pkts[1] = pkts[1], pkts[0]
	got := pushAll(t, newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock), pkts)
	wantFrames(t, got, frames[:2], vp8Dur, nil)
}

// A lost packet holds back the frames behind it until maxLate newer
// packets are in; then its frame is dropped and the others come out.
func TestFrameAssemblerLostPacket(t *testing.T) {
	t.Run("video", func(t *testing.T) {
		const maxLate = 16
		frames := vp8Frames(65530, 0, 2, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		lost := frames[1].pkts[1] // the middle packet of frame 1
		a := newFrameAssembler(maxLate, &codecs.VP8Packet{}, vp8Clock)
		var got []popped
		for _, p := range packets(frames) {
			if p == lost {
				continue
			}
			a.Push(p)
			out := popAll(t, a)
			if len(out) != 0 && p.SequenceNumber-lost.SequenceNumber < maxLate {
				t.Fatalf("frames came out at %d, fewer than %d packets after the lost %d", p.SequenceNumber, maxLate, lost.SequenceNumber)
			}
			got = append(got, out...)
		}
		want := append(frames[:1:1], frames[2:len(frames)-1]...)
		wantFrames(t, got, want, vp8Dur, nil)
		// The runs either side of the hole are dropped.
		if c := a.counters(); c.Lost != 1 || c.Dropped != 2 {
			t.Errorf("counters %+v, want 1 lost, 2 dropped", c)
		}
	})
	t.Run("audio", func(t *testing.T) {
		frames := opusFrames(40, 0, 80)
		const k = 10 // lost
		a := newFrameAssembler(maxLateAudio, &codecs.OpusPacket{}, opusClock)
		var got []popped
		for i, f := range frames {
			if i == k {
				continue
			}
			a.Push(f.pkts[0])
			out := popAll(t, a)
			switch {
			case i < k:
				wantFrames(t, out, frames[i-min(i, 1):i], opusDur, nil)
			case i < k+maxLateAudio-1:
				wantFrames(t, out, nil, opusDur, nil)
			case i == k+maxLateAudio-1:
				// The window moves past frame k-1: out without k,
				// its duration up to frame k+1.
				wantFrames(t, out, frames[k-1:k], 2*opusDur, nil)
			case i == k+maxLateAudio:
				// maxLate packets after k: k is skipped.
				wantFrames(t, out, frames[k+1:i], opusDur, nil)
			default:
				wantFrames(t, out, frames[i-1:i], opusDur, nil)
			}
			got = append(got, out...)
		}
		if len(got) != len(frames)-2 {
			t.Errorf("%d frames out, want %d", len(got), len(frames)-2)
		}
		if c := a.counters(); c.Lost != 1 || c.Dropped != 0 {
			t.Errorf("counters %+v, want 1 lost, 0 dropped", c)
		}
	})
}

func TestFrameAssemblerSequenceWrap(t *testing.T) {
	for _, start := range []uint16{65535 - 20, 65535 - 3, 65535} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			frames := vp8Frames(start, 4294967295-vp8Step, 4, 5, 3, 6, 2, 1)
			pkts := packets(frames)
			// Reorder around the wrap too.
			for i := 0; i+2 < len(pkts); i += 3 {
				pkts[i], pkts[i+2] = pkts[i+2], pkts[i]
			}
			got := pushAll(t, newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock), pkts)
			wantFrames(t, got, frames[:len(frames)-1], vp8Dur, nil)
		})
	}
}

func TestFrameAssemblerDuplicates(t *testing.T) {
	frames := vp8Frames(300, 0, 3, 2, 4, 1)
	a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	var got []popped
	var prev *rtp.Packet
	for _, p := range packets(frames) {
		// Each packet twice, and the previous one again (by then it may
		// have gone out with its frame).
		for _, q := range []*rtp.Packet{p, p, prev} {
			if q != nil {
				a.Push(q)
				got = append(got, popAll(t, a)...)
			}
		}
		prev = p
	}
	wantFrames(t, got, frames[:len(frames)-1], vp8Dur, nil)
	if c := a.counters(); c.Duplicates == 0 || c.Duplicates+c.Late != 2*uint64(len(packets(frames)))-1 {
		t.Errorf("counters %+v: want every second copy counted duplicate or late", c)
	}
}

func TestFrameAssemblerLatePacket(t *testing.T) {
	frames := vp8Frames(1000, 0, 2, 2, 2, 2)
	a := newFrameAssembler(8, &codecs.VP8Packet{}, vp8Clock)
	got := pushAll(t, a, packets(frames[:2]))
	// Frame 0 is out; its packets and one far behind are late now.
	for _, seq := range []uint16{1000, 1001, 999, 64536 /* 1000-2000 */} {
		p := *frames[0].pkts[0]
		p.SequenceNumber = seq
		a.Push(&p)
		if out := popAll(t, a); len(out) != 0 {
			t.Fatalf("late packet %d: %d frames out", seq, len(out))
		}
	}
	got = append(got, pushAll(t, a, packets(frames[2:]))...)
	wantFrames(t, got, frames[:3], vp8Dur, nil)
	if c := a.counters(); c.Late != 4 {
		t.Errorf("counters %+v, want 4 late", c)
	}
}

// A run of packets that does not start with a partition head (the stream
// joined mid-frame, or the head was lost) is dropped; the frames after it
// come out, in the same Pop loop.
func TestFrameAssemblerNoPartitionHead(t *testing.T) {
	frames := vp8Frames(500, 0, 3, 2, 3, 1)
	frames[0].pkts[0].Payload[0] = 0 // clear S
	frames[2].pkts[0].Payload[0] = 0
	a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	// Frame 0's middle packet comes last but one: frame 0 completes,
	// is dropped, and frame 1 (whose next packet is in) comes out with it.
	pkts := packets(frames)
	mid := pkts[1]
	pkts = append(append(append([]*rtp.Packet{pkts[0]}, pkts[2:6]...), mid), pkts[6:]...)
	if got := pushAll(t, a, pkts[:5]); len(got) != 0 {
		t.Fatalf("%d frames out behind the missing packet", len(got))
	}
	a.Push(mid)
	wantFrames(t, popAll(t, a), frames[1:2], vp8Dur, nil)
	if got := pushAll(t, a, pkts[6:]); len(got) != 0 {
		t.Fatalf("%d frames out of frame 2 (no head) and 3 (last)", len(got))
	}
	if c := a.counters(); c.Dropped != 2 || c.Frames != 1 {
		t.Errorf("counters %+v, want 2 dropped, 1 frame", c)
	}
	// A stream that starts mid-frame: the first frame's head never came.
	b := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
	frames = vp8Frames(500, 0, 3, 2, 2)
	got := pushAll(t, b, packets(frames)[1:])
	wantFrames(t, got, frames[1:2], vp8Dur, nil)
}

// A payload the depacketizer refuses drops its frame.
func TestFrameAssemblerUndepacketizable(t *testing.T) {
	frames := opusFrames(0, 0, 4)
	frames[1].pkts[0].Payload = []byte{}
	got := pushAll(t, newFrameAssembler(maxLateAudio, &codecs.OpusPacket{}, opusClock), packets(frames))
	wantFrames(t, got, []testFrame{frames[0], frames[2]}, opusDur, nil)
}

// A sequence number far from the window (a sender restarting its
// numbering) flushes the window and restarts it there.
func TestFrameAssemblerJump(t *testing.T) {
	for _, jump := range []uint16{5000, 65535 - 20000} {
		t.Run(fmt.Sprint(jump), func(t *testing.T) {
			first := vp8Frames(100, 0, 2, 3, 2)
			second := vp8Frames(100+jump, 50*vp8Step, 2, 2, 1)
			a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
			got := pushAll(t, a, packets(first))
			got = append(got, pushAll(t, a, packets(second))...)
			// The last frame of the first run is flushed, its duration
			// up to the second run's timestamp.
			want := append(first[:3:3], second[:2]...)
			wantFrames(t, got, want, vp8Dur, map[int]time.Duration{2: 48 * vp8Step * time.Second / vp8Clock})
		})
	}
}

// A Push after one that had to move the window, with no Pop between, moves
// it and drops the frames that came out; the frames after come out as usual.
func TestFrameAssemblerPushWithoutPop(t *testing.T) {
	frames := opusFrames(0, 0, 12)
	a := newFrameAssembler(4, &codecs.OpusPacket{}, opusClock)
	a.Push(nil)
	for _, i := range []int{0, 1, 10, 11} { // 10 moves the window past 0 and 1
		a.Push(frames[i].pkts[0])
	}
	wantFrames(t, popAll(t, a), frames[10:11], opusDur, nil)
	if c := a.counters(); c.Frames != 1 || c.Dropped != 2 || c.Lost != 8 {
		t.Errorf("counters %+v, want 1 frame, 2 dropped, 8 lost", c)
	}
}

// In order, and reordered within the window without loss, the assembler
// emits what pion's sample builder does (durations to the nanosecond: pion
// computes them in floating point).
func TestFrameAssemblerMatchesSampleBuilder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for run := range 20 {
		sizes := make([]int, 60)
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(12)
		}
		start := uint16(rng.Uint32())
		pkts := packets(vp8Frames(start, rng.Uint32(), sizes...))
		if run%2 == 1 {
			for range 100 {
				i := rng.IntN(len(pkts) - 8)
				j := i + 1 + rng.IntN(8)
				pkts[i], pkts[j] = pkts[j], pkts[i]
			}
		}
		sb := samplebuilder.New(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
		a := newFrameAssembler(maxLateVideo, &codecs.VP8Packet{}, vp8Clock)
		var want []popped
		for _, p := range pkts {
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				want = append(want, popped{s.Data, s.Duration})
			}
		}
		got := pushAll(t, a, pkts)
		if len(got) != len(want) {
			t.Fatalf("run %d: %d frames, sample builder %d", run, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i].data, want[i].data) || (got[i].dur-want[i].dur).Abs() > time.Nanosecond {
				t.Fatalf("run %d frame %d: %d bytes %v, sample builder %d bytes %v",
					run, i, len(got[i].data), got[i].dur, len(want[i].data), want[i].dur)
			}
		}
	}
}

// maxFuzzPackets bounds the packets of one fuzz input: enough to move a
// window of up to 63 packets many times, short enough to keep the fuzzer's
// minimization (quadratic in the input's length) quick.
const maxFuzzPackets = 100

// FuzzFrameAssembler pushes packets made from the input: a 3-byte header
// (first sequence number; VP8 if bit 7 of the third byte is set, else Opus,
// and maxLate in its low 6 bits), then 4 bytes a packet: sequence step
// (int8), timestamp step (int8, in 1000s), flags (bit 0 marker, bit 1 VP8
// start of partition, bits 2-7 payload length) and the payload's bytes.
// The assembler must not panic, must keep its invariants, and must never
// emit more bytes than were pushed.
func FuzzFrameAssembler(f *testing.F) {
	f.Add([]byte{0, 0, 3, 1, 1, 0x0b, 1, 1, 1, 0x09, 2, 2, 1, 0x0d, 3})
	f.Add([]byte{0xff, 0xfe, 0x88, 1, 0, 0x12, 0, 1, 0, 0x10, 0, 1, 3, 0x11, 0, 0xfe, 0, 0x10, 0, 5, 3, 0x0b, 0x80})
	f.Add(append([]byte{0x12, 0x34, 0x90}, bytes.Repeat([]byte{1, 1, 0x23, 0x10}, 60)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 3 {
			return
		}
		var dep rtp.Depacketizer = &codecs.OpusPacket{}
		clock := uint32(opusClock)
		if in[2]&0x80 != 0 {
			dep, clock = &codecs.VP8Packet{}, vp8Clock
		}
		a := newFrameAssembler(uint16(in[2]&0x3f), dep, clock)
		seq, ts := uint16(in[0])<<8|uint16(in[1]), uint32(0)
		in = in[3:min(len(in), 3+4*maxFuzzPackets)]
		pushed, emitted, npkts := 0, 0, 0
		for ; len(in) >= 4; in = in[4:] {
			seq += uint16(int8(in[0]))
			ts += uint32(int32(int8(in[1])) * 1000)
			payload := bytes.Repeat(in[3:4], int(in[2]>>2))
			if len(payload) > 0 {
				payload[0] = payload[0]&^0x10 | in[2]&2<<3 // S from the flags
			}
			pushed += len(payload)
			npkts++
			a.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: in[2]&1 != 0}, Payload: payload})
			for fr, ok := a.Pop(); ok; fr, ok = a.Pop() {
				emitted += len(fr.Data)
				if fr.Duration < 0 || fr.Duration > time.Duration(1<<31)*time.Second/time.Duration(clock) {
					t.Fatalf("duration %v", fr.Duration)
				}
			}
			checkAssembler(t, a)
			if emitted > pushed {
				t.Fatalf("emitted %d bytes, pushed %d", emitted, pushed)
			}
		}
		for fr, ok := a.Flush(); ok; fr, ok = a.Flush() {
			emitted += len(fr.Data)
		}
		if emitted > pushed || a.head != a.tail {
			t.Fatalf("after Flush: emitted %d bytes of %d pushed, window [%d, %d) not empty", emitted, pushed, a.head, a.tail)
		}
		if c := a.counters(); c.Frames+c.Dropped > uint64(npkts) {
			t.Fatalf("%d frames and %d dropped runs from %d packets", c.Frames, c.Dropped, npkts)
		}
	})
}
