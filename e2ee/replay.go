package e2ee

const windowWords = ReplayWindow / 64

// replayWindow is a sliding window of ReplayWindow sequence numbers anchored
// at the highest one accepted (docs/PROTOCOL.md §5.3). Bit s%ReplayWindow of
// bits records sequence number s for s in (highest-ReplayWindow, highest].
// The zero value is an empty window.
type replayWindow struct {
	bits    [windowWords]uint64
	highest uint64
	started bool
}

// check returns nil if seq may be accepted, ErrReplay if it already was and
// ErrTooOld if it is older than the window (both unwrapped). It does not
// record seq.
func (w *replayWindow) check(seq uint64) error {
	if !w.started || seq > w.highest {
		return nil
	}
	if w.highest-seq >= ReplayWindow {
		return ErrTooOld
	}
	if w.bits[(seq/64)%windowWords]&(1<<(seq%64)) != 0 {
		return ErrReplay
	}
	return nil
}

// accept records seq, which check has admitted, sliding the window forward
// if seq is the new highest.
func (w *replayWindow) accept(seq uint64) {
	switch {
	case !w.started:
		w.started = true
		w.highest = seq
	case seq > w.highest:
		w.clearRange(w.highest+1, seq)
		w.highest = seq
	}
	w.bits[(seq/64)%windowWords] |= 1 << (seq % 64)
}

// clearRange forgets sequence numbers from..to (inclusive), whose bits still
// hold numbers that fall out of the window as it slides to to.
func (w *replayWindow) clearRange(from, to uint64) {
	if to-from >= ReplayWindow-1 {
		w.bits = [windowWords]uint64{}
		return
	}
	for s := from; s <= to; {
		if s%64 == 0 && to-s >= 63 {
			w.bits[(s/64)%windowWords] = 0
			s += 64
			continue
		}
		w.bits[(s/64)%windowWords] &^= 1 << (s % 64)
		s++
	}
}
