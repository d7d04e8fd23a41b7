package call

import (
	"time"

	"github.com/pion/rtp"
)

// lateHorizon is how far behind the receive window, in sequence numbers, a
// packet still counts as late (and is ignored). A packet further behind is
// taken as the stream jumping to a new sequence number: the window is
// flushed and restarts there, so a sender that restarts its numbering is
// followed instead of being ignored forever.
const lateHorizon = 1 << 13

// maxAssemblerLate bounds a frameAssembler's window (and so its ring).
const maxAssemblerLate = 1 << 12

// assembledFrame is one frame rebuilt from RTP: the depacketized payloads of
// its packets, concatenated, and how long it plays.
type assembledFrame struct {
	// Data is the frame; it is the assembler's buffer, valid until the
	// next Push or Pop.
	Data []byte
	// Duration is the RTP timestamp gap to the next packet in (the next
	// frame's first, or the one that pushed the window past this frame)
	// over the clock rate; zero when there is none or its timestamp is not
	// later.
	Duration time.Duration
}

// assemblerStats counts what a frameAssembler emitted and gave up on.
type assemblerStats struct {
	Frames     uint64 // frames emitted
	Dropped    uint64 // runs dropped: no partition head, never completed, not depacketizable, or not popped (a hole splits a frame in two runs)
	Lost       uint64 // sequence numbers skipped without their packet arriving
	Late       uint64 // packets older than the window, ignored
	Duplicates uint64 // packets already held, ignored
}

// frameAssembler rebuilds the frames of one RTP track, in the manner of
// pion's samplebuilder.SampleBuilder but with a ring sized to the window
// instead of two 65536-entry arrays.
//
// A frame is a run of consecutive packets from a partition head up to a
// partition tail or up to the packet before a timestamp change. Packets are
// reordered within a window of maxLate sequence numbers: a missing packet
// is waited for until the window moves past it (a packet maxLate newer
// arrives), then skipped, and the frame it belonged to is dropped. A
// complete frame is emitted once the packet after it is in (which gives its
// duration) or once the window moves past it. Late and duplicate packets
// are ignored. A frameAssembler is not safe for concurrent use.
type frameAssembler struct {
	dep       rtp.Depacketizer
	clockRate uint32
	maxLate   uint16
	mask      uint16
	ring      []*rtp.Packet // ring[seq&mask] holds packet seq for seq in [head, tail), nil elsewhere

	started bool   // a packet was pushed
	moved   bool   // head advanced past a consumed or skipped sequence number
	head    uint16 // oldest sequence number held or awaited
	tail    uint16 // one past the newest sequence number held; tail-head <= maxLate

	// pending is a pushed packet that did not fit the window; Pop moves
	// the window forward (emitting or dropping what it passes) until it
	// fits.
	pending *rtp.Packet

	buf     []byte        // Data of the last frame popped
	lastDur time.Duration // the last non-zero Duration emitted
	stats   assemblerStats
}

// newFrameAssembler returns an assembler for a track whose payloads dep
// depacketizes, with a window of maxLate packets (clamped to
// [1, maxAssemblerLate]) and the codec's RTP clock rate.
func newFrameAssembler(maxLate uint16, dep rtp.Depacketizer, clockRate uint32) *frameAssembler {
	maxLate = min(max(maxLate, 1), maxAssemblerLate)
	size := 1
	for size <= int(maxLate) {
		size <<= 1
	}
	return &frameAssembler{
		dep:       dep,
		clockRate: clockRate,
		maxLate:   maxLate,
		mask:      uint16(size - 1),
		ring:      make([]*rtp.Packet, size),
	}
}

// Push adds a packet; a nil one is ignored. It keeps pkt (not a copy) until
// its frame is popped or dropped. Call Pop until it returns nothing after
// each Push: if the previous packet had to move the window and no Pop did
// so, Push moves it and drops the frames that come out.
func (a *frameAssembler) Push(pkt *rtp.Packet) {
	if pkt == nil {
		return
	}
	for a.pending != nil {
		if _, ok := a.Pop(); ok { // never handed out: not emitted
			a.stats.Frames--
			a.stats.Dropped++
		}
	}
	seq := pkt.SequenceNumber
	if !a.started {
		a.started, a.head, a.tail = true, seq, seq+1
		a.ring[seq&a.mask] = pkt
		return
	}
	ahead := seq - a.head
	switch {
	case ahead < a.tail-a.head: // inside the window
		if a.ring[seq&a.mask] != nil {
			a.stats.Duplicates++
			return
		}
		a.ring[seq&a.mask] = pkt
	case int16(ahead) < 0 && -ahead <= lateHorizon: // behind the window
		if a.moved || a.tail-seq > a.maxLate {
			a.stats.Late++
			return
		}
		// Nothing was consumed yet: an earlier packet of the first
		// frames arriving second extends the window back.
		a.head = seq
		a.ring[seq&a.mask] = pkt
	case seq+1-a.head <= a.maxLate: // ahead, and the window still holds it
		a.ring[seq&a.mask] = pkt
		a.tail = seq + 1
	default: // too far ahead (or far behind: a jump); Pop makes room
		a.pending = pkt
	}
}

