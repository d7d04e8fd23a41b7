// Media frame encryption (docs/PROTOCOL.md §5), matching the Go SDK's e2ee
// package byte for byte: per-call, per-direction keys from the ephemeral
// X25519 exchange; frames = clear codec header || counter (u64be) ||
// AES-256-GCM(body) with header and counter as AAD; a 2048-frame replay
// window; usage limits with rekey-needed at 80 % and refusal at 100 %.
//
// No DOM: this module is meant to run inside the worker of an
// RTCRtpScriptTransform (or a createEncodedStreams pipe).

import { hkdf, subtleCrypto, x25519 } from './primitives.js';
import { DuetError, bytes, concat, equalBytes, isZero, utf8 } from './util.js';
import { MAX_BYTES_PER_KEY, MAX_FRAMES_PER_KEY, REKEY_BYTES, REKEY_FRAMES, keyLimits } from './frame-limits.js';

/** Prefix of every media frame key's HKDF info. */
export const MEDIA_INFO_PREFIX = 'duet/v2/media-frame';
export const KEY_SIZE = 32;
export const BASE_IV_SIZE = 12;
export const COUNTER_SIZE = 8;
export const TAG_SIZE = 16;
/** Bytes encryption adds to a frame (counter and tag). */
export const OVERHEAD = 24; // COUNTER_SIZE + TAG_SIZE
export const VP8_KEY_HEADER_LEN = 10;
export const VP8_DELTA_HEADER_LEN = 3;
export const OPUS_HEADER_LEN = 1;
/** Counters covered by the receiver's sliding window. */
export const REPLAY_WINDOW = 2048;
/** Usage limits of one key (§5.4; frame-limits.js): frames, body bytes, and the 80 % of each that signals rekey-needed. */
export { MAX_FRAMES_PER_KEY, MAX_BYTES_PER_KEY, REKEY_FRAMES, REKEY_BYTES };
/** How long the previous epoch's key keeps decrypting after a rekey. */
export const REKEY_GRACE_MS = 10_000;
/** Longest call ID (its length is one byte of the HKDF info). */
export const MAX_CALL_ID_LEN = 255;
export const MAX_EPOCH = 2 ** 32 - 1;

function fail(name, msg) {
  return new DuetError(name, `e2ee: ${msg}`);
}

function checkEpoch(epoch) {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) {
    throw fail('ErrEpochOrder', `epoch ${epoch} is not an integer in 0..${MAX_EPOCH}`);
  }
}

