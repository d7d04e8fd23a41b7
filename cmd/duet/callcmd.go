package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/wire"
)

// callUsage is the help of duet call, with the flags' defaults here.
func callUsage() string {
	return `Usage:
  duet call ALIAS [--video] [--relay-only] [--send-video F.ivf] [--send-audio F.ogg]
                  [--record DIR] [--duration D] [--upgrade-after D] [--relay URL] [--home DIR]

Calls ALIAS and prints each state change and, every 2 s while connected, a
Diag line (bytes, frames, bitrate, frame size, fps, RTT, loss, candidate
types). Without --send-* it sends the built-in test pattern and tone. It
hangs up after --duration (default: when you press Ctrl-C) and exits non-zero
with the reason when the call fails (offline, busy, declined, no_answer, ...).

Flags:
  --video              video call (default: audio only)
  --relay-only         relay all media through TURN: the peer sees the TURN
                       server's address, not yours (it hides YOUR address; the
                       peer's own candidates still reach you unless it uses
                       --relay-only too)
  --send-video F.ivf   VP8 IVF file to send in a video call (needs --video;
                       default: the built-in test pattern)
  --send-audio F.ogg   Opus Ogg file to send (default: the built-in tone)
  --record DIR         record what you receive into DIR (created if missing,
                       checked before the call): <call_id>-audio.ogg, and
                       <call_id>-video.ivf for a video call
  --duration D         hang up after D connected, e.g. 30s; more than 0
                       (default: at Ctrl-C)
  --upgrade-after D    an audio call becomes a video call D after it
                       connected: this side sends its video (--send-video or
                       the test pattern) from then on; the peer receives it
                       without having to send any (not with --video)
` + clientFlagsHelp() + `
Examples:
  duet call u12345678                          # audio call
  duet call u12345678 --video --duration 30s   # video call, 30 seconds
  duet call u12345678 --video --relay-only --record ./rec
  duet call u12345678 --upgrade-after 10s      # audio, then video after 10 s
`
}

// answerUsage is the help of duet answer, with the flags' defaults here.
func answerUsage() string {
	return `Usage:
  duet answer [--auto] [--once] [--record DIR] [--send-video F.ivf] [--send-audio F.ogg]
              [--relay-only] [--relay URL] [--home DIR]

Waits for calls and answers them: with --auto at once, otherwise it asks on
the terminal. It sends media back (by default the built-in test pattern and
tone; audio only to an audio call) and records what it receives into
--record DIR (per call <call_id>-audio.ogg, and <call_id>-video.ivf for a
video call). With --once it exits after the first call ends.

Flags:
  --auto               answer every call without asking
  --once               exit after the first call ends
  --record DIR         record what you receive into DIR (default: not recorded)
  --send-video F.ivf   VP8 IVF file to send (default: the built-in test pattern)
  --send-audio F.ogg   Opus Ogg file to send (default: the built-in tone)
  --relay-only         relay all media through TURN: the caller sees the TURN
                       server's address, not yours (it hides YOUR address only)
` + clientFlagsHelp() + `
Examples:
  duet answer --auto --record ./rec
  duet answer            # asks "Answer? [y/N]" for each call
`
}

// callFlags are the flags of duet call and duet answer.
type callFlags struct {
	clientFlags
	video, relayOnly     bool
	sendVideo, sendAudio string
	record               string
	duration             time.Duration
	upgradeAfter         time.Duration
	auto, once           bool
}

// parseCallFlags parses the flags of duet call or duet answer; when done,
// the command exits with code (see parseFlags).
func parseCallFlags(name, usage string, args []string, stdout, stderr io.Writer) (f *callFlags, pos []string, code int, done bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f = &callFlags{}
	f.clientFlags.register(fs)
	fs.BoolVar(&f.relayOnly, "relay-only", false, "relay all media through TURN (hides your IP address from the peer)")
	fs.StringVar(&f.sendVideo, "send-video", "", "VP8 IVF file to send (default: built-in test pattern)")
	fs.StringVar(&f.sendAudio, "send-audio", "", "Opus Ogg file to send (default: built-in tone)")
	fs.StringVar(&f.record, "record", "", "directory to record received media into")
	if name == "duet call" {
		fs.BoolVar(&f.video, "video", false, "video call (default audio only)")
		fs.DurationVar(&f.duration, "duration", 0, "hang up after this long connected (0: until Ctrl-C)")
		fs.DurationVar(&f.upgradeAfter, "upgrade-after", 0, "turn the audio call into a video call this long after it connected")
	} else {
		fs.BoolVar(&f.auto, "auto", false, "answer every call without asking")
		fs.BoolVar(&f.once, "once", false, "exit after the first call ends")
	}
	pos, code, done = parseFlags(fs, args, usage, stdout, stderr)
	if done {
		return f, pos, code, done
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if err := f.validate(name, set); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n(see %s --help)\n", name, err, name)
		return f, nil, 2, true
	}
	return f, pos, code, done
}

