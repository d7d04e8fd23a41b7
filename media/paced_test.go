package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestPacedSourceVideoPace(t *testing.T) {
	clk := newStepClock()
	p, err := NewPacedSource(BytesOpener(VideoFixture()), PacedOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Codec() != CodecVP8 || p.Info().Width != 1280 || p.Info().Height != 720 || p.Info().FPS != 30 {
		t.Fatalf("Codec %q Info %+v", p.Codec(), p.Info())
	}
	start := clk.Now()
	for n := 1; n <= fixtureVideoFrames; n++ {
		f, err := p.Next(context.Background())
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if n == 1 && !f.Keyframe {
			t.Fatal("first frame is not a key frame")
		}
		// The n-th frame goes out once the n-1 before it have played.
		if got, want := clk.Now().Sub(start), time.Duration(n-1)*fixtureFrameDur; got != want {
			t.Fatalf("frame %d at %v of fake time, want %v", n, got, want)
		}
	}
	if _, err := p.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if got, want := clk.Now().Sub(start), fixtureVideoFrames*fixtureFrameDur; got != want {
		t.Errorf("end at %v, want %v (the last frame plays out)", got, want)
	}
	if _, err := p.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("io.EOF is not sticky: %v", err)
	}
	if s := p.Stats(); s.Frames != fixtureVideoFrames || s.Loops != 0 || s.Resyncs != 0 {
		t.Errorf("Stats %+v", s)
	}
}

