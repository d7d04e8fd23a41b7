// The call module (the seed's CallModule): end-to-end-encrypted 1:1 audio and
// video calls over a DuetClient, with the Go SDK's call package as the
// reference behaviour, so that the two interoperate: sealed call_offer /
// call_answer carrying the ephemeral X25519 keys of the media E2EE, trickled
// canonical call_ice, call_reject (declined, busy), call_hangup, call_rekey,
// and the lifecycle constants of docs/PROTOCOL.md §6.
//
//   client.initCalls({signingPrivKey, signingPubKey, myAliasId, alwaysRelay})
//   client.calls.onIncomingCall = (fromAlias, isVideo) => ...
//   await client.calls.call('u87654321', {audio: true, video: true})
//
// Media is encrypted frame by frame in a worker (e2ee-worker.js) attached
// with RTCRtpScriptTransform, or createEncodedStreams where only that exists.
// VP8 and Opus are forced with setCodecPreferences (packetisers of other
// codecs parse the frame and break on ciphertext).

import { rtcConfiguration } from './client.js';
import { deriveMediaKeys } from './frame.js';
import { validAlias } from './identity.js';
import { HotValue } from './observable.js';
import { generateX25519 } from './primitives.js';
import { isVideoOffer, normalizeICE } from './signal.js';
import { DuetError, equalBytes } from './util.js';

/** Lifecycle constants (docs/PROTOCOL.md §6); not configurable. */
export const ANSWER_TIMEOUT_MS = 15_000;
export const DISCONNECTED_TIMEOUT_MS = 8_000;
export const MEDIA_TIMEOUT_MS = 15_000;
export const GUM_TIMEOUT_MS = 6_000;
export const DIAG_INTERVAL_MS = 2_000;
export const MAX_VIDEO_BITRATE = 1_500_000;
export const VIDEO_CONSTRAINTS = Object.freeze({ width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } });
export const DEGRADATION_PREFERENCE = 'maintain-framerate';

// Timings the package's tests shorten through testHooks (never public).
const T = {
  answer: ANSWER_TIMEOUT_MS,
  ring: ANSWER_TIMEOUT_MS + 5_000, // a callee whose caller's hangup was lost stops ringing
  disconnected: DISCONNECTED_TIMEOUT_MS,
  media: MEDIA_TIMEOUT_MS,
  mediaCheck: 1_000,
  diag: DIAG_INTERVAL_MS,
  gum: GUM_TIMEOUT_MS,
  restartWait: 10_000, // callee: wait this long for the caller's ICE restart
  rekeyRetry: 10_000,
  rekeySwitch: 2_000,
};

// The E2EE worker's script, beside this module.
const WORKER_URL = new URL('./e2ee-worker.js', import.meta.url);
let workerBootstrap; // the blob: URL of the cross-origin bootstrap, made once

/**
 * Where to start the E2EE worker from. A browser starts workers only from
 * the page's origin: when this SDK is imported from another origin (a page
 * of an app's site using the relay's /sdk/), the worker starts from a
 * same-origin blob: module whose only line imports e2ee-worker.js by its
 * absolute URL. That import, and e2ee-worker.js's own relative imports, load
 * from the SDK's origin as cross-origin module scripts, which its
 * Access-Control-Allow-Origin header allows. (Such a page's CSP must allow
 * blob: workers: worker-src blob:.)
 * @returns {{url: string|URL, crossOrigin: boolean}}
 */
function workerSource() {
  if (globalThis.location?.origin === WORKER_URL.origin) return { url: WORKER_URL, crossOrigin: false };
  workerBootstrap ??= URL.createObjectURL(new Blob([`import ${JSON.stringify(WORKER_URL.href)};\n`], { type: 'text/javascript' }));
  return { url: workerBootstrap, crossOrigin: true };
}

const INBOUND_QUEUE = 256;
const MAX_PENDING_CANDIDATES = 64;
const SENT_KEPT = 128;

/** Call states, as the seed lists them. */
export const CALL_STATES = Object.freeze(['idle', 'calling', 'ringing', 'connecting', 'connected', 'hangup', 'rejected', 'ended']);
const TERMINAL = new Set(['hangup', 'rejected', 'ended']);

function callError(name, message, details) {
  return new DuetError(name, message, details);
}

/** Error of a terminal reason, for onError (null: not a failure). */
function reasonError(reason, peer) {
  switch (reason) {
    case 'no_answer':
      return callError('ErrNoAnswer', `${peer} did not answer within ${T.answer / 1000} s`);
    case 'offline':
      return callError('ErrOffline', `${peer} is offline: no device of theirs is connected to the relay`);
    case 'ice_failed':
      return callError('ErrICEFailed', 'ICE failed after a restart: no network path to the peer (a TURN server may be needed)');
    case 'media_timeout':
      return callError('ErrMediaTimeout', `no media received from ${peer} for ${T.media / 1000} s`);
    case 'disconnected':
      return callError('ErrDisconnected', `the connection to ${peer} was lost`);
  }
  return null;
}

function newCallID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The m= lines of an SDP with their direction, for the STEP logs. */
export function mLines(sdp) {
  const out = [];
  for (let l of String(sdp).split('\n')) {
    l = l.trim();
    if (l.startsWith('m=')) out.push(l);
    else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l) && out.length) out[out.length - 1] += ` ${l}`;
  }
  return out;
}

/**
 * p, or a rejection with the seed's TimeoutError after ms. When the timeout
 * wins, a value p resolves with later goes to onLate (getUserMedia: the
 * late stream's tracks are stopped, or camera and microphone stay live).
 */
function withTimeout(p, ms, message, onLate) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => {
        p.then(onLate, () => {});
        reject(callError('TimeoutError', message));
      }, ms);
    }),
  ]);
}

/** Orders codecs: only VP8 (with its RTX) for video, only Opus for audio. */
function preferredCodecs(kind) {
  const caps = globalThis.RTCRtpReceiver?.getCapabilities?.(kind)?.codecs ?? [];
  const want = kind === 'video' ? ['video/vp8', 'video/rtx'] : ['audio/opus'];
  return caps.filter((c) => want.includes(c.mimeType.toLowerCase()));
}

let forcedMode = '';
const dropSends = {}; // message type → how many of the next to lose (testHooks.dropSends)

/** Whether this browser can encrypt media frames. */
export function e2eeSupport() {
  if (forcedMode) return forcedMode;
  if (typeof globalThis.RTCRtpScriptTransform === 'function') return 'script-transform';
  if (typeof globalThis.RTCRtpSender?.prototype?.createEncodedStreams === 'function') return 'encoded-streams';
  return '';
}

/**
 * One call: from call() or an incoming offer to the end of its teardown.
 * @private
 */
