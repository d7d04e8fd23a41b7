// The call module (the seed's CallModule; the Go SDK's call/module.go and
// signal.go): end-to-end-encrypted 1:1 audio and video calls over a
// DuetClient, interoperating with the Go SDK: sealed call_offer /
// call_answer carrying the ephemeral X25519 keys of the media E2EE, trickled
// canonical call_ice, call_reject, call_hangup, call_select, call_rekey.
//
//   client.initCalls({signingPrivKey, signingPubKey, myAliasId, alwaysRelay})
//   client.calls.onIncomingCall = (fromAlias, isVideo, callId) => ...
//   await client.calls.call('u87654321', {audio: true, video: true})
//
// Every decision is the call state machine's (call-fsm.js, PROTOCOL §10):
// the module is its driver. It turns the app's calls, the authenticated
// messages, the peer connection's reports and its timers into events,
// and performs the actions the machine returns: states and endings to
// publish, errors to report, messages to send, timers, and the WebRTC
// work of call-caller.js, call-callee.js, call-pc.js, call-rekey.js and
// call-stats.js. Every message it seals carries this module's random
// device id (PROTOCOL §10.4).

import { CallMachine } from './call-fsm.js';
import { applyAnswer, applyRestartAnswer, restartICE, startCaller } from './call-caller.js';
import { applyRestart, startCallee } from './call-callee.js';
import { addRemote, releaseRemote, startMedia, WORKER_URL } from './call-pc.js';
import { armSwitch, onRekey, onRekeyNeeded } from './call-rekey.js';
import { applyRenegotiation, applyRenegotiationAnswer, renegotiationEnded, sendRenegotiation } from './call-renegotiate.js';
import {
  CallSession, DEGRADATION_PREFERENCE, FSM_TIMINGS, SCREEN_DEGRADATION_PREFERENCE, T, callError, randomID,
} from './call-session.js';
import { newCallID } from './call-config.js';
import { sample } from './call-stats.js';
import { validAlias } from './identity.js';
import { HotValue } from './observable.js';
import { isVideoOffer, offerSendsVideo } from './signal.js';

const INBOUND_QUEUE = 256;
/** The peer's media state before it announces one, and without a call (PROTOCOL §10.9). */
const NO_PEER_MEDIA = Object.freeze({ audioMuted: false, videoOff: false, screen: false });
const SENT_KEPT = 128;
const WORKER_END_MS = 1000; // an ended call's worker is terminated after this at the latest

/** The app's error for an error action of the machine (PROTOCOL §10.3). */
function endingError(name, s) {
  const peer = s?.peer ?? 'the peer';
  switch (name) {
    case 'no_answer':
      return callError('ErrNoAnswer', `${peer} did not answer within ${T.answer / 1000} s`);
    case 'declined':
      return callError('ErrDeclined', `${peer} declined the call`);
    case 'busy':
      return callError('ErrBusy', `${peer} is busy: in another call`);
    case 'offline':
      return callError('ErrOffline', `${peer} is offline: no device of theirs is connected to the relay`);
    case 'unavailable':
      return callError('ErrUnavailable', `the relay could not deliver the call to ${peer} for now (overloaded or unreachable); try again later`);
    case 'ice_failed':
      return callError('ErrICEFailed', 'ICE failed after a restart: no network path to the peer (a TURN server may be needed)');
    case 'media_timeout':
      return callError('ErrMediaTimeout', `no media received from ${peer} for ${T.media / 1000} s`);
    case 'disconnected':
      return callError('ErrDisconnected', `the connection to ${peer} was lost`);
    case 'key_changed':
      return s?.failure ?? callError('ErrKeyChanged', `the keys of ${peer} changed; compare safety numbers and accept the new key first`);
    default:
      return s?.failure ?? callError('ErrMediaSetup', 'the call could not be set up');
  }
}

/** The app's error for an api_error action. */
function apiError(name) {
  switch (name) {
    case 'in_call':
      return callError('ErrInCall', 'a call is already in progress; hang up first');
    case 'already_answering':
      return callError('ErrAlreadyAnswering', 'answer() called while already answering');
    case 'no_call':
      return callError('ErrNoCall', 'no call in progress');
    default:
      return callError('ErrNoIncomingCall', 'no incoming call to answer or reject (it may have ended, or be another call)');
  }
}

/**
 * Ends s's E2EE worker: it drops its keys ('end', answered 'ended'), then
 * it is terminated (at once on the answer; after WORKER_END_MS without).
 */
function endWorker(s) {
  const w = s.worker;
  if (!w) return;
  let done = false;
  const stop = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    w.terminate();
  };
  const timer = setTimeout(stop, WORKER_END_MS);
  w.onmessage = (ev) => {
    if (ev.data?.type === 'ended') stop();
  };
  try {
    w.postMessage({ type: 'end' });
  } catch {
    stop();
  }
}

/**
 * The driver of one module's state machine. @private
 */
class Driver {
  #mod;
  #queues = new Map(); // sender alias → its envelopes waiting, in order
  #queued = 0; // envelopes waiting, all senders
  #drops = {};
  #sent = new Map();
  #idPrefix = randomID().slice(0, 8);
  #idSeq = 0;
  #timers = new Map(); // `${call_id} ${timer}` → the machine's timer
  #feeding = false;
  #pending = [];
  #netListener = null;

