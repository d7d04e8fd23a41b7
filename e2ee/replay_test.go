package e2ee

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// windowModel is the replay rule of docs/PROTOCOL.md §5.3 written naively.
type windowModel struct {
	accepted map[uint64]bool
	highest  uint64
	started  bool
}

func (m *windowModel) try(seq uint64) error {
	switch {
	case m.started && seq <= m.highest && m.highest-seq >= ReplayWindow:
		return ErrTooOld
	case m.accepted[seq]:
		return ErrReplay
	}
	m.accepted[seq] = true
	if !m.started || seq > m.highest {
		m.highest, m.started = seq, true
	}
	return nil
}

// checkWindow runs seqs through replayWindow and the model and reports the
// first disagreement.
func checkWindow(t *testing.T, seqs []uint64) {
	t.Helper()
	var w replayWindow
	m := windowModel{accepted: map[uint64]bool{}}
	for i, seq := range seqs {
		want := m.try(seq)
		got := w.check(seq)
		if got == nil {
			w.accept(seq)
		}
		if !errors.Is(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("step %d: seq %d: got %v, want %v", i, seq, got, want)
		}
	}
}

func TestReplayWindowMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 50 {
		var seqs []uint64
		var base uint64
		for range 3000 {
			switch rng.IntN(10) {
			case 0: // jump ahead, sometimes past the whole window
				base += uint64(rng.IntN(3 * ReplayWindow))
			case 1: // far behind
				seqs = append(seqs, base-min(base, uint64(rng.IntN(4*ReplayWindow))))
				continue
			}
			base++
			jitter := uint64(rng.IntN(ReplayWindow + 64))
			seqs = append(seqs, base-min(base, jitter))
		}
		if round%2 == 1 { // also start far from zero
			for i := range seqs {
				seqs[i] += 1 << 31
			}
		}
		checkWindow(t, seqs)
	}
}

func TestReplayWindowEdges(t *testing.T) {
	for name, seqs := range map[string][]uint64{
		"exact window":     {ReplayWindow - 1, 0, 0},
		"one past":         {ReplayWindow, 0, 1, 1},
		"word boundaries":  {63, 64, 127, 128, 63 + ReplayWindow, 64 + ReplayWindow, 64, 65, 127},
		"jump of a window": {5, 5 + ReplayWindow - 1, 5, 6, 6, 5 + 2*ReplayWindow - 1, 5 + ReplayWindow},
		"max seq":          {1<<32 - 1, 1<<32 - ReplayWindow, 1<<32 - ReplayWindow - 1},
		"slide by 64s":     {0, 64, 128, 192, 2100, 2101, 52, 53, 54, 2036},
	} {
		t.Run(name, func(t *testing.T) { checkWindow(t, seqs) })
	}
}

// FuzzReplayWindow compares the bitmap window with the naive model on
// arbitrary counter sequences (2 bytes each, as deltas from a moving base so
// that both jumps and stragglers occur).
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 5, 0, 5, 8, 0, 0, 1})
	f.Add([]byte{0x7f, 0xff, 0x80, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var seqs []uint64
		var base uint64 = 1 << 20
		for len(data) >= 2 {
			d := int16(binary.BigEndian.Uint16(data))
			data = data[2:]
			seq := uint64(int64(base) + int64(d))
			if d > 0 {
				base = seq
			}
			seqs = append(seqs, seq)
		}
		checkWindow(t, seqs)
	})
}
