// Signaling crypto v2 (docs/PROTOCOL.md §2–§4), matching the Go SDK's wire
// package: envelopes, message types, the session key, seal and open with
// the ten checks of §4.4 in order, the bounded nonce cache, and ICE candidate
// normalisation (§3.1).

import { canonicalJSON, parseJSON } from './canonical.js';
import { validAlias } from './identity.js';
import {
  ed25519Sign, ed25519Verify, hkdf, importAESGCM, importEd25519Public, subtleCrypto, x25519,
} from './primitives.js';
import {
  DuetError, base64Len, compareBytes, concat, fromBase64, randomBytes, toBase64, utf8, utf8Length,
} from './util.js';

/** The only signaling crypto version. */
export const CRYPTO_V2 = 2;
/** HKDF info of the signaling session key. */
export const SESSION_KEY_INFO = 'duet/v2/signaling-key';
export const SESSION_KEY_SIZE = 32;
export const IV_SIZE = 12;
export const TAG_SIZE = 16;
export const NONCE_SIZE = 16;
export const SIGNATURE_SIZE = 64;
/** Size of an ephemeral X25519 public key (epk). */
export const EPK_SIZE = 32;
/** A message whose _ts is this far from the receiver's clock is refused. */
export const TIMESTAMP_WINDOW_MS = 60_000;
/** How long an accepted nonce is remembered. */
export const NONCE_WINDOW_MS = 300_000; // 5 min
/** Default bound of a NonceCache. */
export const DEFAULT_REPLAY_CAPACITY = 65536;
/** An encoded envelope at most (the relay's frame limit). */
export const MAX_ENVELOPE_SIZE = 65_536; // 64 KiB
/** The base64 payload text at most. */
export const MAX_PAYLOAD_SIZE = 49_152; // 48 KiB
/** call_id and id at most. */
export const MAX_ID_LEN = 64;
/** Largest call_rekey epoch. */
export const MAX_EPOCH = 2 ** 32 - 1;
/** Largest sdp_mline. */
export const MAX_SDP_MLINE = 65535;

/** The call message types (§3). */
export const CALL_TYPES = Object.freeze(/** @type {const} */ (['call_offer', 'call_answer', 'call_ice', 'call_reject', 'call_hangup', 'call_rekey', 'call_select', 'call_media']));
/** The outcomes of call_select (§10.4). */
export const OUTCOMES = Object.freeze(['answered', 'declined', 'busy']);
/** The reason set of call_reject and call_hangup (§3). */
export const REASONS = Object.freeze(/** @type {const} */ (['user_hangup', 'declined', 'busy', 'no_answer', 'ice_failed', 'media_timeout', 'disconnected', 'error']));

const ROUTE_KEYS = ['type', 'from', 'to', 'call_id'];
// The optional inner field every type may carry: the sender's device id (§3).
const DEVICE_KEY = 'device';

function checkDevice(v, name) {
  if (typeof v !== 'string') throw malformed(`${name} is a JSON ${jsonKind(v)}, want a string`);
  if (!validID(v)) throw malformed(`${name} must be 1..${MAX_ID_LEN} characters of [A-Za-z0-9_-]`);
  return v;
}

function selectBody(f) {
  only(f, 'selected', 'outcome');
  need(f, 'selected', 'outcome');
  const selected = checkDevice(f.selected, 'selected');
  if (typeof f.outcome !== 'string') throw malformed(`outcome is a JSON ${jsonKind(f.outcome)}, want a string`);
  if (!OUTCOMES.includes(f.outcome)) throw malformed(`outcome "${truncate(f.outcome, 32)}" is not answered, declined or busy`);
  return { selected, outcome: f.outcome };
}

// call_media (§3): audio_muted and video_off required, screen optional
// (omitted when false).
function mediaBody(f) {
  only(f, 'audio_muted', 'video_off', 'screen');
  need(f, 'audio_muted', 'video_off');
  const out = { audio_muted: checkBool(f.audio_muted, 'audio_muted'), video_off: checkBool(f.video_off, 'video_off') };
  if (Object.hasOwn(f, 'screen') && checkBool(f.screen, 'screen')) out.screen = true;
  return out;
}

function err(name, msg) {
  return new DuetError(name, msg);
}
const malformed = (msg) => err('ErrMalformed', `malformed message: ${msg}`);
const envelopeErr = (msg) => err('ErrEnvelope', `invalid envelope: ${msg}`);

function truncate(s, n) {
  s = String(s);
  return s.length <= n ? s : s.slice(0, n) + '...';
}

