// Package fsm is duet's call state machine without any I/O: the rules of
// docs/PROTOCOL.md §10 as a value that takes events (the app's calls,
// authenticated signaling messages, connection changes, timers) and returns
// the actions to perform (messages to send, timers to start or stop, states
// and errors to report, media work for the driver). It knows no network, no
// WebRTC and no clock: the driver owns sockets, peer connections and timers
// and feeds their outcomes back in.
//
// The browser SDK has the same machine in web/sdk/call-fsm.js; both run the
// scenarios of testdata/scenarios, so the two SDKs behave alike by
// construction. The shape follows the "sans-I/O" protocol cores (str0m,
// quinn-proto) and Signal RingRTC's call_fsm, whose machine reacts and
// hands everything that waits on the network to a worker.
package fsm

import (
	"time"
)

// State is a call state: the seed's names.
type State string

// States.
const (
	Idle       State = "idle"
	Calling    State = "calling"
	Ringing    State = "ringing"
	Connecting State = "connecting"
	Connected  State = "connected"
	Hangup     State = "hangup"
	Rejected   State = "rejected"
	Ended      State = "ended"
)

// Active reports whether s is the state of a call in progress.
func (s State) Active() bool {
	return s == Calling || s == Ringing || s == Connecting || s == Connected
}

// Ending says why a call ended, as the local app sees it (the wire reason
// set of PROTOCOL §3 plus local endings).
type Ending string

// Endings. The first group are also wire reasons; the second are local.
const (
	UserHangup   Ending = "user_hangup"
	Declined     Ending = "declined"
	Busy         Ending = "busy"
	NoAnswer     Ending = "no_answer"
	ICEFailed    Ending = "ice_failed"
	MediaTimeout Ending = "media_timeout"
	Disconnected Ending = "disconnected"
	Error        Ending = "error"

	// Offline: the relay reported the offer undeliverable because no
	// device of the callee is connected (undeliverable reason offline).
	Offline Ending = "offline"
	// Unavailable: the relay kept refusing the offer for another reason
	// (recipient_busy: the callee is sent more than it takes;
	// unavailable: the relay cannot reach its message bus) until the
	// answer timer ran out; the callee may well be online.
	Unavailable Ending = "unavailable"
	// Missed: a ringing callee whose caller gave up (or whose ring timed
	// out); a missed call, not an error.
	Missed Ending = "missed"
	// AnsweredElsewhere, DeclinedElsewhere, BusyElsewhere: another device
	// of the callee answered, declined or was busy (call_select).
	AnsweredElsewhere Ending = "answered_elsewhere"
	DeclinedElsewhere Ending = "declined_elsewhere"
	BusyElsewhere     Ending = "busy_elsewhere"
	// Replaced: glare; our outgoing call gave way to the peer's call,
	// which this machine answered instead.
	Replaced Ending = "replaced"
)

// Timer names a call timer. The driver starts and stops them as told and
// feeds an EvTimer event when one fires.
type Timer string

// Timers.
const (
	TimerAnswer       Timer = "answer"        // caller: 15 s for an answer
	TimerRing         Timer = "ring"          // callee: 20 s of ringing at most
	TimerDisconnected Timer = "disconnected"  // 8 s disconnected
	TimerRestartDelay Timer = "restart_delay" // caller: 2 s disconnected, then restart
	TimerRestartWait  Timer = "restart_wait"  // 10 s for an ICE restart to recover
	TimerMedia        Timer = "media"         // 15 s without inbound media
	TimerRenegotiate  Timer = "renegotiate"   // 10 s for the answer to a renegotiation
	// TimerOfferRetry: caller: the wait before an offer the relay refused
	// for a passing reason is sent again: 1 s, doubling per refusal up to
	// 8 s, while the answer timer runs.
	TimerOfferRetry Timer = "offer_retry"
)

// maxOfferRetryShift caps the doubling of the offer retry wait (1 s << 3).
const maxOfferRetryShift = 3

// Timings are the durations of the timers. Defaults returns PROTOCOL §6's.
type Timings struct {
	Answer, Ring, Disconnected, RestartDelay, RestartWait, Media, Renegotiate time.Duration
	// OfferRetry is the first offer retry wait (it doubles per refusal).
	OfferRetry time.Duration
}

// Defaults returns the shared constants of PROTOCOL §6.
func Defaults() Timings {
	return Timings{
		Answer:       15 * time.Second,
		Ring:         20 * time.Second,
		Disconnected: 8 * time.Second,
		RestartDelay: 2 * time.Second,
		RestartWait:  10 * time.Second,
		Media:        15 * time.Second,
		Renegotiate:  10 * time.Second,
		OfferRetry:   time.Second,
	}
}