// validate checks what the flag package cannot: values that would be
// ignored or found wrong only after the peer was rung.
func (f *callFlags) validate(name string, set map[string]bool) error {
	if set["duration"] && f.duration <= 0 {
		return fmt.Errorf("--duration %v: want more than 0, e.g. 30s (leave it out to hang up at Ctrl-C)", f.duration)
	}
	if set["upgrade-after"] && f.upgradeAfter <= 0 {
		return fmt.Errorf("--upgrade-after %v: want more than 0, e.g. 10s", f.upgradeAfter)
	}
	if f.upgradeAfter > 0 && f.video {
		return fmt.Errorf("--upgrade-after turns an audio call into a video call: leave out --video")
	}
	if name == "duet call" && f.sendVideo != "" && !f.video && f.upgradeAfter == 0 {
		return fmt.Errorf("--send-video %s sends video only in a video call: add --video (or --upgrade-after D)", f.sendVideo)
	}
	for _, p := range []struct{ flag, path string }{{"--send-video", f.sendVideo}, {"--send-audio", f.sendAudio}} {
		if p.path == "" {
			continue
		}
		if st, err := os.Stat(p.path); err != nil {
			return fmt.Errorf("%s: %w", p.flag, err)
		} else if st.IsDir() {
			return fmt.Errorf("%s %s is a directory, want a file", p.flag, p.path)
		}
	}
	if f.record != "" {
		if err := checkRecordDir(f.record); err != nil {
			return fmt.Errorf("--record %s: %w", f.record, err)
		}
	}
	return nil
}

// checkRecordDir creates dir if missing and checks that a file can be
// created in it.
func checkRecordDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	probe, err := os.CreateTemp(dir, ".duet-record-check-*")
	if err != nil {
		return fmt.Errorf("cannot write recordings there: %w", err)
	}
	name := probe.Name()
	probe.Close()
	return os.Remove(name)
}

// argsError says what is wrong with a command's positional arguments.
func argsError(name, want string, pos []string) string {
	switch {
	case len(pos) == 0:
		return fmt.Sprintf("%s: missing %s", name, want)
	case want == "":
		return fmt.Sprintf("%s: unexpected argument %q (it takes none)", name, pos[0])
	}
	return fmt.Sprintf("%s: one %s, got %d arguments: %q", name, want, len(pos), pos)
}

// session is a connected client with a call module.
type session struct {
	client   *client.Client
	modMu    sync.Mutex // the module exists only after the client connects
	mod      *call.Module
	incoming chan incomingCall
}

// relayCallbacks are the client options that hand the relay's envelopes,
// undeliverable notices and refused-frame notices to s's module (once it
// exists), as package call documents.
func (s *session) relayCallbacks() client.Options {
	withMod := func(fn func(*call.Module)) {
		s.modMu.Lock()
		m := s.mod
		s.modMu.Unlock()
		if m != nil {
			fn(m)
		}
	}
	return client.Options{
		OnEnvelope:      func(e *wire.Envelope) { withMod(func(m *call.Module) { m.HandleEnvelope(e) }) },
		OnUndeliverable: func(u client.Undeliverable) { withMod(func(m *call.Module) { m.HandleUndeliverable(u) }) },
		OnRelayError:    func(e client.RelayError) { withMod(func(m *call.Module) { m.HandleRelayError(e) }) },
	}
}

type incomingCall struct {
	id    string // the call ID: an answer can only ever reach this call
	from  identity.Alias
	video bool
}