func TestPacedSourceLoops(t *testing.T) {
	orig := readAll(t, mustOpen(t, AudioFixture()))
	clk := newStepClock()
	opens := 0
	open := func() (Source, error) { opens++; return Open(bytes.NewReader(AudioFixture())) }
	p, err := NewPacedSource(open, PacedOptions{Loop: true, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := clk.Now()
	const n = 2*fixtureAudioPkts + 5
	for i := range n {
		f, err := p.Next(context.Background())
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(f.Data, orig[i%len(orig)].Data) {
			t.Fatalf("packet %d differs from packet %d of the file", i, i%len(orig))
		}
		// One schedule across the loops: no gap, no burst at the seam.
		if got, want := clk.Now().Sub(start), time.Duration(i)*fixtureOpusDur; got != want {
			t.Fatalf("packet %d at %v, want %v", i, got, want)
		}
	}
	if s := p.Stats(); s.Loops != 2 || s.Frames != n || opens != 3 {
		t.Errorf("Stats %+v, opens %d; want 2 loops, %d frames, 3 opens", s, n, opens)
	}
}

func TestPacedSourceWaitsForClock(t *testing.T) {
	clk := newManualClock()
	p, err := NewPacedSource(BytesOpener(AudioFixture()), PacedOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	type result struct {
		f   Frame
		err error
	}
	next := func() chan result {
		ch := make(chan result, 1)
		go func() {
			f, err := p.Next(context.Background())
			ch <- result{f, err}
		}()
		return ch
	}
	if r := <-next(); r.err != nil { // the first frame goes at once
		t.Fatal(r.err)
	}
	ch := next()
	if d := <-clk.created; d != fixtureOpusDur {
		t.Fatalf("waits %v, want %v", d, fixtureOpusDur)
	}
	if s := p.Stats(); s.Frames != 1 { // Stats does not wait for the frame
		t.Fatalf("Stats %+v while waiting", s)
	}
	clk.Advance(fixtureOpusDur / 2)
	select {
	case r := <-ch:
		t.Fatalf("returned %v before its time", r.err)
	default:
	}
	clk.Advance(fixtureOpusDur / 2)
	if r := <-ch; r.err != nil {
		t.Fatal(r.err)
	}
}

func TestPacedSourceCancelLosesNoFrame(t *testing.T) {
	orig := readAll(t, mustOpen(t, VideoFixture()))
	clk := newManualClock()
	p, err := NewPacedSource(BytesOpener(VideoFixture()), PacedOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.Next(ctx); errc <- err }()
	<-clk.created
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Next: %v", err)
	}
	// The frame that was waiting is still the next one.
	clk.Advance(time.Second / 10)
	f, err := p.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Data, orig[1].Data) {
		t.Fatal("a frame was lost to the cancelled call")
	}
}

func TestPacedSourceCloseWakesNext(t *testing.T) {
	clk := newManualClock()
	p, err := NewPacedSource(BytesOpener(AudioFixture()), PacedOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := p.Next(context.Background()); errc <- err }()
	<-clk.created
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next during Close: %v, want ErrClosed", err)
	}
	if _, err := p.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPacedSourceResyncsAfterStall(t *testing.T) {
	clk := newStepClock()
	p, err := NewPacedSource(BytesOpener(VideoFixture()), PacedOptions{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 3 {
		if _, err := p.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(5 * time.Second) // the consumer stalls
	before := clk.Now()
	if _, err := p.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if clk.Now() != before {
		t.Fatal("a late frame waited")
	}
	// No burst: the frame after that waits one frame duration again.
	if _, err := p.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now().Sub(before); got != fixtureFrameDur {
		t.Fatalf("frame after the stall waited %v, want %v", got, fixtureFrameDur)
	}
	if s := p.Stats(); s.Resyncs != 1 {
		t.Errorf("Resyncs %d, want 1", s.Resyncs)
	}
}

func TestPacedSourceSmallLagCatchesUp(t *testing.T) {
	// A consumer a little late (under the resync threshold) gets the next
	// frames without waiting until it is back on schedule.
	clk := newStepClock()
	p, _ := NewPacedSource(BytesOpener(VideoFixture()), PacedOptions{Clock: clk})
	defer p.Close()
	start := clk.Now()
	p.Next(context.Background())
	clk.Advance(3 * fixtureFrameDur)
	for range 3 { // frames due at 1, 2 and 3 frame durations
		p.Next(context.Background())
	}
	if got := clk.Now().Sub(start); got != 3*fixtureFrameDur {
		t.Fatalf("caught up at %v, want %v (no extra waiting)", got, 3*fixtureFrameDur)
	}
	p.Next(context.Background())
	if got := clk.Now().Sub(start); got != 4*fixtureFrameDur {
		t.Fatalf("then at %v, want %v", got, 4*fixtureFrameDur)
	}
	if s := p.Stats(); s.Resyncs != 0 {
		t.Errorf("Resyncs %d, want 0", s.Resyncs)
	}
}

func TestPacedSourceEmptyMedia(t *testing.T) {
	for _, loop := range []bool{false, true} {
		p, err := NewPacedSource(BytesOpener(ivfFile(64, 48)), PacedOptions{Loop: loop, Clock: newStepClock()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Next(context.Background()); !errors.Is(err, ErrNoFrames) {
			t.Errorf("loop=%v: %v, want ErrNoFrames", loop, err)
		}
		p.Close()
	}
}

func TestPacedSourceErrors(t *testing.T) {
	if _, err := NewPacedSource(BytesOpener([]byte("junk")), PacedOptions{}); !errors.Is(err, ErrFormat) {
		t.Errorf("junk: %v, want ErrFormat", err)
	}
	if _, err := NewPacedSource(nil, PacedOptions{}); err == nil {
		t.Error("nil Opener accepted")
	}
	// A file cut inside its last frame: the frames before it go out, then
	// the error, which stays (it does not loop over a broken file).
	data := ivfFile(64, 48, vp8Key(64, 48), vp8Delta(), vp8Delta())
	p, err := NewPacedSource(BytesOpener(data[:len(data)-1]), PacedOptions{Loop: true, Clock: newStepClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n, err := drain(p)
	if n != 2 || !errors.Is(err, ErrTruncated) {
		t.Fatalf("%d frames then %v; want 2 then ErrTruncated", n, err)
	}
	if _, err2 := p.Next(context.Background()); !errors.Is(err2, ErrTruncated) {
		t.Fatalf("error not sticky: %v", err2)
	}
	// Reopening fails while looping.
	calls := 0
	flaky := func() (Source, error) {
		calls++
		if calls > 1 {
			return nil, errors.New("disk gone")
		}
		return Open(bytes.NewReader(ivfFile(64, 48, vp8Key(64, 48))))
	}
	p2, _ := NewPacedSource(flaky, PacedOptions{Loop: true, Clock: newStepClock()})
	defer p2.Close()
	if n, err := drain(p2); n != 1 || err == nil {
		t.Fatalf("%d frames then %v; want 1 then the reopen error", n, err)
	}
}

func TestPacedSourceClosesFiles(t *testing.T) {
	var closed int
	open := func() (Source, error) {
		src, err := Open(bytes.NewReader(AudioFixture()))
		return &closeCounter{src, &closed}, err
	}
	p, _ := NewPacedSource(open, PacedOptions{Loop: true, Clock: newStepClock()})
	for range fixtureAudioPkts + 1 {
		if _, err := p.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if closed != 1 {
		t.Errorf("%d sources closed at the loop, want 1", closed)
	}
	p.Close()
	if closed != 2 {
		t.Errorf("%d sources closed after Close, want 2", closed)
	}
}

type closeCounter struct {
	Source
	n *int
}

func (c *closeCounter) Close() error { *c.n++; return nil }

func TestPacedSourceWallClock(t *testing.T) {
	// The default clock works (a short wait on real time, no assertion on
	// how long it took).
	p, err := NewPacedSource(BytesOpener(AudioFixture()), PacedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 2 {
		if _, err := p.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func mustOpen(t testing.TB, data []byte) Source {
	t.Helper()
	src, err := Open(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return src
}