func (t Timings) of(n Timer) time.Duration {
	switch n {
	case TimerAnswer:
		return t.Answer
	case TimerRing:
		return t.Ring
	case TimerDisconnected:
		return t.Disconnected
	case TimerRestartDelay:
		return t.RestartDelay
	case TimerRestartWait:
		return t.RestartWait
	case TimerMedia:
		return t.Media
	case TimerRenegotiate:
		return t.Renegotiate
	case TimerOfferRetry:
		return t.OfferRetry
	}
	return 0
}

// EventKind names an event.
type EventKind string

// Events. Local API calls first, then authenticated received messages,
// then the driver's reports.
const (
	EvCall     EventKind = "call"        // the app places a call: CallID, Peer, Video
	EvAnswer   EventKind = "answer"      // the app answers CallID
	EvReject   EventKind = "reject"      // the app rejects CallID
	EvHangup   EventKind = "hangup"      // the app hangs up the current call
	EvOfferOut EventKind = "offer_sent"  // the driver sent the offer of CallID
	EvFailed   EventKind = "failed"      // the driver's setup or media work failed: Error
	EvKeyChg   EventKind = "key_changed" // caller: the peer's keys changed (offer sent with held keys)
	// EvRenegotiate: the app changes the call's media (upgrade to video,
	// downgrade to audio): a renegotiation offer is to be sent.
	EvRenegotiate EventKind = "renegotiate"

	EvRecvOffer  EventKind = "recv_offer"  // Peer, CallID, Device, Video, Restart, Renegotiate
	EvRecvAnswer EventKind = "recv_answer" // CallID, Device
	EvRecvICE    EventKind = "recv_ice"    // CallID, Device
	EvRecvReject EventKind = "recv_reject" // CallID, Device, Reason
	EvRecvHangup EventKind = "recv_hangup" // CallID, Device, Reason
	EvRecvSelect EventKind = "recv_select" // CallID, Selected, Outcome
	EvRecvRekey  EventKind = "recv_rekey"  // CallID, Device
	EvRecvMedia  EventKind = "recv_media"  // CallID, Device, AudioMuted, VideoOff, Screen

	// EvUndeliverable: the relay could not deliver CallID's offer; Reason
	// is the notice's (offline, recipient_busy, unavailable; empty is
	// offline).
	EvUndeliverable EventKind = "undeliverable"
	EvConn          EventKind = "conn"  // connection state: Conn
	EvMedia         EventKind = "media" // inbound media grew
	EvNetChange     EventKind = "network_changed"
	EvTimer         EventKind = "timer" // Timer fired for CallID
)

// Conn is a connection state the driver reports (the peer connection's,
// with ICE failure reported as failed).
type Conn string

// Connection states.
const (
	ConnConnected    Conn = "connected"
	ConnDisconnected Conn = "disconnected"
	ConnFailed       Conn = "failed"
)