// Pop returns the next frame, if one is ready. Its Data is valid until the
// next Push or Pop.
func (a *frameAssembler) Pop() (assembledFrame, bool) {
	for a.pending != nil {
		seq := a.pending.SequenceNumber
		if seq+1-a.head <= a.maxLate {
			a.ring[seq&a.mask] = a.pending
			a.tail, a.pending = seq+1, nil
			break
		}
		if a.head == a.tail { // window empty: restart it at seq
			if gap := int16(seq - a.head); gap > 0 {
				a.stats.Lost += uint64(gap)
			}
			a.head, a.tail, a.moved = seq, seq, true
			continue
		}
		if f, ok, _ := a.build(true); ok {
			return f, true
		}
	}
	for {
		f, ok, progressed := a.build(false)
		if ok {
			return f, true
		}
		if !progressed {
			return assembledFrame{}, false
		}
	}
}

// counters returns what the assembler emitted and gave up on so far.
func (a *frameAssembler) counters() assemblerStats { return a.stats }

// build looks at the frame starting at head. Unless force is set, it
// returns nothing until the frame is complete and the packet after it is
// in. With force (the window has to move) it skips a missing head packet,
// drops an incomplete run and emits a complete frame as it is. It reports
// whether it emitted a frame and whether head moved.
func (a *frameAssembler) build(force bool) (f assembledFrame, emitted, progressed bool) {
	if a.head == a.tail {
		return assembledFrame{}, false, false
	}
	first := a.ring[a.head&a.mask]
	if first == nil {
		if !force {
			return assembledFrame{}, false, false
		}
		a.head++
		a.moved = true
		a.stats.Lost++
		return assembledFrame{}, false, true
	}
	end, complete := a.head, false
	for s := a.head; s != a.tail; s++ {
		p := a.ring[s&a.mask]
		if p == nil {
			break
		}
		if p.Timestamp != first.Timestamp {
			complete = true
			break
		}
		end = s + 1
		if a.dep.IsPartitionTail(p.Marker, p.Payload) {
			complete = true
			break
		}
	}
	if !complete {
		if !force {
			return assembledFrame{}, false, false
		}
		a.release(end)
		a.stats.Dropped++
		return assembledFrame{}, false, true
	}
	if !force && (end == a.tail || a.ring[end&a.mask] == nil) {
		return assembledFrame{}, false, false // wait for the next packet: it gives the duration
	}
	next := a.pending // the packet the window is moving for, if nothing later is in
	for s := end; s != a.tail; s++ {
		if p := a.ring[s&a.mask]; p != nil {
			next = p
			break
		}
	}
	var dur time.Duration
	if next != nil {
		dur = a.duration(next.Timestamp - first.Timestamp)
	}
	if !a.dep.IsPartitionHead(first.Payload) {
		a.release(end)
		a.stats.Dropped++
		return assembledFrame{}, false, true
	}
	a.buf = a.buf[:0]
	for s := a.head; s != end; s++ {
		payload, err := a.dep.Unmarshal(a.ring[s&a.mask].Payload)
		if err != nil {
			a.release(end)
			a.stats.Dropped++
			return assembledFrame{}, false, true
		}
		a.buf = append(a.buf, payload...)
	}
	a.release(end)
	a.stats.Frames++
	if dur > 0 {
		a.lastDur = dur
	}
	return assembledFrame{Data: a.buf, Duration: dur}, true, true
}

// Flush returns, one per call, the frames still held once the track has
// ended: the complete ones, the last of which (no packet after it gives its
// duration) lasting as long as the frame before it; incomplete runs are
// dropped. Call it until it returns nothing.
func (a *frameAssembler) Flush() (assembledFrame, bool) {
	if f, ok := a.Pop(); ok {
		return f, true
	}
	for a.head != a.tail {
		if f, ok, _ := a.build(true); ok {
			if f.Duration == 0 {
				f.Duration = a.lastDur
			}
			return f, true
		}
	}
	return assembledFrame{}, false
}

// release forgets the packets from head up to end and moves head there.
func (a *frameAssembler) release(end uint16) {
	for s := a.head; s != end; s++ {
		a.ring[s&a.mask] = nil
	}
	a.head = end
	a.moved = true
}

// duration converts a timestamp gap to time; a gap that is not forward
// (read as signed) or a zero clock rate gives zero.
func (a *frameAssembler) duration(ticks uint32) time.Duration {
	if a.clockRate == 0 || int32(ticks) <= 0 {
		return 0
	}
	return time.Duration(uint64(ticks) * uint64(time.Second) / uint64(a.clockRate))
}