  constructor(mod, client, opts) {
    this.#mod = mod;
    this.client = client;
    this.alwaysRelay = opts.alwaysRelay === true;
    this.workerUrl = opts.workerUrl ?? WORKER_URL.href; // the E2EE worker's script
    this.log = opts.logger ?? console;
    this.device = randomID(12); // this instance's device id (PROTOCOL §3): 16 characters of [A-Za-z0-9_-]
    this.fsm = new CallMachine(this.device, FSM_TIMINGS);
    this.cur = null; // the session of the machine's current (or last) call
    this.last = null; // the last session torn down
    this.closed = false;
    this.state = new HotValue('idle');
    this.status = new HotValue({ state: 'idle', peer: '', callId: '', isVideo: false, incoming: false, reason: '', recovering: false });
    this.local = new HotValue(null);
    this.remote = new HotValue(null);
    this.diag = new HotValue(null);
    this.peerMedia = new HotValue(NO_PEER_MEDIA);
    // A network change (PROTOCOL §10.6): the caller restarts ICE at once.
    this.#netListener = () => {
      const s = this.live();
      if (s) this.feed({ kind: 'network_changed', call_id: s.id });
    };
    globalThis.addEventListener?.('online', this.#netListener);
    globalThis.navigator?.connection?.addEventListener?.('change', this.#netListener);
  }

  get drops() {
    return { ...this.#drops };
  }

  /** The session of the call in progress (not torn down), or null. */
  live() {
    return this.cur && !this.cur.torn ? this.cur : null;
  }

  #byId(id) {
    if (this.cur?.id === id) return this.cur;
    if (this.last?.id === id) return this.last;
    return null;
  }

  drop(reason) {
    this.#drops[reason] = (this.#drops[reason] ?? 0) + 1;
  }

  // ------------------------------------------------------------ the machine

  /**
   * Hands ev to the machine and performs its actions. Returns {apiError,
   * session}: the refusal of an app call, and the session an action made.
   * An event fed while actions run (an app callback calling the API) is
   * handled after them; it then returns a promise of that result.
   */
  feed(ev, ctx = null) {
    if (this.#feeding) return new Promise((resolve) => this.#pending.push({ ev, ctx, resolve }));
    this.#feeding = true;
    try {
      const r = this.#run(ev, ctx);
      while (this.#pending.length) {
        const p = this.#pending.shift();
        p.resolve(this.#run(p.ev, p.ctx));
      }
      return r;
    } finally {
      this.#feeding = false;
    }
  }

  #run(ev, ctx) {
    const res = { apiError: '', session: null };
    let actions;
    try {
      actions = this.fsm.handle(ev);
    } catch (e) {
      this.log.error(`[CallModule] the state machine threw on ${ev.kind}`, e);
      return res;
    }
    for (const a of actions) {
      try {
        this.#perform(a, ctx, res);
      } catch (e) {
        this.log.error(`[CallModule] action ${a.kind} failed: ${e?.name}: ${e?.message}`);
      }
    }
    return res;
  }

  #perform(a, ctx, res) {
    const s = a.call_id ? this.#byId(a.call_id) : null;
    switch (a.kind) {
      case 'state':
        if (s) {
          s.state = a.state;
          s.video = a.video === true; // a renegotiation changes it (§10.10)
        }
        this.#publish(a);
        break;
      case 'ring':
        this.log.info?.(`🟢 [CallModule] ringing: ${a.peer} calls (${a.video ? 'video' : 'audio'}), call_id=${a.call_id}`);
        this.#callback('onIncomingCall', a.peer, a.video === true, a.call_id);
        break;
      case 'error':
        this.#callback('onError', endingError(a.error, s));
        break;
      case 'api_error':
        res.apiError = a.error;
        break;
      case 'send':
        this.#sendAction(a, s, ctx);
        break;
      case 'drop':
        this.drop(a.reason);
        break;
      case 'timer_start':
        this.#startTimer(a);
        break;
      case 'timer_stop': {
        const k = `${a.call_id} ${a.timer}`;
        clearTimeout(this.#timers.get(k));
        this.#timers.delete(k);
        break;
      }
      case 'setup_caller': {
        const n = new CallSession(a.call_id, a.peer, false, a.video === true);
        this.cur = n;
        n.done = startCaller(this, n).catch((e) => {
          this.fail(n, e);
          throw n.failure ?? e;
        });
        n.done.catch(() => {});
        res.session = n;
        break;
      }
      case 'prepare_callee': {
        // Glare: the outgoing call this replaces was torn down just now.
        if (this.cur && this.cur.torn && !this.cur.incoming && this.cur === this.last && !this.cur.ended) this.cur.replaced = true;
        const n = new CallSession(a.call_id, a.peer, true, a.video === true);
        n.offerSDP = ctx?.msg?.sdp ?? '';
        n.peerEPK = ctx?.msg?.epk ?? null;
        n.session = ctx?.session ?? null;
        n.peerKeys = ctx?.keys ?? null;
        this.cur = n;
        this.log.info?.(`🟢 [CallModule] RCVD call_offer from ${n.peer} (${n.video ? 'video' : 'audio'}), call_id=${n.id}`);
        break;
      }
      case 'send_answer':
        if (!s) break;
        s.done = startCallee(this, s).catch((e) => {
          this.fail(s, e);
          throw s.failure ?? e;
        });
        s.done.catch(() => {});
        res.session = s;
        break;
      case 'apply_answer':
        if (s && ctx?.msg) this.#step(s, () => applyAnswer(this, s, ctx.msg));
        break;
      case 'add_ice':
        if (s && ctx?.msg) addRemote(this, s, ctx.msg);
        break;
      case 'selected':
        if (s) releaseRemote(this, s);
        break;
      case 'restart_ice':
        if (s?.pc) this.#step(s, () => restartICE(this, s));
        break;
      case 'apply_restart':
        if (s && ctx?.msg) this.#step(s, () => applyRestart(this, s, ctx.msg));
        break;
      case 'apply_restart_answer':
        if (s && ctx?.msg) this.#step(s, () => applyRestartAnswer(this, s, ctx.msg));
        break;
      case 'start_media':
        if (!s?.pc) break;
        s.connected = true;
        s.connectedAt = Date.now();
        startMedia(this, s, (x, log) => sample(this, x, log)).catch((e) => this.log.warn(`[CallModule] starting media: ${e.message}`));
        this.#sendMedia(s); // once when connected, then on every change (PROTOCOL §10.9)
        break;
      case 'send_renegotiation':
        if (s?.pc) this.#step(s, () => sendRenegotiation(this, s, a.video === true));
        break;
      case 'apply_renegotiation':
        if (s?.pc && ctx?.msg) this.#step(s, () => applyRenegotiation(this, s, ctx.msg));
        break;
      case 'apply_renegotiation_answer':
        if (s?.pc && ctx?.msg) this.#step(s, () => applyRenegotiationAnswer(this, s, ctx.msg));
        break;
      case 'renegotiation_end':
        if (s) this.#step(s, () => renegotiationEnded(this, s, a.error));
        break;
      case 'peer_media':
        if (s && !s.torn && this.cur === s) {
          const m = Object.freeze({ audioMuted: a.audio_muted === true, videoOff: a.video_off === true, screen: a.screen === true });
          this.log.info?.(`🔵 [CallModule] peer media: ${m.audioMuted ? 'microphone muted' : 'microphone on'}, ${m.screen ? 'sharing the screen' : m.videoOff ? 'camera off' : 'camera on'}`);
          this.peerMedia.set(m);
        }
        break;
      case 'rekey':
        if (s && ctx?.msg) {
          if (!s.worker || !s.ephem) this.drop('unexpected');
          else onRekey(this, s, ctx.msg);
        }
        break;
      case 'teardown':
        if (s) this.#teardown(s);
        break;
      case 'resend_offer':
        // The relay refused the offer for a passing reason: the same sealed
        // offer again, then the candidates that followed it (most likely
        // refused too; the callee drops those of a call it does not know).
        if (s && s.offerEnv && !s.torn) {
          this.log.info?.('🟡 [CallModule] sending the offer again');
          try {
            this.sendEnvelope(s.offerEnv);
          } catch (e) {
            this.log.warn(`[CallModule] sending the offer again failed: ${e?.message}`);
            break;
          }
          for (const p of s.localSent) this.queueSend(s, { type: 'call_ice', ...p }).catch(() => {});
        }
        break;
      case 'recovery':
        // The connection is down and being recovered, or back: beside the
        // state, which stays connected (PROTOCOL §10.6).
        this.log.info?.(`🔵 [CallModule] ${a.recovering ? 'connection lost; recovering' : 'connection recovered'}`);
        if (this.status.value.callId === a.call_id) this.status.set({ ...this.status.value, recovering: a.recovering === true });
        break;
      default:
        this.log.warn(`[CallModule] unknown action ${a.kind}`);
    }
  }

  /** Runs f after s's earlier WebRTC steps (descriptions are set in order). */
  #step(s, f) {
    s.work = s.work.then(() => (s.torn ? undefined : f())).catch((e) => this.log.warn(`[CallModule] ${e?.message}`));
  }

  #publish(a) {
    const st = {
      state: a.state, peer: a.peer ?? '', callId: a.call_id ?? '', isVideo: a.video === true,
      incoming: a.incoming === true, reason: a.reason ?? '', recovering: false,
    };
    if (a.reason) {
      const s = this.#byId(a.call_id);
      if (s) s.ended = true;
      this.log.info?.(`🔵 [CallModule] call ${a.call_id} ended: ${a.state} (${a.reason})`);
    }
    this.status.set(st);
    this.state.set(a.state);
  }

