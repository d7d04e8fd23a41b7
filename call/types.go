package call

import (
	"errors"

	"github.com/duetcall/duet/call/fsm"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/wire"
)

// State is the state of the call module, the seed's call states.
type State string

// Call states. Idle is the state before the first call; a call goes through
// calling (caller) or ringing (callee), then connecting and connected, and
// ends in one of the terminal states hangup, rejected or ended, which stay
// visible (with the reason) until the next call starts.
const (
	StateIdle       State = "idle"       // no call yet
	StateCalling    State = "calling"    // caller: offer sent, waiting for the answer
	StateRinging    State = "ringing"    // callee: offer received, waiting for Answer or Reject
	StateConnecting State = "connecting" // answer exchanged, ICE/DTLS in progress
	StateConnected  State = "connected"  // media flows
	StateHangup     State = "hangup"     // ended by a hangup, local or remote
	StateRejected   State = "rejected"   // ended by a reject, local or remote
	StateEnded      State = "ended"      // ended by a timeout, a failure or an error
)

// Active reports whether s is a state of a call in progress (calling,
// ringing, connecting or connected).
func (s State) Active() bool {
	switch s {
	case StateCalling, StateRinging, StateConnecting, StateConnected:
		return true
	}
	return false
}

// Terminal reports whether s is one of the end states.
func (s State) Terminal() bool {
	return s == StateHangup || s == StateRejected || s == StateEnded
}

// EndReason says why a call ended. It is one of the wire reason set
// (docs/PROTOCOL.md §3) or a local one (ReasonOffline, ReasonUnavailable,
// ReasonMissed and the *Elsewhere reasons).
type EndReason string

// End reasons.
const (
	ReasonNone         EndReason = ""
	ReasonUserHangup   EndReason = EndReason(wire.ReasonUserHangup)   // someone hung up
	ReasonDeclined     EndReason = EndReason(wire.ReasonDeclined)     // the callee rejected
	ReasonBusy         EndReason = EndReason(wire.ReasonBusy)         // the callee is in another call
	ReasonNoAnswer     EndReason = EndReason(wire.ReasonNoAnswer)     // the answer timeout expired
	ReasonICEFailed    EndReason = EndReason(wire.ReasonICEFailed)    // ICE failed again after the restart
	ReasonMediaTimeout EndReason = EndReason(wire.ReasonMediaTimeout) // no inbound RTP growth for 15 s
	ReasonDisconnected EndReason = EndReason(wire.ReasonDisconnected) // disconnected for 8 s
	ReasonError        EndReason = EndReason(wire.ReasonError)        // a local error (see OnError)
	// ReasonOffline: the relay reported the offer undeliverable because no
	// device of the callee is connected. It is never sent on the wire.
	ReasonOffline EndReason = "offline"
	// ReasonUnavailable: the relay kept refusing the offer for a passing
	// reason (the callee is sent more than it takes, or the relay cannot
	// reach its message bus) until the answer timeout: the callee may be
	// online but never rang. It is never sent on the wire.
	ReasonUnavailable EndReason = EndReason(fsm.Unavailable)
	// ReasonMissed: a ringing call whose caller gave up (or whose ring ran
	// out): a missed call, not an error.
	ReasonMissed EndReason = EndReason(fsm.Missed)
	// ReasonAnsweredElsewhere, ReasonDeclinedElsewhere and
	// ReasonBusyElsewhere: another device of ours answered, declined or
	// was busy (docs/PROTOCOL.md §10.4); this one stopped ringing.
	ReasonAnsweredElsewhere EndReason = EndReason(fsm.AnsweredElsewhere)
	ReasonDeclinedElsewhere EndReason = EndReason(fsm.DeclinedElsewhere)
	ReasonBusyElsewhere     EndReason = EndReason(fsm.BusyElsewhere)
)

// Incoming describes a ringing incoming call (Options.OnIncoming).
type Incoming struct {
	CallID string
	From   identity.Alias
	Video  bool
}

// Status is the observable state of the module: the state, and for the
// current (or last) call its peer, call ID, whether it is a video call and,
// in a terminal state, why it ended.
type Status struct {
	State  State
	Peer   identity.Alias
	CallID string
	Video  bool
	// Incoming is true when the peer called us.
	Incoming bool
	// Reason is set in the terminal states.
	Reason EndReason
	// Recovering is true while a connected call's connection is down and
	// being recovered (ICE restart, docs/PROTOCOL.md §10.6); the state
	// stays connected meanwhile.
	Recovering bool
}

// Media says what a call sends. Audio is always sent when Video is; a call
// with neither is refused.
type Media struct {
	Audio bool
	Video bool
}

// Kind is a media kind.
type Kind string

