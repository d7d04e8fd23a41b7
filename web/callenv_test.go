package web_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
	"github.com/duetcall/duet/relay/turnserver"
	"github.com/duetcall/duet/web"
	"github.com/duetcall/duet/wire"
)

// callEnv is what the call tests share: a real relay node (embedded NATS)
// whose ice-config hands out the embedded TURN server on loopback, the SDK
// and the demo app (web.Handler) and the test pages behind one httptest
// server, and one Chromium with fake camera and microphone.
type callEnv struct {
	t        *testing.T
	url      string // the relay and pages, http://127.0.0.1:port
	browser  context.Context
	turnAddr *net.UDPAddr
	// turnSecret is the TURN servers' shared secret: a test's own TURN
	// server started with it accepts the relay's credentials.
	turnSecret []byte
	// hang, when set, is a path prefix whose HTTP requests the relay never
	// answers (a hung relay: they end only when the client gives up or the
	// test ends); hung counts them.
	hang    atomic.Pointer[string]
	hung    atomic.Int64 // requests hung so far
	hungNow atomic.Int64 // requests hanging now
}

// hangRequests makes the relay's HTTP requests under prefix hang ("" ends
// that).
func (e *callEnv) hangRequests(prefix string) {
	if prefix == "" {
		e.hang.Store(nil)
		return
	}
	e.hang.Store(&prefix)
}

// hanging wraps h: a browser's request under the hang prefix gets no
// answer until the browser drops it or stop closes (the Go peers' requests
// are served).
func (e *callEnv) hanging(h http.Handler, stop <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := e.hang.Load(); p != nil && strings.HasPrefix(r.URL.Path, *p) && strings.Contains(r.UserAgent(), "Chrome") {
			e.hung.Add(1)
			e.hungNow.Add(1)
			defer e.hungNow.Add(-1)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

// mediaFlags are the Chromium flags for calls: fake devices that need no
// permission prompt, autoplay of the remote audio, and real host candidate
// addresses instead of mDNS names (nothing multicasts on the machine's
// network; every candidate is an address of this machine).
var mediaFlags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("use-fake-device-for-media-stream", true),
	chromedp.Flag("use-fake-ui-for-media-stream", true),
	chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
}

func startCallEnv(t *testing.T, extra ...chromedp.ExecAllocatorOption) *callEnv {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	if os.Getenv("DUET_TEST_RELAY_LOG") != "" {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	turn, err := turnserver.Start(ctx, turnserver.Config{
		ListenAddr: "127.0.0.1:0",
		Secret:     secret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     quiet,
	})
	if err != nil {
		t.Fatalf("turnserver: %v", err)
	}
	t.Cleanup(func() { _ = turn.Close() })
	turnAddr := turn.Addr().(*net.UDPAddr)
	res, err := ice.New(ice.Options{
		Embedded: &ice.Embedded{Host: "127.0.0.1", Port: turnAddr.Port, Secret: secret},
		Logger:   quiet,
	})
	if err != nil {
		t.Fatalf("ice resolver: %v", err)
	}
	srv, err := relay.New(ctx, relay.Options{DataDir: t.TempDir(), ICE: res, Logger: quiet})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() { shutdownRelay(t, srv) })
	// The relay, the SDK and the demo app as `duet relay` serves them
	// (web.Handler; the SDK with the test versions of its modules of
	// constants: testSDK), beside the test pages and vectors.
	env := &callEnv{t: t, turnAddr: turnAddr, turnSecret: secret}
	stop := make(chan struct{})
	mux := pagesMux()
	mux.Handle("/", env.hanging(testSDK(web.Handler(srv.Handler())), stop))
	hs := startServer(t, mux)
	t.Cleanup(func() { close(stop) }) // before the server closes: it waits for hung requests
	waitRelayReady(t, hs.URL)
	env.url = hs.URL
	env.browser = newBrowser(t, append(append([]chromedp.ExecAllocatorOption{}, mediaFlags...), extra...)...)
	return env
}

// waitRelayReady waits until the relay issues challenges (the embedded
// JetStream may take a moment).
func waitRelayReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Post(url+"/api/v1/challenge", "application/json", nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tab is one Chromium tab driving sdktest/calls.js.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	log    *consoleLog
	close  func()
	closed bool
}

// openTab opens a tab on path (default the SDK test page) and logs its
// console when the test fails.
func (e *callEnv) openTab(t *testing.T, name, path string) *tab {
	t.Helper()
	if path == "" {
		path = "/sdktest/index.html"
	}
	return e.openTabURL(t, name, e.url+path)
}

// openTabURL opens a tab on url (which may name this server by another
// host: another origin) and logs its console when the test fails.
func (e *callEnv) openTabURL(t *testing.T, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a Chromium tab: %v", err)
	}
	l, stop := captureConsole(ctx, name+": ")
	tb := &tab{t: t, name: name, ctx: ctx, log: l}
	tb.close = sync.OnceFunc(func() {
		tb.closed = true
		cancel()
		stop()
	})
	t.Cleanup(func() {
		tb.close()
		if t.Failed() || os.Getenv("DUET_TEST_CONSOLE") != "" {
			for _, line := range l.Lines() {
				t.Log(line)
			}
		}
	})
	navigate(t, ctx, url)
	return tb
}