  #callback(name, ...args) {
    const fn = this.#mod[name];
    if (typeof fn !== 'function') return;
    try {
      fn.apply(this.#mod, args);
    } catch (e) {
      this.log.error(`[CallModule] ${name} threw`, e);
    }
  }

  #startTimer(a) {
    const k = `${a.call_id} ${a.timer}`;
    clearTimeout(this.#timers.get(k));
    if (a.timer === 'disconnected') this.log.info?.(`🔵 [CallModule] disconnected; the call ends after ${a.ms / 1000} s unless it reconnects`);
    if (a.timer === 'answer') this.log.debug?.(`🔵 [CallModule] waiting ${a.ms / 1000} s for an answer`);
    this.#timers.set(k, setTimeout(() => {
      this.#timers.delete(k);
      if (a.timer === 'answer') this.log.info?.(`🔴 [CallModule] no answer after ${a.ms / 1000} s`);
      this.feed({ kind: 'timer', call_id: a.call_id, timer: a.timer });
    }, a.ms));
  }

  #sendAction(a, s, ctx) {
    const body = a.type === 'call_select'
      ? { type: a.type, selected: a.selected ?? '', outcome: a.outcome }
      : { type: a.type, reason: a.reason };
    this.log.info?.(`🔵 [CallModule] sending ${a.type} (${a.reason ?? `${a.outcome} by ${a.selected}`}) for call ${a.call_id}`);
    if (s) {
      // An ending (call_hangup, call_reject, call_select) goes out at once,
      // not behind the call's earlier sends: ending a call never waits on
      // them (PROTOCOL §10.3).
      s.endSend = this.#send(s, body);
      s.endSend.catch((e) => this.log.warn(`[CallModule] sending ${a.type} failed: ${e.name}: ${e.message}`));
      return;
    }
    const sess = ctx?.msg?.from === a.peer ? ctx.session : null; // the offer's sender: its session is at hand
    this.#sendTo({ ...body, to: a.peer, call_id: a.call_id }, undefined, sess)
      .catch((e) => this.log.warn(`[CallModule] sending ${a.type} failed: ${e.message}`));
  }

  /** The driver's report of a failure of s's setup or media work. */
  fail(s, e) {
    if (s.torn) return;
    s.failure = e;
    this.log.warn(`[CallModule] call ${s.id} failed: ${e?.name}: ${e?.message}`);
    this.feed({ kind: 'failed', call_id: s.id, error: e?.name ?? 'Error' });
  }

  /** A connection state of s's peer connection. */
  onConn(s, st) {
    if (s.torn) return;
    this.feed({ kind: 'conn', call_id: s.id, conn: st });
  }

  /** Releases s's connection and media; never waits on the network. */
  #teardown(s) {
    if (s.torn) return;
    s.torn = true;
    s.markTorn();
    s.stopTimers();
    this.renegotiated(s, callError('ErrCallEnded', 'the call ended'));
    for (const t of s.localStream?.getTracks() ?? []) t.stop();
    s.screenTrack?.stop();
    this.last = s;
    if (this.cur === s) {
      this.local.set(null);
      this.remote.set(null);
      this.peerMedia.set(NO_PEER_MEDIA);
    }
    s.wipe();
    const pc = s.pc;
    const close = () => {
      try {
        pc?.close();
      } catch { /* already closed */ }
      endWorker(s);
    };
    if (pc && pc.connectionState !== 'closed') {
      // The last figures, for stats() after the call (local: no network).
      sample(this, s, false).then((d) => { s.lastDiag = d; }, () => {}).finally(close);
    } else {
      close();
    }
  }

  setLocal(s, stream) {
    if (this.cur === s && !s.torn) {
      this.#applyMedia(s, stream);
      this.local.set(stream);
    }
  }

  // ------------------------------------------------ media state (§10.9)

  /**
   * Changes what the call in progress sends (patch of {audioMuted,
   * videoOff}) and tells the peer once connected. False without a call.
   */
  setMedia(patch) {
    const s = this.live();
    if (!s) return false;
    const m = { ...s.media, ...patch };
    if (m.audioMuted === s.media.audioMuted && m.videoOff === s.media.videoOff && m.screen === s.media.screen) return true;
    s.media = m;
    this.#applyMedia(s, this.local.value);
    this.log.info?.(`🔵 [CallModule] local media: ${m.audioMuted ? 'microphone muted' : 'microphone on'}, ${m.videoOff ? 'camera off' : 'camera on'}`);
    if (s.connected) this.#sendMedia(s);
    return true;
  }

  /** A disabled track keeps sending (silence, black frames): the peer's media watchdog still sees media. */
  #applyMedia(s, stream) {
    for (const t of stream?.getAudioTracks?.() ?? []) t.enabled = !s.media.audioMuted;
    for (const t of stream?.getVideoTracks?.() ?? []) t.enabled = !s.media.videoOff;
  }

  /**
   * Shares the screen in the call in progress: the captured track replaces
   * the camera's in the video sender, whose E2EE transform stays (no frame
   * leaves unencrypted, no renegotiation), with contentHint 'detail' and
   * degradationPreference 'maintain-resolution'; the peer is told
   * (call_media screen). Needs a video call.
   */
  async shareScreen() {
    const s = this.live();
    if (!s) throw callError('ErrNoCall', 'no call in progress');
    if (!s.video) throw callError('ErrNoVideo', 'screen sharing needs a video call: this call has no video sender');
    if (s.screenTrack) return;
    const md = globalThis.navigator?.mediaDevices;
    if (!md?.getDisplayMedia) throw callError('NotSupportedError', 'getDisplayMedia is not available in this browser');
    const stream = await md.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    const snd = s.pc?.getTransceivers().find((t) => t.sender.track?.kind === 'video' || t.receiver.track?.kind === 'video')?.sender;
    if (!track || !snd || s.torn || this.live() !== s || s.screenTrack) {
      for (const t of stream.getTracks()) t.stop();
      if (s.screenTrack) return;
      throw callError(s.torn ? 'ErrCallEnded' : 'ErrNoVideo', s.torn ? 'the call ended' : 'no video sender to share the screen with');
    }
    track.contentHint = 'detail';
    s.cameraTrack = snd.track;
    s.screenTrack = track;
    await snd.replaceTrack(track);
    await this.#degradation(snd, SCREEN_DEGRADATION_PREFERENCE);
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener('ended', () => { this.stopScreenShare().catch(() => {}); });
    const set = track.getSettings?.() ?? {};
    this.log.info?.(`🔵 [CallModule] sharing the screen (${set.width ?? '?'}x${set.height ?? '?'}) in place of the camera`);
    this.setMedia({ screen: true });
  }

  /** Stops sharing the screen: the camera's track is sent again. False when nothing was shared. */
  async stopScreenShare() {
    const s = this.live();
    const track = s?.screenTrack;
    if (!track) return false;
    s.screenTrack = null;
    const snd = s.pc?.getSenders().find((x) => x.track === track);
    if (snd) {
      await snd.replaceTrack(s.cameraTrack ?? null);
      await this.#degradation(snd, DEGRADATION_PREFERENCE);
    }
    track.stop();
    this.log.info?.('🔵 [CallModule] screen share stopped; the camera is sent again');
    this.setMedia({ screen: false });
    return true;
  }

  async #degradation(snd, pref) {
    try {
      const p = snd.getParameters();
      if (!p.encodings?.length) return;
      p.degradationPreference = pref;
      await snd.setParameters(p);
    } catch (e) {
      this.log.warn(`[CallModule] setting degradationPreference ${pref} failed: ${e.message}`);
    }
  }

  /**
   * Upgrades the connected call to video (this side sends its camera) or
   * stops sending video, by a renegotiation (PROTOCOL §10.10). Resolves
   * when the peer's answer is applied.
   */
  async setVideo(on) {
    const s = this.live();
    if (!s) throw callError('ErrNoCall', 'no call in progress');
    const done = new Promise((resolve, reject) => { s.renegotiation = { resolve, reject }; });
    done.catch(() => {});
    const r = await this.feed({ kind: 'renegotiate', call_id: s.id, video: !!on });
    if (r.apiError) {
      s.renegotiation = null;
      if (r.apiError === 'not_connected') throw callError('ErrNotConnected', 'the call is not connected yet');
      throw callError('ErrRenegotiating', 'a media change or a connection recovery is in progress; try again');
    }
    return done;
  }

  /** The end of s's renegotiation: err null when the answer was applied. */
  renegotiated(s, err) {
    const r = s.renegotiation;
    s.renegotiation = null;
    if (!r) return;
    if (err) r.reject(err);
    else r.resolve();
  }

  #sendMedia(s) {
    const body = { type: 'call_media', audio_muted: s.media.audioMuted, video_off: s.media.videoOff };
    if (s.media.screen) body.screen = true;
    this.queueSend(s, body).catch(() => {});
  }

  setRemote(s, stream) {
    if (this.cur === s && !s.torn) this.remote.set(stream);
  }

  setDiag(s, d) {
    if (this.cur === s && !s.torn) this.diag.set(d);
  }

  onWorker(s, m) {
    switch (m?.type) {
      case 'rekey-needed':
        onRekeyNeeded(this, s, m.epoch);
        break;
      case 'stream':
        this.log.debug?.(`🔵 [CallModule] E2EE ${m.dir} ${m.kind} stream attached`);
        break;
      case 'send-deferred':
        this.log.info?.(`🔵 [CallModule] rekey: the peer still sends under the old key (our reply may be lost); sending stays on epoch ${s.sendEpoch}`);
        if (!s.torn) armSwitch(s, m.wait);
        break;
      case 'send-switched':
        this.log.info?.(`🔵 [CallModule] media keys rotated: sending under epoch ${m.epoch}`);
        if (m.epoch > s.sendEpoch) s.sendEpoch = m.epoch;
        s.clearTimer('switch');
        break;
      case 'stats': {
        const r = s.workerReqs.get(m.id);
        s.workerReqs.delete(m.id);
        r?.(m.counters);
        break;
      }
      case 'error':
        this.log.error(`[CallModule] E2EE worker: ${m.message}`);
        this.fail(s, callError('ErrMediaSetup', `media keys: ${m.message}`));
        break;
    }
  }

  // ------------------------------------------------------------- the app

  async call(alias, video) {
    const id = newCallID();
    const r = await this.feed({ kind: 'call', call_id: id, peer: alias, video });
    if (r.apiError) throw apiError(r.apiError);
    const s = r.session;
    try {
      await s.done;
    } catch (e) {
      if (s.replaced) return; // glare: the peer's call took its place
      throw e;
    }
  }

  async answer(callId) {
    // Without a call id, "whatever rings" is the incoming call in progress:
    // named, so that a second answer() while answering it is refused as
    // such (ErrAlreadyAnswering), not as no incoming call.
    const s = this.live();
    const r = await this.feed({ kind: 'answer', call_id: callId ?? (s?.incoming ? s.id : '') });
    if (r.apiError) {
      const e = apiError(r.apiError);
      if (r.apiError === 'already_answering') this.#callback('onError', e);
      throw e;
    }
    await r.session.done;
  }

  async reject(callId) {
    const r = await this.feed({ kind: 'reject', call_id: callId ?? '' });
    // Nothing (or another call) rings: nothing to decline, as hangup()
    // with nothing in progress (a stale prompt's reject is harmless).
    if (r.apiError) this.log.debug?.(`[CallModule] reject(${callId ?? ''}): ${apiError(r.apiError).message}`);
    else await this.#ended();
  }

  async hangup() {
    const r = await this.feed({ kind: 'hangup' });
    if (!r.apiError) await this.#ended();
  }

  /**
   * After hangup() or reject(): the call is over already; this waits only
   * for its ending message to be handed to the relay connection when that
   * is up (sealing it is local work), never for the network: a relay that
   * is down, or an earlier send stuck on it, does not hold the caller.
   */
  async #ended() {
    const p = this.last?.endSend;
    if (p && this.client.state === 'connected') await p.catch(() => {});
  }

  close() {
    if (this.closed) return;
    if (this.live()) this.feed({ kind: 'hangup' });
    this.closed = true;
    globalThis.removeEventListener?.('online', this.#netListener);
    globalThis.navigator?.connection?.removeEventListener?.('change', this.#netListener);
  }

  // ------------------------------------------------------- relay plumbing

  /**
   * Each sender's envelopes are handled in order, one at a time, and
   * senders apart: the key lookup an unknown caller's offer needs (up to
   * the relay's HTTP deadline) never holds another sender's envelopes, such
   * as the candidates or the hangup of the call in progress. At most
   * INBOUND_QUEUE wait in all (queue_full).
   */
  handleEnvelope(env) {
    if (this.closed) return;
    if (this.#queued >= INBOUND_QUEUE) {
      this.drop('queue_full');
      return;
    }
    this.#queued++;
    const from = String(env?.from ?? '');
    const q = this.#queues.get(from);
    if (q) {
      q.push(env);
      return;
    }
    const nq = [env];
    this.#queues.set(from, nq);
    this.#drain(from, nq);
  }

  async #drain(from, q) {
    try {
      while (q.length) {
        const env = q.shift();
        try {
          await this.#process(env);
        } catch (e) {
          this.log.warn(`[CallModule] handling ${env.type} failed: ${e.name}: ${e.message}`);
        } finally {
          this.#queued--;
        }
      }
    } finally {
      this.#queues.delete(from);
    }
  }

  handleUndeliverable(n) {
    const s = this.live();
    if (!s || s.incoming || !n?.id || n.id !== s.offerID) return;
    if (!n.reason || n.reason === 'offline') this.log.info?.(`🔴 [CallModule] the relay could not deliver the offer: ${s.peer} is offline`);
    else this.log.info?.(`🟡 [CallModule] the relay could not deliver the offer for now (${n.reason}); it will be sent again`);
    this.feed({ kind: 'undeliverable', call_id: s.id, reason: n.reason ?? '' });
  }

  handleRelayError(n) {
    const f = this.#sent.get(n?.id);
    if (!f || n.code !== 'rate_limited' || f.resent || this.closed) return;
    f.resent = true;
    setTimeout(() => {
      try {
        this.client.send(f.env);
      } catch (e) {
        this.log.warn(`[CallModule] resending a refused ${f.env.type} failed: ${e.message}`);
      }
    }, 1000);
  }

  async #process(env) {
    const s = this.live();
    let msg;
    let keys;
    let sess;
    try {
      if (s && s.peer === env.from && s.session) {
        sess = s.session;
        keys = s.peerKeys;
      } else {
        if (env.type !== 'call_offer') {
          this.drop('unknown_call');
          return;
        }
        ({ session: sess, keys } = await this.client.sessionWithKeys(env.from));
        try {
          msg = await sess.open(env);
        } catch (e) {
          // The held session may be of keys the caller no longer has: look
          // them up again (a key change is then reported as such).
          if (e?.name !== 'ErrDecrypt' && e?.name !== 'ErrSignature') throw e;
          ({ session: sess, keys } = await this.client.sessionWithKeys(env.from, { fresh: true }));
        }
      }
      msg ??= await sess.open(env);
    } catch (e) {
      const reason = e?.name === 'ErrKeyChanged' ? 'key_changed' : (e?.name ?? 'error');
      this.drop(reason);
      this.log.warn(`[CallModule] ${env.type} from ${env.from} dropped: ${e?.name}: ${e?.message}`);
      // A call refused because the caller's keys changed never rings: the
      // app hears of it here (as the Go SDK's OnError).
      if (reason === 'key_changed' && env.type === 'call_offer') this.#callback('onError', e);
      return;
    }
    if (msg.type !== 'call_ice') this.log.info?.(`🔵 [CallModule] handleSignal ${msg.type} from ${msg.from}${msg.device ? `/${msg.device}` : ''} call_id=${msg.call_id}`);
    const cur = this.live();
    if (cur && cur.id === msg.call_id && cur.peer !== msg.from) {
      this.drop('unknown_call'); // another party naming our call
      return;
    }
    const device = msg.device ?? '';
    const base = { call_id: msg.call_id, device };
    let ev;
    switch (msg.type) {
      case 'call_offer':
        ev = {
          kind: 'recv_offer', ...base, peer: msg.from, restart: msg.ice_restart === true, renegotiate: msg.renegotiate === true,
          // A renegotiation's video: whether the peer sends video (§10.10).
          video: msg.renegotiate === true ? offerSendsVideo(msg.sdp) : isVideoOffer(msg.sdp),
        };
        break;
      case 'call_answer':
        ev = { kind: 'recv_answer', ...base };
        break;
      case 'call_ice':
        ev = { kind: 'recv_ice', ...base };
        break;
      case 'call_reject':
        ev = { kind: 'recv_reject', ...base, reason: msg.reason };
        break;
      case 'call_hangup':
        ev = { kind: 'recv_hangup', ...base, reason: msg.reason };
        break;
      case 'call_select':
        ev = { kind: 'recv_select', call_id: msg.call_id, selected: msg.selected, outcome: msg.outcome };
        break;
      case 'call_rekey':
        ev = { kind: 'recv_rekey', ...base };
        break;
      case 'call_media':
        ev = { kind: 'recv_media', ...base, audio_muted: msg.audio_muted === true, video_off: msg.video_off === true, screen: msg.screen === true };
        break;
      default:
        this.drop('unexpected');
        return;
    }
    this.feed(ev, { msg, session: sess, keys });
  }

  // --------------------------------------------------------------- sending

  /**
   * Sends body in s, sealed with the call's own signaling session (never
   * the client's map, where a pending fresh key lookup may sit: the held
   * session's fast path must not wait for it).
   */
  async #send(s, body, id) {
    const message = { ...body, to: s.peer, call_id: s.id };
    return this.#sendTo(message, id, s.session);
  }

  /**
   * Sends are chained per call so that they leave in order (offer before
   * its candidates). body may be a promise of the body (a call_rekey whose
   * ephemeral key is being generated): it keeps its place in the order.
   */
  queueSend(s, body, id, what = body.type) {
    const p = s.sendChain.then(async () => this.#send(s, await body, id));
    s.sendChain = p.catch((e) => {
      if (!s.torn) this.log.warn(`[CallModule] sending ${what} failed: ${e.name}: ${e.message}`);
    });
    return p;
  }

  /**
   * Resolves once the client is connected to the relay: a message of a call
   * in progress waits out a reconnect (a network change reconnects the
   * relay and restarts ICE at the same moment), up to RESTART_WAIT; then,
   * or when the client closes, it rejects with ErrNotConnected.
   */
  #whenConnected() {
    if (this.client.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      let done = false;
      let sub = null;
      const finish = (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        queueMicrotask(() => sub?.unsubscribe());
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => finish(callError('ErrNotConnected', `not connected to the relay for ${T.restartWait / 1000} s`)), T.restartWait);
      sub = this.client.observeState().subscribe((st) => {
        if (st === 'connected') finish(null);
        else if (st === 'closed') finish(callError('ErrNotConnected', 'the client is closed'));
      });
      if (done) sub.unsubscribe();
    });
  }

  async #sendTo(message, id, session = null) {
    await this.#whenConnected();
    const full = { ...message, device: this.device };
    const opts = { id: id || `m${this.#idPrefix}-${++this.#idSeq}` };
    let env;
    if (session) {
      env = await session.seal({ ...full, from: this.client.aliasId });
      env.id = opts.id;
      this.client.send(env);
    } else {
      env = await this.client.sendMessage(full, opts);
    }
    this.#keep(env);
    return env;
  }

  /** Sends an envelope sealed by the caller (its offer). */
  sendEnvelope(env) {
    this.client.send(env);
    this.#keep(env);
  }

  #keep(env) {
    if (this.#sent.size >= SENT_KEPT) this.#sent.delete(this.#sent.keys().next().value);
    this.#sent.set(env.id, { env, resent: false });
  }
}