/**
 * Reports whether s is 1..64 characters of [A-Za-z0-9_-] (call_id, id).
 * @param {unknown} s
 * @returns {boolean}
 */
export function validID(s) {
  return typeof s === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(s);
}

function isPlainObject(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

function jsonKind(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return 'integer';
  return typeof v === 'object' ? 'object' : typeof v;
}

// ---------------------------------------------------------------- envelopes

/**
 * Checks an envelope's fields as the Go SDK does (§2). Failures throw
 * ErrEnvelope, or ErrCryptoVersion for a crypto_v other than 2.
 * @param {import('./duet').Envelope} e
 */
export function validateEnvelope(e) {
  if (!isPlainObject(e)) throw envelopeErr('not an object');
  for (const k of ['type', 'to', 'from', 'call_id', 'payload']) {
    if (e[k] !== undefined && typeof e[k] !== 'string') throw envelopeErr(`${k} is a ${jsonKind(e[k])}, want a string`);
  }
  // crypto_v before the other field rules (§4.4 steps 0 and 1).
  if (e.crypto_v !== CRYPTO_V2) {
    throw err('ErrCryptoVersion', `unsupported crypto_v ${truncate(JSON.stringify(e.crypto_v) ?? 'undefined', 16)} (only 2 is accepted)`);
  }
  if (!e.type) throw envelopeErr('missing type');
  if (utf8Length(e.type) > MAX_ID_LEN) throw envelopeErr(`type longer than ${MAX_ID_LEN} bytes`);
  if (!validAlias(e.to)) throw envelopeErr(`to "${truncate(e.to ?? '', 32)}" is not an alias (u followed by 8 digits)`);
  if (!validAlias(e.from)) throw envelopeErr(`from "${truncate(e.from ?? '', 32)}" is not an alias (u followed by 8 digits)`);
  if (!validID(e.call_id)) throw envelopeErr(`call_id must be 1..${MAX_ID_LEN} characters of [A-Za-z0-9_-]`);
  if (e.id !== undefined && e.id !== '' && !validID(e.id)) throw envelopeErr(`id must be 1..${MAX_ID_LEN} characters of [A-Za-z0-9_-]`);
  if (!e.payload) throw envelopeErr('missing payload');
  const size = utf8Length(e.payload);
  if (size > MAX_PAYLOAD_SIZE) throw envelopeErr(`payload of ${size} bytes exceeds the ${MAX_PAYLOAD_SIZE}-byte limit`);
}

/**
 * Decodes one envelope strictly, as the Go SDK's wire.DecodeEnvelope: JSON
 * outside §4.2, unknown fields, wrong types, missing or invalid route fields
 * and oversized fields throw ErrEnvelope; a crypto_v other than 2 throws
 * ErrCryptoVersion.
 * @param {string|Uint8Array} data
 * @returns {import('./duet').Envelope}
 */
export function decodeEnvelope(data) {
  const size = typeof data === 'string' ? utf8(data).length : data?.length;
  if (size > MAX_ENVELOPE_SIZE) throw envelopeErr(`${size} bytes exceeds the ${MAX_ENVELOPE_SIZE}-byte limit`);
  let v;
  try {
    v = parseJSON(data);
  } catch (e) {
    throw envelopeErr(e.message);
  }
  if (!isPlainObject(v)) throw envelopeErr(`a JSON ${jsonKind(v)}, want an object`);
  const env = {};
  for (const [k, val] of Object.entries(v)) {
    switch (k) {
      case 'type': case 'to': case 'from': case 'call_id': case 'payload': case 'id':
        if (typeof val !== 'string') throw envelopeErr(`${k} is a JSON ${jsonKind(val)}, want a string`);
        if (k === 'id' && val === '') throw envelopeErr(`id must be 1..${MAX_ID_LEN} characters of [A-Za-z0-9_-]; leave it out instead of empty`);
        env[k] = val;
        break;
      case 'crypto_v':
        if (typeof val !== 'number') throw envelopeErr(`crypto_v is a JSON ${jsonKind(val)}, want an integer`);
        env.crypto_v = val;
        break;
      default:
        throw envelopeErr(`unknown field ${JSON.stringify(truncate(k, 32))}`);
    }
  }
  validateEnvelope(env);
  return env;
}

/**
 * Validates an envelope and returns its JSON text, fields in the Go SDK's
 * order, id left out when empty.
 * @param {import('./duet').Envelope} e
 * @returns {string}
 */
export function encodeEnvelope(e) {
  validateEnvelope(e);
  const out = { type: e.type, to: e.to, from: e.from, call_id: e.call_id, crypto_v: e.crypto_v, payload: e.payload };
  if (e.id) out.id = e.id;
  return JSON.stringify(out);
}

// -------------------------------------------------------------- session key

/**
 * The 128-byte transcript of §4.1: ed_A || x_A || ed_B || x_B where A has
 * the smaller Ed25519 key (then X25519 key, if the signing keys are equal).
 * @param {import('./duet').PublicKeys} self
 * @param {import('./duet').PublicKeys} peer
 * @returns {Uint8Array}
 */
export function sessionTranscript(self, peer) {
  const c = compareBytes(self.signing, peer.signing);
  if (c < 0 || (c === 0 && compareBytes(self.agreement, peer.agreement) <= 0)) {
    return concat(self.signing, self.agreement, peer.signing, peer.agreement);
  }
  return concat(peer.signing, peer.agreement, self.signing, self.agreement);
}

function checkKey(k, what) {
  if (!(k instanceof Uint8Array) || k.length !== 32) {
    throw err('ErrKey', `unusable key: ${what} must be a 32-byte Uint8Array`);
  }
}

/**
 * The signaling session key shared by self and a peer (§4.1):
 * HKDF(ikm = X25519(x_priv_self, x_peer), salt = transcript,
 * info = "duet/v2/signaling-key", 32). Both parties derive the same key. A
 * low-order peer key (all-zero shared secret) rejects with ErrKey.
 * @param {import('./duet').Identity} self
 * @param {import('./duet').PublicKeys} peer
 * @returns {Promise<Uint8Array>}
 */
export async function sessionKey(self, peer) {
  checkKey(peer?.signing, "the peer's signing key");
  checkKey(peer?.agreement, "the peer's agreement key");
  let shared;
  try {
    shared = await x25519(self.agreementKey.privateKey, peer.agreement);
  } catch (e) {
    if (e.name === 'ErrPeerKey') throw err('ErrKey', `unusable key: ${e.message}`);
    throw e;
  }
  const mine = { signing: self.signingKey.publicKey, agreement: self.agreementKey.publicKey };
  const key = await hkdf(shared, sessionTranscript(mine, peer), SESSION_KEY_INFO, SESSION_KEY_SIZE);
  shared.fill(0);
  return key;
}

// -------------------------------------------------------------- nonce cache

/**
 * The bounded nonce cache of §4.4. One cache may serve several sessions (a
 * peer set). Nonces accepted NONCE_WINDOW_MS ago or earlier are dropped
 * first; when it is still full, nonces whose _ts is TIMESTAMP_WINDOW_MS or
 * more in the past are dropped (they can no longer pass the timestamp
 * check); if none is, add refuses with ErrReplayCacheFull. Memory never grows
 * past the capacity.
 */
export class NonceCache {
  #capacity;
  /** @type {Map<string, {seen: number, ts: number}>} in acceptance order */
  #entries = new Map();

  /** @param {number} [capacity] default DEFAULT_REPLAY_CAPACITY */
  constructor(capacity = DEFAULT_REPLAY_CAPACITY) {
    this.#capacity = capacity > 0 ? capacity : DEFAULT_REPLAY_CAPACITY;
  }

  /** @returns {number} the bound */
  get capacity() {
    return this.#capacity;
  }

  /** @returns {number} nonces remembered */
  get size() {
    return this.#entries.size;
  }

  #expire(now) {
    for (const [k, e] of this.#entries) {
      if (now - e.seen < NONCE_WINDOW_MS) break;
      this.#entries.delete(k);
    }
  }

  /**
   * Reports whether nonce was accepted within the nonce window before now.
   * @param {string} nonce the _nonce (base64)
   * @param {number} now Unix ms
   */
  seen(nonce, now) {
    this.#expire(now);
    return this.#entries.has(nonce);
  }

  /**
   * Remembers nonce, accepted at now for a message stamped ts.
   * @param {string} nonce
   * @param {number} ts the message's _ts
   * @param {number} now Unix ms
   */
  add(nonce, ts, now) {
    this.#expire(now);
    if (this.#entries.has(nonce)) throw err('ErrReplay', 'replayed nonce: already accepted');
    if (this.#entries.size >= this.#capacity) {
      for (const [k, e] of this.#entries) {
        if (now - e.ts >= TIMESTAMP_WINDOW_MS) this.#entries.delete(k);
      }
      if (this.#entries.size >= this.#capacity) {
        throw err('ErrReplayCacheFull',
          `replay cache full: ${this.#entries.size} nonces younger than ${TIMESTAMP_WINDOW_MS / 1000} s; the peer set is sending faster than the cache can prove fresh`);
      }
    }
    this.#entries.set(nonce, { seen: now, ts });
  }
}

// --------------------------------------------------------- message bodies

function checkSDP(v, key) {
  if (typeof v !== 'string') throw malformed(`${key} is a ${jsonKind(v)}, want a string`);
  if (v === '') throw malformed(`empty ${key}`);
  if (!v.isWellFormed()) throw malformed(`${key} is not valid Unicode`);
  return v;
}

function checkReason(v) {
  if (typeof v !== 'string') throw malformed(`reason is a ${jsonKind(v)}, want a string`);
  if (!REASONS.includes(v)) throw malformed(`reason "${truncate(v, 32)}" is not in the reason set (${REASONS.join(', ')})`);
  return v;
}

function checkEpoch(v) {
  if (!Number.isSafeInteger(v)) throw malformed(`epoch is a ${jsonKind(v)}, want an integer`);
  if (v < 1 || v > MAX_EPOCH) throw malformed(`epoch ${v} out of the range 1..${MAX_EPOCH}`);
  return v;
}

function checkBool(v, key) {
  if (typeof v !== 'boolean') throw malformed(`${key} is a ${jsonKind(v)}, want a boolean`);
  return v;
}

// epk as it arrives (base64 text) or as the app gives it (bytes).
function epkFromWire(v) {
  if (typeof v !== 'string') throw malformed(`epk is a JSON ${jsonKind(v)}, want a string`);
  try {
    return fromBase64(v, EPK_SIZE);
  } catch (e) {
    throw malformed(`epk: ${e.message}`);
  }
}
function epkFromApp(v) {
  if (!(v instanceof Uint8Array) || v.length !== EPK_SIZE) {
    throw malformed(`epk must be a Uint8Array of ${EPK_SIZE} bytes, got ${v instanceof Uint8Array ? v.length + ' bytes' : jsonKind(v)}`);
  }
  return v;
}

function unknownField(k) {
  return malformed(`unknown field ${JSON.stringify(truncate(k, 32))}`);
}

function need(fields, ...keys) {
  for (const k of keys) if (!Object.hasOwn(fields, k)) throw malformed(`missing field ${k}`);
}

function only(fields, ...keys) {
  for (const k of Object.keys(fields)) if (!keys.includes(k)) throw unknownField(k);
}

// ICE fields in either shape (§3.1) → canonical {candidate, sdp_mid, sdp_mline}.
function decodeICE(f) {
  only(f, 'candidate', 'sdp_mid', 'sdpMid', 'sdp_mline', 'sdpMLineIndex');
  need(f, 'candidate');
  if (typeof f.candidate !== 'string') throw malformed(`candidate is a ${jsonKind(f.candidate)}, want a string`);
  if (!f.candidate.isWellFormed()) throw malformed('candidate is not valid Unicode');
  const mid = (k) => {
    const v = f[k];
    if (v === null || v === undefined) return null;
    if (typeof v !== 'string') throw malformed(`${k} is a ${jsonKind(v)}, want a string or null`);
    if (!v.isWellFormed()) throw malformed(`${k} is not valid Unicode`);
    return v;
  };
  const mline = (k) => {
    const v = f[k];
    if (v === null || v === undefined) return null;
    if (!Number.isSafeInteger(v)) throw malformed(`${k} is a ${jsonKind(v)}, want an integer or null`);
    if (v < 0 || v > MAX_SDP_MLINE) throw malformed(`${k} ${v} out of the range 0..${MAX_SDP_MLINE}`);
    return v;
  };
  const agree = (canon, browser, decode) => {
    const a = decode(canon);
    const b = decode(browser);
    if (!Object.hasOwn(f, canon)) return b;
    if (!Object.hasOwn(f, browser)) return a;
    if (a !== b) throw malformed(`${canon} and ${browser} are both present and disagree`);
    return a;
  };
  return {
    candidate: f.candidate,
    sdp_mid: agree('sdp_mid', 'sdpMid', mid),
    sdp_mline: agree('sdp_mline', 'sdpMLineIndex', mline),
  };
}

/**
 * Normalises an ICE candidate in either shape of §3.1 to the canonical one:
 * {candidate, sdp_mid, sdp_mline} (mid and line null when absent). Accepts
 * JSON text, a plain object, or an RTCIceCandidate. If both spellings of a
 * field are present they must agree; unknown keys, wrong types and an
 * sdp_mline outside 0..65535 throw ErrMalformed. An empty candidate is the
 * end-of-candidates marker.
 * @param {string|object} c
 * @returns {import('./duet').ICECandidate}
 */
export function normalizeICE(c) {
  let v = c;
  if (typeof c === 'string') {
    try {
      v = parseJSON(c);
    } catch (e) {
      throw malformed(`ICE candidate: ${e.message}`);
    }
  } else if (typeof RTCIceCandidate !== 'undefined' && c instanceof RTCIceCandidate) {
    v = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
  }
  if (!isPlainObject(v)) throw malformed(`ICE candidate is a ${jsonKind(v)}, want an object`);
  return decodeICE(v);
}

/**
 * Whether the sender of an SDP offer sends video in it: an m=video section
 * with a port other than 0 whose direction is sendrecv or sendonly
 * (sendrecv when absent). A renegotiation's video is read this way (§10.10).
 * @param {string} sdp
 * @returns {boolean}
 */
export function offerSendsVideo(sdp) {
  let inVideo = false;
  let sends = false;
  for (const line of String(sdp).split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      if (inVideo && sends) return true;
      const f = line.split(' ');
      inVideo = f[0] === 'm=video' && f.length > 1 && f[1] !== '0';
      sends = true;
    } else if (inVideo) {
      if (line === 'a=recvonly' || line === 'a=inactive') sends = false;
      else if (line === 'a=sendrecv' || line === 'a=sendonly') sends = true;
    }
  }
  return inVideo && sends;
}

