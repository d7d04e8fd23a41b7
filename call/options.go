package call

import (
	"context"
	"log/slog"
	"time"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/media"
	"github.com/duetcall/duet/wire"
)

// Signaler is what the module needs from a relay connection. *client.Client
// satisfies it (and Pins, which a Signaler should implement to spare a key
// lookup per incoming offer).
type Signaler interface {
	// Send sends one envelope to the relay.
	Send(ctx context.Context, env *wire.Envelope) error
	// PeerKeys returns a peer's long-term public keys, checked against the
	// pinned ones (an error wrapping client.ErrKeyChanged when they differ).
	PeerKeys(ctx context.Context, peer identity.Alias) (identity.PublicKeys, error)
	// ICEConfig returns the relay's ICE configuration.
	ICEConfig(ctx context.Context) (client.ICEConfig, error)
	// Identity returns this user's identity.
	Identity() *identity.Identity
	// Alias returns this user's alias.
	Alias() identity.Alias
}

// Pins is an optional interface of a Signaler (*client.Client has it):
// PinnedKeys returns the keys pinned locally for peer, without a request to
// the relay. With it, an offer from a peer the module holds a signaling
// session with is opened with that session only while the session's keys
// equal the pinned ones, so a key accepted since (client.AcceptKey) takes
// effect at once. Without it, the keys of every incoming offer's sender are
// looked up with PeerKeys.
type Pins interface {
	PinnedKeys(peer identity.Alias) (identity.PublicKeys, bool)
}

// FrameSink receives the decrypted frames of one kind of a call: whole VP8
// frames or Opus packets. *media.IVFSink and *media.OggSink are FrameSinks.
// A sink that is also an io.Closer is closed when the call ends.
type FrameSink interface {
	WriteFrame(media.Frame) error
}

// Sinks are where one call's received media goes; a nil field discards
// that kind (it is still decrypted and counted).
type Sinks struct {
	Audio FrameSink
	Video FrameSink
}

// Options configure a Module. Only Signaler is required.
type Options struct {
	// Signaler sends and authenticates signaling; usually a
	// *client.Client.
	Signaler Signaler

	// AlwaysRelay forces every call through TURN (ICE transport policy
	// relay): the peers never learn each other's IP addresses, at the cost
	// of TURN bandwidth. The default false allows host, srflx and relay
	// candidates. The relay's ice_transport_policy "relay" forces relaying
	// regardless.
	AlwaysRelay bool

	// Audio and Video open the media each call sends; they are called once
	// per call, and the frames are paced in real time and looped. Nil
	// means the embedded fixtures (media.AudioFixture, media.VideoFixture).
	Audio media.Opener
	Video media.Opener

	// Sinks, if set, is called when a call starts connecting and returns
	// where that call's received frames go. An error ends the call.
	Sinks func(Status) (Sinks, error)

	// VideoSink, if set, is called when a call whose Sinks had no video
	// sink receives video (an audio call upgraded by either side,
	// docs/PROTOCOL.md §10.10) and returns where that video goes; an error
	// discards it. The sink is closed with the call like the others.
	VideoSink func(Status) (FrameSink, error)

	// OnIncomingCall is called when an offer arrives and the module starts
	// ringing; isVideo comes from the offer SDP's m=video line. It runs on
	// the module's signaling goroutine and must not block: call Answer or
	// Reject from another goroutine.
	OnIncomingCall func(from identity.Alias, isVideo bool)

	// OnIncoming is OnIncomingCall with the call's ID: pass it to
	// AnswerCall or RejectCall so that the answer can only ever reach the
	// call the user was shown (a call that ended meanwhile is refused with
	// ErrNoIncomingCall, never swapped for a later one). Called before
	// OnIncomingCall when both are set; it must not block either.
	OnIncoming func(Incoming)

	// OnError is called when a call fails (no answer, callee offline, ICE
	// failed, media timeout, disconnected, a setup error; the error wraps
	// one of this package's sentinels), and when an incoming call is
	// refused because the caller's keys changed since they were pinned
	// (nothing rings; the error wraps client.ErrKeyChanged). It must not
	// block.
	OnError func(error)

	// Logger receives the module's logs: state changes and the Diag line
	// at Info, the setup STEP logs at Debug. Nil means slog.Default().
	Logger *slog.Logger
}

