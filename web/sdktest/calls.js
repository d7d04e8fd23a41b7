// Drives one DuetClient's call module in one page for calls_test.go: place,
// answer, reject and hang up calls, and report states, errors and the Diag
// figures. Every function returns JSON-friendly values.

import * as duet from '/sdk/duet.js';
import * as callConfig from '/sdk/call-config.js'; // the test version (sdktest/sdk/call-config.js)
import * as clientConfig from '/sdk/client-config.js'; // the test version (sdktest/sdk/client-config.js)

let client;
let calls;
let history = [];
let stateAt = {}; // state → Date.now() when it was first seen since reset()
const incoming = [];
const errors = [];
const waiters = [];
const diags = [];

// The page's workers: the call module starts its E2EE worker with the
// global Worker, which records every worker started here and the messages
// it posts (the page's own view, no hook in the SDK).
const workers = [];
const RealWorker = globalThis.Worker;
globalThis.Worker = class extends RealWorker {
  constructor(url, opts) {
    super(url, opts);
    const rec = { name: opts?.name ?? '', worker: this, posted: [] };
    workers.push(rec);
    this.addEventListener('message', (ev) => rec.posted.push(ev.data?.type ?? ''));
  }
};

/** The E2EE worker of the call in progress (the last one started), or null. */
function callWorker() {
  const id = calls?.status.callId;
  if (!id || !['calling', 'ringing', 'connecting', 'connected'].includes(calls.state)) return null;
  return workers.findLast((w) => w.name === `duet-e2ee-${id}`)?.worker ?? null;
}

// The relay connection: the next n envelopes of a type this page sends
// are lost on the way (dropSends), dropped before the socket.
const toLose = {};
class LossyWebSocket extends WebSocket {
  send(data) {
    if (typeof data === 'string') {
      let type = '';
      try {
        type = JSON.parse(data)?.type ?? '';
      } catch { /* not JSON */ }
      if (toLose[type] > 0) {
        toLose[type]--;
        console.info(`🔵 [test] ${type} not sent (dropSends)`);
        return;
      }
    }
    super.send(data);
  }
}

/** The E2EE workers the page started: their names and the types of the messages they posted (stats left out). */
export function workerLog() {
  return workers.map((w) => ({ name: w.name, posted: w.posted.filter((t) => t !== 'stats') }));
}

/** The call module itself (for the test's inspection through the DevTools protocol). */
export function module() {
  return calls;
}

function wake() {
  for (const w of waiters.splice(0)) w();
}