/**
 * Reports whether an SDP offers video: a line starting with "m=video " (§3).
 * @param {string} sdp
 * @returns {boolean}
 */
export function isVideoOffer(sdp) {
  return typeof sdp === 'string' && (sdp.startsWith('m=video ') || sdp.includes('\nm=video '));
}

// The type fields of the inner payload from an app message (for seal).
function bodyFromApp(type, f) {
  switch (type) {
    case 'call_offer': {
      only(f, 'sdp', 'epk', 'ice_restart', 'renegotiate');
      need(f, 'sdp', 'epk');
      const out = { sdp: checkSDP(f.sdp, 'sdp'), epk: toBase64(epkFromApp(f.epk)) };
      if (Object.hasOwn(f, 'ice_restart') && checkBool(f.ice_restart, 'ice_restart')) out.ice_restart = true;
      if (Object.hasOwn(f, 'renegotiate') && checkBool(f.renegotiate, 'renegotiate')) out.renegotiate = true;
      if (out.ice_restart && out.renegotiate) throw malformed('an offer is an ICE restart or a renegotiation, not both');
      return out;
    }
    case 'call_answer':
      only(f, 'sdp', 'epk');
      need(f, 'sdp', 'epk');
      return { sdp: checkSDP(f.sdp, 'sdp'), epk: toBase64(epkFromApp(f.epk)) };
    case 'call_ice':
      return decodeICE(f);
    case 'call_reject':
    case 'call_hangup':
      only(f, 'reason');
      need(f, 'reason');
      return { reason: checkReason(f.reason) };
    case 'call_rekey':
      only(f, 'epoch', 'epk');
      need(f, 'epoch', 'epk');
      return { epoch: checkEpoch(f.epoch), epk: toBase64(epkFromApp(f.epk)) };
    case 'call_select':
      return selectBody(f);
    case 'call_media':
      return mediaBody(f);
  }
  throw malformed(`unknown message type "${truncate(type, 32)}"`);
}