func (f *callFlags) start(ctx context.Context, stdout, stderr io.Writer) (*session, error) {
	id, alias, err := f.loadIdentity(ctx)
	if err != nil {
		return nil, err
	}
	pins, err := client.OpenPinStore(f.pinsPath())
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := &session{incoming: make(chan incomingCall, 1)}
	copts := s.relayCallbacks()
	copts.RelayURL, copts.Identity, copts.Alias, copts.Pins, copts.Logger = f.relay, id, alias, pins, logger
	s.client, err = client.Connect(ctx, copts)
	if err != nil {
		return nil, err
	}
	opts := call.Options{
		Signaler:    s.client,
		AlwaysRelay: f.relayOnly,
		Logger:      logger,
		OnIncoming: func(in call.Incoming) {
			select {
			case s.incoming <- incomingCall{in.CallID, in.From, in.Video}:
			default:
			}
		},
		// Call failures are printed from the call's state; a call refused
		// because the caller's key changed never rings, so say it here.
		OnError: func(err error) {
			var kc *client.KeyChangedError
			if errors.As(err, &kc) {
				fmt.Fprintf(stderr, "%v\n", err)
				keyChangedHint(stderr, kc.Peer)
			}
			if errors.Is(err, call.ErrICEFailed) {
				fmt.Fprintf(stderr, "%v\n", err) // says why no path worked
			}
		},
	}
	if f.sendVideo != "" {
		opts.Video = media.FileOpener(f.sendVideo)
	}
	if f.sendAudio != "" {
		opts.Audio = media.FileOpener(f.sendAudio)
	}
	if f.record != "" {
		opts.Sinks = recorder(f.record)
		opts.VideoSink = func(st call.Status) (call.FrameSink, error) {
			// A call upgraded to video (docs/PROTOCOL.md §10.10).
			return media.CreateIVF(filepath.Join(f.record, st.CallID+"-video.ivf"))
		}
	}
	s.modMu.Lock()
	s.mod = call.New(opts)
	s.modMu.Unlock()
	fmt.Fprintf(stdout, "connected to %s as %s\n", f.relay, alias)
	return s, nil
}

// keyChangedHint tells the user what to do about a peer whose key changed.
func keyChangedHint(w io.Writer, peer identity.Alias) {
	fmt.Fprintf(w, "see the new safety number with `duet id show %s`, compare it with them out of band, then accept the new key with `duet id accept %s`\n", peer, peer)
}

func (s *session) close() {
	s.mod.Close()
	s.client.Close()
}

// recorder writes each call's received media to DIR/<call_id>-video.ivf and
// DIR/<call_id>-audio.ogg.
func recorder(dir string) func(call.Status) (call.Sinks, error) {
	return func(st call.Status) (call.Sinks, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return call.Sinks{}, err
		}
		base := filepath.Join(dir, st.CallID)
		var sinks call.Sinks
		a, err := media.CreateOgg(base + "-audio.ogg")
		if err != nil {
			return call.Sinks{}, err
		}
		sinks.Audio = a
		if st.Video {
			v, err := media.CreateIVF(base + "-video.ivf")
			if err != nil {
				a.Close()
				return call.Sinks{}, err
			}
			sinks.Video = v
		}
		return sinks, nil
	}
}