/**
 * The call module of a DuetClient (client.initCalls). One call at a time.
 * See duet.d.ts (CallModule) for the API.
 */
export class CallModule {
  #d;

  /** (fromAlias, isVideo, callId) when an offer arrives and the module rings. */
  onIncomingCall = null;
  /** (err) when a call fails; err.name says why (see duet.d.ts). */
  onError = null;
  /** Legacy: (stream) when the local stream changes; prefer observeLocalStream. */
  onLocalStream = null;
  /** Legacy: (stream) when the remote stream changes; prefer observeRemoteStream. */
  onRemoteStream = null;
  /** (state) on every state change; prefer observeState. */
  onStateChange = null;

  /**
   * @param {import('./client.js').DuetClient} client
   * @param {{alwaysRelay?: boolean, workerUrl?: string, logger?: Console}} [opts]
   */
  constructor(client, opts = {}) {
    const d = new Driver(this, client, opts);
    this.#d = d;
    d.local.subscribe((s) => this.#legacy('onLocalStream', s));
    d.remote.subscribe((s) => this.#legacy('onRemoteStream', s));
    d.state.subscribe((s) => this.#legacy('onStateChange', s));
  }

  #legacy(name, v) {
    const fn = this[name];
    if (typeof fn !== 'function') return;
    try {
      fn(v);
    } catch (e) {
      this.#d.log.error(`[CallModule] ${name} threw`, e);
    }
  }

  // ------------------------------------------------------------ public API

  /** @returns {import('./duet.js').CallState} the current state */
  get state() {
    return this.#d.state.value;
  }

  /** @returns {import('./duet.js').CallStatus} the current status: {state, peer, callId, isVideo, incoming, reason, recovering} */
  get status() {
    return this.#d.status.value;
  }

  /** @returns {boolean} whether calls are forced through TURN */
  get alwaysRelay() {
    return this.#d.alwaysRelay;
  }

  /** @returns {string} the E2EE worker's script URL (initCalls' workerUrl, else e2ee-worker.js beside the SDK's module) */
  get workerUrl() {
    return this.#d.workerUrl;
  }

  /** @returns {string} this module's device id, sent in every call message (PROTOCOL §10.4) */
  get deviceId() {
    return this.#d.device;
  }

  observeState() {
    return { subscribe: (fn) => this.#d.state.subscribe(fn) };
  }

  observeStatus() {
    return { subscribe: (fn) => this.#d.status.subscribe(fn) };
  }

  observeLocalStream() {
    return { subscribe: (fn) => this.#d.local.subscribe(fn) };
  }

  observeRemoteStream() {
    return { subscribe: (fn) => this.#d.remote.subscribe(fn) };
  }

  /** The Diag sample of every DIAG_INTERVAL_MS while connected (null before). */
  observeDiag() {
    return { subscribe: (fn) => this.#d.diag.subscribe(fn) };
  }

  /** Signaling frames and events dropped, by reason. */
  get drops() {
    return this.#d.drops;
  }

  /**
   * Calls alias. Resolves once the offer is sent (state calling); the call
   * goes on in the background (observeState). Rejects (and calls onError)
   * when media or setup fails: NotAllowedError (permission denied),
   * TimeoutError ('getUserMedia timeout after 6000ms'), ErrKeyChanged, ...;
   * rejects only, before any call starts: ErrInCall, ErrNoMedia. Audio is
   * always sent; media.audio false only refuses a call with neither.
   * @param {string} alias
   * @param {{audio?: boolean, video?: boolean}} [media]
   */
  async call(alias, media = { audio: true, video: false }) {
    if (this.#d.closed) throw callError('ErrClosed', 'the call module is closed');
    if (!validAlias(alias)) throw callError('ErrInvalidAlias', `"${String(alias).slice(0, 32)}" is not an alias (u followed by 8 digits)`);
    if (alias === this.#d.client.aliasId) throw callError('ErrInvalidAlias', `cannot call yourself (${alias})`);
    const video = media?.video === true;
    if (!video && media?.audio !== true) throw callError('ErrNoMedia', 'a call needs audio, video or both');
    return this.#d.call(alias, video);
  }

  /**
   * Answers the ringing call (callId, when given, must be the one ringing:
   * else ErrNoIncomingCall). Resolves once the answer is sent (state
   * connecting). A second answer() for the same call rejects with
   * ErrAlreadyAnswering (also given to onError).
   * @param {string} [callId]
   */
  async answer(callId) {
    return this.#d.answer(callId);
  }

  /**
   * Rejects the ringing call (callId, when given, must be the one ringing):
   * the caller gets call_reject (declined). When nothing (or another call)
   * rings it does nothing, as hangup() with no call: it never rejects, so
   * the seed's fire-and-forget reject() cannot leave an unhandled rejection.
   * Resolves once the call has ended and, when the relay connection is up,
   * its call_reject was handed to it; never waits on the network.
   * @param {string} [callId]
   */
  async reject(callId) {
    return this.#d.reject(callId);
  }

  /**
   * Ends the call in progress, in any state (a ringing one is declined).
   * Resolves once the call has ended and, when the relay connection is up,
   * its call_hangup was handed to it; never waits on the network.
   */
  hangup() {
    return this.#d.hangup();
  }

  /**
   * Mutes (false) or unmutes (true) the microphone of the call in progress:
   * the track sends silence, and the peer is told (call_media, PROTOCOL
   * §10.9; it sees observePeerMedia() change). Returns false without a
   * call; every call starts unmuted.
   * @param {boolean} on
   */
  setMicrophoneEnabled(on) {
    return this.#d.setMedia({ audioMuted: !on });
  }

  /**
   * Turns the camera of the call in progress off (false) or on (true): the
   * track sends black frames, and the peer is told (call_media). Returns
   * false without a call.
   * @param {boolean} on
   */
  setCameraEnabled(on) {
    return this.#d.setMedia({ videoOff: !on });
  }

  /** @returns {import('./duet.js').MediaState} what the call in progress sends (all on without a call) */
  get localMedia() {
    const s = this.#d.live();
    return Object.freeze({ ...(s?.media ?? NO_PEER_MEDIA) });
  }

  /**
   * The peer's media state, hot: {audioMuted, videoOff, screen}, all false
   * without a call or before the peer announced one (PROTOCOL §10.9).
   */
  observePeerMedia() {
    return { subscribe: (fn) => this.#d.peerMedia.subscribe(fn) };
  }

  /**
   * Turns the connected call into a video call (on: this side sends its
   * camera) or stops sending video (off), by a renegotiation within the
   * call (PROTOCOL §10.10): the peer receives the video without having to
   * send any, and its observeRemoteStream() emits a stream with the new
   * track. Resolves when the peer answered; rejects with ErrNoCall, ErrNotConnected,
   * ErrRenegotiating (another change or a recovery in progress) or
   * ErrRenegotiationFailed (no answer, glare lost, connection lost: the
   * call goes on unchanged).
   * @param {boolean} on
   */
  setVideo(on) {
    return this.#d.setVideo(on);
  }

  /**
   * Shares the screen (getDisplayMedia) in place of the camera in the
   * video call in progress, E2EE like the camera; the peer sees
   * observePeerMedia().screen. Rejects with ErrNoCall, ErrNoVideo (an
   * audio call), NotAllowedError (the user refused), NotSupportedError.
   */
  shareScreen() {
    return this.#d.shareScreen();
  }

  /** Stops sharing the screen: the camera is sent again. Resolves false when nothing was shared. */
  stopScreenShare() {
    return this.#d.stopScreenShare();
  }

  /** A fresh Diag sample of the current call (null without one). */
  async stats() {
    const s = this.#d.live() ?? this.#d.last ?? this.#d.cur;
    if (!s?.pc || s.torn) return s?.lastDiag ?? null;
    if (s.pc.connectionState === 'closed') return s.lastDiag;
    return sample(this.#d, s, false);
  }

  /** Hangs up and stops the module. */
  close() {
    this.#d.close();
  }

  /** @private The client's call_* envelopes, processed one at a time. */
  handleEnvelope(env) {
    this.#d.handleEnvelope(env);
  }

  /** @private The relay's undeliverable notices. */
  handleUndeliverable(n) {
    this.#d.handleUndeliverable(n);
  }

  /** @private The relay's error notices: a rate-limited frame is sent once more a second later. */
  handleRelayError(n) {
    this.#d.handleRelayError(n);
  }
}