// The app message body from the inner payload's type fields (for open).
function bodyFromWire(type, f) {
  switch (type) {
    case 'call_offer': {
      only(f, 'sdp', 'epk', 'ice_restart', 'renegotiate');
      need(f, 'sdp', 'epk');
      const sdp = checkSDP(f.sdp, 'sdp');
      const restart = Object.hasOwn(f, 'ice_restart') ? checkBool(f.ice_restart, 'ice_restart') : false;
      const renegotiate = Object.hasOwn(f, 'renegotiate') ? checkBool(f.renegotiate, 'renegotiate') : false;
      if (restart && renegotiate) throw malformed('an offer is an ICE restart or a renegotiation, not both');
      const epk = epkFromWire(f.epk);
      const out = { sdp, epk, ice_restart: restart };
      if (renegotiate) out.renegotiate = true;
      return out;
    }
    case 'call_answer': {
      only(f, 'sdp', 'epk');
      need(f, 'sdp', 'epk');
      const sdp = checkSDP(f.sdp, 'sdp');
      return { sdp, epk: epkFromWire(f.epk) };
    }
    case 'call_ice':
      return decodeICE(f);
    case 'call_reject':
    case 'call_hangup':
      only(f, 'reason');
      need(f, 'reason');
      return { reason: checkReason(f.reason) };
    case 'call_rekey': {
      only(f, 'epoch', 'epk');
      need(f, 'epoch', 'epk');
      const epoch = checkEpoch(f.epoch);
      return { epoch, epk: epkFromWire(f.epk) };
    }
    case 'call_select':
      return selectBody(f);
    case 'call_media':
      return mediaBody(f);
  }
  throw malformed(`unknown message type "${truncate(type, 32)}"`);
}