// Event is one input. Fields not used by its kind are empty.
type Event struct {
	Kind    EventKind `json:"kind"`
	CallID  string    `json:"call_id,omitempty"`
	Peer    string    `json:"peer,omitempty"`
	Device  string    `json:"device,omitempty"`
	Video   bool      `json:"video,omitempty"`
	Restart bool      `json:"restart,omitempty"`
	// Renegotiate: a recv_offer that changes the call's media (PROTOCOL §10.10).
	Renegotiate bool   `json:"renegotiate,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Selected    string `json:"selected,omitempty"`
	Outcome     string `json:"outcome,omitempty"`
	Conn        Conn   `json:"conn,omitempty"`
	Timer       Timer  `json:"timer,omitempty"`
	Error       string `json:"error,omitempty"`
	// AudioMuted, VideoOff, Screen: the peer's media state (recv_media).
	AudioMuted bool `json:"audio_muted,omitempty"`
	VideoOff   bool `json:"video_off,omitempty"`
	Screen     bool `json:"screen,omitempty"`
}

// ActionKind names an action.
type ActionKind string

// Actions.
const (
	// State: publish the call's state (Reason set in the end states).
	ActState ActionKind = "state"
	// Ring: tell the app of an incoming call (Peer, CallID, Video).
	ActRing ActionKind = "ring"
	// Error: tell the app the call failed: Error is one of the error
	// names of PROTOCOL §10.3.
	ActError ActionKind = "error"
	// APIError: refuse the app's call with Error.
	ActAPIError ActionKind = "api_error"
	// Send: seal and send a message of Type for CallID to Peer, with
	// Reason (reject, hangup) or Selected and Outcome (select).
	ActSend ActionKind = "send"
	// Drop: an event with no effect, counted by Reason.
	ActDrop ActionKind = "drop"

	ActTimerStart ActionKind = "timer_start" // Timer, Ms
	ActTimerStop  ActionKind = "timer_stop"  // Timer

	// SetupCaller: create the peer connection and the offer, send it,
	// then report EvOfferOut (or EvFailed).
	ActSetupCaller ActionKind = "setup_caller"
	// PrepareCallee: while ringing, create the peer connection and set
	// the offer (nothing is sent).
	ActPrepareCallee ActionKind = "prepare_callee"
	// SendAnswer: derive the media keys, create and send the answer.
	ActSendAnswer ActionKind = "send_answer"
	// ApplyAnswer: caller: derive the media keys from Device's answer and
	// set it as the remote description.
	ActApplyAnswer ActionKind = "apply_answer"
	// AddICE: add the received candidate.
	ActAddICE ActionKind = "add_ice"
	// Selected: callee: the caller took this device's answer (call_select
	// names it): add the caller's candidates held since the answer.
	ActSelected ActionKind = "selected"
	// RestartICE: caller: send an ICE restart offer (gathering anew).
	ActRestartICE ActionKind = "restart_ice"
	// ApplyRestart: callee: apply the restart offer and answer it.
	ActApplyRestart ActionKind = "apply_restart"
	// ApplyRestartAnswer: caller: set the answer to the restart offer.
	ActApplyRestartAnswer ActionKind = "apply_restart_answer"
	// StartMedia: the first connected: start sending media and watching
	// inbound media.
	ActStartMedia ActionKind = "start_media"
	// Rekey: hand the received call_rekey to the rekey logic.
	ActRekey ActionKind = "rekey"
	// Teardown: release CallID's peer connection and media.
	ActTeardown ActionKind = "teardown"
	// Recovery: the connection is down and being recovered (Recovering),
	// or is back: apps show it beside the seed's state, which stays
	// connected (PROTOCOL §10.6).
	ActRecovery ActionKind = "recovery"
	// SendRenegotiation: create a renegotiation offer for the media the
	// app asked for and send it (call_offer renegotiate).
	ActSendRenegotiation ActionKind = "send_renegotiation"
	// ApplyRenegotiation: apply the peer's renegotiation offer (rolling
	// back our own first, if one is out) and answer it.
	ActApplyRenegotiation ActionKind = "apply_renegotiation"
	// ApplyRenegotiationAnswer: set the answer to our renegotiation.
	ActApplyRenegotiationAnswer ActionKind = "apply_renegotiation_answer"
	// RenegotiationEnd: our renegotiation will not complete: Error is
	// glare (the peer's won), timeout or interrupted (the connection
	// went down).
	ActRenegotiationEnd ActionKind = "renegotiation_end"
	// PeerMedia: the peer's media state changed (AudioMuted, VideoOff,
	// Screen): apps show it (PROTOCOL §10.9).
	ActPeerMedia ActionKind = "peer_media"
	// ResendOffer: caller: send the call's offer again (the same call,
	// the same envelope id), then the local candidates sent so far: the
	// relay refused it for a passing reason (recipient_busy, unavailable).
	ActResendOffer ActionKind = "resend_offer"
)

// Action is one output.
type Action struct {
	Kind     ActionKind `json:"kind"`
	CallID   string     `json:"call_id,omitempty"`
	Peer     string     `json:"peer,omitempty"`
	State    State      `json:"state,omitempty"`
	Incoming bool       `json:"incoming,omitempty"`
	Video    bool       `json:"video,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Type     string     `json:"type,omitempty"`
	Device   string     `json:"device,omitempty"`
	Selected string     `json:"selected,omitempty"`
	Outcome  string     `json:"outcome,omitempty"`
	Timer    Timer      `json:"timer,omitempty"`
	Ms       int64      `json:"ms,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Recovering is the Recovery action's flag.
	Recovering bool `json:"recovering,omitempty"`
	// AudioMuted, VideoOff, Screen are the PeerMedia action's state.
	AudioMuted bool `json:"audio_muted,omitempty"`
	VideoOff   bool `json:"video_off,omitempty"`
	Screen     bool `json:"screen,omitempty"`
}

// Message types the machine sends itself (the rest are the driver's).
const (
	msgReject = "call_reject"
	msgHangup = "call_hangup"
	msgSelect = "call_select"
)

// Outcomes of call_select.
const (
	OutcomeAnswered = "answered"
	OutcomeDeclined = "declined"
	OutcomeBusy     = "busy"
)

// Errors reported with ActError and ActAPIError (PROTOCOL §10.3).
const (
	ErrNoAnswer         = "no_answer"
	ErrDeclined         = "declined"
	ErrBusy             = "busy"
	ErrOffline          = "offline"
	ErrUnavailable      = "unavailable"
	ErrICEFailed        = "ice_failed"
	ErrMediaTimeout     = "media_timeout"
	ErrDisconnected     = "disconnected"
	ErrSetup            = "setup"
	ErrKeyChanged       = "key_changed"
	ErrInCall           = "in_call"
	ErrNoIncomingCall   = "no_incoming_call"
	ErrAlreadyAnswering = "already_answering"
	ErrNoCall           = "no_call"
	ErrNotConnected     = "not_connected" // renegotiate before connected
	ErrRenegotiating    = "renegotiating" // a renegotiation or a recovery is in progress
	// Ends of a renegotiation (ActRenegotiationEnd).
	ErrGlare       = "glare"
	ErrTimeout     = "timeout"
	ErrInterrupted = "interrupted"
)

// ReasonOffline is the undeliverable reason that ends a call as offline
// (PROTOCOL §9.2); the others are passing.
const ReasonOffline = "offline"

// Drop reasons.
const (
	dropUnknownCall = "unknown_call"
	dropDuplicate   = "duplicate"
	dropUnexpected  = "unexpected"
	dropOtherDevice = "other_device"
	dropGlareLost   = "glare_lost"
	dropStaleTimer  = "stale_timer"
)

// call is the machine's view of one call.
type call struct {
	id         string
	peer       string
	incoming   bool
	video      bool
	state      State
	offerSent  bool   // caller: the peer may know of the call
	answering  bool   // callee: the app answered
	selected   string // caller: the callee device whose answer was taken
	haveSel    bool
	connected  bool // reached connected once
	restarted  bool // an ICE restart was begun in this outage (one allowed)
	restarting bool // that restart is in progress (not yet connected again)
	failed     bool // ICE failed in this outage
	recovering bool // an outage is in progress (told with ActRecovery)
	// negotiating: our renegotiation offer awaits its answer (§10.10).
	negotiating bool
	wantVideo   bool // the media our renegotiation asks for
	// sendVideo, recvVideo: whether this side and the peer send video, as
	// the last renegotiation of each left it; video is their or.
	sendVideo, recvVideo bool
	// undelivered: caller: the relay refused the offer for a passing
	// reason (and no callee device has answered since): whether a later
	// sending reached the callee is unknown, as the relay confirms no
	// delivery; retries counts those refusals.
	undelivered bool
	retries     int
	timers      map[Timer]bool
}

// Machine is one module's call state machine: at most one call at a time.
// It is not safe for concurrent use; the driver serialises events.
type Machine struct {
	device string
	t      Timings
	cur    *call // the call in progress, or the last one (ended)
	out    []Action
}

// New returns a machine for the device named device (its party id on the
// wire, PROTOCOL §10.4) with timings t.
func New(device string, t Timings) *Machine {
	return &Machine{device: device, t: t}
}

// Device returns the machine's device id.
func (m *Machine) Device() string { return m.device }

// State returns the current state and call ID ("" before the first call).
func (m *Machine) State() (State, string) {
	if m.cur == nil {
		return Idle, ""
	}
	return m.cur.state, m.cur.id
}

// Busy reports whether a call is in progress.
func (m *Machine) Busy() bool { return m.cur != nil && m.cur.state.Active() }

// Handle takes one event and returns the actions to perform, in order.
func (m *Machine) Handle(e Event) []Action {
	m.out = nil
	c := m.cur
	if c != nil && !c.state.Active() {
		c = nil // an ended call only explains why it ended
	}
	switch e.Kind {
	case EvCall:
		m.onCall(c, e)
	case EvAnswer:
		m.onAnswer(c, e)
	case EvReject:
		m.onReject(c, e)
	case EvHangup:
		m.onHangup(c)
	case EvRecvOffer:
		m.onOffer(c, e)
	default:
		if c == nil || e.CallID != c.id {
			if e.Kind == EvTimer {
				m.drop(dropStaleTimer)
			} else {
				m.drop(dropUnknownCall)
			}
			break
		}
		m.onCallEvent(c, e)
	}
	out := m.out
	m.out = nil
	return out
}

func (m *Machine) emit(a Action) { m.out = append(m.out, a) }

func (m *Machine) drop(reason string) { m.emit(Action{Kind: ActDrop, Reason: reason}) }

func (m *Machine) publish(c *call, reason Ending) {
	m.emit(Action{Kind: ActState, CallID: c.id, Peer: c.peer, State: c.state, Incoming: c.incoming, Video: c.video, Reason: string(reason)})
}

func (m *Machine) startTimer(c *call, t Timer) { m.startTimerFor(c, t, m.t.of(t)) }

func (m *Machine) startTimerFor(c *call, t Timer, d time.Duration) {
	c.timers[t] = true
	m.emit(Action{Kind: ActTimerStart, CallID: c.id, Timer: t, Ms: d.Milliseconds()})
}

func (m *Machine) stopTimer(c *call, t Timer) {
	if c.timers[t] {
		delete(c.timers, t)
		m.emit(Action{Kind: ActTimerStop, CallID: c.id, Timer: t})
	}
}

func (m *Machine) send(c *call, typ string, reason Ending) {
	m.emit(Action{Kind: ActSend, CallID: c.id, Peer: c.peer, Type: typ, Reason: string(reason)})
}

func (m *Machine) sendSelect(c *call, selected, outcome string) {
	m.emit(Action{Kind: ActSend, CallID: c.id, Peer: c.peer, Type: msgSelect, Selected: selected, Outcome: outcome})
}

// end ends c: timers stop, the peer is told (msg "" for nothing), the
// driver tears the call down, the app sees the end state and, for a
// failure, the error.
func (m *Machine) end(c *call, st State, reason Ending, msg string, wireReason Ending, errName string) {
	for _, t := range []Timer{TimerAnswer, TimerRing, TimerDisconnected, TimerRestartDelay, TimerRestartWait, TimerMedia, TimerRenegotiate, TimerOfferRetry} {
		m.stopTimer(c, t)
	}
	if msg != "" {
		m.send(c, msg, wireReason)
	}
	m.emit(Action{Kind: ActTeardown, CallID: c.id})
	c.state = st
	if reason != Replaced { // the app sees the call that replaced it instead
		m.publish(c, reason)
	}
	if errName != "" {
		m.emit(Action{Kind: ActError, CallID: c.id, Peer: c.peer, Error: errName})
	}
}

// peerKnows reports whether the peer can know of c (so that ending it is
// worth a message).
func (c *call) peerKnows() bool { return c.incoming || c.offerSent }

func (m *Machine) onCall(c *call, e Event) {
	if c != nil {
		m.emit(Action{Kind: ActAPIError, Error: ErrInCall})
		return
	}
	n := &call{id: e.CallID, peer: e.Peer, video: e.Video, sendVideo: e.Video, recvVideo: e.Video, state: Calling, timers: map[Timer]bool{}}
	m.cur = n
	m.emit(Action{Kind: ActSetupCaller, CallID: n.id, Peer: n.peer, Video: n.video})
	m.publish(n, "")
}

func (m *Machine) onAnswer(c *call, e Event) {
	switch {
	case c != nil && c.incoming && (e.CallID == "" || c.id == e.CallID) && c.answering:
		m.emit(Action{Kind: ActAPIError, CallID: e.CallID, Error: ErrAlreadyAnswering})
	case c == nil || !c.incoming || c.state != Ringing || (e.CallID != "" && c.id != e.CallID):
		m.emit(Action{Kind: ActAPIError, CallID: e.CallID, Error: ErrNoIncomingCall})
	default:
		m.answer(c)
	}
}

func (m *Machine) answer(c *call) {
	c.answering = true
	m.stopTimer(c, TimerRing)
	c.state = Connecting
	m.publish(c, "")
	m.emit(Action{Kind: ActSendAnswer, CallID: c.id, Peer: c.peer, Video: c.video})
}

func (m *Machine) onReject(c *call, e Event) {
	if c == nil || !c.incoming || c.state != Ringing || (e.CallID != "" && c.id != e.CallID) {
		m.emit(Action{Kind: ActAPIError, CallID: e.CallID, Error: ErrNoIncomingCall})
		return
	}
	m.end(c, Rejected, Declined, msgReject, Declined, "")
}

func (m *Machine) onHangup(c *call) {
	switch {
	case c == nil:
		m.emit(Action{Kind: ActAPIError, Error: ErrNoCall})
	case c.incoming && c.state == Ringing:
		// Hanging up a ringing call declines it (on every device).
		m.end(c, Rejected, Declined, msgReject, Declined, "")
	case c.peerKnows():
		m.end(c, Hangup, UserHangup, msgHangup, UserHangup, "")
	default:
		m.end(c, Hangup, UserHangup, "", "", "")
	}
}

func (m *Machine) onOffer(c *call, e Event) {
	if e.Restart || e.Renegotiate {
		if c == nil || c.id != e.CallID || c.peer != e.Peer {
			m.drop(dropUnknownCall)
			return
		}
		m.onCallEvent(c, e)
		return
	}
	if c != nil && c.id == e.CallID {
		m.drop(dropDuplicate)
		return
	}
	if c != nil && !c.incoming && c.state == Calling && c.peer == e.Peer {
		// Glare (PROTOCOL §10.5): the peer called us while we call them.
		// Before our offer is out the peer cannot know our call: we take
		// theirs. After, the lesser call_id wins on both sides.
		if c.offerSent && e.CallID > c.id {
			m.drop(dropGlareLost)
			return
		}
		if c.offerSent {
			// The peer's other devices ring for our call: tell them
			// their device answered it (the one that called us).
			m.sendSelect(c, e.Device, OutcomeAnswered)
		}
		m.end(c, Ended, Replaced, "", "", "")
		m.answer(m.incoming(e))
		return
	}
	if c != nil {
		// Busy: the new call is refused, the current one goes on.
		m.emit(Action{Kind: ActSend, CallID: e.CallID, Peer: e.Peer, Type: msgReject, Reason: string(Busy)})
		return
	}
	n := m.incoming(e)
	m.publish(n, "")
	m.startTimer(n, TimerRing)
	m.emit(Action{Kind: ActRing, CallID: n.id, Peer: n.peer, Video: n.video})
}

// incoming makes e's call the current one, ringing (not yet published),
// with its peer connection being prepared.
func (m *Machine) incoming(e Event) *call {
	n := &call{id: e.CallID, peer: e.Peer, incoming: true, video: e.Video, sendVideo: e.Video, recvVideo: e.Video, state: Ringing, timers: map[Timer]bool{}}
	m.cur = n
	m.emit(Action{Kind: ActPrepareCallee, CallID: n.id, Peer: n.peer, Video: n.video})
	return n
}

// onCallEvent handles an event for the call in progress c (same call_id).
func (m *Machine) onCallEvent(c *call, e Event) {
	switch e.Kind {
	case EvOfferOut:
		if c.incoming || c.offerSent {
			m.drop(dropUnexpected)
			return
		}
		c.offerSent = true
		if c.state == Calling {
			m.startTimer(c, TimerAnswer)
		}
	case EvFailed:
		if c.peerKnows() {
			m.end(c, Ended, Error, msgHangup, Error, ErrSetup)
		} else {
			m.end(c, Ended, Error, "", "", ErrSetup)
		}
	case EvKeyChg:
		m.end(c, Ended, Error, msgHangup, Error, ErrKeyChanged)
	case EvUndeliverable:
		if c.incoming || c.state != Calling {
			m.drop(dropUnexpected)
			return
		}
		if e.Reason != "" && e.Reason != ReasonOffline {
			// A passing refusal (recipient_busy, unavailable): the callee
			// may be online; the offer goes again after a wait that
			// doubles per refusal, while the answer timer runs.
			if c.timers[TimerOfferRetry] {
				m.drop(dropDuplicate)
				return
			}
			c.undelivered = true
			m.startTimerFor(c, TimerOfferRetry, m.t.OfferRetry<<min(c.retries, maxOfferRetryShift))
			c.retries++
			return
		}
		m.end(c, Ended, Offline, "", "", ErrOffline)
	case EvRenegotiate:
		switch {
		case c.state != Connected:
			m.emit(Action{Kind: ActAPIError, CallID: c.id, Error: ErrNotConnected})
		case c.negotiating || c.recovering || c.restarting:
			m.emit(Action{Kind: ActAPIError, CallID: c.id, Error: ErrRenegotiating})
		default:
			c.negotiating, c.wantVideo = true, e.Video
			m.startTimer(c, TimerRenegotiate)
			m.emit(Action{Kind: ActSendRenegotiation, CallID: c.id, Video: e.Video})
		}
	case EvRecvOffer:
		if e.Renegotiate {
			m.onRenegotiation(c, e)
			return
		}
		// An ICE restart offer for c.
		if !c.incoming || c.state == Ringing {
			m.drop(dropUnexpected)
			return
		}
		m.endNegotiation(c, ErrInterrupted)
		m.stopTimer(c, TimerRestartWait)
		c.restarted, c.restarting = true, true
		m.startTimer(c, TimerRestartWait)
		m.emit(Action{Kind: ActApplyRestart, CallID: c.id})
	case EvRecvAnswer:
		m.onRecvAnswer(c, e)
	case EvRecvICE:
		switch {
		case c.incoming:
			m.emit(Action{Kind: ActAddICE, CallID: c.id})
		case !c.haveSel:
			m.drop(dropUnexpected)
		case e.Device != c.selected:
			m.drop(dropOtherDevice)
		default:
			m.emit(Action{Kind: ActAddICE, CallID: c.id})
		}
	case EvRecvReject:
		m.onRecvReject(c, e)
	case EvRecvHangup:
		m.onRecvHangup(c, e)
	case EvRecvSelect:
		if c.incoming && e.Selected == m.device && (c.state == Connecting || c.state == Connected) {
			m.emit(Action{Kind: ActSelected, CallID: c.id})
			return
		}
		if !c.incoming || e.Selected == m.device {
			m.drop(dropUnexpected)
			return
		}
		switch e.Outcome {
		case OutcomeDeclined:
			m.end(c, Rejected, DeclinedElsewhere, "", "", "")
		case OutcomeBusy:
			m.end(c, Rejected, BusyElsewhere, "", "", "")
		default:
			m.end(c, Hangup, AnsweredElsewhere, "", "", "")
		}
	case EvRecvRekey:
		if c.state != Connecting && c.state != Connected || (!c.incoming && e.Device != c.selected) {
			m.drop(dropUnexpected)
			return
		}
		m.emit(Action{Kind: ActRekey, CallID: c.id})
	case EvRecvMedia:
		switch {
		case c.state != Connecting && c.state != Connected:
			m.drop(dropUnexpected)
		case !c.incoming && e.Device != c.selected:
			m.drop(dropOtherDevice)
		default:
			m.emit(Action{Kind: ActPeerMedia, CallID: c.id, AudioMuted: e.AudioMuted, VideoOff: e.VideoOff, Screen: e.Screen})
		}
	case EvConn:
		m.onConn(c, e.Conn)
	case EvMedia:
		if c.state == Connected && c.timers[TimerMedia] {
			m.startTimer(c, TimerMedia)
		}
	case EvNetChange:
		if c.state == Connecting || c.state == Connected {
			if !c.incoming && !c.restarted {
				m.setRecovering(c, true)
			}
			m.restart(c)
		}
	case EvTimer:
		m.onTimer(c, e.Timer)
	default:
		m.drop(dropUnexpected)
	}
}

// onRenegotiation handles the peer's renegotiation offer (PROTOCOL §10.10):
// applied while connected; when ours is out too (glare), the callee is
// polite: it drops its own and applies the caller's, and the caller drops
// the callee's.
func (m *Machine) onRenegotiation(c *call, e Event) {
	switch {
	case c.state != Connected || c.recovering || c.restarting:
		m.drop(dropUnexpected)
		return
	case !c.incoming && e.Device != c.selected:
		m.drop(dropOtherDevice)
		return
	case c.negotiating && !c.incoming:
		m.drop(dropGlareLost)
		return
	case c.negotiating:
		c.negotiating = false
		m.stopTimer(c, TimerRenegotiate)
		m.emit(Action{Kind: ActRenegotiationEnd, CallID: c.id, Error: ErrGlare})
	}
	m.emit(Action{Kind: ActApplyRenegotiation, CallID: c.id, Video: e.Video})
	c.recvVideo = e.Video
	m.setVideo(c)
}

// setVideo publishes the call's video flag when a renegotiation changed
// it: a video call while either side sends video.
func (m *Machine) setVideo(c *call) {
	if v := c.sendVideo || c.recvVideo; v != c.video {
		c.video = v
		m.publish(c, "")
	}
}

// endNegotiation ends our renegotiation in progress, if any, with why.
func (m *Machine) endNegotiation(c *call, why string) {
	if !c.negotiating {
		return
	}
	c.negotiating = false
	m.stopTimer(c, TimerRenegotiate)
	m.emit(Action{Kind: ActRenegotiationEnd, CallID: c.id, Error: why})
}

func (m *Machine) onRecvAnswer(c *call, e Event) {
	if c.negotiating && (c.incoming || e.Device == c.selected) {
		// The answer to our renegotiation.
		c.negotiating = false
		m.stopTimer(c, TimerRenegotiate)
		m.emit(Action{Kind: ActApplyRenegotiationAnswer, CallID: c.id, Video: c.wantVideo})
		c.sendVideo = c.wantVideo
		m.setVideo(c)
		return
	}
	if c.incoming {
		m.drop(dropUnexpected)
		return
	}
	if c.state == Calling {
		// The first answer wins (PROTOCOL §10.4); every device of the
		// callee learns which one.
		c.selected, c.haveSel = e.Device, true
		m.stopTimer(c, TimerAnswer)
		m.stopTimer(c, TimerOfferRetry)
		c.undelivered = false
		c.state = Connecting
		m.publish(c, "")
		m.sendSelect(c, e.Device, OutcomeAnswered)
		m.emit(Action{Kind: ActApplyAnswer, CallID: c.id, Device: e.Device})
		return
	}
	if e.Device != c.selected {
		// A device that answered too late: tell it again which one won.
		m.sendSelect(c, c.selected, OutcomeAnswered)
		m.drop(dropOtherDevice)
		return
	}
	if c.restarting && !c.incoming {
		m.emit(Action{Kind: ActApplyRestartAnswer, CallID: c.id})
		return
	}
	m.drop(dropDuplicate)
}

func (m *Machine) onRecvReject(c *call, e Event) {
	if c.incoming || c.state != Calling {
		if !c.incoming && c.haveSel && e.Device != c.selected {
			m.drop(dropOtherDevice)
			return
		}
		m.drop(dropUnexpected)
		return
	}
	if e.Reason == string(Busy) {
		m.sendSelect(c, e.Device, OutcomeBusy)
		m.end(c, Rejected, Busy, "", "", ErrBusy)
		return
	}
	m.sendSelect(c, e.Device, OutcomeDeclined)
	m.end(c, Rejected, Declined, "", "", ErrDeclined)
}

func (m *Machine) onRecvHangup(c *call, e Event) {
	switch {
	case c.incoming && c.state == Ringing:
		m.end(c, Hangup, Missed, "", "", "")
	case c.incoming && c.answering && c.state == Connecting && e.Reason == string(NoAnswer):
		// The caller gave up before our answer reached it.
		m.end(c, Hangup, Missed, "", "", "")
	case !c.incoming && !c.haveSel:
		// A callee device that never answered has nothing to hang up.
		m.drop(dropUnexpected)
	case !c.incoming && e.Device != c.selected:
		m.drop(dropOtherDevice)
	case c.inOutage() && (e.Reason == string(ICEFailed) || e.Reason == string(Disconnected)):
		// The peer's recovery gave up on the outage this side is in too
		// (its restart_wait fired first): the call ends as our own
		// restart_wait would end it, with our error, and nothing is sent.
		m.endOutage(c, "")
	default:
		reason := Ending(e.Reason)
		if reason == "" {
			reason = UserHangup
		}
		m.end(c, Hangup, reason, "", "", "")
	}
}

// inOutage: the connection is down and this side's recovery is under way
// (an outage of a connected call, or the first checks failed).
func (c *call) inOutage() bool {
	return c.recovering || c.restarting || c.failed
}

// endOutage ends a call whose outage did not recover: ice_failed if ICE
// failed in the outage, else disconnected, sending msg (call_hangup with
// that reason, or nothing when the peer has already ended).
func (m *Machine) endOutage(c *call, msg string) {
	if c.failed {
		m.end(c, Ended, ICEFailed, msg, ICEFailed, ErrICEFailed)
		return
	}
	m.end(c, Ended, Disconnected, msg, Disconnected, ErrDisconnected)
}

func (m *Machine) onConn(c *call, st Conn) {
	if c.state != Connecting && c.state != Connected {
		m.drop(dropUnexpected)
		return
	}
	switch st {
	case ConnConnected:
		m.stopTimer(c, TimerDisconnected)
		m.stopTimer(c, TimerRestartDelay)
		m.stopTimer(c, TimerRestartWait)
		c.restarted, c.restarting, c.failed = false, false, false
		m.setRecovering(c, false)
		if !c.connected {
			c.connected = true
			c.state = Connected
			m.publish(c, "")
			m.emit(Action{Kind: ActStartMedia, CallID: c.id})
			m.startTimer(c, TimerMedia)
		} else if !c.timers[TimerMedia] {
			m.startTimer(c, TimerMedia) // back from an outage
		}
	case ConnDisconnected:
		// Media stops with the connection: the recovery rules own the
		// outage, the media watchdog only a connection that is up.
		m.stopTimer(c, TimerMedia)
		m.endNegotiation(c, ErrInterrupted)
		m.setRecovering(c, true)
		if !c.timers[TimerDisconnected] {
			m.startTimer(c, TimerDisconnected)
		}
		if !c.incoming && !c.restarted && !c.timers[TimerRestartDelay] {
			m.startTimer(c, TimerRestartDelay)
		}
	case ConnFailed:
		m.stopTimer(c, TimerMedia)
		m.endNegotiation(c, ErrInterrupted)
		m.setRecovering(c, true)
		switch {
		case c.restarting:
			// The restart in progress is bounded by its own wait.
			c.failed = true
		case !c.restarted && !c.incoming:
			c.failed = true
			m.restart(c)
		case !c.restarted && !c.failed:
			// The callee waits for the caller's restart offer.
			c.failed = true
			m.startTimer(c, TimerRestartWait)
		case !c.restarted:
			// A second failure report while waiting: the wait decides.
		default:
			m.end(c, Ended, ICEFailed, msgHangup, ICEFailed, ErrICEFailed)
		}
	}
}

// setRecovering tells the app when an outage begins or ends.
func (m *Machine) setRecovering(c *call, on bool) {
	if c.recovering == on || !c.connected {
		return
	}
	c.recovering = on
	m.emit(Action{Kind: ActRecovery, CallID: c.id, Recovering: on})
}

// restart begins the caller's one ICE restart of an outage; the callee has
// nothing to do but wait for it.
func (m *Machine) restart(c *call) {
	if c.incoming || c.restarted {
		return
	}
	m.endNegotiation(c, ErrInterrupted)
	m.stopTimer(c, TimerRestartDelay)
	c.restarted, c.restarting = true, true
	m.startTimer(c, TimerRestartWait)
	m.emit(Action{Kind: ActRestartICE, CallID: c.id})
}

func (m *Machine) onTimer(c *call, t Timer) {
	if !c.timers[t] {
		m.drop(dropStaleTimer)
		return
	}
	delete(c.timers, t)
	switch t {
	case TimerAnswer:
		if c.undelivered {
			// The relay refused the offer: the callee may never have
			// rung. The hangup stops any device a sending reached.
			m.end(c, Ended, Unavailable, msgHangup, NoAnswer, ErrUnavailable)
			return
		}
		m.end(c, Ended, NoAnswer, msgHangup, NoAnswer, ErrNoAnswer)
	case TimerOfferRetry:
		m.emit(Action{Kind: ActResendOffer, CallID: c.id, Peer: c.peer})
	case TimerRing:
		m.end(c, Hangup, Missed, "", "", "")
	case TimerRestartDelay:
		m.restart(c)
	case TimerDisconnected:
		if c.restarting {
			// A restart is in progress: the 8 s measure no recovery,
			// and the restart's own wait bounds it.
			return
		}
		m.end(c, Ended, Disconnected, msgHangup, Disconnected, ErrDisconnected)
	case TimerRestartWait:
		m.endOutage(c, msgHangup)
	case TimerMedia:
		m.end(c, Ended, MediaTimeout, msgHangup, MediaTimeout, ErrMediaTimeout)
	case TimerRenegotiate:
		// No answer: the call goes on with the media it had.
		c.negotiating = false
		m.emit(Action{Kind: ActRenegotiationEnd, CallID: c.id, Error: ErrTimeout})
	}
}
