package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Clock is the time source of a PacedSource, injectable so tests run on
// fake time. The nil Clock in PacedOptions means the wall clock.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer a Clock hands out.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type wallClock struct{}

func (wallClock) Now() time.Time                 { return time.Now() }
func (wallClock) NewTimer(d time.Duration) Timer { return wallTimer{time.NewTimer(d)} }

type wallTimer struct{ t *time.Timer }

func (t wallTimer) C() <-chan time.Time { return t.t.C }
func (t wallTimer) Stop() bool          { return t.t.Stop() }

// maxLag is how far behind schedule a consumer may fall before the schedule
// restarts from now. Without it, a sender stalled for a second would burst
// 30 video frames at once to catch up; with it, it resumes at real-time pace
// (a resync, counted in PacedStats).
const maxLag = 250 * time.Millisecond

// PacedOptions configures a PacedSource.
type PacedOptions struct {
	// Loop restarts from the beginning (through the Opener) at the end of
	// the media instead of returning io.EOF.
	Loop bool
	// Clock paces the frames; nil is the wall clock.
	Clock Clock
}

// PacedStats counts what a PacedSource did.
type PacedStats struct {
	Frames  int64 // frames returned
	Loops   int   // times the media restarted from the beginning
	Resyncs int   // times the schedule restarted because the consumer lagged
}

// PacedSource returns the frames of a Source at real-time pace: the first
// frame at once, and each later one when the durations of the frames before
// it have elapsed on the Clock since the first (a schedule, so pacing does
// not drift with the time the consumer takes). With Loop it reopens the
// media at the end and goes on with the same schedule.
//
// Next may be called from one goroutine at a time (calls are serialised);
// Close may be called from any goroutine and makes a waiting Next return
// ErrClosed.
type PacedSource struct {
	open      Opener
	loop      bool
	clock     Clock
	info      Info
	closed    chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex // held by Next, also while it waits
	src        Source
	started    bool
	due        time.Time // when the next frame may go
	passFrames int       // frames read since the media last (re)started
	err        error     // sticky: io.EOF at the end, or a read error

	statsMu sync.Mutex // apart from mu, so Stats never waits for a frame
	stats   PacedStats
}

// NewPacedSource opens the media once (so a bad file fails here, not at the
// first frame) and returns a source that paces it.
func NewPacedSource(open Opener, opts PacedOptions) (*PacedSource, error) {
	if open == nil {
		return nil, errors.New("media: NewPacedSource: nil Opener")
	}
	src, err := open()
	if err != nil {
		return nil, err
	}
	p := &PacedSource{
		open:   open,
		loop:   opts.Loop,
		clock:  opts.Clock,
		src:    src,
		info:   InfoOf(src),
		closed: make(chan struct{}),
	}
	if p.clock == nil {
		p.clock = wallClock{}
	}
	return p, nil
}

// Codec returns the media's codec, CodecVP8 or CodecOpus.
func (p *PacedSource) Codec() string { return p.info.Codec }

// Info describes the media as its first opening found it.
func (p *PacedSource) Info() Info { return p.info }

// Stats returns the counters.
func (p *PacedSource) Stats() PacedStats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	return p.stats
}

func (p *PacedSource) count(f func(*PacedStats)) {
	p.statsMu.Lock()
	f(&p.stats)
	p.statsMu.Unlock()
}

// Next waits until the next frame is due and returns it. It returns io.EOF
// at the end of the media when not looping, ErrNoFrames (wrapped) when the
// media holds no frame, ErrClosed after Close, ctx's error if ctx ends
// first (no frame is lost then), and a read error as it came.
func (p *PacedSource) Next(ctx context.Context) (Frame, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return Frame{}, ErrClosed
	default:
	}
	if p.err != nil {
		return Frame{}, p.err
	}
	now := p.clock.Now()
	if !p.started {
		p.started = true
		p.due = now
	}
	if now.Sub(p.due) > maxLag {
		p.due = now
		p.count(func(s *PacedStats) { s.Resyncs++ })
	}
	if wait := p.due.Sub(now); wait > 0 {
		t := p.clock.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return Frame{}, ctx.Err()
		case <-p.closed:
			t.Stop()
			return Frame{}, ErrClosed
		}
	}
	f, err := p.read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.err = err
		}
		return Frame{}, err
	}
	p.due = p.due.Add(f.Duration)
	p.count(func(s *PacedStats) { s.Frames++ })
	return f, nil
}

// read returns the next frame, reopening the media at its end when looping.
func (p *PacedSource) read(ctx context.Context) (Frame, error) {
	for {
		f, err := p.src.Next(ctx)
		if err == nil {
			p.passFrames++
			return f, nil
		}
		if !errors.Is(err, io.EOF) {
			return Frame{}, err
		}
		if p.passFrames == 0 {
			return Frame{}, fmt.Errorf("%w (%s)", ErrNoFrames, p.info.Codec)
		}
		if !p.loop {
			return Frame{}, io.EOF
		}
		closeSource(p.src)
		p.src = nil
		src, err := p.open()
		if err != nil {
			return Frame{}, fmt.Errorf("media: reopening to loop: %w", err)
		}
		p.src = src
		p.passFrames = 0
		p.count(func(s *PacedStats) { s.Loops++ })
	}
}

// Close stops the source: a waiting Next returns ErrClosed, and the
// underlying Source is closed if it is an io.Closer. It returns that
// Close's error; calling it again returns nil.
func (p *PacedSource) Close() error {
	first := false
	p.closeOnce.Do(func() {
		first = true
		close(p.closed)
	})
	if !first {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := closeSource(p.src)
	p.src = nil
	return err
}

func closeSource(s Source) error {
	if c, ok := s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