// Timing constants of docs/PROTOCOL.md §6 and the seed. They are
// deliberately not configurable; a module copies them into its timings,
// which only this package's tests shorten, per module (export_test.go).
const (
	// answerTimeout: the caller gives up without an answer, sends
	// call_hangup (no_answer) and ends.
	answerTimeout = 15 * time.Second
	// ringTimeout: a callee that is still ringing this long after the offer
	// arrived stops ringing (the caller gave up at answerTimeout; its
	// call_hangup may have been lost).
	ringTimeout = answerTimeout + 5*time.Second
	// disconnectedTimeout: a connection that stays disconnected this long
	// ends the call.
	disconnectedTimeout = 8 * time.Second
	// mediaTimeout: no growth of inbound RTP bytes for this long ends the
	// call.
	mediaTimeout = 15 * time.Second
	// mediaCheckInterval: how often inbound RTP bytes are sampled.
	mediaCheckInterval = time.Second
	// diagInterval: the Diag log line period.
	diagInterval = 2 * time.Second
	// sendTimeout bounds one signaling send.
	sendTimeout = 5 * time.Second
	// restartDelay: the caller restarts ICE this long after the connection
	// went disconnected (PROTOCOL §10.6).
	restartDelay = 2 * time.Second
	// restartWait bounds an ICE restart, and how long a callee whose ICE
	// failed waits for the caller's restart offer.
	restartWait = 10 * time.Second
	// offerRetry is the first wait before an offer the relay refused for
	// a passing reason (recipient_busy, unavailable) is sent again; it
	// doubles per refusal, up to 8 times, while the answer timeout runs
	// (PROTOCOL §10.8).
	offerRetry = time.Second
	// netCheckInterval is how often a call compares the machine's
	// interface addresses with the ones it started with.
	netCheckInterval = time.Second
)

// timings are one module's timings: the constants above, unless a test of
// this package shortened them for its modules.
type timings struct {
	answer, ring, disconnected, media, mediaCheck, diag, restartDelay, restartWait, rekeyRetry, rekeySwitch, netCheck, offerRetry time.Duration
}

// defaultTimings returns the constants.
func defaultTimings() timings {
	return timings{
		answer: answerTimeout, ring: ringTimeout, disconnected: disconnectedTimeout, media: mediaTimeout,
		mediaCheck: mediaCheckInterval, diag: diagInterval, restartDelay: restartDelay, restartWait: restartWait,
		rekeyRetry: rekeyRetry, rekeySwitch: rekeySwitchWait, netCheck: netCheckInterval,
		offerRetry: offerRetry,
	}
}

// machine returns the state machine's share of the timings.
func (t timings) machine() fsm.Timings {
	return fsm.Timings{
		Answer: t.answer, Ring: t.ring, Disconnected: t.disconnected,
		RestartDelay: t.restartDelay, RestartWait: t.restartWait, Media: t.media,
		Renegotiate: t.restartWait, OfferRetry: t.offerRetry,
	}
}

// Bounds of the module's queues.
const (
	// inboundQueue is how many received envelopes wait for processing;
	// more are dropped (counted as "queue_full").
	inboundQueue = 256
	// maxPendingCandidates bounds remote candidates received before the
	// remote description is set, and local ones gathered before the offer
	// or answer is sent; more are dropped (counted).
	maxPendingCandidates = 64
	// iceQueue bounds local candidates waiting to be sent.
	iceQueue = 64
	// maxPeers bounds the cached signaling sessions (one per peer).
	maxPeers = 64
)