function u32be(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/**
 * The key of one direction for one epoch, from HKDF(e_shared, info) (§5.1).
 * @param {Uint8Array} shared
 * @param {Uint8Array} callID UTF-8
 * @param {Uint8Array} edS sender's Ed25519 public key
 * @param {Uint8Array} edR receiver's Ed25519 public key
 * @param {number} epoch
 * @returns {Promise<import('./duet').DirectionKey>}
 */
async function deriveDirection(shared, callID, edS, edR, epoch) {
  const info = concat(utf8(MEDIA_INFO_PREFIX), Uint8Array.of(callID.length), callID, edS, edR, u32be(epoch));
  const material = await hkdf(shared, new Uint8Array(0), info, KEY_SIZE + BASE_IV_SIZE);
  const k = { epoch, key: material.slice(0, KEY_SIZE), baseIV: material.slice(KEY_SIZE) };
  material.fill(0);
  return k;
}

/**
 * Derives the epoch's media keys of a call (§5.1): `send` encrypts what this
 * party sends (ed_S = selfSigning) and `recv` decrypts what the peer sends.
 * The peer, calling it with the roles swapped, gets them swapped. Refuses
 * (DuetError) a malformed or low-order peer key (ErrPeerKey), a call ID of 0
 * or more than 255 UTF-8 bytes (ErrCallID), signing keys that are not 32
 * bytes or are equal (ErrIdentityKey).
 * @param {import('./duet').MediaKeyParams} p
 * @returns {Promise<{send: import('./duet').DirectionKey, recv: import('./duet').DirectionKey}>}
 */
export async function deriveMediaKeys(p) {
  const { ephemeralPrivate, peerEphemeral, callId, selfSigning, peerSigning } = p ?? {};
  const epoch = p?.epoch ?? 0;
  checkEpoch(epoch);
  const id = typeof callId === 'string' ? utf8(callId) : new Uint8Array(0);
  if (id.length === 0 || id.length > MAX_CALL_ID_LEN) {
    throw fail('ErrCallID', `call ID must be 1..${MAX_CALL_ID_LEN} bytes, got ${id.length}`);
  }
  for (const [k, what] of [[selfSigning, 'own'], [peerSigning, "peer's"]]) {
    if (!(k instanceof Uint8Array) || k.length !== 32) {
      throw fail('ErrIdentityKey', `invalid identity public key: the ${what} signing key must be 32 bytes`);
    }
  }
  if (equalBytes(selfSigning, peerSigning)) {
    throw fail('ErrIdentityKey', 'invalid identity public key: both parties have the same signing key');
  }
  if (!(peerEphemeral instanceof Uint8Array) || peerEphemeral.length !== 32) {
    throw fail('ErrPeerKey', 'invalid peer ephemeral key: want 32 bytes');
  }
  if (!(ephemeralPrivate instanceof CryptoKey)) {
    throw fail('ErrPeerKey', 'own ephemeral key must be an X25519 private CryptoKey (generateX25519 or importX25519Private)');
  }
  let shared;
  try {
    shared = await x25519(ephemeralPrivate, peerEphemeral);
  } catch (e) {
    throw fail('ErrPeerKey', `invalid peer ephemeral key: ${e.message}`);
  }
  try {
    const [send, recv] = await Promise.all([
      deriveDirection(shared, id, selfSigning, peerSigning, epoch),
      deriveDirection(shared, id, peerSigning, selfSigning, epoch),
    ]);
    return { send, recv };
  } finally {
    shared.fill(0);
  }
}

const KINDS = ['vp8', 'opus', 'other'];

function kindHeaderLen(kind, first) {
  switch (kind) {
    case 'vp8':
      return (first & 1) === 0 ? VP8_KEY_HEADER_LEN : VP8_DELTA_HEADER_LEN;
    case 'opus':
      return OPUS_HEADER_LEN;
    case 'other':
      return 0;
  }
  throw fail('ErrInvalidKind', `invalid frame kind ${JSON.stringify(kind)}; want one of ${KINDS.join(', ')}`);
}

/**
 * How many leading bytes of an unencrypted frame stay in the clear: 10 for
 * a VP8 key frame, 3 for a VP8 delta frame (P bit of byte 0), 1 for Opus, 0
 * for other; the frame length if it is shorter.
 * @param {Uint8Array} frame
 * @param {import('./duet').FrameKind} kind
 * @returns {number}
 */
export function clearHeaderLen(frame, kind) {
  if (frame.length === 0) throw fail('ErrEmptyFrame', 'empty frame');
  return Math.min(kindHeaderLen(kind, frame[0]), frame.length);
}

// iv = base_iv with bytes 0..7 XORed with u64le(epoch << 32 | seq).
function frameIV(baseIV, epoch, seq) {
  const iv = baseIV.slice();
  for (let i = 0; i < 4; i++) {
    iv[i] ^= (seq >>> (8 * i)) & 0xff;
    iv[4 + i] ^= (epoch >>> (8 * i)) & 0xff;
  }
  return iv;
}

function checkDirectionKey(k) {
  if (!k || !(k.key instanceof Uint8Array) || k.key.length !== KEY_SIZE ||
      !(k.baseIV instanceof Uint8Array) || k.baseIV.length !== BASE_IV_SIZE) {
    throw fail('ErrInvalidKey', `invalid direction key: want {epoch, key: ${KEY_SIZE} bytes, baseIV: ${BASE_IV_SIZE} bytes} from deriveMediaKeys`);
  }
  checkEpoch(k.epoch);
  if (isZero(k.key)) throw fail('ErrInvalidKey', `invalid direction key: all-zero key for epoch ${k.epoch}`);
}

async function importKey(k) {
  checkDirectionKey(k);
  const aes = await subtleCrypto().importKey('raw', k.key, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  return { epoch: k.epoch, aes, baseIV: k.baseIV.slice() };
}

/**
 * Encrypts the frames of one sending direction (§5.2, §5.4). Create it with
 * FrameEncryptor.create. Calls may overlap (audio and video share the
 * direction's counter): each frame's counter is reserved synchronously.
 */
export class FrameEncryptor {
  #k;
  #frames = 0;
  #bytes = 0;
  #signalled = false;
  #onRekey;

  /** @private Use FrameEncryptor.create. */
  constructor(token, k, opts) {
    if (token !== CREATE) throw new TypeError('use FrameEncryptor.create');
    this.#k = k;
    this.#frames = opts.firstSeq ?? 0;
    this.#onRekey = opts.onRekeyNeeded;
  }

  /**
   * @param {import('./duet').DirectionKey} key the send key from deriveMediaKeys
   * @param {import('./duet').EncryptorOptions} [opts]
   * @returns {Promise<FrameEncryptor>}
   */
  static async create(key, opts = {}) {
    const first = opts.firstSeq ?? 0;
    if (!Number.isInteger(first) || first < 0 || first > MAX_FRAMES_PER_KEY) {
      throw fail('ErrInvalidKey', `first seq ${first} is not in 0..${MAX_FRAMES_PER_KEY}`);
    }
    return new FrameEncryptor(CREATE, await importKey(key), opts);
  }

  /** @returns {import('./duet').Usage} the usage of the current key */
  get usage() {
    return { epoch: this.#k.epoch, frames: this.#frames, bytes: this.#bytes, rekeyNeeded: this.#signalled };
  }

  /**
   * Switches sending to key, whose epoch must be newer (ErrEpochOrder), and
   * resets the sequence number and usage. It lifts an ErrKeyExhausted refusal.
   * @param {import('./duet').DirectionKey} key
   */
  async setKey(key) {
    checkDirectionKey(key);
    const order = () => {
      if (key.epoch <= this.#k.epoch) {
        throw fail('ErrEpochOrder', `key epoch is not newer than the current epoch: epoch ${key.epoch}, current ${this.#k.epoch}`);
      }
    };
    order();
    const k = await importKey(key);
    order(); // a concurrent setKey may have won
    this.#k = k;
    this.#frames = 0;
    this.#bytes = 0;
    this.#signalled = false;
  }

  /**
   * Encrypts a whole encoded frame: clear_header || counter || ciphertext ||
   * tag. Rejects an empty frame (ErrEmptyFrame), an invalid kind
   * (ErrInvalidKind) and a frame that would take the key past its limits
   * (ErrKeyExhausted, until setKey). The onRekeyNeeded callback runs once per
   * key, after the frame that brings usage to 80 %.
   * @param {BufferSource} frame
   * @param {import('./duet').FrameKind} kind
   * @returns {Promise<Uint8Array>}
   */
  async encrypt(frame, kind) {
    const f = bytes(frame);
    const h = clearHeaderLen(f, kind);
    const body = f.length - h;
    const lim = keyLimits(this.#k.epoch);
    if (this.#frames + 1 > lim.maxFrames || this.#bytes + body > lim.maxBytes) {
      throw fail('ErrKeyExhausted',
        `key usage limit reached, rekey required: epoch ${this.#k.epoch} has encrypted ${this.#frames} frames and ${this.#bytes} bytes`);
    }
    // Reserve the counter before awaiting: a counter is never used twice.
    const k = this.#k;
    const seq = this.#frames;
    this.#frames++;
    this.#bytes += body;
    const fire = !this.#signalled && (this.#frames >= lim.rekeyFrames || this.#bytes >= lim.rekeyBytes);
    if (fire) this.#signalled = true;

    const aad = new Uint8Array(h + COUNTER_SIZE);
    aad.set(f.subarray(0, h));
    const dv = new DataView(aad.buffer);
    dv.setUint32(h, k.epoch);
    dv.setUint32(h + 4, seq);
    const ct = await subtleCrypto().encrypt(
      { name: 'AES-GCM', iv: frameIV(k.baseIV, k.epoch, seq), additionalData: aad }, k.aes, f.subarray(h));
    const out = concat(aad, new Uint8Array(ct));
    if (fire && this.#onRekey) this.#onRekey(k.epoch);
    return out;
  }
}

/** A sliding window of REPLAY_WINDOW sequence numbers (§5.3). */
class ReplayWindow {
  bits = new Uint32Array(REPLAY_WINDOW / 32);
  highest = 0;
  started = false;

  /** @returns {string} '' if seq may be accepted, else the error name */
  check(seq) {
    if (!this.started || seq > this.highest) return '';
    if (this.highest - seq >= REPLAY_WINDOW) return 'ErrTooOld';
    const i = seq % REPLAY_WINDOW;
    return this.bits[i >>> 5] & (1 << (i & 31)) ? 'ErrReplay' : '';
  }

  accept(seq) {
    if (!this.started) {
      this.started = true;
      this.highest = seq;
    } else if (seq > this.highest) {
      if (seq - this.highest >= REPLAY_WINDOW) {
        this.bits.fill(0);
      } else {
        for (let s = this.highest + 1; s <= seq; s++) {
          const i = s % REPLAY_WINDOW;
          this.bits[i >>> 5] &= ~(1 << (i & 31));
        }
      }
      this.highest = seq;
    }
    const i = seq % REPLAY_WINDOW;
    this.bits[i >>> 5] |= 1 << (i & 31);
  }
}

/**
 * Decrypts the frames of one receiving direction (§5.2–§5.4). It holds the
 * current epoch's key and the previous one, each with its own replay window;
 * the previous one is dropped REKEY_GRACE_MS after the first frame under the
 * current one authenticates. Create it with FrameDecryptor.create.
 */
export class FrameDecryptor {
  #cur;
  #prev = null;
  #prevUntil = 0;
  #now;

  /** @private Use FrameDecryptor.create. */
  constructor(token, k, now) {
    if (token !== CREATE) throw new TypeError('use FrameDecryptor.create');
    this.#cur = k;
    this.#now = now;
  }

  /**
   * @param {import('./duet').DirectionKey} key the recv key from deriveMediaKeys
   * @param {{now?: () => number}} [opts] now: the clock of the rekey grace (ms)
   * @returns {Promise<FrameDecryptor>}
   */
  static async create(key, opts = {}) {
    const k = await importKey(key);
    k.window = new ReplayWindow();
    return new FrameDecryptor(CREATE, k, opts.now ?? (() => Date.now()));
  }

  /** @returns {number} the current key's epoch */
  get epoch() {
    return this.#cur.epoch;
  }

  /**
   * Installs key, whose epoch must be newer (ErrEpochOrder), as the current
   * key. The replaced key keeps decrypting its epoch until REKEY_GRACE_MS
   * after the first frame under key authenticates (the peer switched; until
   * then it may still send under the replaced key).
   * @param {import('./duet').DirectionKey} key
   */
  async addKey(key) {
    checkDirectionKey(key);
    const k = await importKey(key);
    if (key.epoch <= this.#cur.epoch) {
      throw fail('ErrEpochOrder', `key epoch is not newer than the current epoch: epoch ${key.epoch}, current ${this.#cur.epoch}`);
    }
    k.window = new ReplayWindow();
    this.#prev = this.#cur;
    this.#cur = k;
    this.#prevUntil = 0; // the grace starts with the first frame under key
  }

  #key(epoch) {
    if (epoch === this.#cur.epoch) return this.#cur;
    if (this.#prev && epoch === this.#prev.epoch) {
      if (!this.#prevUntil || this.#now() < this.#prevUntil) return this.#prev;
      this.#prev = null; // grace over: forget the key
      throw fail('ErrUnknownEpoch', `unknown key epoch ${epoch}: its rekey grace ended (current epoch ${this.#cur.epoch})`);
    }
    throw fail('ErrUnknownEpoch', `unknown key epoch ${epoch} (current epoch ${this.#cur.epoch})`);
  }

  /**
   * Authenticates and decrypts an encrypted frame and returns the original
   * (clear header || body). Rejects with ErrShortFrame, ErrInvalidKind,
   * ErrUnknownEpoch, ErrTooOld, ErrReplay or ErrAuth. Only frames that
   * authenticate enter the replay window.
   * @param {BufferSource} frame
   * @param {import('./duet').FrameKind} kind
   * @returns {Promise<Uint8Array>}
   */
  async decrypt(frame, kind) {
    const f = bytes(frame);
    if (f.length <= OVERHEAD) throw fail('ErrShortFrame', `encrypted frame too short: ${f.length} bytes, need more than ${OVERHEAD}`);
    const h = Math.min(kindHeaderLen(kind, f[0]), f.length - OVERHEAD);
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const epoch = dv.getUint32(h);
    const seq = dv.getUint32(h + 4);
    const k = this.#key(epoch);
    const replay = (name) => {
      const msg = name === 'ErrReplay' ? 'replayed frame' : 'frame older than the replay window';
      return fail(name, `${msg}: counter ${epoch}:${seq}, highest seq ${k.window.highest}`);
    };
    let bad = k.window.check(seq);
    if (bad) throw replay(bad);
    let plain;
    try {
      plain = await subtleCrypto().decrypt(
        { name: 'AES-GCM', iv: frameIV(k.baseIV, epoch, seq), additionalData: f.subarray(0, h + COUNTER_SIZE) },
        k.aes, f.subarray(h + COUNTER_SIZE));
    } catch {
      throw fail('ErrAuth', `frame authentication failed: counter ${epoch}:${seq}, ${kind} frame of ${f.length} bytes`);
    }
    bad = k.window.check(seq); // a concurrent decrypt of the same counter may have won
    if (bad) throw replay(bad);
    k.window.accept(seq);
    if (k === this.#cur && this.#prev && !this.#prevUntil) this.#prevUntil = this.#now() + REKEY_GRACE_MS; // the peer switched
    return concat(f.subarray(0, h), new Uint8Array(plain));
  }
}

const CREATE = Symbol('create');