class CallSession {
  constructor(mod, id, peer, incoming, video) {
    this.mod = mod;
    this.id = id;
    this.peer = peer;
    this.incoming = incoming;
    this.video = video;
    this.state = incoming ? 'ringing' : 'calling';
    this.ending = false;
    this.answering = false;
    this.failure = null; // the error that ended the call, if one did
    this.timers = new Map();
    this.intervals = new Set();
    this.session = null; // signaling Session with peer
    this.peerKeys = null;
    this.offerSent = false;
    this.offerID = '';
    this.offerSDP = '';
    this.ephem = null;
    this.peerEPK = null;
    this.pc = null;
    this.worker = null;
    this.remoteSet = false;
    this.pendRemote = [];
    this.localReady = false;
    this.pendLocal = [];
    this.connected = false;
    this.connectedAt = 0;
    this.iceFailures = 0;
    this.restarts = 0;
    this.localStream = null;
    this.remoteStream = null;
    this.epoch = 0; // the media key epoch agreed (the last call_rekey accepted)
    this.sendEpoch = 0; // the epoch the worker sends under (send-switched)
    this.rekey = null; // our call_rekey awaiting its reply: {epoch, key: Promise of the X25519 pair}
    this.lastReply = null; // our last reply: {epoch, body}, sent again when the request comes again
    this.rekeys = { requests: 0, replies: 0, ignored: 0 }; // call_rekey sent; rekey-needed signals that started none
    this.sendChain = Promise.resolve();
    this.diagN = 0;
    this.lastDiag = null;
    this.workerReqs = new Map();
    this.workerSeq = 0;
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
}

/**
 * The call module of a DuetClient (client.initCalls). One call at a time.
 * See duet.d.ts (CallModule) for the API.
 */
export class CallModule {
  #client;
  #alwaysRelay;
  #log;
  #state = new HotValue('idle');
  #status = new HotValue({ state: 'idle', peer: '', callId: '', isVideo: false, incoming: false, reason: '' });
  #local = new HotValue(null);
  #remote = new HotValue(null);
  #diag = new HotValue(null);
  #cur = null; // the call in progress, until its teardown finished
  #last = null;
  #queue = [];
  #draining = false;
  #closed = false;
  #drops = {};
  #sent = new Map();
  #idPrefix = newCallID().slice(0, 8);
  #idSeq = 0;

  /** (fromAlias, isVideo) when an offer arrives and the module rings. */
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
   * @param {{alwaysRelay?: boolean, logger?: Console}} [opts]
   */
  constructor(client, opts = {}) {
    this.#client = client;
    this.#alwaysRelay = opts.alwaysRelay === true;
    this.#log = opts.logger ?? console;
    this.#local.subscribe((s) => this.#legacy('onLocalStream', s));
    this.#remote.subscribe((s) => this.#legacy('onRemoteStream', s));
    this.#state.subscribe((s) => this.#legacy('onStateChange', s));
  }

  #legacy(name, v) {
    const fn = this[name];
    if (typeof fn !== 'function') return;
    try {
      fn(v);
    } catch (e) {
      this.#log.error(`[CallModule] ${name} threw`, e);
    }
  }

  // ------------------------------------------------------------ public API

  /** @returns {string} the current state */
  get state() {
    return this.#state.value;
  }

  /** @returns {object} the current status: {state, peer, callId, isVideo, incoming, reason} */
  get status() {
    return this.#status.value;
  }

  /** @returns {boolean} whether calls are forced through TURN */
  get alwaysRelay() {
    return this.#alwaysRelay;
  }

