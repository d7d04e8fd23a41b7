// The peer connection of a call (the Go SDK's call/pc.go and media.go):
// the RTCConfiguration, getUserMedia with its timeout, the RTCPeerConnection
// with the E2EE worker attached to every sender and receiver, the codec
// preferences, trickled ICE both ways, and the media settings and watchdog
// once connected. The driver (call-module.js) calls these for the state
// machine's actions and feeds back what the connection reports.
//
// Media is encrypted frame by frame in a worker (e2ee-worker.js) attached
// with RTCRtpScriptTransform, or createEncodedStreams where only that exists.
// VP8 and Opus are forced with setCodecPreferences (packetisers of other
// codecs parse the frame and break on ciphertext).

import { deriveMediaKeys } from './frame.js';
import { normalizeICE } from './signal.js';
import {
  DEGRADATION_PREFERENCE, MAX_VIDEO_BITRATE, T, VIDEO_CONSTRAINTS, callError,
} from './call-session.js';

export const MAX_PENDING_CANDIDATES = 64;

/**
 * An RTCConfiguration from the relay's ICE config: its servers, and
 * iceTransportPolicy 'relay' when the relay forces it or alwaysRelay is set.
 * @param {import('./duet').ICEConfig} cfg
 * @param {{alwaysRelay?: boolean}} [opts]
 * @returns {RTCConfiguration}
 */
export function rtcConfiguration(cfg, opts = {}) {
  return {
    iceServers: cfg.ice_servers.map((s) => {
      const out = { urls: s.urls };
      if (s.username !== undefined) out.username = s.username;
      if (s.credential !== undefined) out.credential = s.credential;
      return out;
    }),
    iceTransportPolicy: opts.alwaysRelay || cfg.ice_transport_policy === 'relay' ? 'relay' : 'all',
  };
}

// The E2EE worker's script, beside this module (initCalls' workerUrl
// overrides it).
export const WORKER_URL = new URL('./e2ee-worker.js', import.meta.url);
const workerBootstraps = new Map(); // worker script href → the blob: URL of its cross-origin bootstrap, made once

/**
 * Where to start the E2EE worker from: the script url (the module's
 * workerUrl, else e2ee-worker.js beside this module). A browser starts
 * workers only from the page's origin: when the script is on another origin
 * (this SDK imported from a relay's /sdk/, or a workerUrl on a CDN), the
 * worker starts from a same-origin blob: module whose only line imports the
 * script by its absolute URL. That import, and the script's own relative
 * imports, load from the script's origin as cross-origin module scripts,
 * which its Access-Control-Allow-Origin header allows. (Such a page's CSP
 * must allow blob: workers: worker-src blob:.)
 * @param {URL} url
 * @returns {{url: string|URL, crossOrigin: boolean}}
 */
function workerSource(url) {
  if (globalThis.location?.origin === url.origin) return { url, crossOrigin: false };
  let boot = workerBootstraps.get(url.href);
  if (!boot) {
    boot = URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};\n`], { type: 'text/javascript' }));
    workerBootstraps.set(url.href, boot);
  }
  return { url: boot, crossOrigin: true };
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
 * How this browser encrypts media frames ('' when it cannot).
 * @returns {'script-transform' | 'encoded-streams' | ''}
 */
export function e2eeSupport() {
  if (typeof globalThis.RTCRtpScriptTransform === 'function') return 'script-transform';
  if (typeof globalThis.RTCRtpSender?.prototype?.createEncodedStreams === 'function') return 'encoded-streams';
  return '';
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

/** The local stream of s (audio, and video for a video call), published to the app. */
export async function getUserMedia(d, s, video) {
  const md = globalThis.navigator?.mediaDevices;
  if (!md?.getUserMedia) {
    throw callError('NotSupportedError', 'getUserMedia is not available (the page needs a secure context: https or localhost)');
  }
  const constraints = { audio: true, video: video ? { ...VIDEO_CONSTRAINTS } : false };
  let stream;
  try {
    stream = await withTimeout(md.getUserMedia(constraints), T.gum, `getUserMedia timeout after ${T.gum}ms`, (late) => {
      d.log.warn(`[CallModule] getUserMedia resolved after its ${T.gum} ms timeout; stopping the late stream's tracks`);
      for (const t of late?.getTracks?.() ?? []) t.stop();
    });
  } catch (e) {
    // The seed: a failed camera is an error for the app, never a silent
    // audio-only downgrade. NotAllowedError: permission denied.
    d.log.error(`🔴 [CallModule] getUserMedia(${video ? 'audio+video' : 'audio'}) failed: ${e.name}: ${e.message}`);
    throw e;
  }
  if (s.torn) {
    for (const t of stream.getTracks()) t.stop();
    s.checkLive();
  }
  s.localStream = stream;
  d.setLocal(s, stream);
  return stream;
}

