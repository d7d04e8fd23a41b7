// duet's call state machine without any I/O (docs/PROTOCOL.md §10): the
// same rules as the Go SDK's call/fsm, as a value that takes events (the
// app's calls, authenticated signaling messages, connection changes, timers)
// and returns the actions to perform (messages to send, timers to start or
// stop, states and errors to report, WebRTC work for the driver). It knows
// no network, no WebRTC and no clock: the call module (calls.js) owns the
// relay connection, the peer connection and the timers, and feeds their
// outcomes back in.
//
// Events and actions are plain objects with the field names of the scenario
// vectors (testdata/scenarios, PROTOCOL §10.7): an event {kind, call_id,
// peer, device, video, restart, reason, selected, outcome, conn, timer,
// error, audio_muted, video_off, screen}; an action {kind, call_id, peer,
// state, incoming, video, reason, type, device, selected, outcome, timer, ms,
// error, recovering, audio_muted, video_off, screen}, with empty, false and
// zero fields omitted. Both SDKs run every scenario and must return exactly
// the listed actions, in order.

/** Call states: the seed's names. */
export const IDLE = 'idle';
export const CALLING = 'calling';
export const RINGING = 'ringing';
export const CONNECTING = 'connecting';
export const CONNECTED = 'connected';
export const HANGUP = 'hangup';
export const REJECTED = 'rejected';
export const ENDED = 'ended';

/** Whether state is that of a call in progress. */
export function activeState(state) {
  return state === CALLING || state === RINGING || state === CONNECTING || state === CONNECTED;
}

/**
 * Endings (PROTOCOL §10.3): why a call ended, as the local app sees it. The
 * first eight are also wire reasons; the rest are local.
 */
export const ENDINGS = Object.freeze([
  'user_hangup', 'declined', 'busy', 'no_answer', 'ice_failed', 'media_timeout', 'disconnected', 'error',
  'offline', 'unavailable', 'missed', 'answered_elsewhere', 'declined_elsewhere', 'busy_elsewhere', 'replaced',
]);

/** Timers, with their PROTOCOL §6 durations (ms). */
export const DEFAULT_TIMINGS = Object.freeze({
  answer: 15_000, // caller: 15 s for an answer
  ring: 20_000, // callee: 20 s of ringing at most
  disconnected: 8_000, // 8 s disconnected
  restart_delay: 2_000, // caller: 2 s disconnected, then restart
  restart_wait: 10_000, // 10 s for an ICE restart to recover
  media: 15_000, // 15 s without inbound media
  renegotiate: 10_000, // 10 s for the answer to a renegotiation
  offer_retry: 1_000, // caller: the first wait before an offer refused for a passing reason goes again (doubles, up to 8 s)
});

const TIMER_ORDER = ['answer', 'ring', 'disconnected', 'restart_delay', 'restart_wait', 'media', 'renegotiate', 'offer_retry'];
/** The offer retry wait doubles per refusal up to offer_retry << this (8 s). */
const MAX_OFFER_RETRY_SHIFT = 3;
/** The undeliverable reason that ends a call as offline; the others are passing. */
const REASON_OFFLINE = 'offline';

const MSG_REJECT = 'call_reject';
const MSG_HANGUP = 'call_hangup';
const MSG_SELECT = 'call_select';

/** Outcomes of call_select. */
export const OUTCOME_ANSWERED = 'answered';
export const OUTCOME_DECLINED = 'declined';
export const OUTCOME_BUSY = 'busy';

/** Errors of error and api_error actions (PROTOCOL §10.3). */
export const FSM_ERRORS = Object.freeze({
  NO_ANSWER: 'no_answer', DECLINED: 'declined', BUSY: 'busy', OFFLINE: 'offline', UNAVAILABLE: 'unavailable', ICE_FAILED: 'ice_failed',
  MEDIA_TIMEOUT: 'media_timeout', DISCONNECTED: 'disconnected', SETUP: 'setup', KEY_CHANGED: 'key_changed',
  IN_CALL: 'in_call', NO_INCOMING_CALL: 'no_incoming_call', ALREADY_ANSWERING: 'already_answering', NO_CALL: 'no_call',
  NOT_CONNECTED: 'not_connected', RENEGOTIATING: 'renegotiating', GLARE: 'glare', TIMEOUT: 'timeout', INTERRUPTED: 'interrupted',
});
const E = FSM_ERRORS;