function waitFor(pred, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; states: ${history.join(' → ')}; errors: ${JSON.stringify(errors)}`)), ms);
    const test = () => {
      const v = pred();
      if (v !== undefined) {
        clearTimeout(timer);
        resolve(v);
      } else {
        waiters.push(test);
      }
    };
    test();
  });
}

let failKeys = false;
const testFetch = (url, init) => {
  if (failKeys && String(url).includes('/api/v1/keys/')) return Promise.reject(new TypeError('Failed to fetch'));
  return fetch(url, init);
};

/** Makes the client's key lookups fail as if the relay were unreachable (or work again). */
export function failKeyLookups(on) {
  failKeys = on === true;
  return failKeys;
}

let mnemonic = '';

/**
 * Creates and registers an identity, connects, starts the call module.
 * Returns the alias. opts.relayUrl: the relay (default: the page's origin).
 * With opts.mnemonic and opts.alias: that identity, already registered (a
 * second device of the same user; see identityMnemonic()).
 */
export async function setup(opts = {}) {
  const identity = opts.mnemonic ? await duet.deriveIdentity(opts.mnemonic) : await duet.createIdentity();
  mnemonic = identity.mnemonic;
  client = new duet.DuetClient({ identity, aliasId: opts.alias, pins: duet.PinStore.memory(), relayUrl: opts.relayUrl, fetch: testFetch, WebSocket: LossyWebSocket });
  const alias = opts.alias ?? (await client.register()).alias;
  await client.connect();
  calls = client.initCalls({
    signingPrivKey: identity.signingKey.privateKey,
    signingPubKey: identity.signingKey.publicKey,
    myAliasId: alias,
    alwaysRelay: opts.alwaysRelay === true,
  });
  calls.observeState().subscribe((s) => {
    history.push(s);
    stateAt[s] ??= Date.now();
    wake();
  });
  calls.observeRemoteStream().subscribe((st) => {
    remoteEmits.push(st ? st.getTracks().map((t) => t.kind).sort().join('+') : null);
  });
  calls.observeDiag().subscribe((d) => {
    if (d) diags.push(d);
  });
  calls.onLocalStream = (st) => {
    if (st) {
      legacy.local++;
      legacy.localTracks = st.getTracks().length;
    }
  };
  calls.onRemoteStream = (st) => {
    if (st) {
      legacy.remote++;
      legacy.remoteTracks = st.getTracks().length;
    }
  };
  calls.onIncomingCall = (from, isVideo, callId) => {
    incoming.push({ from, isVideo, callId });
    wake();
  };
  calls.onError = (e) => {
    errors.push({ name: e.name, message: e.message });
    wake();
  };
  return alias;
}

/** The mnemonic of the identity setup() made (for a second device of it). */
export function identityMnemonic() {
  return mnemonic;
}

/** The call module's device id. */
export function deviceId() {
  return calls.deviceId;
}

/** The next call() of this page uses call id id. */
export function nextCallID(id) {
  callConfig.nextCallID(id);
  return true;
}

/** The next n messages of type this page sends are lost. */
export function dropSends(type, n) {
  toLose[type] = n;
  return true;
}

/**
 * 'encoded-streams': this page behaves as a browser without
 * RTCRtpScriptTransform (only createEncodedStreams), as older Chromium.
 */
export function setE2EEMode(mode) {
  if (mode === 'encoded-streams') delete globalThis.RTCRtpScriptTransform;
  return duet.e2eeSupport();
}

/** What the page captured and how its video sender is set up. */
export function media() {
  let local = null;
  calls.observeLocalStream().subscribe((s) => { local = s; }).unsubscribe();
  const v = local?.getVideoTracks()[0];
  return {
    settings: v ? v.getSettings() : null,
    constraints: v ? v.getConstraints() : null,
    legacy,
  };
}

const legacy = { local: 0, remote: 0, localTracks: 0, remoteTracks: 0 };

// The remote streams observeRemoteStream emitted: their track kinds
// ('audio+video'), null for none.
const remoteEmits = [];

/** The track kinds of every remote stream emitted so far. */
export function remoteEmissions() {
  return remoteEmits;
}

/** The deadline of this page's relay HTTP requests (0: the SDK's). */
export function setHTTPTimeout(ms) {
  return clientConfig.setHTTPTimeout(ms);
}

export function setTimings(t) {
  return callConfig.setTimings(t);
}

function result(p) {
  return p.then(() => ({ ok: true }), (e) => ({ ok: false, name: e.name, message: e.message }));
}

export function call(peer, video) {
  return result(calls.call(peer, { audio: true, video }));
}

let started = null;

/** call() without waiting for it: callResult() gives its outcome. */
export function startCall(peer, video) {
  started = result(calls.call(peer, { audio: true, video }));
  return true;
}

/** The outcome of the call() startCall made, once it settles. */
export function callResult() {
  return started;
}

export function answer(callId) {
  return result(calls.answer(callId));
}

/** answer() twice at once: the second must fail with the re-entrancy error. */
export async function answerTwice() {
  const [a, b] = await Promise.all([answer(), answer()]);
  return { first: a, second: b };
}

export function reject(callId) {
  return result(Promise.resolve().then(() => calls.reject(callId)));
}

export function hangup() {
  return result(calls.hangup());
}

/**
 * Forgets the state history and errors (before the next call): waitState
 * then waits for a state entered since, not for the one the last call
 * ended in.
 */
export function reset() {
  history = [];
  stateAt = {};
  errors.length = 0;
  incoming.length = 0;
  diags.length = 0;
  return true;
}

/**
 * Waits until the state history since reset() holds state; returns the
 * status, with stateAt: when each state was first seen (Date.now()).
 */
export function waitState(state, ms) {
  return waitFor(() => (history.includes(state) ? { ...calls.status, history, errors, stateAt } : undefined), ms, `state ${state}`);
}

export function nextIncoming(ms) {
  return waitFor(() => incoming.shift(), ms, 'an incoming call');
}

export function waitError(ms) {
  return waitFor(() => (errors.length ? errors[0] : undefined), ms, 'an error');
}

export function status() {
  return { ...calls.status, history, errors, drops: calls.drops };
}

/** A fresh stats sample of the call (see CallModule.stats). */
export async function stats() {
  return calls.stats();
}

/** The 📊 Diag samples seen since reset(). */
export function diagCount() {
  return diags.length;
}

/** Streams the page holds: local and remote track kinds. */
export function streams() {
  let local = null;
  let remote = null;
  calls.observeLocalStream().subscribe((s) => { local = s; }).unsubscribe();
  calls.observeRemoteStream().subscribe((s) => { remote = s; }).unsubscribe();
  const kinds = (s) => (s ? s.getTracks().map((t) => `${t.kind}:${t.readyState}`) : null);
  return { local: kinds(local), remote: kinds(remote) };
}

/** A media rekey started as the worker's rekey-needed of the current key would: whether it sent a call_rekey. */
export async function forceRekey() {
  const r = await rekeyState();
  return r ? rekeyNeeded(r.epoch) : false;
}

/**
 * The E2EE worker's key in use signals rekey-needed after n more frames
 * (its real path; the test version of frame-limits.js in the worker takes
 * the message). False without a call.
 */
export function rekeyAfter(n) {
  const w = callWorker();
  if (!w) return false;
  w.postMessage({ type: 'test-rekey-after', frames: n });
  return true;
}

/**
 * An ICE restart as after a network change (navigator.connection's change
 * event; the caller restarts ICE at once). False unless this page's
 * outgoing call is connected.
 */
export function forceICERestart() {
  const st = calls.status;
  if (st.state !== 'connected' || st.incoming) return false;
  const c = navigator.connection;
  if (c) c.dispatchEvent(new Event('change'));
  else window.dispatchEvent(new Event('online'));
  return true;
}

export function close() {
  client.close();
  return client.state;
}

const realGUM = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
const gumCalls = [];
let lateRelease = null;
let lateStream = null;

/**
 * Makes getUserMedia misbehave; every call is recorded (gumLog):
 * 'deny' rejects as a refused permission does, 'video' rejects only the
 * calls that ask for video (a broken or refused camera; audio alone works),
 * 'hang' never settles (the seed's Android Chrome case), 'late' settles
 * only when releaseLate() says so, with a real stream.
 */
export function breakMedia(how) {
  const modes = {
    deny: () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError')),
    video: (c) => (c?.video ? Promise.reject(new DOMException('Could not start video source', 'NotReadableError')) : realGUM(c)),
    hang: () => new Promise(() => {}),
    late: (c) => new Promise((resolve, reject) => {
      lateRelease = () => realGUM(c).then((st) => {
        lateStream = st;
        resolve(st);
      }, reject);
    }),
  };
  if (!modes[how]) throw new TypeError(`breakMedia: unknown mode ${how}`);
  navigator.mediaDevices.getUserMedia = (c) => {
    gumCalls.push({ audio: !!c?.audio, video: !!c?.video });
    return modes[how](c);
  };
  return true;
}

/** The getUserMedia calls since breakMedia, and forgets them. */
export function gumLog() {
  return gumCalls.splice(0);
}

/**
 * Resolves the pending 'late' getUserMedia with a real stream, lets the
 * SDK react (a macrotask later, after its promise callbacks), and reports
 * that stream's track states and whether the SDK published it.
 */
export async function releaseLate() {
  if (!lateRelease) throw new Error('releaseLate: no getUserMedia is pending');
  await lateRelease();
  lateRelease = null;
  await new Promise((r) => setTimeout(r, 0));
  let local = null;
  calls.observeLocalStream().subscribe((st) => { local = st; }).unsubscribe();
  return { tracks: lateStream.getTracks().map((t) => `${t.kind}:${t.readyState}`), published: local === lateStream };
}

/** calls.reject() called directly: whether it threw or returned a promise, and how that settled. */
export async function rejectDirect() {
  let p;
  try {
    p = calls.reject();
  } catch (e) {
    return { threw: true, name: e.name };
  }
  if (!(p instanceof Promise)) return { threw: false, promise: false };
  return p.then(() => ({ threw: false, promise: true, ok: true }), (e) => ({ threw: false, promise: true, ok: false, name: e.name }));
}

/**
 * The worker's rekey-needed for the key of epoch, as the worker posts it
 * (a message event on the call's worker, handled at once): whether it
 * started a call_rekey.
 */
export async function rekeyNeeded(epoch) {
  const w = callWorker();
  const before = await rekeyState();
  if (!w || !before) return false;
  w.dispatchEvent(new MessageEvent('message', { data: { type: 'rekey-needed', epoch } }));
  const after = await rekeyState();
  return after !== null && after.requests > before.requests;
}

/**
 * The call's rekey state (null without a call), from the Diag's rekey
 * figures: {epoch (agreed), sendEpoch (the worker's), requesting (a
 * call_rekey of ours awaits its reply), requests, replies (call_rekey
 * sent), ignored (rekey-needed signals that started none)}.
 */
export async function rekeyState() {
  if (!['calling', 'ringing', 'connecting', 'connected'].includes(calls.state)) return null;
  const d = await calls.stats();
  return d?.rekey ?? null;
}

/**
 * Holds the call envelopes this page receives for ms, then hands them to
 * the call module in order (a slow network on the way in: glare tests make
 * two offers cross with it).
 */
export function holdInbound(ms) {
  const orig = calls.handleEnvelope;
  const held = [];
  calls.handleEnvelope = (env) => held.push(env);
  setTimeout(() => {
    calls.handleEnvelope = orig;
    for (const env of held) calls.handleEnvelope(env);
  }, ms);
  return true;
}

/** The browser's online event, as after a network change (the client reconnects, the call restarts ICE). */
export function online() {
  window.dispatchEvent(new Event('online'));
  return true;
}

// ------------------------------------------------ media state (§10.9)

let peerMediaLog = []; // every observePeerMedia value, with Date.now()
let peerMediaSub = null;
let mediaSetAt = 0;

/** Mutes (false) / unmutes (true) the microphone; what setMicrophoneEnabled returned. */
export function setMicrophone(on) {
  mediaSetAt = Date.now();
  return calls.setMicrophoneEnabled(on);
}

/** Turns the camera off (false) / on (true); what setCameraEnabled returned. */
export function setCamera(on) {
  mediaSetAt = Date.now();
  return calls.setCameraEnabled(on);
}

/** Date.now() of the last setMicrophone / setCamera. */
export function lastMediaSetAt() {
  return mediaSetAt;
}

/** The local media state and the peer's (observePeerMedia's current value). */
export function mediaState() {
  let peer = null;
  calls.observePeerMedia().subscribe((m) => { peer = m; }).unsubscribe();
  return { local: calls.localMedia, peer };
}

/**
 * Waits until observePeerMedia's latest value is want ({audioMuted,
 * videoOff, screen}); resolves with Date.now() when the page got it.
 */
export function waitPeerMedia(want, ms) {
  if (!peerMediaSub) {
    peerMediaSub = calls.observePeerMedia().subscribe((m) => {
      peerMediaLog.push({ ...m, at: Date.now() });
      wake();
    });
  }
  const same = (m) => m && m.audioMuted === !!want.audioMuted && m.videoOff === !!want.videoOff && m.screen === !!want.screen;
  return waitFor(() => {
    const last = peerMediaLog[peerMediaLog.length - 1];
    return same(last) ? last.at : undefined;
  }, ms, `peer media ${JSON.stringify(want)}; seen ${JSON.stringify(peerMediaLog.slice(-5))}`);
}

/**
 * What the page's senders put on the wire over ms: outbound RTP packets and
 * bytes per second for audio and video, and video frames encoded per second
 * (PROTOCOL §10.9's measurement of disabled tracks).
 */
export async function sendRates(ms) {
  const a = await calls.stats();
  await new Promise((r) => setTimeout(r, ms));
  const b = await calls.stats();
  const per = (x, y) => Math.round(((y ?? 0) - (x ?? 0)) * 1000 / ms);
  return {
    audioPackets: per(a?.outAudio?.packetsSent, b?.outAudio?.packetsSent),
    audioBytes: per(a?.outAudio?.bytesSent, b?.outAudio?.bytesSent),
    videoPackets: per(a?.outVideo?.packetsSent, b?.outVideo?.packetsSent),
    videoBytes: per(a?.outVideo?.bytesSent, b?.outVideo?.bytesSent),
    videoFrames: per(a?.outVideo?.framesEncoded, b?.outVideo?.framesEncoded),
    encryptedAudio: per(a?.frames?.encrypted?.audio, b?.frames?.encrypted?.audio),
    encryptedVideo: per(a?.frames?.encrypted?.video, b?.frames?.encrypted?.video),
  };
}

/** shareScreen(): the result and, on success, the shared track's settings. */
export async function shareScreen() {
  try {
    await calls.shareScreen();
    return { ok: true, name: '', message: '' };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message };
  }
}

export async function stopScreenShare() {
  return calls.stopScreenShare();
}

/** setVideo(on): the renegotiation's result. */
export async function setVideo(on) {
  try {
    await calls.setVideo(on);
    return { ok: true, name: '', message: '' };
  } catch (e) {
    return { ok: false, name: e.name, message: e.message };
  }
}

/** How many remote streams onRemoteStream got, and the last one's track count. */
export function remoteStreamCount() {
  return { ...legacy };
}

// refreshICECheck: a peer connection made with one ICE configuration takes
// the client's current one through call-pc.js's refreshICEServers (what an
// ICE restart does first) and reports the TURN URLs it has after.
export async function refreshICECheck() {
  const { refreshICEServers } = await import('/sdk/call-pc.js');
  const pc = new RTCPeerConnection({ iceServers: [{ urls: 'turn:127.0.0.1:40100?transport=udp', username: 'u', credential: 'c' }] });
  try {
    const d = {
      alwaysRelay: false,
      log: console,
      client: { iceConfig: async () => ({ ice_transport_policy: 'all', ice_servers: [{ urls: ['turn:127.0.0.1:40101?transport=udp'], username: 'u2', credential: 'c2' }] }) },
    };
    await refreshICEServers(d, { pc });
    return pc.getConfiguration().iceServers.flatMap((s) => [].concat(s.urls));
  } finally {
    pc.close();
  }
}