// drive evaluates m.<expr> with m the calls.js driver, failing the test with
// the JS error.
func drive[T any](tb *tab, timeout time.Duration, expr string) T {
	tb.t.Helper()
	v, err := evalJS[T](tb.ctx, timeout, `import('/sdktest/calls.js').then(m => m.`+expr+`)`)
	if err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, expr, err)
	}
	return v
}

// jsResult is what the driver's call, answer, reject and hangup return.
type jsResult struct {
	OK      bool   `json:"ok"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// jsStatus is the call module's status.
type jsStatus struct {
	State    string   `json:"state"`
	Peer     string   `json:"peer"`
	CallID   string   `json:"callId"`
	IsVideo  bool     `json:"isVideo"`
	Incoming bool     `json:"incoming"`
	Reason   string   `json:"reason"`
	History  []string `json:"history"`
	// StateAt: when the page first saw each state (Unix ms), from waitState.
	StateAt map[string]float64 `json:"stateAt"`
	Errors  []struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	} `json:"errors"`
}

type jsError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

type jsIncoming struct {
	From    string `json:"from"`
	IsVideo bool   `json:"isVideo"`
	CallID  string `json:"callId"`
}

// jsDiag is the call module's Diag sample (CallModule.stats).
type jsDiag struct {
	N        int    `json:"n"`
	State    string `json:"state"`
	Pair     string `json:"pair"`
	Restarts int    `json:"restarts"`
	E2EE     string `json:"e2ee"`
	OutVideo *struct {
		BytesSent     uint64  `json:"bytesSent"`
		FramesEncoded uint64  `json:"framesEncoded"`
		FrameWidth    int     `json:"frameWidth"`
		FrameHeight   int     `json:"frameHeight"`
		FPS           float64 `json:"framesPerSecond"`
		QLimit        string  `json:"qualityLimitationReason"`
		Codec         string  `json:"codec"`
	} `json:"outVideo"`
	OutAudio *struct {
		BytesSent uint64 `json:"bytesSent"`
		Codec     string `json:"codec"`
	} `json:"outAudio"`
	InVideo *struct {
		BytesReceived uint64 `json:"bytesReceived"`
		FramesDecoded uint64 `json:"framesDecoded"`
		FramesDropped uint64 `json:"framesDropped"`
		KeyFrames     uint64 `json:"keyFramesDecoded"`
		FrameWidth    int    `json:"frameWidth"`
		FrameHeight   int    `json:"frameHeight"`
		PacketsLost   int64  `json:"packetsLost"`
		Codec         string `json:"codec"`
	} `json:"inVideo"`
	InAudio *struct {
		BytesReceived uint64 `json:"bytesReceived"`
		Samples       uint64 `json:"totalSamplesReceived"`
		Codec         string `json:"codec"`
	} `json:"inAudio"`
	VideoSender *struct {
		MaxBitrate  int    `json:"maxBitrate"`
		Degradation string `json:"degradationPreference"`
	} `json:"videoSender"`
	Frames *struct {
		Encrypted     struct{ Audio, Video uint64 } `json:"encrypted"`
		Decrypted     struct{ Audio, Video uint64 } `json:"decrypted"`
		DecryptErrors uint64                        `json:"decryptErrors"`
		EncryptErrors uint64                        `json:"encryptErrors"`
		LastError     string                        `json:"lastDecryptError"`
		SendEpoch     int                           `json:"sendEpoch"`
		RecvEpoch     int                           `json:"recvEpoch"`
	} `json:"frames"`
	MLines struct {
		Local  []string `json:"local"`
		Remote []string `json:"remote"`
	} `json:"mLines"`
}

func (d jsDiag) String() string {
	b, _ := json.Marshal(d)
	return string(b)
}

func (tb *tab) setup(alwaysRelay bool) identity.Alias {
	tb.t.Helper()
	a := drive[string](tb, 20*time.Second, fmt.Sprintf("setup({alwaysRelay: %v})", alwaysRelay))
	if !identity.Alias(a).Valid() {
		tb.t.Fatalf("%s: setup gave alias %q", tb.name, a)
	}
	return identity.Alias(a)
}

func (tb *tab) waitState(state string, timeout time.Duration) jsStatus {
	tb.t.Helper()
	return drive[jsStatus](tb, timeout+5*time.Second, fmt.Sprintf("waitState(%q, %d)", state, timeout.Milliseconds()))
}

func (tb *tab) stats() jsDiag {
	tb.t.Helper()
	return drive[jsDiag](tb, 10*time.Second, "stats()")
}

// goBot is a Go SDK peer (client and call packages, production settings)
// that records what it receives to IVF and Ogg files.
type goBot struct {
	t     *testing.T
	name  string
	id    *identity.Identity
	alias identity.Alias
	c     *client.Client
	sig   *botSignaler
	mod   *duetcall.Module
	rings chan bool
	errs  chan error

	mu         sync.Mutex
	recordings map[string]string // call ID → IVF path
	sinks      map[string]*media.IVFSink
}

func (e *callEnv) newGoBot(t *testing.T, name string, alwaysRelay bool) *goBot {
	t.Helper()
	return e.newGoBotWith(t, name, botOptions{alwaysRelay: alwaysRelay})
}

// botOptions are a Go bot's settings beyond the production ones: what the
// lifecycle tests need to make the Go peer go silent.
type botOptions struct {
	alwaysRelay bool
	// turn, if set, is the TURN server the bot relays through instead of
	// the relay's (whose credentials it accepts: started with turnSecret).
	turn *net.UDPAddr
	// media, if set, gates the bot's audio and video sources.
	media *mediaGate
	// identity, if set, is the bot's identity instead of a new one.
	identity *identity.Identity
}

func (e *callEnv) newGoBotWith(t *testing.T, name string, o botOptions) *goBot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := o.identity
	if id == nil {
		m, err := identity.NewMnemonic(12)
		if err != nil {
			t.Fatal(err)
		}
		if id, err = identity.FromMnemonic(m); err != nil {
			t.Fatal(err)
		}
	}
	alias, _, err := client.Register(ctx, http.DefaultClient, e.url, id)
	if err != nil {
		t.Fatalf("%s: register: %v", name, err)
	}
	b := &goBot{t: t, name: name, id: id, alias: alias, rings: make(chan bool, 4), errs: make(chan error, 8),
		recordings: map[string]string{}, sinks: map[string]*media.IVFSink{}}
	b.sig = &botSignaler{}
	if o.turn != nil {
		from, to := e.turnAddr.String(), o.turn.String()
		b.sig.ice = func(cfg client.ICEConfig) client.ICEConfig {
			servers := make([]client.ICEServer, len(cfg.ICEServers))
			for i, s := range cfg.ICEServers {
				s.URLs = slices.Clone(s.URLs)
				for j, u := range s.URLs {
					s.URLs[j] = strings.ReplaceAll(u, from, to)
				}
				servers[i] = s
			}
			cfg.ICEServers = servers
			return cfg
		}
	}
	var mod atomic.Pointer[duetcall.Module]
	b.c, err = client.Connect(ctx, client.Options{
		RelayURL: e.url, Identity: id, Alias: alias,
		OnEnvelope: func(env *wire.Envelope) {
			if m := mod.Load(); m != nil {
				m.HandleEnvelope(env)
			}
		},
		OnUndeliverable: func(u client.Undeliverable) {
			if m := mod.Load(); m != nil {
				m.HandleUndeliverable(u)
			}
		},
		OnRelayError: func(re client.RelayError) {
			if m := mod.Load(); m != nil {
				m.HandleRelayError(re)
			}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("%s: connect: %v", name, err)
	}
	b.sig.Client = b.c
	var audio, video media.Opener
	if o.media != nil {
		audio, video = o.media.opener(media.AudioFixture()), o.media.opener(media.VideoFixture())
	}
	dir := t.TempDir()
	b.mod = duetcall.New(duetcall.Options{
		Signaler:    b.sig,
		AlwaysRelay: o.alwaysRelay,
		Audio:       audio,
		Video:       video,
		Sinks: func(st duetcall.Status) (duetcall.Sinks, error) {
			path := filepath.Join(dir, st.CallID+".ivf")
			v, err := media.CreateIVF(path)
			if err != nil {
				return duetcall.Sinks{}, err
			}
			a, err := media.CreateOgg(filepath.Join(dir, st.CallID+".ogg"))
			if err != nil {
				v.Close()
				return duetcall.Sinks{}, err
			}
			b.mu.Lock()
			b.recordings[st.CallID] = path
			b.sinks[st.CallID] = v
			b.mu.Unlock()
			return duetcall.Sinks{Audio: a, Video: v}, nil
		},
		OnIncomingCall: func(_ identity.Alias, isVideo bool) {
			select {
			case b.rings <- isVideo:
			default:
			}
		},
		OnError: func(err error) {
			select {
			case b.errs <- err:
			default:
			}
		},
		Logger: testLogger(t, name),
	})
	mod.Store(b.mod)
	t.Cleanup(func() {
		b.mod.Close()
		b.c.Close()
	})
	return b
}

// botSignaler is a bot's Signaler: its client, whose sends the test can cut
// (what is not sent is counted), and whose ICE configuration it can
// rewrite.
type botSignaler struct {
	*client.Client
	ice     func(client.ICEConfig) client.ICEConfig
	cut     atomic.Bool
	dropped atomic.Int64
}

func (s *botSignaler) Send(ctx context.Context, env *wire.Envelope) error {
	if s.cut.Load() {
		s.dropped.Add(1)
		return nil
	}
	return s.Client.Send(ctx, env)
}

func (s *botSignaler) ICEConfig(ctx context.Context) (client.ICEConfig, error) {
	cfg, err := s.Client.ICEConfig(ctx)
	if err == nil && s.ice != nil {
		cfg = s.ice(cfg)
	}
	return cfg, err
}

// mediaGate stops a Go bot's media: once closed, its sources deliver no
// more frames (no RTP is sent), while ICE and DTLS go on.
type mediaGate struct {
	once    sync.Once
	stopped chan struct{}
}

func newMediaGate() *mediaGate { return &mediaGate{stopped: make(chan struct{})} }

func (g *mediaGate) close() { g.once.Do(func() { close(g.stopped) }) }

// opener opens data (an embedded fixture) behind the gate.
func (g *mediaGate) opener(data []byte) media.Opener {
	open := media.BytesOpener(data)
	return func() (media.Source, error) {
		src, err := open()
		if err != nil {
			return nil, err
		}
		return &gatedSource{Source: src, g: g}, nil
	}
}

type gatedSource struct {
	media.Source
	g *mediaGate
}

func (s *gatedSource) Info() media.Info { return media.InfoOf(s.Source) }

// Next returns the next frame until the gate closes, then waits for ctx
// (the call's, cancelled when it ends).
func (s *gatedSource) Next(ctx context.Context) (media.Frame, error) {
	select {
	case <-s.g.stopped:
		<-ctx.Done()
		return media.Frame{}, ctx.Err()
	default:
		return s.Source.Next(ctx)
	}
}

// waitState waits until the bot's status satisfies ok.
func (b *goBot) waitState(timeout time.Duration, what string, ok func(duetcall.Status) bool) duetcall.Status {
	b.t.Helper()
	sub := b.mod.State().Subscribe()
	defer sub.Unsubscribe()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	last := b.mod.State().Get()
	for {
		if ok(last) {
			return last
		}
		select {
		case st, open := <-sub.C():
			if !open {
				b.t.Fatalf("%s: module closed while waiting for %s", b.name, what)
			}
			last = st
		case <-timer.C:
			b.t.Fatalf("%s: no %s within %v; status %+v", b.name, what, timeout, last)
		}
	}
}

func (b *goBot) waitRing(timeout time.Duration) bool {
	b.t.Helper()
	select {
	case v := <-b.rings:
		return v
	case <-time.After(timeout):
		b.t.Fatalf("%s: no incoming call within %v; status %+v", b.name, timeout, b.mod.State().Get())
		return false
	}
}

func (b *goBot) recording(callID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recordings[callID]
}

// testLogger logs to t (shown when the test fails or with -v): the Go
// module's state changes and Diag lines.
func testLogger(t testing.TB, name string) *slog.Logger {
	w := &tbWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	lvl := slog.LevelInfo
	if os.Getenv("DUET_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("bot", name)
}

type tbWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// ffprobePath finds ffprobe; missing, the test fails (the recordings are
// only verified by decoding them).
func ffprobePath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe not found: the call tests decode the Go side's recordings with it; install it with `apt-get install -y ffmpeg`")
	}
	return p
}

// probeIVF counts the frames ffprobe decodes from an IVF recording.
func probeIVF(t testing.TB, path string) (frames int, width, height int) {
	t.Helper()
	out, err := exec.Command(ffprobePath(t), "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	var res struct {
		Streams []struct {
			Codec  string `json:"codec_name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
			Frames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	s := res.Streams[0]
	if s.Codec != "vp8" {
		t.Errorf("recording %s: codec %q, want vp8", path, s.Codec)
	}
	fmt.Sscan(s.Frames, &frames)
	return frames, s.Width, s.Height
}