const DROP_UNKNOWN_CALL = 'unknown_call';
const DROP_DUPLICATE = 'duplicate';
const DROP_UNEXPECTED = 'unexpected';
const DROP_OTHER_DEVICE = 'other_device';
const DROP_GLARE_LOST = 'glare_lost';
const DROP_STALE_TIMER = 'stale_timer';

// The order of an action's fields (that of the Go SDK's JSON encoding; the
// comparison does not depend on it, a log line reads better for it).
const ACTION_FIELDS = ['kind', 'call_id', 'peer', 'state', 'incoming', 'video', 'reason', 'type', 'device',
  'selected', 'outcome', 'timer', 'ms', 'error', 'recovering', 'audio_muted', 'video_off', 'screen'];

/** a with its empty, false and zero fields left out. */
function action(a) {
  const out = {};
  for (const k of ACTION_FIELDS) {
    const v = a[k];
    if (v !== undefined && v !== '' && v !== false && v !== 0 && v !== null) out[k] = v;
  }
  return out;
}

/**
 * Whether the connection is down and this side's recovery is under way
 * (an outage of a connected call, or the first checks failed).
 */
function inOutage(c) {
  return c.recovering || c.restarting || c.failed;
}

/** Byte-wise comparison of two strings of ASCII or UTF-8 text: a < b. */
function lessBytes(a, b) {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return x.length < y.length;
}

/** The machine's view of one call. */
class Call {
  constructor(id, peer, incoming, video, state) {
    this.id = id;
    this.peer = peer;
    this.incoming = incoming;
    this.video = video;
    this.state = state;
    this.offerSent = false; // caller: the peer may know of the call
    this.answering = false; // callee: the app answered
    this.selected = ''; // caller: the callee device whose answer was taken
    this.haveSel = false;
    this.connected = false; // reached connected once
    this.restarted = false; // an ICE restart was begun in this outage (one allowed)
    this.restarting = false; // that restart is in progress (not yet connected again)
    this.failed = false; // ICE failed in this outage
    this.recovering = false; // an outage is in progress (told with a recovery action)
    this.negotiating = false; // our renegotiation offer awaits its answer (§10.10)
    this.wantVideo = false; // the media it asks for
    // Whether this side and the peer send video, as the last renegotiation
    // of each left it; video is their or.
    this.sendVideo = video;
    this.recvVideo = video;
    // The relay refused the offer for a passing reason (caller), and no
    // callee device has answered since: whether a later sending reached the
    // callee is unknown (the relay confirms no delivery); retries counts
    // those refusals.
    this.undelivered = false;
    this.retries = 0;
    this.timers = new Set();
  }

  /** Whether the peer can know of the call (so that ending it is worth a message). */
  peerKnows() {
    return this.incoming || this.offerSent;
  }
}

/**
 * One module's call state machine: at most one call at a time. handle()
 * takes an event and returns the actions, in order; it never throws for an
 * event it does not expect (that is a drop action).
 */
export class CallMachine {
  #device;
  #t;
  #cur = null; // the call in progress, or the last one (ended)
  #out = [];

  /**
   * @param {string} device this machine's device id (its party id on the wire, PROTOCOL §10.4)
   * @param {object} [timings] durations in ms by timer name (DEFAULT_TIMINGS for any it lacks)
   */
  constructor(device, timings = DEFAULT_TIMINGS) {
    this.#device = String(device ?? '');
    this.#t = timings ?? DEFAULT_TIMINGS; // read at each use: a driver's tests may shorten them
  }

  /** The machine's device id. */
  get device() {
    return this.#device;
  }

  /** The current state ('idle' before the first call). */
  get state() {
    return this.#cur ? this.#cur.state : IDLE;
  }

  /** The current (or last) call's id ('' before the first call). */
  get callId() {
    return this.#cur ? this.#cur.id : '';
  }

  /** Whether a call is in progress. */
  get busy() {
    return this.#cur !== null && activeState(this.#cur.state);
  }