/**
 * Validates an app message and returns its inner payload without the seal
 * fields: route fields plus type fields in wire form (epk as base64, ICE in
 * canonical form). Failures throw ErrMalformed.
 * @param {import('./duet').Message} m
 * @returns {Record<string, import('./duet').JSONValue>}
 */
export function messageToInner(m) {
  if (!isPlainObject(m)) throw malformed('a message is a plain object');
  const { type, from, to, call_id: callID } = m;
  if (!CALL_TYPES.includes(type)) throw malformed(`unknown message type "${truncate(type, 32)}"`);
  if (!validAlias(from)) throw malformed(`from "${truncate(from, 32)}" is not an alias (u followed by 8 digits)`);
  if (!validAlias(to)) throw malformed(`to "${truncate(to, 32)}" is not an alias (u followed by 8 digits)`);
  if (!validID(callID)) throw malformed(`call_id must be 1..${MAX_ID_LEN} characters of [A-Za-z0-9_-]`);
  const device = m.device === undefined || m.device === '' ? undefined : checkDevice(m.device, 'device');
  const fields = {};
  for (const [k, v] of Object.entries(m)) {
    if (!ROUTE_KEYS.includes(k) && k !== DEVICE_KEY && v !== undefined) fields[k] = v;
  }
  let body;
  try {
    body = bodyFromApp(type, fields);
  } catch (e) {
    if (e.name === 'ErrMalformed') e.message = e.message.replace('malformed message: ', `malformed message: ${type}: `);
    throw e;
  }
  const inner = { type, from, to, call_id: callID, ...body };
  if (device !== undefined) inner.device = device;
  return inner;
}