  observeState() {
    return { subscribe: (fn) => this.#state.subscribe(fn) };
  }

  observeStatus() {
    return { subscribe: (fn) => this.#status.subscribe(fn) };
  }

  observeLocalStream() {
    return { subscribe: (fn) => this.#local.subscribe(fn) };
  }

  observeRemoteStream() {
    return { subscribe: (fn) => this.#remote.subscribe(fn) };
  }

  /** The Diag sample of every DIAG_INTERVAL_MS while connected (null before). */
  observeDiag() {
    return { subscribe: (fn) => this.#diag.subscribe(fn) };
  }

  /** Signaling frames dropped, by reason. */
  get drops() {
    return { ...this.#drops };
  }

  /**
   * Calls alias. Resolves once the offer is sent (state calling); the call
   * goes on in the background (observeState). Rejects (and calls onError)
   * when media or setup fails: NotAllowedError (permission denied),
   * TimeoutError ('getUserMedia timeout after 6000ms'), ErrInCall,
   * ErrKeyChanged, ...
   * @param {string} alias
   * @param {{audio?: boolean, video?: boolean}} [media]
   */
  async call(alias, media = { audio: true, video: false }) {
    if (this.#closed) throw callError('ErrClosed', 'the call module is closed');
    if (!validAlias(alias)) throw callError('ErrInvalidAlias', `"${String(alias).slice(0, 32)}" is not an alias (u followed by 8 digits)`);
    if (alias === this.#client.aliasId) throw callError('ErrInvalidAlias', `cannot call yourself (${alias})`);
    const video = media?.video === true;
    if (!video && media?.audio !== true) throw callError('ErrNoMedia', 'a call needs audio, video or both');
    if (this.#cur) throw callError('ErrInCall', 'a call is already in progress; hang up first');
    const s = new CallSession(this, newCallID(), alias, false, video);
    this.#cur = s;
    this.#publish(s, '');
    try {
      await this.#startCaller(s);
    } catch (e) {
      if (!s.ending) {
        await this.#end(s, 'ended', 'error', 'hangup', e);
      }
      throw e;
    }
  }

  /**
   * Answers the ringing call. Resolves once the answer is sent (state
   * connecting). A second answer() for the same call rejects with
   * 'answer() called while already answering' (also given to onError).
   */
  async answer() {
    const s = this.#cur;
    if (s && s.incoming && s.answering) {
      const e = callError('ErrAlreadyAnswering', 'answer() called while already answering');
      this.#reportError(e);
      throw e;
    }
    if (!s || !s.incoming || s.state !== 'ringing' || s.ending) {
      throw callError('ErrNoIncomingCall', 'no incoming call to answer');
    }
    s.answering = true;
    s.clearTimer('ring');
    s.state = 'connecting';
    this.#publish(s, '');
    try {
      await this.#startCallee(s);
    } catch (e) {
      if (!s.ending) await this.#end(s, 'ended', 'error', 'hangup', e);
      throw e;
    }
  }

  /**
   * Rejects the ringing call: the caller gets call_reject (declined).
   * Rejects with ErrNoIncomingCall when nothing rings (never throws).
   */
  async reject() {
    const s = this.#cur;
    if (!s || !s.incoming || s.state !== 'ringing' || s.answering || s.ending) {
      throw callError('ErrNoIncomingCall', 'no incoming call to reject');
    }
    return this.#end(s, 'rejected', 'declined', 'reject', null);
  }

  /** Ends the call in progress, in any state: the peer gets call_hangup. */
  hangup() {
    const s = this.#cur;
    if (!s || s.ending) return Promise.resolve();
    return this.#end(s, 'hangup', 'user_hangup', 'hangup', null);
  }

  /** Mutes or unmutes the microphone (the track sends silence when off). */
  setMicrophoneEnabled(on) {
    for (const t of this.#local.value?.getAudioTracks() ?? []) t.enabled = !!on;
  }

  /** Turns the camera on or off (black frames when off). */
  setCameraEnabled(on) {
    for (const t of this.#local.value?.getVideoTracks() ?? []) t.enabled = !!on;
  }

  /** A fresh Diag sample of the current call (null without one). */
  async stats() {
    const s = this.#cur ?? this.#last;
    if (!s?.pc) return s?.lastDiag ?? null;
    if (s.pc.connectionState === 'closed') return s.lastDiag;
    return this.#sample(s, false);
  }

  /** Hangs up and stops the module. */
  close() {
    if (this.#closed) return;
    const s = this.#cur;
    if (s) this.#end(s, 'hangup', 'user_hangup', 'hangup', null);
    this.#closed = true;
  }

  // ------------------------------------------------------- relay plumbing

  /** @private The client's call_* envelopes, processed one at a time. */
  handleEnvelope(env) {
    if (this.#closed) return;
    if (this.#queue.length >= INBOUND_QUEUE) {
      this.#drop('queue_full');
      return;
    }
    this.#queue.push(env);
    if (!this.#draining) this.#drain();
  }

  async #drain() {
    this.#draining = true;
    try {
      while (this.#queue.length) {
        const env = this.#queue.shift();
        try {
          await this.#process(env);
        } catch (e) {
          this.#log.warn(`[CallModule] handling ${env.type} failed: ${e.name}: ${e.message}`);
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /** @private The relay's undeliverable notices. */
  handleUndeliverable(n) {
    const s = this.#cur;
    if (!s || s.incoming || s.ending || !n?.id || n.id !== s.offerID || s.state !== 'calling') return;
    this.#log.info?.(`🔴 [CallModule] the relay could not deliver the offer: ${s.peer} is offline (${n.reason})`);
    this.#end(s, 'ended', 'offline', null, null);
  }

  /** @private The relay's error notices: a rate-limited frame is sent once more a second later. */
  handleRelayError(n) {
    const f = this.#sent.get(n?.id);
    if (!f || n.code !== 'rate_limited' || f.resent || this.#closed) return;
    f.resent = true;
    setTimeout(() => {
      try {
        this.#client.send(f.env);
      } catch (e) {
        this.#log.warn(`[CallModule] resending a refused ${f.env.type} failed: ${e.message}`);
      }
    }, 1000);
  }

  #drop(reason) {
    this.#drops[reason] = (this.#drops[reason] ?? 0) + 1;
  }

  async #process(env) {
    const s = this.#cur;
    let msg;
    let keys;
    let sess;
    try {
      if (s && s.peer === env.from && s.session) {
        sess = s.session;
        keys = s.peerKeys;
      } else {
        if (env.type !== 'call_offer') {
          this.#drop('unknown_call');
          return;
        }
        ({ session: sess, keys } = await this.#client.sessionWithKeys(env.from));
        try {
          msg = await sess.open(env);
        } catch (e) {
          // The held session may be of keys the caller no longer has: look
          // them up again (a key change is then reported as such).
          if (e?.name !== 'ErrDecrypt' && e?.name !== 'ErrSignature') throw e;
          ({ session: sess, keys } = await this.#client.sessionWithKeys(env.from, { fresh: true }));
        }
      }
      msg ??= await sess.open(env);
    } catch (e) {
      const reason = e?.name === 'ErrKeyChanged' ? 'key_changed' : (e?.name ?? 'error');
      this.#drop(reason);
      this.#log.warn(`[CallModule] ${env.type} from ${env.from} dropped: ${e?.name}: ${e?.message}`);
      // A call refused because the caller's keys changed never rings: the
      // app hears of it here (as the Go SDK's OnError).
      if (reason === 'key_changed' && env.type === 'call_offer') this.#reportError(e);
      return;
    }
    if (msg.type !== 'call_ice') this.#log.info?.(`🔵 [CallModule] handleSignal ${msg.type} from ${msg.from} call_id=${msg.call_id}`);
    const cur = this.#cur;
    const mine = cur && cur.id === msg.call_id && cur.peer === msg.from;
    if (msg.type === 'call_offer') {
      if (mine && msg.ice_restart) return this.#onRestartOffer(cur, msg);
      if (mine) return this.#drop('duplicate');
      if (msg.ice_restart) return this.#drop('unknown_call');
      return this.#incomingOffer(msg, sess, keys);
    }
    if (!mine) {
      this.#drop('unknown_call');
      return;
    }
    switch (msg.type) {
      case 'call_answer':
        return this.#onAnswer(cur, msg);
      case 'call_ice':
        return this.#addRemote(cur, msg);
      case 'call_reject':
        if (cur.incoming || cur.state !== 'calling' || cur.ending) return this.#drop('unexpected');
        this.#log.info?.(`🔴 [CallModule] rejected by ${cur.peer}: ${msg.reason}`);
        return this.#end(cur, 'rejected', msg.reason, null, null);
      case 'call_hangup':
        this.#log.info?.(`🔵 [CallModule] ${cur.peer} hung up: ${msg.reason}`);
        return this.#end(cur, 'hangup', msg.reason, null, null);
      case 'call_rekey':
        return this.#onRekey(cur, msg);
    }
  }

  async #send(s, body, id) {
    if (dropSends[body.type] > 0) { // tests only: a message lost on the way
      dropSends[body.type]--;
      this.#log.info?.(`🔵 [CallModule] test hook: ${body.type} not sent`);
      return undefined;
    }
    const message = { ...body, to: s.peer, call_id: s.id };
    return this.#sendTo(message, id);
  }

  // Sends are chained per call so that they leave in order (offer before
  // its candidates). body may be a promise of the body (a call_rekey whose
  // ephemeral key is being generated): it keeps its place in the order.
  #queueSend(s, body, id, what = body.type) {
    const p = s.sendChain.then(async () => this.#send(s, await body, id));
    s.sendChain = p.catch((e) => {
      if (!s.ending) this.#log.warn(`[CallModule] sending ${what} failed: ${e.name}: ${e.message}`);
    });
    return p;
  }

  async #sendTo(message, id) {
    const env = await this.#client.sendMessage(message, { id: id || `m${this.#idPrefix}-${++this.#idSeq}` });
    if (this.#sent.size >= SENT_KEPT) this.#sent.delete(this.#sent.keys().next().value);
    this.#sent.set(env.id, { env, resent: false });
    return env;
  }

  // ---------------------------------------------------------------- state

  #publish(s, reason) {
    const st = { state: s.state, peer: s.peer, callId: s.id, isVideo: s.video, incoming: s.incoming, reason };
    this.#status.set(st);
    this.#state.set(s.state);
  }

  #setState(s, state) {
    if (s.ending || this.#cur !== s) return;
    s.state = state;
    this.#publish(s, '');
  }

  #reportError(e) {
    if (typeof this.onError !== 'function') return;
    try {
      this.onError(e);
    } catch (err) {
      this.#log.error('[CallModule] onError threw', err);
    }
  }

  /**
   * Ends s: stops its timers, tells the peer (call_hangup or call_reject
   * with reason), closes the connection and media, publishes the terminal
   * state and frees the module; failure (or the reason's error) goes to
   * onError. The first end wins.
   */
  async #end(s, state, reason, notify, failure) {
    if (s.ending) return;
    s.ending = true;
    s.failure = failure;
    s.stopTimers();
    this.#log.info?.(`🔵 [CallModule] call ${s.id} ending: ${state} (${reason})`);
    if (notify && s.session && (s.incoming || s.offerSent)) {
      const body = { type: notify === 'reject' ? 'call_reject' : 'call_hangup', reason: reason === 'offline' ? 'error' : reason };
      try {
        await s.sendChain;
        await this.#send(s, body);
      } catch (e) {
        this.#log.warn(`[CallModule] could not tell ${s.peer} the call ended: ${e.message}`);
      }
    }
    if (s.pc && s.pc.connectionState !== 'closed') {
      try {
        s.lastDiag = await this.#sample(s, false);
      } catch { /* closing */ }
    }
    try {
      s.pc?.close();
    } catch { /* already closed */ }
    for (const t of s.localStream?.getTracks() ?? []) t.stop();
    s.worker?.terminate();
    s.state = state;
    if (this.#cur === s) this.#cur = null;
    this.#last = s;
    this.#publish(s, reason);
    this.#local.set(null);
    this.#remote.set(null);
    const err = failure ?? reasonError(reason, s.peer);
    if (err) this.#reportError(err);
  }

  // --------------------------------------------------------------- caller

  async #startCaller(s) {
    const c = this.#client;
    const step = (n, m) => this.#log.info?.(`🔴 [CallModule] STEP ${n}: ${m}`);
    step(1, `calling ${s.peer} (${s.video ? 'video' : 'audio'}), call_id=${s.id}; fetching keys and ICE config`);
    // A key change is refused at every call. With a session held for the
    // peer whose keys are still the pinned ones, the offer goes out at once,
    // sealed to them, and the fresh keys are checked after it (a round trip
    // less before the peer rings); else the offer waits for them.
    const heldP = c.heldSession(s.peer); // before the fresh lookup replaces it
    heldP.catch(() => {});
    const keysP = c.sessionWithKeys(s.peer, { fresh: true });
    let lookedUp = null; // the lookup's outcome, once it is in
    keysP.then(() => (lookedUp = { ok: true }), (e) => (lookedUp = { e }));
    const iceP = c.iceConfig();
    iceP.catch(() => {});
    step(2, 'getUserMedia');
    const stream = await this.#getUserMedia(s, s.video);
    this.#checkLive(s);
    const ice = await iceP;
    this.#checkLive(s);
    s.ephem = await generateX25519();
    const cfg = this.#rtcConfig(ice);
    this.#log.info?.(`🟡 [CallModule] iceServers=${JSON.stringify(cfg.iceServers.map((x) => x.urls))} policy=${cfg.iceTransportPolicy}`);
    step(3, 'creating the peer connection');
    this.#newPC(s, cfg);
    step(4, 'adding local tracks');
    const kinds = s.video ? ['audio', 'video'] : ['audio'];
    for (const kind of kinds) {
      const track = kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
      const t = s.pc.addTransceiver(track ?? kind, { direction: 'sendrecv', streams: [stream] });
      this.#setupTransceiver(s, t, kind);
    }
    step(5, 'creating the offer');
    const offer = await s.pc.createOffer();
    this.#checkLive(s);
    step(6, 'setting the local description (ICE gathering starts)');
    await s.pc.setLocalDescription(offer);
    this.#checkLive(s);
    this.#log.info?.(`🔴 [CallModule] STEP 6.5: offer m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
    let held = await heldP.catch(() => null);
    this.#checkLive(s);
    // A lookup that is in already wins over the held session: its session,
    // or its key change (not a failure to look up).
    if (held && lookedUp && (lookedUp.ok || lookedUp.e?.name === 'ErrKeyChanged')) held = null;
    if (held) step(7, 'sending call_offer with the session held for the peer (its keys are checked after)');
    else step(7, "waiting for the peer's checked keys, then sending call_offer");
    const { session, keys } = held ?? (await keysP);
    this.#checkLive(s);
    s.session = session;
    s.peerKeys = keys;
    s.offerSent = true;
    s.offerID = `o${s.id}`;
    await this.#queueSend(s, { type: 'call_offer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey }, s.offerID);
    step(8, `offer sent; waiting for the answer (${T.answer / 1000} s)`);
    if (s.ending) return;
    if (s.state === 'calling') s.setTimer('answer', T.answer, () => this.#onAnswerTimeout(s));
    this.#flushLocal(s);
    if (!held) return;
    try {
      await keysP;
    } catch (e) {
      // A changed key fails the call as it would before the offer (call()
      // then ends it, telling the peer); another failure says nothing
      // against the pinned keys the offer was sealed to.
      if (e?.name === 'ErrKeyChanged' && !s.ending) throw e;
      if (!s.ending) this.#log.warn(`[CallModule] checking the keys of ${s.peer} failed; the call goes on with the pinned ones: ${e?.message}`);
    }
  }

  /** Throws once s is ending: the failure that ended it, else ErrCallEnded. */
  #checkLive(s) {
    if (s.ending) throw s.failure ?? callError('ErrCallEnded', 'the call ended during setup');
  }

  #onAnswerTimeout(s) {
    if (s.ending || s.state !== 'calling') return;
    this.#log.info?.(`🔴 [CallModule] no answer after ${T.answer / 1000} s; sending call_hangup (no_answer)`);
    this.#end(s, 'ended', 'no_answer', 'hangup', null);
  }

  async #onAnswer(s, msg) {
    if (s.incoming || !s.pc || s.ending) return this.#drop('unexpected');
    if (s.state !== 'calling') {
      // The answer to our ICE restart offer.
      if (!equalBytes(msg.epk, s.peerEPK) || s.pc.signalingState !== 'have-local-offer') return this.#drop('restart_mismatch');
      try {
        await s.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      } catch (e) {
        this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `ICE restart answer: ${e.message}`));
      }
      return;
    }
    s.clearTimer('answer');
    s.state = 'connecting';
    s.peerEPK = msg.epk;
    this.#publish(s, '');
    this.#log.info?.('🔴 [CallModule] STEP 8.5: answer received');
    try {
      await this.#installKeys(s, msg.epk);
      this.#checkLive(s);
      await s.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      this.#checkLive(s);
      this.#log.info?.(`🔴 [CallModule] STEP 8.6: answer m-lines ${JSON.stringify(mLines(msg.sdp))}`);
    } catch (e) {
      if (!s.ending) this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `the callee's answer: ${e.message}`));
      return;
    }
    this.#remoteReady(s);
  }

  // --------------------------------------------------------------- callee

  #incomingOffer(msg, session, keys) {
    const c = this.#cur;
    if (this.#closed || c) {
      this.#log.info?.(`🟢 [CallModule] RCVD call_offer from ${msg.from} while in a call: rejecting as busy`);
      this.#sendTo({ type: 'call_reject', to: msg.from, call_id: msg.call_id, reason: 'busy' })
        .catch((e) => this.#log.warn(`[CallModule] sending busy failed: ${e.message}`));
      return;
    }
    const s = new CallSession(this, msg.call_id, msg.from, true, isVideoOffer(msg.sdp));
    s.offerSDP = msg.sdp;
    s.peerEPK = msg.epk;
    s.session = session;
    s.peerKeys = keys;
    this.#cur = s;
    s.setTimer('ring', T.ring, () => {
      if (!s.ending && s.state === 'ringing' && !s.answering) {
        this.#log.info?.('🟢 [CallModule] stopped ringing: the caller gave up');
        this.#end(s, 'ended', 'no_answer', null, null);
      }
    });
    this.#publish(s, '');
    this.#log.info?.(`🟢 [CallModule] RCVD STEP 1: call_offer from ${s.peer} (${s.video ? 'video' : 'audio'}), m-lines ${JSON.stringify(mLines(msg.sdp))}; ringing`);
    const cb = this.onIncomingCall;
    if (typeof cb === 'function') {
      try {
        cb(s.peer, s.video);
      } catch (e) {
        this.#log.error('[CallModule] onIncomingCall threw', e);
      }
    }
  }

  async #startCallee(s) {
    const c = this.#client;
    const step = (n, m) => this.#log.info?.(`🟢 [CallModule] ANSWER STEP ${n}: ${m}`);
    step(0, `answering ${s.peer} (${s.video ? 'video' : 'audio'})`);
    step(1, 'getUserMedia and the ICE configuration');
    const iceP = c.iceConfig();
    iceP.catch(() => {});
    const stream = await this.#getUserMedia(s, s.video);
    this.#checkLive(s);
    const ice = await iceP;
    this.#checkLive(s);
    step(2, 'deriving the media keys');
    s.ephem = await generateX25519();
    const cfg = this.#rtcConfig(ice);
    this.#log.info?.(`🟡 [CallModule] iceServers=${JSON.stringify(cfg.iceServers.map((x) => x.urls))} policy=${cfg.iceTransportPolicy}`);
    this.#newPC(s, cfg);
    await this.#installKeys(s, s.peerEPK);
    this.#checkLive(s);
    // Chromium short-circuits the encoded transform of a sender or receiver
    // that has none when the description creating its stream is applied,
    // and frames then bypass a transform set later, unencrypted. So the
    // local tracks are added (addTrack: the offer's m-lines then reuse
    // these transceivers) and the transforms attached before the offer is
    // set.
    const wanted = s.video ? ['audio', 'video'] : ['audio'];
    for (const kind of wanted) {
      const track = kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
      if (!track) continue;
      s.pc.addTrack(track, stream);
    }
    for (const t of s.pc.getTransceivers()) this.#setupTransceiver(s, t, t.sender.track.kind);
    step(3, 'setting the remote offer');
    await s.pc.setRemoteDescription({ type: 'offer', sdp: s.offerSDP });
    this.#checkLive(s);
    for (const t of s.pc.getTransceivers()) {
      if (t.e2eeAttached && t.mid !== null) {
        t.direction = 'sendrecv';
        this.#setupTransceiver(s, t, t.receiver.track.kind); // codec preferences for the answer
      } else if (t.mid !== null) {
        // An m-line none of our tracks took: it would carry media past the
        // E2EE worker, so it stays inactive.
        this.#log.warn(`[CallModule] the offer's ${t.receiver.track.kind} m-line ${t.mid} has no local track; inactive`);
        t.direction = 'inactive';
      }
    }
    this.#remoteReady(s);
    step(3.2, 'creating the answer');
    const answer = await s.pc.createAnswer();
    this.#checkLive(s);
    await s.pc.setLocalDescription(answer);
    this.#checkLive(s);
    step(3.5, `answer m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
    step(4, 'sending call_answer');
    await this.#queueSend(s, { type: 'call_answer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey });
    step(5, 'answer sent; connecting');
    this.#flushLocal(s);
  }

  // ---------------------------------------------------------------- media

  async #getUserMedia(s, video) {
    const md = globalThis.navigator?.mediaDevices;
    if (!md?.getUserMedia) {
      throw callError('NotSupportedError', 'getUserMedia is not available (the page needs a secure context: https or localhost)');
    }
    const constraints = { audio: true, video: video ? { ...VIDEO_CONSTRAINTS } : false };
    let stream;
    try {
      stream = await withTimeout(md.getUserMedia(constraints), T.gum, `getUserMedia timeout after ${T.gum}ms`, (late) => {
        this.#log.warn(`[CallModule] getUserMedia resolved after its ${T.gum} ms timeout; stopping the late stream's tracks`);
        for (const t of late?.getTracks?.() ?? []) t.stop();
      });
    } catch (e) {
      // The seed: a failed camera is an error for the app, never a silent
      // audio-only downgrade. NotAllowedError: permission denied.
      this.#log.error(`🔴 [CallModule] getUserMedia(${video ? 'audio+video' : 'audio'}) failed: ${e.name}: ${e.message}`);
      throw e;
    }
    if (s.ending) {
      for (const t of stream.getTracks()) t.stop();
      this.#checkLive(s);
    }
    s.localStream = stream;
    this.#local.set(stream);
    return stream;
  }

  #rtcConfig(ice) {
    const cfg = rtcConfiguration(ice, { alwaysRelay: this.#alwaysRelay });
    cfg.bundlePolicy = 'max-bundle';
    cfg.rtcpMuxPolicy = 'require';
    return cfg;
  }

  #newPC(s, cfg) {
    const mode = e2eeSupport();
    if (!mode) throw callError('ErrUnsupported', 'this browser cannot encrypt media frames (no RTCRtpScriptTransform or createEncodedStreams); use a current Chromium (duet is tested on 137 and newer)');
    s.e2eeMode = mode;
    if (mode === 'encoded-streams') cfg.encodedInsertableStreams = true;
    const pc = new RTCPeerConnection(cfg);
    s.pc = pc;
    const src = workerSource();
    if (src.crossOrigin) this.#log.debug?.(`🔵 [CallModule] E2EE worker: the SDK is on another origin than the page; starting ${WORKER_URL.href} from a blob: module`);
    const hint = src.crossOrigin ? ' (from another origin: the SDK must be served with Access-Control-Allow-Origin, and the page\'s CSP must allow worker-src blob:)' : '';
    try {
      s.worker = new Worker(src.url, { type: 'module', name: `duet-e2ee-${s.id}` });
    } catch (e) {
      // A CSP that forbids the worker throws here (SecurityError).
      throw callError('ErrE2EE', `the E2EE worker did not start: ${e.name}: ${e.message}${hint}`);
    }
    s.worker.onmessage = (ev) => this.#onWorker(s, ev.data);
    s.worker.onerror = (ev) => {
      // A script that does not load (404, CORS) gives a plain Event with no
      // message. Without its worker the call has no frame encryption: it
      // ends now, rather than connect and then time out for want of media.
      ev.preventDefault();
      const what = ev.message ? `failed: ${ev.message}` : `did not load: ${WORKER_URL.href}${hint}`;
      this.#log.error(`[CallModule] E2EE worker ${what}`);
      if (!s.ending) this.#end(s, 'ended', 'error', 'hangup', callError('ErrE2EE', `the E2EE worker ${what}; the call was ended`));
    };
    pc.onicecandidate = (ev) => this.#onLocalCandidate(s, ev.candidate);
    pc.onicecandidateerror = (ev) => this.#log.info?.(`🟡 [CallModule] icecandidateerror ${ev.url ?? ''} ${ev.errorCode}: ${ev.errorText}`);
    pc.onicegatheringstatechange = () => this.#log.info?.(`🟡 [CallModule] iceGatheringState=${pc.iceGatheringState}`);
    pc.oniceconnectionstatechange = () => this.#onICEState(s);
    pc.onconnectionstatechange = () => this.#onPCState(s);
    pc.ontrack = (ev) => this.#onTrack(s, ev);
    s.remoteStream = new MediaStream();
  }

  #setupTransceiver(s, t, kind) {
    const codecs = preferredCodecs(kind);
    if (codecs.length && t.setCodecPreferences) {
      try {
        t.setCodecPreferences(codecs);
      } catch (e) {
        this.#log.warn(`[CallModule] setCodecPreferences(${kind}) failed: ${e.message}`);
      }
    }
    if (t.e2eeAttached) return;
    t.e2eeAttached = true;
    for (const [dir, end] of [['send', t.sender], ['recv', t.receiver]]) {
      if (s.e2eeMode === 'script-transform') {
        end.transform = new RTCRtpScriptTransform(s.worker, { dir, kind });
      } else {
        const { readable, writable } = end.createEncodedStreams();
        s.worker.postMessage({ type: 'stream', readable, writable, dir, kind }, [readable, writable]);
      }
    }
  }

  async #installKeys(s, peerEPK) {
    const c = this.#client;
    const { send, recv } = await deriveMediaKeys({
      ephemeralPrivate: s.ephem.privateKey,
      peerEphemeral: peerEPK,
      callId: s.id,
      selfSigning: c.identity.signingKey.publicKey,
      peerSigning: s.peerKeys.signing,
      epoch: 0,
    });
    s.worker.postMessage({ type: 'keys', send, recv });
  }

  #onWorker(s, m) {
    switch (m?.type) {
      case 'rekey-needed':
        this.#onRekeyNeeded(s, m.epoch);
        break;
      case 'stream':
        this.#log.debug?.(`🔵 [CallModule] E2EE ${m.dir} ${m.kind} stream attached`);
        break;
      case 'send-deferred':
        this.#log.info?.(`🔵 [CallModule] rekey: the peer still sends under the old key (our reply may be lost); sending stays on epoch ${s.sendEpoch}`);
        if (!s.ending) this.#armSwitch(s, m.wait);
        break;
      case 'send-switched':
        this.#log.info?.(`🔵 [CallModule] media keys rotated: sending under epoch ${m.epoch}`);
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
        this.#log.error(`[CallModule] E2EE worker: ${m.message}`);
        if (!s.ending) this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `media keys: ${m.message}`));
        break;
    }
  }