/** The RTCConfiguration of a call. */
export function callRTCConfig(ice, alwaysRelay) {
  const cfg = rtcConfiguration(ice, { alwaysRelay });
  cfg.bundlePolicy = 'max-bundle';
  cfg.rtcpMuxPolicy = 'require';
  return cfg;
}

/**
 * Before an ICE restart: the peer connection takes the ICE servers the
 * client has now. After a failover to another relay node they are that
 * node's (its TURN), so a call relayed through a dead node's TURN can move
 * (PROTOCOL §10.6). A failure keeps the servers the call has.
 * @param {{client: {iceConfig(): Promise<any>}, alwaysRelay: boolean, log: any}} d
 * @param {{pc: RTCPeerConnection | null}} s
 */
export async function refreshICEServers(d, s) {
  try {
    const ice = await d.client.iceConfig();
    if (!s.pc) return;
    s.pc.setConfiguration({ ...s.pc.getConfiguration(), iceServers: callRTCConfig(ice, d.alwaysRelay).iceServers });
  } catch (e) {
    d.log.warn?.(`🟡 [CallModule] ICE restart: keeping the call's ICE servers (${e.message})`);
  }
}

/** Creates s's peer connection and E2EE worker, wired to the driver. */
export function newPC(d, s, cfg) {
  const mode = e2eeSupport();
  if (!mode) throw callError('ErrUnsupported', 'this browser cannot encrypt media frames (no RTCRtpScriptTransform or createEncodedStreams); use a current Chromium (duet is tested on 137 and newer)');
  s.e2eeMode = mode;
  if (mode === 'encoded-streams') cfg.encodedInsertableStreams = true;
  const pc = new RTCPeerConnection(cfg);
  s.pc = pc;
  const script = new URL(d.workerUrl);
  const src = workerSource(script);
  if (src.crossOrigin) d.log.debug?.(`🔵 [CallModule] E2EE worker: ${script.href} is on another origin than the page; starting it from a blob: module`);
  const hint = src.crossOrigin ? ' (from another origin: the worker script must be served with Access-Control-Allow-Origin, and the page\'s CSP must allow worker-src blob:)' : '';
  try {
    s.worker = new Worker(src.url, { type: 'module', name: `duet-e2ee-${s.id}` });
  } catch (e) {
    // A CSP that forbids the worker throws here (SecurityError).
    throw callError('ErrE2EE', `the E2EE worker did not start: ${e.name}: ${e.message}${hint}`);
  }
  s.worker.onmessage = (ev) => d.onWorker(s, ev.data);
  s.worker.onerror = (ev) => {
    // A script that does not load (404, CORS) gives a plain Event with no
    // message. Without its worker the call has no frame encryption: it
    // ends now, rather than connect and then time out for want of media.
    ev.preventDefault();
    const what = ev.message ? `failed: ${ev.message}` : `did not load: ${script.href}${hint}`;
    d.log.error(`[CallModule] E2EE worker ${what}`);
    d.fail(s, callError('ErrE2EE', `the E2EE worker ${what}; the call was ended`));
  };
  pc.onicecandidate = (ev) => onLocalCandidate(d, s, ev.candidate);
  pc.onicecandidateerror = (ev) => d.log.info?.(`🟡 [CallModule] icecandidateerror ${ev.url ?? ''} ${ev.errorCode}: ${ev.errorText}`);
  pc.onicegatheringstatechange = () => d.log.info?.(`🟡 [CallModule] iceGatheringState=${pc.iceGatheringState}`);
  pc.oniceconnectionstatechange = () => {
    d.log.info?.(`🟡 [CallModule] iceConnectionState=${pc.iceConnectionState}`);
    // The caller's checks came: it selected this device.
    if (s.incoming && pc.iceConnectionState === 'connected') releaseRemote(d, s);
    if (pc.iceConnectionState === 'failed') d.onConn(s, 'failed');
  };
  pc.onconnectionstatechange = () => {
    d.log.info?.(`🔵 [CallModule] connectionState=${pc.connectionState}`);
    switch (pc.connectionState) {
      case 'connected':
      case 'disconnected':
      case 'failed':
        d.onConn(s, pc.connectionState);
    }
  };
  pc.ontrack = (ev) => {
    if (s.torn) return;
    d.log.info?.(`🔵 [CallModule] remote ${ev.track.kind} track`);
    // The remote stream goes to the app once complete: when the remote
    // description that brought its tracks is set (remoteReady), with audio
    // and video both. A track that comes later makes a new stream object,
    // emitted again (observeRemoteStream emits only changes).
    if (!s.remotePublished) {
      s.remoteStream.addTrack(ev.track);
      return;
    }
    s.remoteStream = new MediaStream([...s.remoteStream.getTracks(), ev.track]);
    d.setRemote(s, s.remoteStream);
  };
  s.remoteStream = new MediaStream();
}