// ------------------------------------------------------------------ session

function parseInner(blob) {
  let v;
  try {
    v = parseJSON(blob);
  } catch (e) {
    throw malformed(`inner payload: ${e.message}`);
  }
  if (!isPlainObject(v)) throw malformed(`inner payload is a JSON ${jsonKind(v)}, want an object`);
  let sig;
  if (Object.hasOwn(v, '_nonce')) {
    if (typeof v._nonce !== 'string') throw malformed(`_nonce is a JSON ${jsonKind(v._nonce)}, want a string`);
    try {
      fromBase64(v._nonce, NONCE_SIZE);
    } catch (e) {
      throw malformed(`_nonce: ${e.message}`);
    }
  }
  if (Object.hasOwn(v, '_sig')) {
    if (typeof v._sig !== 'string') throw malformed(`_sig is a JSON ${jsonKind(v._sig)}, want a string`);
    try {
      sig = fromBase64(v._sig, SIGNATURE_SIZE);
    } catch (e) {
      throw malformed(`_sig: ${e.message}`);
    }
  }
  if (Object.hasOwn(v, '_ts') && typeof v._ts !== 'number') throw malformed(`_ts is a JSON ${jsonKind(v._ts)}, want an integer`);
  if (!Object.hasOwn(v, '_sig')) throw malformed('missing field _sig');
  if (!Object.hasOwn(v, '_ts')) throw malformed('missing field _ts');
  if (!Object.hasOwn(v, '_nonce')) throw malformed('missing field _nonce');
  const obj = {};
  for (const [k, val] of Object.entries(v)) {
    if (k !== '_sig') Object.defineProperty(obj, k, { value: val, enumerable: true, writable: true, configurable: true });
  }
  return { obj, sig, ts: v._ts, nonce: v._nonce };
}