// Media kinds.
const (
	KindAudio Kind = "audio"
	KindVideo Kind = "video"
)

// Track describes one media track of the call, local (sent) or remote
// (received).
type Track struct {
	Kind  Kind
	Codec string // media.CodecVP8 or media.CodecOpus
	ID    string // the track ID
	// StreamID is the media stream (msid) the track belongs to.
	StreamID string
	// SSRC is the RTP synchronisation source; 0 for a local track.
	SSRC uint32
}

// Tracks are the tracks of one side of the call; a nil field means no such
// track. The zero Tracks means no call (or no track yet).
type Tracks struct {
	Audio *Track
	Video *Track
}

// Errors. Methods return them wrapped with context; test with errors.Is.
var (
	// ErrInCall: Call while a call is in progress; hang up first.
	ErrInCall = errors.New("call: a call is already in progress; hang up first")
	// ErrNoIncomingCall: Answer or Reject without a ringing incoming call.
	ErrNoIncomingCall = errors.New("call: no incoming call to answer or reject")
	// ErrAlreadyAnswering: Answer called again for the same call (the seed's
	// re-entrancy lock; disable the answer button after the first press).
	ErrAlreadyAnswering = errors.New("answer() called while already answering")
	// ErrNoCall: Hangup without a call in progress.
	ErrNoCall = errors.New("call: no call in progress")
	// ErrNoMedia: Call with neither audio nor video.
	ErrNoMedia = errors.New("call: a call needs audio, video or both")
	// ErrClosed: the module was closed.
	ErrClosed = errors.New("call: module closed")
	// ErrCallEnded: the call ended (hangup, reject, timeout) while the
	// operation was in progress.
	ErrCallEnded = errors.New("call: the call ended")
	// ErrBusy: the callee is in another call (call_reject with reason busy).
	ErrBusy = errors.New("call: the callee is busy")
	// ErrDeclined: the callee rejected the call.
	ErrDeclined = errors.New("call: the callee declined the call")
	// ErrNoAnswer: the callee did not answer within the answer timeout.
	ErrNoAnswer = errors.New("call: no answer")
	// ErrOffline: the relay could not deliver the offer: the callee has no
	// connected device.
	ErrOffline = errors.New("call: the callee is offline")
	// ErrUnavailable: the relay refused the offer, sent again with
	// backoff, until the answer timeout, for a reason that is not the
	// callee being offline (the callee's relay is overloaded or cannot
	// reach its message bus): try again later.
	ErrUnavailable = errors.New("call: the relay could not deliver the call to the callee for now (overloaded or unreachable); try again later")
	// ErrICEFailed: ICE failed, and failed again after the ICE restart.
	ErrICEFailed = errors.New("call: ICE failed after a restart; no network path to the peer")
	// ErrMediaTimeout: no inbound RTP arrived for the media timeout.
	ErrMediaTimeout = errors.New("call: no media received from the peer")
	// ErrDisconnected: the connection stayed disconnected too long.
	ErrDisconnected = errors.New("call: connection to the peer lost")
	// ErrSignaling: a signaling message could not be built or sent.
	ErrSignaling = errors.New("call: signaling failed")
	// ErrMediaSetup: the peer connection or media could not be set up.
	ErrMediaSetup = errors.New("call: media setup failed")
)

// Err returns the error a terminal status stands for, for this side
// (docs/PROTOCOL.md §10.3): nil for a call that is not over, for every
// hangup (whatever reason the peer gave), a missed call and a call that
// ended on another device; for the caller ErrDeclined and ErrBusy; and
// ErrNoAnswer, ErrOffline, ErrUnavailable, ErrICEFailed, ErrMediaTimeout, ErrDisconnected,
// or ErrCallEnded for ReasonError (OnError received the cause).
func (s Status) Err() error {
	switch s.State {
	case StateRejected:
		if s.Incoming {
			return nil
		}
		switch s.Reason {
		case ReasonDeclined:
			return ErrDeclined
		case ReasonBusy:
			return ErrBusy
		}
		return nil
	case StateEnded:
		if s.Reason == ReasonError {
			return ErrCallEnded
		}
		return reasonErr(s.Reason)
	}
	return nil
}

// reasonErr maps an end reason to the error OnError receives, nil for the
// ends that are no failure (hangup, reject).
func reasonErr(r EndReason) error {
	switch r {
	case ReasonNoAnswer:
		return ErrNoAnswer
	case ReasonOffline:
		return ErrOffline
	case ReasonUnavailable:
		return ErrUnavailable
	case ReasonICEFailed:
		return ErrICEFailed
	case ReasonMediaTimeout:
		return ErrMediaTimeout
	case ReasonDisconnected:
		return ErrDisconnected
	}
	return nil
}