  #workerCounters(s) {
    if (!s.worker || s.ending) return Promise.resolve(null);
    return new Promise((resolve) => {
      const id = ++s.workerSeq;
      s.workerReqs.set(id, resolve);
      s.worker.postMessage({ type: 'stats', id });
      setTimeout(() => {
        if (s.workerReqs.delete(id)) resolve(null);
      }, 1000);
    });
  }

  #onTrack(s, ev) {
    if (s.ending) return;
    this.#log.info?.(`🔵 [CallModule] remote ${ev.track.kind} track`);
    s.remoteStream.addTrack(ev.track);
    if (this.#cur === s) this.#remote.set(s.remoteStream);
  }

  // ------------------------------------------------------------------ ICE

  #onLocalCandidate(s, cand) {
    if (s.ending) return;
    let p;
    if (cand && cand.candidate) {
      try {
        p = normalizeICE(cand);
      } catch (e) {
        this.#log.warn(`[CallModule] local candidate not sent: ${e.message}`);
        return;
      }
    } else {
      p = { candidate: '', sdp_mid: null, sdp_mline: null }; // end of candidates
    }
    if (!s.localReady) {
      if (s.pendLocal.length < MAX_PENDING_CANDIDATES) s.pendLocal.push(p);
      return;
    }
    this.#queueSend(s, { type: 'call_ice', ...p }).catch(() => {});
  }

  #flushLocal(s) {
    s.localReady = true;
    const pend = s.pendLocal;
    s.pendLocal = [];
    for (const p of pend) this.#queueSend(s, { type: 'call_ice', ...p }).catch(() => {});
  }

  async #addRemote(s, msg) {
    if (!msg.candidate || s.ending) return; // end of candidates
    const init = { candidate: msg.candidate, sdpMid: msg.sdp_mid, sdpMLineIndex: msg.sdp_mline };
    if (!s.remoteSet) {
      if (s.pendRemote.length < MAX_PENDING_CANDIDATES) s.pendRemote.push(init);
      else this.#drop('ice_queue_full');
      return;
    }
    try {
      await s.pc.addIceCandidate(init);
    } catch (e) {
      this.#log.info?.(`🟡 [CallModule] remote candidate refused: ${e.message}`);
    }
  }

  #remoteReady(s) {
    s.remoteSet = true;
    const pend = s.pendRemote;
    s.pendRemote = [];
    for (const c of pend) {
      s.pc.addIceCandidate(c).catch((e) => this.#log.info?.(`🟡 [CallModule] remote candidate refused: ${e.message}`));
    }
  }

  #onICEState(s) {
    const st = s.pc?.iceConnectionState;
    this.#log.info?.(`🟡 [CallModule] iceConnectionState=${st}`);
    if (st === 'failed' && !s.ending) this.#onICEFailed(s);
  }

  #onPCState(s) {
    const pc = s.pc;
    if (s.ending || !pc) return;
    const st = pc.connectionState;
    this.#log.info?.(`🔵 [CallModule] connectionState=${st}`);
    switch (st) {
      case 'connected':
        // The seed: cleared on connected and connecting, so that the timer
        // does not fight an ICE restart.
        s.clearTimer('disconnected');
        s.clearTimer('restartWait');
        if (!s.connected) {
          s.connected = true;
          s.connectedAt = Date.now();
          this.#setState(s, 'connected');
          this.#onConnected(s);
        }
        break;
      case 'connecting':
        s.clearTimer('disconnected');
        break;
      case 'disconnected':
        if (!s.timers.has('disconnected')) {
          this.#log.info?.(`🔵 [CallModule] disconnected; the call ends after ${T.disconnected / 1000} s unless it reconnects`);
          s.setTimer('disconnected', T.disconnected, () => {
            const now = s.pc?.connectionState;
            if (s.ending || now === 'connected' || now === 'connecting') return;
            this.#end(s, 'ended', 'disconnected', 'hangup', null);
          });
        }
        break;
      case 'failed':
        if (!s.timers.has('disconnected') && s.iceFailures === 0 && s.pc.iceConnectionState !== 'failed') {
          // DTLS failure: no restart helps.
          this.#end(s, 'ended', 'ice_failed', 'hangup', null);
        }
        break;
    }
  }

  // The seed: ICE failure → one restartIce() (the caller sends an
  // ice_restart offer; the callee waits for it), a second failure ends the
  // call with ice_failed.
  async #onICEFailed(s) {
    s.iceFailures++;
    if (s.iceFailures >= 2) {
      this.#log.info?.('🔵 [CallModule] ICE failed again after the restart');
      this.#end(s, 'ended', 'ice_failed', 'hangup', null);
      return;
    }
    if (s.incoming) {
      this.#log.info?.(`🔵 [CallModule] ICE failed; waiting ${T.restartWait / 1000} s for the caller's ICE restart`);
      s.setTimer('restartWait', T.restartWait, () => this.#end(s, 'ended', 'ice_failed', 'hangup', null));
      return;
    }
    s.restarts++;
    s.localReady = false;
    this.#log.info?.('🔵 [CallModule] ICE failed; restartIce()');
    try {
      s.pc.restartIce();
      const offer = await s.pc.createOffer({ iceRestart: true });
      this.#checkLive(s);
      await s.pc.setLocalDescription(offer);
      this.#checkLive(s);
      await this.#queueSend(s, { type: 'call_offer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey, ice_restart: true });
      this.#flushLocal(s);
    } catch (e) {
      if (!s.ending) this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `ICE restart: ${e.message}`));
    }
  }

  async #onRestartOffer(s, msg) {
    if (s.ending || !s.incoming || !s.pc || !s.remoteSet || !equalBytes(msg.epk, s.peerEPK)) {
      this.#drop('restart_mismatch');
      return;
    }
    s.clearTimer('restartWait');
    s.restarts++;
    s.localReady = false;
    this.#log.info?.('🟢 [CallModule] ICE restart requested by the caller');
    try {
      await s.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await s.pc.createAnswer();
      await s.pc.setLocalDescription(answer);
      this.#checkLive(s);
      await this.#queueSend(s, { type: 'call_answer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey });
      this.#flushLocal(s);
    } catch (e) {
      if (!s.ending) this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `ICE restart answer: ${e.message}`));
    }
  }

  // ------------------------------------------------------ after connecting

  async #onConnected(s) {
    // Media quality per the seed: 1.5 Mbps and maintain-framerate.
    for (const t of s.pc.getTransceivers()) {
      const snd = t.sender;
      if (snd.track?.kind !== 'video') continue;
      try {
        const p = snd.getParameters();
        if (!p.encodings?.length) p.encodings = [{}];
        for (const e of p.encodings) e.maxBitrate = MAX_VIDEO_BITRATE;
        p.degradationPreference = DEGRADATION_PREFERENCE;
        await snd.setParameters(p);
        this.#log.info?.(`🔵 [CallModule] video sender: maxBitrate=${MAX_VIDEO_BITRATE} degradationPreference=${DEGRADATION_PREFERENCE}`);
      } catch (e) {
        this.#log.warn(`[CallModule] setParameters failed: ${e.message}`);
      }
    }
    // The media watchdog: no inbound RTP growth for T.media ends the call.
    let last = -1;
    let lastGrowth = Date.now();
    const watch = setInterval(async () => {
      if (s.ending) return;
      let n;
      try {
        n = await this.#inboundProgress(s);
      } catch {
        return;
      }
      if (n > last) {
        last = n;
        lastGrowth = Date.now();
      } else if (Date.now() - lastGrowth >= T.media && !s.ending) {
        this.#log.info?.(`🔵 [CallModule] no inbound media for ${T.media / 1000} s`);
        this.#end(s, 'ended', 'media_timeout', 'hangup', null);
      }
    }, T.mediaCheck);
    s.intervals.add(watch);
    const diag = setInterval(() => {
      if (!s.ending) this.#sample(s, true).catch(() => {});
    }, T.diag);
    s.intervals.add(diag);
  }

  async #inboundProgress(s) {
    let n = 0;
    const report = await s.pc.getStats();
    report.forEach((r) => {
      if (r.type === 'inbound-rtp') n += (r.bytesReceived ?? 0) + (r.framesDecoded ?? 0);
    });
    return n;
  }

  /** Collects the call's figures; with log, prints the 📊 [Diag #N] line. */
  async #sample(s, log) {
    const report = await s.pc.getStats();
    const d = {
      n: log ? ++s.diagN : s.diagN,
      callId: s.id,
      peer: s.peer,
      state: s.state,
      connectedMs: s.connected ? Date.now() - s.connectedAt : 0,
      e2ee: s.e2eeMode,
      outVideo: null, outAudio: null, inVideo: null, inAudio: null,
      pair: '', rtt: 0, restarts: s.restarts, epoch: s.epoch,
      mLines: { local: mLines(s.pc.localDescription?.sdp ?? ''), remote: mLines(s.pc.remoteDescription?.sdp ?? '') },
    };
    let selected = '';
    const byId = new Map();
    report.forEach((r) => {
      byId.set(r.id, r);
      if (r.type === 'transport' && r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
    });
    const codec = (r) => byId.get(r.codecId)?.mimeType ?? '';
    report.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        d.outVideo = {
          bytesSent: r.bytesSent ?? 0, packetsSent: r.packetsSent ?? 0, framesEncoded: r.framesEncoded ?? 0,
          frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0, framesPerSecond: r.framesPerSecond ?? 0,
          qualityLimitationReason: r.qualityLimitationReason ?? '', keyFramesEncoded: r.keyFramesEncoded ?? 0, codec: codec(r),
        };
      } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
        d.outAudio = { bytesSent: r.bytesSent ?? 0, packetsSent: r.packetsSent ?? 0, codec: codec(r) };
      } else if (r.type === 'inbound-rtp' && r.kind === 'video') {
        d.inVideo = {
          bytesReceived: r.bytesReceived ?? 0, packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
          framesReceived: r.framesReceived ?? 0, framesDecoded: r.framesDecoded ?? 0, framesDropped: r.framesDropped ?? 0,
          keyFramesDecoded: r.keyFramesDecoded ?? 0, frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
          framesPerSecond: r.framesPerSecond ?? 0, freezeCount: r.freezeCount ?? 0, pliCount: r.pliCount ?? 0, codec: codec(r),
        };
      } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        d.inAudio = {
          bytesReceived: r.bytesReceived ?? 0, packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
          totalSamplesReceived: r.totalSamplesReceived ?? 0, concealedSamples: r.concealedSamples ?? 0, codec: codec(r),
        };
      }
    });
    if (!selected) report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') selected = r.id; });
    const pair = byId.get(selected);
    if (pair) {
      d.rtt = pair.currentRoundTripTime ?? 0;
      d.pair = `${byId.get(pair.localCandidateId)?.candidateType ?? '?'}/${byId.get(pair.remoteCandidateId)?.candidateType ?? '?'}`;
    }
    const vs = s.pc.getSenders().find((x) => x.track?.kind === 'video');
    if (vs) {
      const p = vs.getParameters();
      d.videoSender = { maxBitrate: p.encodings?.[0]?.maxBitrate ?? 0, degradationPreference: p.degradationPreference ?? '' };
    }
    d.frames = await this.#workerCounters(s);
    s.lastDiag = d;
    // Never media in the clear: frames the encoder produced must have gone
    // through the E2EE worker (a transform Chromium short-circuited would
    // let them pass unencrypted).
    const f0 = d.frames;
    if (f0 && !s.ending && ((d.outVideo?.framesEncoded ?? 0) > 30 && f0.encrypted.video === 0 ||
        (d.outAudio?.packetsSent ?? 0) > 100 && f0.encrypted.audio === 0)) {
      this.#end(s, 'ended', 'error', 'hangup', callError('ErrE2EE', 'media frames are leaving without passing the E2EE worker; the call was ended'));
      return d;
    }
    if (log && !s.ending) {
      this.#diag.set(d);
      const ov = d.outVideo;
      const iv = d.inVideo;
      const kb = (n) => `${Math.round((n ?? 0) / 1024)}KB`;
      const f = d.frames;
      this.#log.info?.(`📊 [Diag #${d.n}] state=${d.state} frame=${ov ? `${ov.frameWidth}x${ov.frameHeight}` : '-'} fps=${ov ? ov.framesPerSecond : '-'} qLimit=${ov ? ov.qualityLimitationReason || 'none' : '-'}` +
        ` out=v${kb(ov?.bytesSent)}/${ov?.framesEncoded ?? 0}f a${kb(d.outAudio?.bytesSent)}` +
        ` in=v${kb(iv?.bytesReceived)}/${iv?.framesDecoded ?? 0}dec/${iv?.framesDropped ?? 0}drop${iv ? ` ${iv.frameWidth}x${iv.frameHeight}` : ''} a${kb(d.inAudio?.bytesReceived)}` +
        ` rtt=${Math.round(d.rtt * 1000)}ms pair=${d.pair || '-'}` +
        (f ? ` e2ee=enc v${f.encrypted.video}/a${f.encrypted.audio} dec v${f.decrypted.video}/a${f.decrypted.audio} err ${f.decryptErrors}${f.lastDecryptError ? ` (${f.lastDecryptError})` : ''} replayed ${f.replayed} nokey ${f.droppedNoKey} streams ${f.streams}` : ''));
    }
    return d;
  }

  // ---------------------------------------------------------------- rekey

  // docs/PROTOCOL.md §5.4, as the Go SDK's rekey.go: the side whose key is
  // nearly used up sends call_rekey{epoch+1, epk}; the peer replies with
  // its own epk for that epoch. Both install the receive key at once; the
  // initiator switches sending on the reply, the responder when the first
  // frame of the new epoch arrives or once 2 s pass with no frame of the
  // old one (a reply that was lost). When both keys run out
  // together, the requests may cross (each side uses the other's epk), or
  // one side answers the other's before its own key signals: the epoch is
  // agreed (s.epoch) as soon as a call_rekey is accepted, before anything is
  // awaited, and a signal of a key older than it, or while the switch to it
  // is pending, starts no rekey. So each epoch has one key pair.

  /**
   * The worker's rekey-needed for its key of epoch. Rekeys unless the call
   * already agreed on a newer epoch or the switch to it is pending (the
   * peer's call_rekey came first): that epoch's key, with its whole budget,
   * replaces this one. Returns whether a call_rekey was sent.
   */
  #onRekeyNeeded(s, epoch) {
    if (epoch !== s.epoch || s.sendEpoch !== s.epoch) {
      s.rekeys.ignored++;
      this.#log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; no rekey: epoch ${s.epoch} is agreed and ${s.sendEpoch === s.epoch ? 'in use' : 'pending'}`);
      return false;
    }
    if (this.#startRekey(s)) {
      this.#log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; rekeying`);
      return true;
    }
    s.rekeys.ignored++;
    this.#log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; no rekey now: ${s.rekey ? `the request for epoch ${s.rekey.epoch} awaits its reply` : 'the call is not connected, or is ending'}`);
    return false;
  }

  /**
   * Sends call_rekey for the next epoch with a fresh ephemeral key, unless
   * one is awaiting its reply (the retry timer sends it again) or a switch
   * is pending. Synchronous: s.rekey is set, and the request queued, before
   * any other handler runs.
   */
  #startRekey(s) {
    if (s.ending || !s.connected || !s.worker || s.rekey || s.sendEpoch !== s.epoch) return false;
    const r = { epoch: s.epoch + 1, key: generateX25519() };
    r.key.catch((e) => {
      this.#log.warn(`[CallModule] rekey: ephemeral key: ${e.name}: ${e.message}`);
      if (s.rekey === r) {
        s.rekey = null;
        s.clearTimer('rekeyRetry');
      }
    });
    s.rekey = r;
    this.#sendRekey(s, r);
    return true;
  }

  #sendRekey(s, r) {
    s.setTimer('rekeyRetry', T.rekeyRetry, () => {
      if (s.rekey === r && !s.ending) this.#sendRekey(s, r);
    });
    s.rekeys.requests++;
    this.#log.info?.(`🔵 [CallModule] sending call_rekey for epoch ${r.epoch}`);
    const body = r.key.then((k) => ({ type: 'call_rekey', epoch: r.epoch, epk: k.publicKey }));
    this.#queueSend(s, body, undefined, 'call_rekey').catch(() => {});
  }

  async #onRekey(s, msg) {
    if (s.ending || !s.worker || !s.ephem) return this.#drop('unexpected');
    const epoch = msg.epoch;
    let key; // a promise of our X25519 pair for epoch
    let initiator = false;
    if (s.rekey && s.rekey.epoch === epoch) {
      // The reply to ours, or the peer's own request for the same epoch
      // sent concurrently: each side uses the other's key.
      key = s.rekey.key;
      initiator = true;
      s.rekey = null;
      s.clearTimer('rekeyRetry');
      // Should it have been the peer's request and ours was lost, the peer
      // sends its request again: it is answered with our key for this
      // epoch, the one we derive with (as the Go SDK does).
      const body = key.then((k) => ({ type: 'call_rekey', epoch, epk: k.publicKey }));
      body.catch(() => {});
      s.lastReply = { epoch, body };
    } else if (epoch === s.epoch + 1) {
      key = generateX25519();
    } else if (epoch === s.epoch && s.lastReply?.epoch === epoch) {
      s.rekeys.replies++;
      this.#queueSend(s, s.lastReply.body, undefined, 'call_rekey').catch(() => {}); // our reply was lost
      return;
    } else {
      this.#drop('rekey_epoch');
      return;
    }
    // The epoch is agreed from here on, before anything is awaited: a
    // rekey-needed of the old key handled meanwhile must not start a
    // call_rekey of its own for this epoch (the peer would get two keys for
    // it) nor one for the next (sending would move past the key the pending
    // switch installs).
    s.epoch = epoch;
    let keys;
    let pair;
    try {
      pair = await key;
      keys = await deriveMediaKeys({
        ephemeralPrivate: pair.privateKey, peerEphemeral: msg.epk, callId: s.id,
        selfSigning: this.#client.identity.signingKey.publicKey, peerSigning: s.peerKeys.signing, epoch,
      });
    } catch (e) {
      this.#end(s, 'ended', 'error', 'hangup', callError('ErrMediaSetup', `rekey to epoch ${epoch}: ${e.message}`));
      return;
    }
    if (s.ending) return;
    s.worker.postMessage({ type: 'add-recv', key: keys.recv });
    if (initiator) {
      s.worker.postMessage({ type: 'set-send', key: keys.send });
      return;
    }
    const reply = { type: 'call_rekey', epoch, epk: pair.publicKey };
    s.lastReply = { epoch, body: reply };
    s.worker.postMessage({ type: 'pending-send', key: keys.send });
    this.#armSwitch(s, T.rekeySwitch);
    s.rekeys.replies++;
    this.#log.info?.(`🔵 [CallModule] answering call_rekey for epoch ${epoch}`);
    this.#queueSend(s, reply).catch(() => {});
  }

  /**
   * The responder's switch wait: in ms, the worker switches sending to the
   * pending key unless the peer's frames still come under the old one
   * (then it answers send-deferred, and the wait is armed again).
   */
  #armSwitch(s, ms) {
    s.setTimer('switch', ms, () => s.worker?.postMessage({ type: 'commit-send', quiet: T.rekeySwitch }));
  }

  /** @private Test hook: restarts ICE as a first ICE failure would (caller only). */
  _forceICERestart() {
    const s = this.#cur;
    if (!s || s.incoming || !s.connected) return false;
    this.#onICEFailed(s);
    return true;
  }

  /** @private Test hook: posts a message to the current call's E2EE worker. */
  _postWorker(m) {
    const s = this.#cur;
    if (!s?.worker) return false;
    s.worker.postMessage(m);
    return true;
  }

  /** @private Test hook: starts a media rekey as rekey-needed would; whether it sent a call_rekey. */
  _forceRekey() {
    const s = this.#cur;
    return s ? this.#startRekey(s) : false;
  }

  /** @private Test hook: the worker's rekey-needed for its key of epoch; whether it sent a call_rekey. */
  _rekeyNeeded(epoch) {
    const s = this.#cur;
    if (!s) return false;
    return this.#onRekeyNeeded(s, epoch);
  }

  /** @private Test hook: the current call's rekey state and counts (null without a call). */
  _rekeyState() {
    const s = this.#cur;
    if (!s) return null;
    return { epoch: s.epoch, sendEpoch: s.sendEpoch, requesting: s.rekey !== null, ...s.rekeys };
  }
}

/**
 * Internal hooks for this package's tests; not part of the API (duet.js
 * does not export them). setTimings shortens the lifecycle constants.
 * @internal
 */
export const testHooks = Object.freeze({
  setTimings(t) {
    for (const [k, v] of Object.entries(t ?? {})) {
      if (!(k in T)) throw new TypeError(`unknown timing ${k}`);
      if (!(Number.isFinite(v) && v > 0)) throw new TypeError(`timing ${k} must be a positive number of ms`);
      T[k] = v;
    }
    return { ...T };
  },
  timings: () => ({ ...T }),
  /** Forces the createEncodedStreams path ('encoded-streams'), or '' for the default. */
  setE2EEMode(mode) {
    forcedMode = mode;
  },
  /** The next n messages of type this page sends are lost (not sent). */
  dropSends(type, n) {
    dropSends[type] = n;
  },
});