function decodeMessage(env, obj) {
  const want = { type: env.type, from: env.from, to: env.to, call_id: env.call_id };
  for (const k of ROUTE_KEYS) {
    if (!Object.hasOwn(obj, k)) throw err('ErrRouteMismatch', `inner route fields differ from the envelope's: inner payload has no ${k}`);
    if (obj[k] !== want[k]) {
      throw err('ErrRouteMismatch', `inner route fields differ from the envelope's: inner ${k} differs from the envelope's "${truncate(want[k], 64)}"`);
    }
  }
  const fields = {};
  for (const [k, v] of Object.entries(obj)) {
    if (!ROUTE_KEYS.includes(k) && k !== '_ts' && k !== '_nonce' && k !== DEVICE_KEY) {
      Object.defineProperty(fields, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  let body, device;
  try {
    if (Object.hasOwn(obj, DEVICE_KEY)) device = checkDevice(obj[DEVICE_KEY], 'device');
    body = bodyFromWire(env.type, fields);
  } catch (e) {
    if (e.name === 'ErrMalformed') e.message = e.message.replace('malformed message: ', `malformed message: ${env.type}: `);
    throw e;
  }
  const msg = { type: env.type, from: env.from, to: env.to, call_id: env.call_id, ...body };
  if (device !== undefined) msg.device = device;
  return msg;
}

/**
 * Seals messages to one peer and opens the peer's messages (§4.3, §4.4).
 * Create it with Session.create or Session.between.
 */
export class Session {
  #signingKey;
  #peer;
  #aes;
  #replay;
  #now;

  /** @private Use Session.create. */
  constructor(token, signingKey, peer, aes, replay, now) {
    if (token !== CREATE) throw new TypeError('use Session.create or Session.between');
    this.#signingKey = signingKey;
    this.#peer = peer;
    this.#aes = aes;
    this.#replay = replay;
    this.#now = now;
  }

  /**
   * @param {import('./duet').SessionOptions} opts
   * @returns {Promise<Session>}
   */
  static async create(opts) {
    const { identity, peerSigningKey, key } = opts ?? {};
    if (!identity?.signingKey?.privateKey) throw err('ErrKey', 'unusable key: Session.create needs {identity} from deriveIdentity');
    checkKey(peerSigningKey, "the peer's signing key");
    checkKey(key, 'the session key');
    const [peer, aes] = await Promise.all([importEd25519Public(peerSigningKey), importAESGCM(key)]);
    return new Session(CREATE, identity.signingKey.privateKey, peer, aes,
      opts.replay ?? new NonceCache(), opts.now ?? (() => Date.now()));
  }

  /**
   * Derives the session key between identity and the peer (sessionKey) and
   * creates the session.
   * @param {import('./duet').Identity} identity
   * @param {import('./duet').PublicKeys} peer
   * @param {{replay?: NonceCache, now?: () => number}} [opts]
   * @returns {Promise<Session>}
   */
  static async between(identity, peer, opts = {}) {
    const key = await sessionKey(identity, peer);
    try {
      return await Session.create({ ...opts, identity, peerSigningKey: peer.signing, key });
    } finally {
      key.fill(0);
    }
  }

  /**
   * Signs and encrypts a message with the current time, a fresh nonce and a
   * fresh IV, and returns its envelope (without an id). An invalid message
   * or one too large for a payload rejects with ErrMalformed.
   * @param {import('./duet').Message} message
   * @returns {Promise<import('./duet').Envelope>}
   */
  seal(message) {
    return this.sealWith(message, { ts: this.#now(), nonce: randomBytes(NONCE_SIZE), iv: randomBytes(IV_SIZE) });
  }

  /**
   * seal with the timestamp, nonce and IV given: the deterministic hook for
   * test vectors. Outside tests use seal: a reused nonce makes the peer drop
   * the message, and a reused IV breaks AES-GCM.
   * @param {import('./duet').Message} message
   * @param {{ts: number, nonce: Uint8Array, iv: Uint8Array}} fixed
   * @returns {Promise<import('./duet').Envelope>}
   */
  async sealWith(message, { ts, nonce, iv }) {
    const inner = messageToInner(message);
    if (!Number.isSafeInteger(ts)) throw malformed(`timestamp ${ts} is not an integer number of Unix milliseconds`);
    if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_SIZE) throw malformed(`nonce must be ${NONCE_SIZE} bytes`);
    if (!(iv instanceof Uint8Array) || iv.length !== IV_SIZE) throw malformed(`iv must be ${IV_SIZE} bytes`);
    inner._ts = ts;
    inner._nonce = toBase64(nonce);
    const sig = await ed25519Sign(this.#signingKey, utf8(canonicalJSON(inner)));
    inner._sig = toBase64(sig);
    const blob = utf8(canonicalJSON(inner));
    const ct = new Uint8Array(await subtleCrypto().encrypt({ name: 'AES-GCM', iv }, this.#aes, blob));
    const n = base64Len(IV_SIZE + ct.length);
    if (n > MAX_PAYLOAD_SIZE) {
      throw malformed(`sealed payload of ${n} base64 characters exceeds the ${MAX_PAYLOAD_SIZE}-character limit; shorten the SDP`);
    }
    return {
      type: inner.type, to: inner.to, from: inner.from, call_id: inner.call_id,
      crypto_v: CRYPTO_V2, payload: toBase64(concat(iv, ct)),
    };
  }

  /**
   * Decrypts and verifies an envelope from the peer, running the checks of
   * §4.4 in order; the first failure rejects with its DuetError:
   * ErrCryptoVersion, ErrMalformed, ErrDecrypt, ErrSignature, ErrStale,
   * ErrFuture, ErrReplay, ErrRouteMismatch, or ErrReplayCacheFull. The
   * nonce is remembered only when every check passes. Drop failures silently
   * towards the peer; count them locally by dropReason(err).
   * @param {import('./duet').Envelope} env
   * @returns {Promise<import('./duet').Message>}
   */
  async open(env) {
    if (!isPlainObject(env)) throw malformed('not an envelope object');
    // 1. crypto_v.
    if (env.crypto_v !== CRYPTO_V2) {
      throw err('ErrCryptoVersion', `unsupported crypto_v ${truncate(JSON.stringify(env.crypto_v) ?? 'undefined', 16)} (only 2 is accepted)`);
    }
    try {
      validateEnvelope(env);
    } catch (e) {
      throw malformed(e.message);
    }
    // 2. Payload decodes and holds an IV and a tag.
    let sealed;
    try {
      sealed = fromBase64(env.payload);
    } catch (e) {
      throw malformed(`payload: ${e.message}`);
    }
    if (sealed.length < IV_SIZE + TAG_SIZE) {
      throw malformed(`payload is ${sealed.length} bytes, shorter than IV and tag (${IV_SIZE + TAG_SIZE})`);
    }
    // 3. AES-GCM.
    let blob;
    try {
      blob = new Uint8Array(await subtleCrypto().decrypt(
        { name: 'AES-GCM', iv: sealed.subarray(0, IV_SIZE) }, this.#aes, sealed.subarray(IV_SIZE)));
    } catch {
      throw err('ErrDecrypt', `payload does not decrypt with the session key: ${env.type} from ${env.from}`);
    }
    // 4. A §4.2 JSON object with well-formed seal fields.
    const { obj, sig, ts, nonce } = parseInner(blob);
    // 5. Signature over the canonical object without _sig.
    if (!(await ed25519Verify(this.#peer, sig, utf8(canonicalJSON(obj))))) {
      throw err('ErrSignature', `signature does not verify with the peer's signing key: ${env.type} from ${env.from}`);
    }
    // 6, 7. Timestamp window.
    const now = this.#now();
    if (now - ts >= TIMESTAMP_WINDOW_MS) {
      throw err('ErrStale', `message timestamp too old: _ts is ${now - ts} ms old, the limit is ${TIMESTAMP_WINDOW_MS} ms`);
    }
    if (ts - now >= TIMESTAMP_WINDOW_MS) {
      throw err('ErrFuture', `message timestamp in the future: _ts is ${ts - now} ms ahead of this clock, the limit is ${TIMESTAMP_WINDOW_MS} ms`);
    }
    // 8. Nonce not seen.
    if (this.#replay.seen(nonce, now)) throw err('ErrReplay', `replayed nonce ${nonce}: already accepted`);
    // 9. Route fields, then 10. type fields.
    const msg = decodeMessage(env, obj);
    this.#replay.add(nonce, ts, now);
    return msg;
  }
}

const CREATE = Symbol('Session.create');

const DROP_REASONS = {
  ErrCryptoVersion: 'crypto_version',
  ErrDecrypt: 'decrypt',
  ErrSignature: 'signature',
  ErrStale: 'stale',
  ErrFuture: 'future',
  ErrReplayCacheFull: 'replay_cache_full',
  ErrReplay: 'replay',
  ErrRouteMismatch: 'route_mismatch',
  ErrMalformed: 'malformed',
  ErrEnvelope: 'malformed',
  ErrInvalidJSON: 'malformed',
};

/**
 * Maps an error from Session.open to a short label for drop counters, as the
 * Go SDK's wire.DropReason: "crypto_version", "malformed", "decrypt",
 * "signature", "stale", "future", "replay", "replay_cache_full",
 * "route_mismatch"; "other" for anything else; "" for no error.
 * @param {unknown} e
 * @returns {string}
 */
export function dropReason(e) {
  if (!e) return '';
  return DROP_REASONS[e.name] ?? 'other';
}
