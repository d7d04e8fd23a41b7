// What the call module's files share (the Go SDK's call/session.go and
// types.go): the lifecycle constants and the timing table (call-config.js),
// the error constructor, and CallSession, the driver's record of one call
// (its peer connection, worker, keys and media) beside the state machine's
// own view of it (call-fsm.js).

import { DuetError } from './util.js';
import { ANSWER_TIMEOUT_MS, DIAG_INTERVAL_MS, DISCONNECTED_TIMEOUT_MS, GUM_TIMEOUT_MS, MEDIA_TIMEOUT_MS, T } from './call-config.js';

/** Lifecycle constants (docs/PROTOCOL.md §6; call-config.js); not configurable. */
export { ANSWER_TIMEOUT_MS, DISCONNECTED_TIMEOUT_MS, MEDIA_TIMEOUT_MS, GUM_TIMEOUT_MS, DIAG_INTERVAL_MS, T };
export const MAX_VIDEO_BITRATE = 1_500_000;
export const VIDEO_CONSTRAINTS = Object.freeze({ width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } });
export const DEGRADATION_PREFERENCE = 'maintain-framerate';
/** A shared screen keeps its resolution (text stays legible) and drops frames instead (PROTOCOL §10.9). */
export const SCREEN_DEGRADATION_PREFERENCE = 'maintain-resolution';

/** Call states, as the seed lists them. */
/** @type {readonly import('./duet.js').CallState[]} */
export const CALL_STATES = Object.freeze(['idle', 'calling', 'ringing', 'connecting', 'connected', 'hangup', 'rejected', 'ended']);

/**
 * Endings (docs/PROTOCOL.md §10.3): status.reason in the end states says
 * why the call ended, as this app sees it.
 */
/** @type {readonly import('./duet.js').CallEndReason[]} */
export const CALL_ENDINGS = Object.freeze([
  'user_hangup', 'declined', 'busy', 'no_answer', 'offline', 'unavailable', 'missed', 'answered_elsewhere', 'declined_elsewhere',
  'busy_elsewhere', 'ice_failed', 'disconnected', 'media_timeout', 'error',
]);

/** The state machine's timings (call-fsm.js names), read from T at each use. */
export const FSM_TIMINGS = Object.freeze({
  get answer() { return T.answer; },
  get ring() { return T.ring; },
  get disconnected() { return T.disconnected; },
  get restart_delay() { return T.restartDelay; },
  get restart_wait() { return T.restartWait; },
  get media() { return T.media; },
  get renegotiate() { return T.restartWait; },
  get offer_retry() { return T.offerRetry; },
});

export function callError(name, message, details) {
  return new DuetError(name, message, details);
}

/** A random id: 16 bytes, base64url (call ids, the device id). */
export function randomID(n = 16) {
  const b = crypto.getRandomValues(new Uint8Array(n));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * One call's WebRTC side: from call() or an incoming offer to its
 * teardown. The state machine decides; this holds what the driver made.
 * @private
 */
export class CallSession {
  constructor(id, peer, incoming, video) {
    // What this side sends (PROTOCOL §10.9): every call starts all on.
    this.media = { audioMuted: false, videoOff: false, screen: false };
    this.renegotiation = null; // setVideo's {resolve, reject} while its renegotiation runs
    this.screenTrack = null; // the shared screen's track, sent in place of cameraTrack
    this.cameraTrack = null;
    this.id = id;
    this.peer = peer;
    this.incoming = incoming;
    this.video = video;
    this.state = incoming ? 'ringing' : 'calling';
    this.torn = false; // torn down: every async step stops
    this.tornDown = new Promise((resolve) => { this.markTorn = resolve; }); // resolves at the teardown
    this.failure = null; // the error that ended the call, if one did
    this.timers = new Map(); // the driver's own timers (rekey)
    this.intervals = new Set();
    this.session = null; // signaling Session with peer
    this.peerKeys = null;
    this.offerSent = false;
    this.offerID = '';
    this.offerSDP = '';
    this.ephem = null;
    this.peerEPK = null;
    this.device = ''; // caller: the callee device whose answer was taken
    this.pc = null;
    this.worker = null;
    this.e2eeMode = '';
    this.remoteSet = false;
    this.holdRemote = false; // callee: the caller's candidates wait until it selects this device (releaseRemote)
    this.remotePublished = false; // the remote stream went to the app (complete)
    this.pendRemote = [];
    this.localReady = false;
    this.pendLocal = [];
    this.offerEnv = null; // caller: the sealed offer, for resend_offer
    this.localSent = []; // caller: local candidates sent after the offer, for resend_offer
    this.connected = false;
    this.connectedAt = 0;
    this.restarts = 0;
    this.localStream = null;
    this.remoteStream = null;
    this.epoch = 0; // the media key epoch agreed (the last call_rekey accepted)
    this.sendEpoch = 0; // the epoch the worker sends under (send-switched)
    this.rekey = null; // our call_rekey awaiting its reply: {epoch, key: Promise of the X25519 pair}
    this.lastReply = null; // our last reply: {epoch, body}, sent again when the request comes again
    this.rekeys = { requests: 0, replies: 0, ignored: 0 };
    this.sendChain = Promise.resolve();
    this.endSend = null; // the send of the call's ending (call_hangup, call_reject, call_select)
    this.diagN = 0;
    this.lastDiag = null;
    this.workerReqs = new Map();
    this.workerSeq = 0;
    this.work = Promise.resolve(); // the driver's WebRTC steps, one after the other
  }

  setTimer(name, ms, f) {
    this.clearTimer(name);
    this.timers.set(name, setTimeout(() => {
      this.timers.delete(name);
      f();
    }, ms));
  }

  clearTimer(name) {
    const t = this.timers.get(name);
    if (t !== undefined) clearTimeout(t);
    this.timers.delete(name);
  }

  stopTimers() {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const i of this.intervals) clearInterval(i);
    this.intervals.clear();
  }

  /**
   * Forward secrecy: drops every key the call held (its ephemeral key
   * pairs, the peer's ephemeral and long-term keys, its signaling session,
   * the rekey in progress and the last reply) once it is torn down; what
   * stays are figures (state, counters, lastDiag) for stats(). Async steps
   * still running call it again through checkLive, so a key they make
   * after the teardown is dropped too.
   */
  wipe() {
    this.ephem = null;
    this.peerEPK = null;
    this.peerKeys = null;
    this.session = null;
    this.rekey = null;
    this.lastReply = null;
    this.offerSDP = '';
    this.pendRemote = [];
    this.pendLocal = [];
  }

  /**
   * p, or once the call is torn down the failure that ended it (else
   * ErrCallEnded): a step waiting on the network stops waiting when the
   * call ends.
   */
  async untilTorn(p) {
    await Promise.race([p, this.tornDown]);
    this.checkLive();
    return p;
  }

  /** Throws once the call is torn down: the failure that ended it, else ErrCallEnded. */
  checkLive() {
    if (this.torn) {
      this.wipe();
      throw this.failure ?? callError('ErrCallEnded', 'the call ended during setup');
    }
  }
}