// watch prints state changes until the call reaches a terminal state, and
// returns that status. hangupAfter > 0 hangs up after that long connected.
func (s *session) watch(ctx context.Context, stdout io.Writer, hangupAfter time.Duration) call.Status {
	sub := s.mod.State().Subscribe()
	defer sub.Unsubscribe()
	media := s.mod.PeerMedia().Subscribe()
	defer media.Unsubscribe()
	var timer <-chan time.Time
	var last call.State
	var recovering bool
	var peerMedia call.MediaState
	var video, sawConnected bool
	mediaC := media.C()
	for {
		select {
		case ms, ok := <-mediaC:
			if !ok {
				mediaC = nil // closed with the module: the state's channel ends the loop
				continue
			}
			if ms != peerMedia {
				peerMedia = ms
				fmt.Fprintln(stdout, "peer media: "+describeMedia(ms))
			}
		case st, ok := <-sub.C():
			if !ok {
				return s.mod.State().Get()
			}
			if st.State != last {
				last = st.State
				line := fmt.Sprintf("state: %s", st.State)
				if st.Reason != "" {
					line += fmt.Sprintf(" (%s)", st.Reason)
				}
				fmt.Fprintln(stdout, line)
			}
			if st.State == call.StateConnected && st.Video != video && last == call.StateConnected && sawConnected {
				if st.Video {
					fmt.Fprintln(stdout, "video: the call is now a video call")
				} else {
					fmt.Fprintln(stdout, "video: the call is now audio only")
				}
			}
			if st.State == call.StateConnected {
				sawConnected = true
			}
			video = st.Video
			if st.Recovering != recovering {
				recovering = st.Recovering
				if recovering {
					fmt.Fprintln(stdout, "connection lost: recovering (ICE restart)")
				} else if !st.State.Terminal() {
					fmt.Fprintln(stdout, "connection recovered")
				}
			}
			if st.State == call.StateConnected && hangupAfter > 0 && timer == nil {
				timer = time.After(hangupAfter)
			}
			if st.State.Terminal() {
				return st
			}
		case <-timer:
			s.mod.Hangup()
			timer = nil
		case <-ctx.Done():
			s.mod.Hangup()
			ctx = context.Background() // keep watching until the call has ended
		}
	}
}

// upgradeAfter turns the call into a video call d after it connected
// (duet call --upgrade-after), and says how that went.
func (s *session) upgradeAfter(ctx context.Context, stdout io.Writer, d time.Duration) {
	sub := s.mod.State().Subscribe()
	defer sub.Unsubscribe()
	connected := false
	for st := range sub.C() {
		if st.State.Terminal() {
			return
		}
		if connected = st.State == call.StateConnected; connected {
			break
		}
	}
	if !connected {
		return
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return
	}
	if err := s.mod.SetVideo(ctx, true); err != nil {
		fmt.Fprintf(stdout, "upgrade to video failed: %v\n", err)
		return
	}
	fmt.Fprintln(stdout, "upgraded to video: sending video")
}

// describeMedia says what a media state means, for the peer media line.
func describeMedia(ms call.MediaState) string {
	mic, cam := "microphone on", "camera on"
	if ms.AudioMuted {
		mic = "microphone muted"
	}
	if ms.VideoOff {
		cam = "camera off"
	}
	if ms.Screen {
		cam = "sharing the screen"
	}
	return mic + ", " + cam
}

// failed reports whether a call that ended with st failed for this side
// (docs/PROTOCOL.md §10.3), as opposed to a hangup by either side.
func failed(st call.Status) bool { return st.Err() != nil }

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, pos, code, done := parseCallFlags("duet call", callUsage(), args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "%s\n(see duet call --help)\n", argsError("duet call", "ALIAS", pos))
		return 2
	}
	peer, err := identity.ParseAlias(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "duet call: %v\n", err)
		return 2
	}
	s, err := f.start(ctx, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "duet call: %v\n", err)
		return 1
	}
	defer s.close()
	if err := s.mod.Call(ctx, peer, call.Media{Audio: true, Video: f.video}); err != nil {
		fmt.Fprintf(stderr, "duet call: %v\n", err)
		if errors.Is(err, client.ErrKeyChanged) {
			keyChangedHint(stderr, peer)
		}
		return 1
	}
	if f.upgradeAfter > 0 {
		go s.upgradeAfter(ctx, stdout, f.upgradeAfter)
	}
	st := s.watch(ctx, stdout, f.duration)
	printStats(stdout, s.mod.Stats())
	if failed(st) {
		fmt.Fprintf(stderr, "duet call: call ended: %s\n", describe(st))
		return 1
	}
	return 0
}