  /**
   * Takes one event and returns the actions to perform, in order.
   * @param {object} e an event (PROTOCOL §10.1)
   * @returns {object[]}
   */
  handle(e) {
    this.#out = [];
    e = { ...e };
    for (const k of ['call_id', 'peer', 'device', 'reason', 'selected', 'outcome', 'conn', 'timer', 'error']) e[k] = e[k] == null ? '' : String(e[k]);
    e.video = e.video === true;
    e.restart = e.restart === true;
    let c = this.#cur;
    if (c && !activeState(c.state)) c = null; // an ended call only explains why it ended
    switch (e.kind) {
      case 'call':
        this.#onCall(c, e);
        break;
      case 'answer':
        this.#onAnswer(c, e);
        break;
      case 'reject':
        this.#onReject(c, e);
        break;
      case 'hangup':
        this.#onHangup(c);
        break;
      case 'recv_offer':
        this.#onOffer(c, e);
        break;
      default:
        if (!c || e.call_id !== c.id) {
          this.#drop(e.kind === 'timer' ? DROP_STALE_TIMER : DROP_UNKNOWN_CALL);
          break;
        }
        this.#onCallEvent(c, e);
    }
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #emit(a) {
    this.#out.push(action(a));
  }

  #drop(reason) {
    this.#emit({ kind: 'drop', reason });
  }

  #publish(c, reason) {
    this.#emit({ kind: 'state', call_id: c.id, peer: c.peer, state: c.state, incoming: c.incoming, video: c.video, reason });
  }

  #startTimer(c, t, ms = this.#t[t] ?? DEFAULT_TIMINGS[t]) {
    c.timers.add(t);
    this.#emit({ kind: 'timer_start', call_id: c.id, timer: t, ms });
  }

  #stopTimer(c, t) {
    if (c.timers.delete(t)) this.#emit({ kind: 'timer_stop', call_id: c.id, timer: t });
  }

  #send(c, type, reason) {
    this.#emit({ kind: 'send', call_id: c.id, peer: c.peer, type, reason });
  }

  #sendSelect(c, selected, outcome) {
    this.#emit({ kind: 'send', call_id: c.id, peer: c.peer, type: MSG_SELECT, selected, outcome });
  }

  /**
   * Ends c: timers stop, the peer is told (msg '' for nothing), the driver
   * tears the call down, the app sees the end state and, for a failure,
   * the error.
   */
  #end(c, st, reason, msg, wireReason, errName) {
    for (const t of TIMER_ORDER) this.#stopTimer(c, t);
    if (msg) this.#send(c, msg, wireReason);
    this.#emit({ kind: 'teardown', call_id: c.id });
    c.state = st;
    if (reason !== 'replaced') this.#publish(c, reason); // the app sees the call that replaced it instead
    if (errName) this.#emit({ kind: 'error', call_id: c.id, peer: c.peer, error: errName });
  }

  #onCall(c, e) {
    if (c) {
      this.#emit({ kind: 'api_error', error: E.IN_CALL });
      return;
    }
    const n = new Call(e.call_id, e.peer, false, e.video, CALLING);
    this.#cur = n;
    this.#emit({ kind: 'setup_caller', call_id: n.id, peer: n.peer, video: n.video });
    this.#publish(n, '');
  }

  #onAnswer(c, e) {
    if (c && c.incoming && (e.call_id === '' || c.id === e.call_id) && c.answering) {
      this.#emit({ kind: 'api_error', call_id: e.call_id, error: E.ALREADY_ANSWERING });
    } else if (!c || !c.incoming || c.state !== RINGING || (e.call_id !== '' && c.id !== e.call_id)) {
      this.#emit({ kind: 'api_error', call_id: e.call_id, error: E.NO_INCOMING_CALL });
    } else {
      this.#answer(c);
    }
  }

  #answer(c) {
    c.answering = true;
    this.#stopTimer(c, 'ring');
    c.state = CONNECTING;
    this.#publish(c, '');
    this.#emit({ kind: 'send_answer', call_id: c.id, peer: c.peer, video: c.video });
  }

  #onReject(c, e) {
    if (!c || !c.incoming || c.state !== RINGING || (e.call_id !== '' && c.id !== e.call_id)) {
      this.#emit({ kind: 'api_error', call_id: e.call_id, error: E.NO_INCOMING_CALL });
      return;
    }
    this.#end(c, REJECTED, 'declined', MSG_REJECT, 'declined', '');
  }

  #onHangup(c) {
    if (!c) {
      this.#emit({ kind: 'api_error', error: E.NO_CALL });
    } else if (c.incoming && c.state === RINGING) {
      // Hanging up a ringing call declines it (on every device).
      this.#end(c, REJECTED, 'declined', MSG_REJECT, 'declined', '');
    } else if (c.peerKnows()) {
      this.#end(c, HANGUP, 'user_hangup', MSG_HANGUP, 'user_hangup', '');
    } else {
      this.#end(c, HANGUP, 'user_hangup', '', '', '');
    }
  }

  #onOffer(c, e) {
    if (e.restart || e.renegotiate) {
      if (!c || c.id !== e.call_id || c.peer !== e.peer) {
        this.#drop(DROP_UNKNOWN_CALL);
        return;
      }
      this.#onCallEvent(c, e);
      return;
    }
    if (c && c.id === e.call_id) {
      this.#drop(DROP_DUPLICATE);
      return;
    }
    if (c && !c.incoming && c.state === CALLING && c.peer === e.peer) {
      // Glare (PROTOCOL §10.5): the peer called us while we call them.
      // Before our offer is out the peer cannot know our call: we take
      // theirs. After, the lesser call_id wins on both sides.
      if (c.offerSent && lessBytes(c.id, e.call_id)) {
        this.#drop(DROP_GLARE_LOST);
        return;
      }
      if (c.offerSent) {
        // The peer's other devices ring for our call: tell them their
        // device answered it (the one that called us).
        this.#sendSelect(c, e.device, OUTCOME_ANSWERED);
      }
      this.#end(c, ENDED, 'replaced', '', '', '');
      this.#answer(this.#incoming(e));
      return;
    }
    if (c) {
      // Busy: the new call is refused, the current one goes on.
      this.#emit({ kind: 'send', call_id: e.call_id, peer: e.peer, type: MSG_REJECT, reason: 'busy' });
      return;
    }
    const n = this.#incoming(e);
    this.#publish(n, '');
    this.#startTimer(n, 'ring');
    this.#emit({ kind: 'ring', call_id: n.id, peer: n.peer, video: n.video });
  }

  /** Makes e's call the current one, ringing (not yet published), with its peer connection being prepared. */
  #incoming(e) {
    const n = new Call(e.call_id, e.peer, true, e.video, RINGING);
    this.#cur = n;
    this.#emit({ kind: 'prepare_callee', call_id: n.id, peer: n.peer, video: n.video });
    return n;
  }

  /** An event for the call in progress c (same call_id). */
  #onCallEvent(c, e) {
    switch (e.kind) {
      case 'offer_sent':
        if (c.incoming || c.offerSent) {
          this.#drop(DROP_UNEXPECTED);
          return;
        }
        c.offerSent = true;
        if (c.state === CALLING) this.#startTimer(c, 'answer');
        return;
      case 'failed':
        if (c.peerKnows()) this.#end(c, ENDED, 'error', MSG_HANGUP, 'error', E.SETUP);
        else this.#end(c, ENDED, 'error', '', '', E.SETUP);
        return;
      case 'key_changed':
        this.#end(c, ENDED, 'error', MSG_HANGUP, 'error', E.KEY_CHANGED);
        return;
      case 'undeliverable':
        if (c.incoming || c.state !== CALLING) {
          this.#drop(DROP_UNEXPECTED);
          return;
        }
        if (e.reason !== '' && e.reason !== REASON_OFFLINE) {
          // A passing refusal (recipient_busy, unavailable): the callee
          // may be online; the offer goes again after a wait that doubles
          // per refusal, while the answer timer runs.
          if (c.timers.has('offer_retry')) {
            this.#drop(DROP_DUPLICATE);
            return;
          }
          c.undelivered = true;
          const base = this.#t.offer_retry ?? DEFAULT_TIMINGS.offer_retry;
          this.#startTimer(c, 'offer_retry', base * 2 ** Math.min(c.retries, MAX_OFFER_RETRY_SHIFT));
          c.retries++;
          return;
        }
        this.#end(c, ENDED, 'offline', '', '', E.OFFLINE);
        return;
      case 'renegotiate':
        if (c.state !== CONNECTED) {
          this.#emit({ kind: 'api_error', call_id: c.id, error: E.NOT_CONNECTED });
        } else if (c.negotiating || c.recovering || c.restarting) {
          this.#emit({ kind: 'api_error', call_id: c.id, error: E.RENEGOTIATING });
        } else {
          c.negotiating = true;
          c.wantVideo = e.video === true;
          this.#startTimer(c, 'renegotiate');
          this.#emit({ kind: 'send_renegotiation', call_id: c.id, video: c.wantVideo });
        }
        return;
      case 'recv_offer':
        if (e.renegotiate) {
          this.#onRenegotiation(c, e);
          return;
        }
        // An ICE restart offer for c.
        if (!c.incoming || c.state === RINGING) {
          this.#drop(DROP_UNEXPECTED);
          return;
        }
        this.#endNegotiation(c, E.INTERRUPTED);
        this.#stopTimer(c, 'restart_wait');
        c.restarted = true;
        c.restarting = true;
        this.#startTimer(c, 'restart_wait');
        this.#emit({ kind: 'apply_restart', call_id: c.id });
        return;
      case 'recv_answer':
        this.#onRecvAnswer(c, e);
        return;
      case 'recv_ice':
        if (c.incoming) this.#emit({ kind: 'add_ice', call_id: c.id });
        else if (!c.haveSel) this.#drop(DROP_UNEXPECTED);
        else if (e.device !== c.selected) this.#drop(DROP_OTHER_DEVICE);
        else this.#emit({ kind: 'add_ice', call_id: c.id });
        return;
      case 'recv_reject':
        this.#onRecvReject(c, e);
        return;
      case 'recv_hangup':
        this.#onRecvHangup(c, e);
        return;
      case 'recv_select':
        if (c.incoming && e.selected === this.#device && (c.state === CONNECTING || c.state === CONNECTED)) {
          this.#emit({ kind: 'selected', call_id: c.id });
          return;
        }
        if (!c.incoming || e.selected === this.#device) {
          this.#drop(DROP_UNEXPECTED);
          return;
        }
        if (e.outcome === OUTCOME_DECLINED) this.#end(c, REJECTED, 'declined_elsewhere', '', '', '');
        else if (e.outcome === OUTCOME_BUSY) this.#end(c, REJECTED, 'busy_elsewhere', '', '', '');
        else this.#end(c, HANGUP, 'answered_elsewhere', '', '', '');
        return;
      case 'recv_rekey':
        if ((c.state !== CONNECTING && c.state !== CONNECTED) || (!c.incoming && e.device !== c.selected)) {
          this.#drop(DROP_UNEXPECTED);
          return;
        }
        this.#emit({ kind: 'rekey', call_id: c.id });
        return;
      case 'recv_media':
        // The peer's media state (PROTOCOL §10.9).
        if (c.state !== CONNECTING && c.state !== CONNECTED) this.#drop(DROP_UNEXPECTED);
        else if (!c.incoming && e.device !== c.selected) this.#drop(DROP_OTHER_DEVICE);
        else this.#emit({ kind: 'peer_media', call_id: c.id, audio_muted: e.audio_muted === true, video_off: e.video_off === true, screen: e.screen === true });
        return;
      case 'conn':
        this.#onConn(c, e.conn);
        return;
      case 'media':
        if (c.state === CONNECTED && c.timers.has('media')) this.#startTimer(c, 'media');
        return;
      case 'network_changed':
        if (c.state === CONNECTING || c.state === CONNECTED) {
          if (!c.incoming && !c.restarted) this.#setRecovering(c, true);
          this.#restart(c);
        }
        return;
      case 'timer':
        this.#onTimer(c, e.timer);
        return;
      default:
        this.#drop(DROP_UNEXPECTED);
    }
  }

  /**
   * The peer's renegotiation offer (PROTOCOL §10.10): applied while
   * connected; when ours is out too (glare) the callee is polite (drops its
   * own, applies the caller's) and the caller drops the callee's.
   */
  #onRenegotiation(c, e) {
    if (c.state !== CONNECTED || c.recovering || c.restarting) {
      this.#drop(DROP_UNEXPECTED);
      return;
    }
    if (!c.incoming && e.device !== c.selected) {
      this.#drop(DROP_OTHER_DEVICE);
      return;
    }
    if (c.negotiating && !c.incoming) {
      this.#drop(DROP_GLARE_LOST);
      return;
    }
    if (c.negotiating) {
      c.negotiating = false;
      this.#stopTimer(c, 'renegotiate');
      this.#emit({ kind: 'renegotiation_end', call_id: c.id, error: E.GLARE });
    }
    const video = e.video === true;
    this.#emit({ kind: 'apply_renegotiation', call_id: c.id, video });
    c.recvVideo = video;
    this.#setVideo(c);
  }

  /** Publishes the call's video flag when a renegotiation changed it: a video call while either side sends video. */
  #setVideo(c) {
    const v = c.sendVideo || c.recvVideo;
    if (v !== c.video) {
      c.video = v;
      this.#publish(c, '');
    }
  }

  /** Ends our renegotiation in progress, if any, with why. */
  #endNegotiation(c, why) {
    if (!c.negotiating) return;
    c.negotiating = false;
    this.#stopTimer(c, 'renegotiate');
    this.#emit({ kind: 'renegotiation_end', call_id: c.id, error: why });
  }

  #onRecvAnswer(c, e) {
    if (c.negotiating && (c.incoming || e.device === c.selected)) {
      // The answer to our renegotiation.
      c.negotiating = false;
      this.#stopTimer(c, 'renegotiate');
      this.#emit({ kind: 'apply_renegotiation_answer', call_id: c.id, video: c.wantVideo });
      c.sendVideo = c.wantVideo;
      this.#setVideo(c);
      return;
    }
    if (c.incoming) {
      this.#drop(DROP_UNEXPECTED);
      return;
    }
    if (c.state === CALLING) {
      // The first answer wins (PROTOCOL §10.4); every device of the
      // callee learns which one.
      c.selected = e.device;
      c.haveSel = true;
      this.#stopTimer(c, 'answer');
      this.#stopTimer(c, 'offer_retry');
      c.undelivered = false;
      c.state = CONNECTING;
      this.#publish(c, '');
      this.#sendSelect(c, e.device, OUTCOME_ANSWERED);
      this.#emit({ kind: 'apply_answer', call_id: c.id, device: e.device });
      return;
    }
    if (e.device !== c.selected) {
      // A device that answered too late: tell it again which one won.
      this.#sendSelect(c, c.selected, OUTCOME_ANSWERED);
      this.#drop(DROP_OTHER_DEVICE);
      return;
    }
    if (c.restarting && !c.incoming) {
      this.#emit({ kind: 'apply_restart_answer', call_id: c.id });
      return;
    }
    this.#drop(DROP_DUPLICATE);
  }

  #onRecvReject(c, e) {
    if (c.incoming || c.state !== CALLING) {
      if (!c.incoming && c.haveSel && e.device !== c.selected) {
        this.#drop(DROP_OTHER_DEVICE);
        return;
      }
      this.#drop(DROP_UNEXPECTED);
      return;
    }
    if (e.reason === 'busy') {
      this.#sendSelect(c, e.device, OUTCOME_BUSY);
      this.#end(c, REJECTED, 'busy', '', '', E.BUSY);
      return;
    }
    this.#sendSelect(c, e.device, OUTCOME_DECLINED);
    this.#end(c, REJECTED, 'declined', '', '', E.DECLINED);
  }

  #onRecvHangup(c, e) {
    if (c.incoming && c.state === RINGING) {
      this.#end(c, HANGUP, 'missed', '', '', '');
    } else if (c.incoming && c.answering && c.state === CONNECTING && e.reason === 'no_answer') {
      // The caller gave up before our answer reached it.
      this.#end(c, HANGUP, 'missed', '', '', '');
    } else if (!c.incoming && !c.haveSel) {
      // A callee device that never answered has nothing to hang up.
      this.#drop(DROP_UNEXPECTED);
    } else if (!c.incoming && e.device !== c.selected) {
      this.#drop(DROP_OTHER_DEVICE);
    } else if (inOutage(c) && (e.reason === 'ice_failed' || e.reason === 'disconnected')) {
      // The peer's recovery gave up on the outage this side is in too
      // (its restart_wait fired first): the call ends as our own
      // restart_wait would end it, with our error, and nothing is sent.
      this.#endOutage(c, '');
    } else {
      this.#end(c, HANGUP, e.reason || 'user_hangup', '', '', '');
    }
  }

  /**
   * Ends a call whose outage did not recover: ice_failed if ICE failed in
   * the outage, else disconnected, sending msg (call_hangup with that
   * reason, or nothing when the peer has already ended).
   */
  #endOutage(c, msg) {
    if (c.failed) this.#end(c, ENDED, 'ice_failed', msg, 'ice_failed', E.ICE_FAILED);
    else this.#end(c, ENDED, 'disconnected', msg, 'disconnected', E.DISCONNECTED);
  }

  #onConn(c, st) {
    if (c.state !== CONNECTING && c.state !== CONNECTED) {
      this.#drop(DROP_UNEXPECTED);
      return;
    }
    switch (st) {
      case 'connected':
        this.#stopTimer(c, 'disconnected');
        this.#stopTimer(c, 'restart_delay');
        this.#stopTimer(c, 'restart_wait');
        c.restarted = false;
        c.restarting = false;
        c.failed = false;
        this.#setRecovering(c, false);
        if (!c.connected) {
          c.connected = true;
          c.state = CONNECTED;
          this.#publish(c, '');
          this.#emit({ kind: 'start_media', call_id: c.id });
          this.#startTimer(c, 'media');
        } else if (!c.timers.has('media')) {
          this.#startTimer(c, 'media'); // back from an outage
        }
        break;
      case 'disconnected':
        // Media stops with the connection: the recovery rules own the
        // outage, the media watchdog only a connection that is up.
        this.#stopTimer(c, 'media');
        this.#endNegotiation(c, E.INTERRUPTED);
        this.#setRecovering(c, true);
        if (!c.timers.has('disconnected')) this.#startTimer(c, 'disconnected');
        if (!c.incoming && !c.restarted && !c.timers.has('restart_delay')) this.#startTimer(c, 'restart_delay');
        break;
      case 'failed':
        this.#stopTimer(c, 'media');
        this.#endNegotiation(c, E.INTERRUPTED);
        this.#setRecovering(c, true);
        if (c.restarting) {
          // The restart in progress is bounded by its own wait.
          c.failed = true;
        } else if (!c.restarted && !c.incoming) {
          c.failed = true;
          this.#restart(c);
        } else if (!c.restarted && !c.failed) {
          // The callee waits for the caller's restart offer.
          c.failed = true;
          this.#startTimer(c, 'restart_wait');
        } else if (!c.restarted) {
          // A second failure report while waiting: the wait decides.
        } else {
          this.#end(c, ENDED, 'ice_failed', MSG_HANGUP, 'ice_failed', E.ICE_FAILED);
        }
        break;
    }
  }

  /** Tells the app when an outage begins or ends (a recovery action). */
  #setRecovering(c, on) {
    if (c.recovering === on || !c.connected) return;
    c.recovering = on;
    this.#emit({ kind: 'recovery', call_id: c.id, recovering: on });
  }

  /** Begins the caller's one ICE restart of an outage; the callee has nothing to do but wait for it. */
  #restart(c) {
    if (c.incoming || c.restarted) return;
    this.#endNegotiation(c, E.INTERRUPTED);
    this.#stopTimer(c, 'restart_delay');
    c.restarted = true;
    c.restarting = true;
    this.#startTimer(c, 'restart_wait');
    this.#emit({ kind: 'restart_ice', call_id: c.id });
  }

  #onTimer(c, t) {
    if (!c.timers.has(t)) {
      this.#drop(DROP_STALE_TIMER);
      return;
    }
    c.timers.delete(t);
    switch (t) {
      case 'answer':
        if (c.undelivered) {
          // The relay refused the offer: the callee may never have rung.
          // The hangup stops any device a sending reached.
          this.#end(c, ENDED, 'unavailable', MSG_HANGUP, 'no_answer', E.UNAVAILABLE);
          break;
        }
        this.#end(c, ENDED, 'no_answer', MSG_HANGUP, 'no_answer', E.NO_ANSWER);
        break;
      case 'offer_retry':
        this.#emit({ kind: 'resend_offer', call_id: c.id, peer: c.peer });
        break;
      case 'ring':
        this.#end(c, HANGUP, 'missed', '', '', '');
        break;
      case 'restart_delay':
        this.#restart(c);
        break;
      case 'disconnected':
        // A restart in progress: the 8 s measure no recovery, and the
        // restart's own wait bounds it.
        if (c.restarting) return;
        this.#end(c, ENDED, 'disconnected', MSG_HANGUP, 'disconnected', E.DISCONNECTED);
        break;
      case 'restart_wait':
        this.#endOutage(c, MSG_HANGUP);
        break;
      case 'media':
        this.#end(c, ENDED, 'media_timeout', MSG_HANGUP, 'media_timeout', E.MEDIA_TIMEOUT);
        break;
      case 'renegotiate':
        // No answer: the call goes on with the media it had.
        c.negotiating = false;
        this.#emit({ kind: 'renegotiation_end', call_id: c.id, error: E.TIMEOUT });
        break;
    }
  }
}