/** Codec preferences and the E2EE transforms of one transceiver. */
export function setupTransceiver(d, s, t, kind) {
  const codecs = preferredCodecs(kind);
  if (codecs.length && t.setCodecPreferences) {
    try {
      t.setCodecPreferences(codecs);
    } catch (e) {
      d.log.warn(`[CallModule] setCodecPreferences(${kind}) failed: ${e.message}`);
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

/** Derives the epoch-0 media keys with the peer's ephemeral key and hands them to the worker. */
export async function installKeys(d, s, peerEPK) {
  const { send, recv } = await deriveMediaKeys({
    ephemeralPrivate: s.ephem.privateKey,
    peerEphemeral: peerEPK,
    callId: s.id,
    selfSigning: d.client.identity.signingKey.publicKey,
    peerSigning: s.peerKeys.signing,
    epoch: 0,
  });
  if (s.torn) {
    wipeKeys(send, recv);
    s.checkLive();
  }
  s.worker.postMessage({ type: 'keys', send, recv });
  // The worker has its copies: this side keeps no media key, nor the
  // ephemeral private key, which derived all it ever will (a rekey uses a
  // fresh pair; an ICE restart resends only the public key).
  wipeKeys(send, recv);
  s.ephem = { privateKey: null, publicKey: s.ephem.publicKey };
}

/** Zeroes the bytes of direction keys (deriveMediaKeys' output) handed to the worker. */
export function wipeKeys(...keys) {
  for (const k of keys) {
    k?.key?.fill(0);
    k?.baseIV?.fill(0);
  }
}

// ------------------------------------------------------------------ ICE

function onLocalCandidate(d, s, cand) {
  if (s.torn) return;
  let p;
  if (cand && cand.candidate) {
    try {
      p = normalizeICE(cand);
    } catch (e) {
      d.log.warn(`[CallModule] local candidate not sent: ${e.message}`);
      return;
    }
  } else {
    p = { candidate: '', sdp_mid: null, sdp_mline: null }; // end of candidates
  }
  if (!s.localReady) {
    if (s.pendLocal.length < MAX_PENDING_CANDIDATES) s.pendLocal.push(p);
    return;
  }
  sendLocal(d, s, p);
}

/** Sends a local candidate; a caller keeps those that follow its offer until connected (resend_offer). */
function sendLocal(d, s, p) {
  if (!s.incoming && !s.connected && s.localSent.length < MAX_PENDING_CANDIDATES) s.localSent.push(p);
  d.queueSend(s, { type: 'call_ice', ...p }).catch(() => {});
}

/** The offer or answer is out: candidates gathered meanwhile follow it. */
export function flushLocal(d, s) {
  s.localReady = true;
  const pend = s.pendLocal;
  s.pendLocal = [];
  for (const p of pend) sendLocal(d, s, p);
}

/** A received call_ice: added, or kept until the remote description is set. */
export async function addRemote(d, s, msg) {
  if (!msg.candidate || s.torn) return; // end of candidates
  const init = { candidate: msg.candidate, sdpMid: msg.sdp_mid, sdpMLineIndex: msg.sdp_mline };
  if (!s.remoteSet || s.holdRemote) {
    if (s.pendRemote.length < MAX_PENDING_CANDIDATES) s.pendRemote.push(init);
    else d.drop('ice_queue_full');
    return;
  }
  try {
    await s.pc.addIceCandidate(init);
  } catch (e) {
    d.log.info?.(`🟡 [CallModule] remote candidate refused: ${e.message}`);
  }
}

/**
 * The remote description is set: the candidates kept meanwhile are added,
 * unless they wait for the caller's select (releaseRemote).
 */
export function remoteReady(d, s) {
  s.remoteSet = true;
  if (!s.remotePublished) {
    s.remotePublished = true;
    if (s.remoteStream.getTracks().length) d.setRemote(s, s.remoteStream);
  }
  if (!s.holdRemote) addPending(d, s);
}

/**
 * selected (or the caller's checks came): the callee adds the caller's
 * candidates it held since the offer. A callee device checks them only
 * once selected: every device of the callee has the caller's ICE
 * credentials (the offer rang them all) and a browser answers the checks of
 * any of them, so a device whose answer lost or came late could take the
 * caller's DTLS handshake from the selected one, and the call would stay
 * connecting (PROTOCOL §10.4; the Go SDK's session.releaseRemote).
 */
export function releaseRemote(d, s) {
  if (!s.holdRemote) return;
  s.holdRemote = false;
  if (s.remoteSet && !s.torn) addPending(d, s);
}

/**
 * Takes the candidate lines (and end-of-candidates) out of a description;
 * returns the rest and them as candidates of their m-sections.
 */
export function splitCandidates(sdp) {
  const lines = sdp.split(/(?<=\n)/);
  let out = '';
  const cands = [];
  let section = [];
  let mline = -1;
  let mid = null;
  const flush = () => {
    for (const c of section) c.sdpMid = mid;
    section = [];
    mid = null;
  };
  for (const l of lines) {
    const t = l.replace(/[\r\n]+$/, '');
    if (t.startsWith('m=')) {
      flush();
      mline++;
    } else if (t.startsWith('a=mid:') && mline >= 0) {
      mid = t.slice('a=mid:'.length);
    } else if (t.startsWith('a=candidate:') && mline >= 0) {
      const c = { candidate: t.slice(2), sdpMid: null, sdpMLineIndex: mline };
      section.push(c);
      cands.push(c);
      continue;
    } else if (t === 'a=end-of-candidates') {
      continue;
    }
    out += l;
  }
  flush();
  return { sdp: out, candidates: cands };
}

function addPending(d, s) {
  const pend = s.pendRemote;
  s.pendRemote = [];
  for (const c of pend) {
    s.pc.addIceCandidate(c).catch((e) => d.log.info?.(`🟡 [CallModule] remote candidate refused: ${e.message}`));
  }
}

// ------------------------------------------------------ after connecting

/**
 * The first connected (start_media): the video sender's bitrate and
 * degradation preference, the inbound media probe (a media event to the
 * machine each time inbound RTP grew) and the Diag samples.
 */
export async function startMedia(d, s, sample) {
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
      d.log.info?.(`🔵 [CallModule] video sender: maxBitrate=${MAX_VIDEO_BITRATE} degradationPreference=${DEGRADATION_PREFERENCE}`);
    } catch (e) {
      d.log.warn(`[CallModule] setParameters failed: ${e.message}`);
    }
  }
  if (s.torn) return;
  let last = -1;
  const watch = setInterval(async () => {
    if (s.torn) return;
    let n;
    try {
      n = await inboundProgress(s);
    } catch {
      return;
    }
    if (n > last) {
      last = n;
      if (!s.torn) d.feed({ kind: 'media', call_id: s.id });
    }
  }, T.mediaCheck);
  s.intervals.add(watch);
  const diag = setInterval(() => {
    if (!s.torn) sample(s, true).catch(() => {});
  }, T.diag);
  s.intervals.add(diag);
}

async function inboundProgress(s) {
  let n = 0;
  const report = await s.pc.getStats();
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') n += (r.bytesReceived ?? 0) + (r.framesDecoded ?? 0);
  });
  return n;
}