func runAnswer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f, pos, code, done := parseCallFlags("duet answer", answerUsage(), args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(stderr, "%s\n(see duet answer --help)\n", argsError("duet answer", "", pos))
		return 2
	}
	s, err := f.start(ctx, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "duet answer: %v\n", err)
		return 1
	}
	defer s.close()
	var lines <-chan string
	if !f.auto {
		lines = readLines(stdin)
	}
	fmt.Fprintln(stdout, "waiting for calls (Ctrl-C to stop)")
	for {
		var c incomingCall
		select {
		case <-ctx.Done():
			return 0
		case c = <-s.incoming:
		}
		kind := "audio"
		if c.video {
			kind = "video"
		}
		fmt.Fprintf(stdout, "incoming %s call from %s\n", kind, c.from)
		st, answered := s.answerOrNot(ctx, c, f.auto, lines, stdout, stderr)
		if answered {
			st = s.watch(ctx, stdout, 0)
			printStats(stdout, s.mod.Stats())
		}
		fmt.Fprintf(stdout, "call ended: %s\n", describe(st))
		if f.once || ctx.Err() != nil {
			if st.Err() != nil {
				return 1
			}
			return 0
		}
	}
}

// answerOrNot asks whether to answer c (unless auto) and answers or
// rejects that call, by its ID: a call that ends while the prompt shows
// cancels the prompt, and no answer typed for one call ever reaches
// another. It returns whether c was answered, else how it ended.
func (s *session) answerOrNot(ctx context.Context, c incomingCall, auto bool, lines <-chan string, stdout, stderr io.Writer) (call.Status, bool) {
	sub := s.mod.State().Subscribe()
	defer sub.Unsubscribe()
	yes := auto
	if !auto {
		// Lines typed before this prompt belong to no call.
		for drained := false; !drained; {
			select {
			case <-lines:
			default:
				drained = true
			}
		}
		fmt.Fprint(stdout, "Answer? [y/N] ")
	wait:
		for {
			select {
			case <-ctx.Done():
				_ = s.mod.RejectCall(c.id)
				return s.mod.State().Get(), false
			case st, ok := <-sub.C():
				if ok && st.CallID == c.id && !st.State.Terminal() {
					continue
				}
				if !ok || st.CallID == c.id {
					fmt.Fprintf(stdout, "\nthe call from %s ended before you answered (%s); prompt cancelled\n", c.from, describe(st))
					return st, false
				}
			case line, ok := <-lines:
				if !ok {
					line = "" // stdin closed: no
				}
				line = strings.ToLower(strings.TrimSpace(line))
				yes = line == "y" || line == "yes"
				break wait
			}
		}
	}
	if !yes {
		if err := s.mod.RejectCall(c.id); err != nil {
			fmt.Fprintf(stdout, "the call from %s had already ended\n", c.from)
		} else {
			fmt.Fprintln(stdout, "rejected")
		}
		return s.mod.State().Get(), false
	}
	if err := s.mod.AnswerCall(ctx, c.id); err != nil {
		if errors.Is(err, call.ErrNoIncomingCall) {
			fmt.Fprintf(stdout, "the call from %s ended before the answer (%s)\n", c.from, describe(s.mod.State().Get()))
			return s.mod.State().Get(), false
		}
		fmt.Fprintf(stderr, "duet answer: %v\n", err)
	}
	return call.Status{}, true
}

// readLines reads r line by line on a goroutine of its own; the channel
// closes at the end of r.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		in := bufio.NewScanner(r)
		for in.Scan() {
			ch <- in.Text()
		}
	}()
	return ch
}

func describe(st call.Status) string {
	if st.Reason == "" {
		return string(st.State)
	}
	return fmt.Sprintf("%s (%s)", st.State, st.Reason)
}

func printStats(w io.Writer, s call.Stats) {
	pair := "none (no connection)"
	if s.LocalCandidate != "" || s.RemoteCandidate != "" {
		pair = orDash(s.LocalCandidate) + "/" + orDash(s.RemoteCandidate)
	}
	fmt.Fprintf(w, "stats: connected %s, sent %d B (%d video / %d audio frames), received %d B (%d video / %d audio frames), candidates %s\n",
		s.Connected.Round(time.Millisecond), s.BytesSent, s.VideoFramesSent, s.AudioFramesSent,
		s.BytesReceived, s.VideoFramesReceived, s.AudioFramesReceived, pair)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ask prints prompt and reports whether the next line of in says yes.
func ask(in *bufio.Reader, stdout io.Writer, prompt string) bool {
	fmt.Fprint(stdout, prompt)
	line, _ := in.ReadString('\n')
	line = strings.ToLower(strings.TrimSpace(line))
	return line == "y" || line == "yes"
}
