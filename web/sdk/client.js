// The relay client (docs/PROTOCOL.md §9): registration, the authenticated
// WebSocket session with capped, jittered reconnect backoff, envelopes and
// relay notices, peer key lookup with key pinning in IndexedDB, safety
// numbers, signaling sessions per peer, and the ICE configuration cached by
// its ttl. Mirrors the Go SDK's client package.

import { checkPublicKeys, safetyNumber, validAlias } from './identity.js';
import { digest, ed25519Sign, publicKeyOf } from './primitives.js';
import { HotValue } from './observable.js';
import { CALL_TYPES, MAX_ENVELOPE_SIZE, NonceCache, Session, decodeEnvelope, encodeEnvelope } from './signal.js';
import { CallModule } from './call-module.js';
import { DEFAULT_DB, STORE_PINS, idbGet, idbPut } from './store.js';
import { DuetError, concat, equalBytes, fromBase64, toBase64, utf8 } from './util.js';
import {
  HTTP_TIMEOUT_MS, LIVENESS as live, NET_CHECK_TIMEOUT_MS, PING_INTERVAL_MS, PING_TIMEOUT_MS, iceNow,
} from './client-config.js';

/** Domain-separation prefix of the registration signature. */
export const REGISTER_CONTEXT = 'duet/v1/register';
/** Domain-separation prefix of the WebSocket auth signature. */
export const WS_AUTH_CONTEXT = 'duet/v1/ws-auth';
/** How long the whole WebSocket handshake may take. */
export const AUTH_TIMEOUT_MS = 10_000;
/** Reconnect backoff: full jitter over an exponentially growing cap. */
export const BACKOFF_MIN_MS = 250;
export const BACKOFF_MAX_MS = 10_000;
/** Liveness of the relay connection (docs/PROTOCOL.md §9.2; client-config.js). */
export { PING_INTERVAL_MS, PING_TIMEOUT_MS, NET_CHECK_TIMEOUT_MS };
/** Signaling refuses envelopes more than 60 s off: warn from half of it. */
const SKEW_WARN_MS = 30_000;

/** Responses larger than this are refused. */
const MAX_RESPONSE = 1 << 20;
/** Wait before an envelope refused with recipient_busy is sent again, and how many recent sends are kept for it. */
export const BUSY_RETRY_MS = 1000;
const BUSY_KEEP = 64;
/** With several relays, a lost node's clients go to the next within this. */
const FAILOVER_JITTER_MS = 100;

/**
 * A token is refreshed (by reconnecting) this long before it expires, or a
 * tenth of its lifetime when that is shorter, plus a second (the relay
 * counts whole seconds), as the Go SDK does (PROTOCOL §9.3).
 */
const TOKEN_MARGIN_MS = 30_000;

const notConnected = () => new DuetError('ErrNotConnected', 'not connected to the relay (it reconnects by itself; try again shortly)');
const closedErr = () => new DuetError('ErrClosed', 'the client is closed');

/**
 * The delay before reconnect attempt n (0-based): BACKOFF_MIN_MS/2 plus a
 * random share of min(BACKOFF_MIN_MS·2^n, BACKOFF_MAX_MS).
 * @param {number} attempt
 * @returns {number} milliseconds
 */
export function backoff(attempt) {
  const limit = Math.min(BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16), BACKOFF_MAX_MS);
  return BACKOFF_MIN_MS / 2 + Math.floor(Math.random() * limit);
}

/**
 * Normalises a relay URL to "http(s)://host[:port][/prefix]" (ws and wss
 * are accepted for http and https).
 * @param {string} relayUrl
 * @returns {string}
 */
export function relayBaseURL(relayUrl) {
  let u;
  try {
    u = new URL(relayUrl);
  } catch {
    throw new DuetError('ErrRelayURL', `relay URL "${relayUrl}": want http://host:port`);
  }
  const scheme = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' }[u.protocol];
  if (!scheme || !u.host) throw new DuetError('ErrRelayURL', `relay URL "${relayUrl}": scheme must be http or https`);
  return `${scheme}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

async function httpJSON(fetchFn, method, url, { token, body } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const signal = AbortSignal.timeout(HTTP_TIMEOUT_MS);
  const timedOut = () => new DuetError('ErrTimeout', `${method} ${url}: the relay did not answer within ${HTTP_TIMEOUT_MS / 1000} s (is it overloaded or unreachable?)`);
  // A fetch that ignores the signal (an app's opts.fetch) is bounded too.
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), HTTP_TIMEOUT_MS + 100);
  });
  try {
    let res;
    try {
      res = await Promise.race([
        fetchFn(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', signal }),
        deadline,
      ]);
    } catch (e) {
      if (signal.aborted || e?.name === 'ErrTimeout') throw timedOut();
      throw new DuetError('ErrNetwork', `${method} ${url}: ${e.message} (is the relay running and reachable?)`);
    }
    let text;
    try {
      text = await Promise.race([res.text(), deadline]);
    } catch (e) {
      if (signal.aborted || e?.name === 'ErrTimeout') throw timedOut();
      throw new DuetError('ErrNetwork', `${method} ${url}: reading the answer: ${e.message}`);
    }
    return parseAnswer(method, url, res, text);
  } finally {
    clearTimeout(timer);
  }
}

function parseAnswer(method, url, res, text) {
  if (text.length > MAX_RESPONSE) throw new DuetError('ErrRelay', `${method} ${url}: response larger than ${MAX_RESPONSE} bytes`);
  if (!res.ok) {
    let code = res.statusText || String(res.status);
    let message = text.trim().slice(0, 200);
    try {
      const e = JSON.parse(text);
      if (typeof e.error === 'string' && e.error) {
        code = e.error;
        message = String(e.message ?? '');
      }
    } catch { /* not JSON: keep the text */ }
    throw new DuetError('ErrRelay', `relay answered ${res.status} ${code}: ${message}`, { status: res.status, code });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DuetError('ErrRelay', `decoding the relay's answer from ${url}: ${e.message}`);
  }
}

function defaultFetch() {
  if (typeof globalThis.fetch !== 'function') throw new DuetError('ErrUnsupported', 'fetch is not available; pass opts.fetch');
  return globalThis.fetch.bind(globalThis);
}

/**
 * The relays of a relayUrl option: one URL, several separated by commas, or
 * an array of them; normalised (relayBaseURL), duplicates dropped.
 * @param {string | string[]} relayUrl
 * @returns {string[]}
 */
export function relayList(relayUrl) {
  const list = (Array.isArray(relayUrl) ? relayUrl : String(relayUrl ?? '').split(','))
    .map((u) => String(u).trim())
    .filter((u) => u !== '')
    .map(relayBaseURL);
  if (list.length === 0) throw new DuetError('ErrRelayURL', 'no relay URL');
  return [...new Set(list)];
}

/**
 * Registers identity with the relay (§9.1): proves possession of the signing
 * key over a fresh challenge and returns the alias the relay assigned.
 * Registering the same identity again returns the same alias (restore on a
 * new device), with `created: false`. relayUrl may list several nodes of one
 * deployment (relayList): a node that cannot be reached, or answers 5xx,
 * passes the registration to the next.
 * @param {string | string[]} relayUrl
 * @param {import('./duet').Identity} identity
 * @param {{fetch?: typeof fetch}} [opts]
 * @returns {Promise<{alias: string, created: boolean}>}
 */
export async function register(relayUrl, identity, opts = {}) {
  const bases = relayList(relayUrl);
  for (let i = 0; ; i++) {
    try {
      return await registerAt(bases[i], identity, opts);
    } catch (e) {
      const next = i + 1 < bases.length && (e?.name === 'ErrNetwork' || e?.name === 'ErrTimeout' || (e?.status ?? 0) >= 500);
      if (!next) throw e;
    }
  }
}

async function registerAt(base, identity, opts) {
  const f = opts.fetch ?? defaultFetch();
  const ch = await httpJSON(f, 'POST', `${base}/api/v1/challenge`);
  let chal;
  try {
    chal = fromBase64(ch?.challenge);
  } catch (e) {
    throw new DuetError('ErrRelay', `register: the relay sent an invalid challenge (${e.message})`);
  }
  if (chal.length === 0) throw new DuetError('ErrRelay', 'register: the relay sent an empty challenge');
  const x = identity.agreementKey.publicKey;
  const sig = await ed25519Sign(identity.signingKey.privateKey, concat(utf8(REGISTER_CONTEXT), chal, x));
  const body = {
    ed25519: toBase64(identity.signingKey.publicKey),
    x25519: toBase64(x),
    challenge: ch.challenge,
    signature: toBase64(sig),
  };
  const bits = ch?.pow_bits ?? 0;
  if (bits > 0) {
    if (!Number.isInteger(bits) || bits > MAX_REGISTER_POW_BITS) throw new DuetError('ErrRelay', `register: the relay asks for a proof of work of ${String(bits).slice(0, 16)} bits, more than the ${MAX_REGISTER_POW_BITS} this SDK does`);
    body.pow = toBase64(await solvePoW(chal, bits));
  }
  const resp = await httpJSON(f, 'POST', `${base}/api/v1/register`, { body });
  if (!validAlias(resp?.alias)) throw new DuetError('ErrRelay', `register: the relay assigned "${String(resp?.alias).slice(0, 32)}", which is not an alias`);
  return { alias: resp.alias, created: resp.created === true };
}

/** The registration proof of work (§9.1): its hash prefix and the most bits this SDK solves. */
export const REGISTER_POW_CONTEXT = 'duet/v1/register-pow';
export const MAX_REGISTER_POW_BITS = 28;

/**
 * A nonce (8 bytes, a big-endian counter) such that
 * SHA-256(REGISTER_POW_CONTEXT || challenge || nonce) starts with bits zero
 * bits; hashes run in batches, WebCrypto's digest being asynchronous.
 * @param {Uint8Array} chal @param {number} bits @returns {Promise<Uint8Array>}
 */
export async function solvePoW(chal, bits) {
  const prefix = concat(utf8(REGISTER_POW_CONTEXT), chal);
  const batch = 512;
  for (let base = 0; ; base += batch) {
    const inputs = [];
    for (let i = 0; i < batch; i++) {
      const buf = new Uint8Array(prefix.length + 8);
      buf.set(prefix);
      new DataView(buf.buffer).setBigUint64(prefix.length, BigInt(base + i));
      inputs.push(buf);
    }
    const hashes = await Promise.all(inputs.map((b) => digest('SHA-256', b)));
    for (let i = 0; i < batch; i++) {
      if (leadingZeroBits(hashes[i]) >= bits) return inputs[i].slice(prefix.length);
    }
  }
}

function leadingZeroBits(h) {
  let n = 0;
  for (const b of h) {
    if (b !== 0) return n + Math.clz32(b) - 24;
    n += 8;
  }
  return n;
}

/**
 * Pinned peer keys: trust on first use, then a changed key is refused
 * (ErrKeyChanged) until accept() is called after the users compared safety
 * numbers out of band. Backed by IndexedDB (PinStore.indexedDB) or memory
 * (PinStore.memory).
 */
export class PinStore {
  #get;
  #put;

  /** @private Use PinStore.indexedDB or PinStore.memory. */
  constructor(get, put) {
    this.#get = get;
    this.#put = put;
  }

  /**
   * Pins kept in IndexedDB (store "pins" of the SDK database).
   * @param {{dbName?: string}} [opts]
   * @returns {PinStore}
   */
  static indexedDB(opts = {}) {
    const db = opts.dbName ?? DEFAULT_DB;
    return new PinStore((a) => idbGet(db, STORE_PINS, a), (a, v) => idbPut(db, STORE_PINS, a, v));
  }

  /** @returns {PinStore} pins kept in memory only */
  static memory() {
    const m = new Map();
    return new PinStore(async (a) => m.get(a), async (a, v) => void m.set(a, v));
  }

  /**
   * The pinned keys of peer, or null.
   * @param {string} peer
   * @returns {Promise<import('./duet').PublicKeys|null>}
   */
  async pinned(peer) {
    const rec = await this.#get(peer);
    if (rec === undefined) return null;
    try {
      return { signing: fromBase64(rec.ed25519, 32), agreement: fromBase64(rec.x25519, 32) };
    } catch (e) {
      throw new DuetError('ErrStorage', `the pinned keys of ${peer} are corrupt (${e.message}); accept the peer's key again after comparing safety numbers`);
    }
  }

  /**
   * Compares keys with the pin of peer; with no pin yet, pins them. A
   * difference rejects with ErrKeyChanged ({peer, pinned, offered}).
   * @param {string} peer
   * @param {import('./duet').PublicKeys} keys
   */
  async check(peer, keys) {
    const pinned = await this.pinned(peer);
    if (!pinned) return this.accept(peer, keys);
    if (!equalBytes(pinned.signing, keys.signing) || !equalBytes(pinned.agreement, keys.agreement)) {
      throw new DuetError('ErrKeyChanged',
        `the keys of ${peer} changed since they were pinned; compare safety numbers with them out of band, then accept the new key (acceptKey) to call them again`,
        { peer, pinned, offered: keys });
    }
  }

  /**
   * Replaces the pin of peer with keys.
   * @param {string} peer
   * @param {import('./duet').PublicKeys} keys
   */
  async accept(peer, keys) {
    await this.#put(peer, { version: 1, ed25519: toBase64(keys.signing), x25519: toBase64(keys.agreement), pinnedAt: Date.now() });
  }
}

/**
 * An authenticated, self-reconnecting connection to a relay. See
 * duet.d.ts (DuetClientOptions) for the options.
 */
export class DuetClient {
  #bases; // the relays (relayList)
  #baseIdx = 0; // the one connected to, or last tried
  #lostAt = 0; // when the connection was lost (for the reconnect log)
  #identity;
  #alias;
  #pins;
  #fetch;
  #WS;
  #log;
  #state = new HotValue('disconnected');
  #ws = null;
  #token = '';
  #tokenRenew = 0; // when #token is to be renewed (Date.now() ms)
  #closed = false;
  #reconnecting = false;
  #sleep = null; // {timer, resolve} of the reconnect wait
  #immediate = false; // the next reconnect skips the backoff wait
  #live = null; // the liveness check of the current connection
  #netListeners = null; // [target, event, fn] installed by connect()
  #skewMs = 0;
  #replay = new NonceCache();
  #sessions = new Map(); // alias → Promise<{session, keys}>: the latest made or being made
  #held = new Map(); // alias → {session, keys}: the latest made (never one in flight)
  #ice = null;
  #iceExp = 0;
  #iceBase = ''; // the relay node #ice came from: each node may name its own TURN
  #iceInflight = null;
  #calls = null;
  #callsLogger = null; // the logger the call module was started with
  #sent = new Map(); // id → envelope text of the latest sends with an id (null once resent), for recipient_busy

  /** Called with every envelope addressed to this alias. */
  onEnvelope = null;
  /** Called with the relay's undeliverable notices ({id, to, reason}). */
  onUndeliverable = null;
  /** Called with the relay's error notices ({code, message, id}). */
  onRelayError = null;
  /** Called when a reconnect attempt fails (the client keeps trying). */
  onError = null;

  /** @param {import('./duet').DuetClientOptions} opts */
  constructor(opts) {
    const o = opts ?? {};
    if (!o.identity?.signingKey?.privateKey) throw new TypeError('DuetClient needs {identity} from deriveIdentity or createIdentity');
    this.#bases = relayList(o.relayUrl ?? globalThis.location?.origin);
    this.#baseIdx = Math.floor(Math.random() * this.#bases.length);
    this.#identity = o.identity;
    this.#alias = o.aliasId ?? '';
    if (this.#alias && !validAlias(this.#alias)) throw new DuetError('ErrInvalidAlias', `aliasId "${String(this.#alias).slice(0, 32)}" is not an alias`);
    this.#pins = o.pins ?? PinStore.indexedDB();
    this.#fetch = o.fetch ?? defaultFetch();
    this.#WS = o.WebSocket ?? globalThis.WebSocket;
    this.#log = o.logger ?? console;
    for (const k of ['onEnvelope', 'onUndeliverable', 'onRelayError', 'onError']) if (o[k]) this[k] = o[k];
  }

  // The relay connected to (or last tried): HTTP requests go there; a token
  // of one node is valid on every node.
  get #base() {
    return this.#bases[this.#baseIdx];
  }

  /** @returns {string} the relay connected to, or last tried */
  get relayUrl() {
    return this.#base;
  }

  /** @returns {string} this user's alias ('' before register) */
  get aliasId() {
    return this.#alias;
  }

  /** @returns {import('./duet').Identity} */
  get identity() {
    return this.#identity;
  }

  /** @returns {import('./duet').ConnState} the connection state */
  get state() {
    return this.#state.value;
  }

  /**
   * The connection state as a hot observable: a subscriber gets the current
   * state at once, then every change.
   * @returns {{subscribe(fn: (s: import('./duet').ConnState) => void): {unsubscribe(): void}}}
   */
  observeState() {
    return { subscribe: (fn) => this.#state.subscribe(fn) };
  }

  /**
   * Registers (or restores) this identity with the relay and remembers the
   * alias. Store it with saveIdentity({mnemonic, aliasId}).
   * @returns {Promise<{alias: string, created: boolean}>}
   */
  async register() {
    const r = await register(this.#bases.slice(this.#baseIdx).concat(this.#bases.slice(0, this.#baseIdx)), this.#identity, { fetch: this.#fetch });
    this.#alias = r.alias;
    return r;
  }

  /**
   * Connects and authenticates, then keeps the connection up, reconnecting
   * with capped, jittered backoff, until close(). Resolves once the first
   * authentication succeeded; rejects with the first attempt's error
   * (ErrUnauthorized when the relay refused the alias or signature).
   * @returns {Promise<void>}
   */
  async connect() {
    if (this.#closed) throw closedErr();
    if (!validAlias(this.#alias)) throw new DuetError('ErrInvalidAlias', 'no alias: register first (or pass aliasId)');
    if (this.#ws || this.#reconnecting) throw new DuetError('ErrBusy', 'connect() was already called');
    this.#watchNetwork();
    try {
      await this.#dialAny();
    } catch (e) {
      if (!this.#closed) this.#state.set('disconnected');
      throw e;
    }
  }

  // Tries each relay once, from the current one on (next: from the one
  // after it); ErrUnauthorized stops (the nodes share the directory).
  async #dialAny(next = false) {
    const n = this.#bases.length;
    const start = this.#baseIdx + (next ? 1 : 0);
    let err;
    for (let i = 0; i < n; i++) {
      this.#baseIdx = (start + i) % n;
      try {
        await this.#dial();
        return;
      } catch (e) {
        err = e;
        if (this.#closed || e?.name === 'ErrUnauthorized') throw e;
      }
    }
    throw err;
  }

  #dial() {
    this.#state.set('connecting');
    const url = `${this.#base.replace(/^http/, 'ws')}/api/v1/ws`;
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this.#WS(url);
      } catch (e) {
        reject(new DuetError('ErrNetwork', `dialling ${url}: ${e.message}`));
        return;
      }
      let phase = 'challenge';
      let authSent = 0;
      let settled = false;
      const timer = setTimeout(() => fail(new DuetError('ErrTimeout', `the relay handshake took longer than ${AUTH_TIMEOUT_MS} ms`)), AUTH_TIMEOUT_MS);
      const fail = (e) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          ws.close();
        } catch { /* already closing */ }
        reject(e);
      };
      ws.onmessage = async (ev) => {
        if (phase === 'ready') {
          this.#dispatch(ws, ev.data);
          return;
        }
        let f;
        try {
          f = JSON.parse(ev.data);
        } catch {
          fail(new DuetError('ErrRelay', `the relay sent a handshake frame that is not JSON`));
          return;
        }
        if (phase === 'challenge') {
          let chal;
          try {
            if (f?.type !== 'challenge') throw new Error(`got "${String(f?.type).slice(0, 32)}"`);
            chal = fromBase64(f.challenge);
            if (chal.length === 0) throw new Error('empty challenge');
          } catch (e) {
            fail(new DuetError('ErrRelay', `the relay sent an invalid challenge: ${e.message}`));
            return;
          }
          phase = 'auth';
          try {
            const sig = await ed25519Sign(this.#identity.signingKey.privateKey, concat(utf8(WS_AUTH_CONTEXT), chal));
            authSent = Date.now();
            ws.send(JSON.stringify({ type: 'auth', alias: this.#alias, signature: toBase64(sig) }));
          } catch (e) {
            fail(new DuetError('ErrNetwork', `sending auth: ${e.message}`));
          }
          return;
        }
        if (f?.type !== 'ready' || typeof f.token !== 'string' || !f.token) {
          fail(new DuetError('ErrRelay', `the relay sent "${String(f?.type).slice(0, 32)}" instead of ready`));
          return;
        }
        phase = 'ready';
        settled = true;
        clearTimeout(timer);
        this.#ws = ws;
        this.#token = f.token;
        const ttl = Number.isFinite(f.token_expires_in) ? f.token_expires_in * 1000 : 3_600_000;
        this.#tokenRenew = Date.now() + ttl - 1000 - Math.min(TOKEN_MARGIN_MS, ttl / 10);
        this.#noteSkew(f.time, authSent, Date.now());
        this.#startLiveness(ws);
        this.#state.set('connected');
        if (this.#lostAt) this.#log.info?.(`duet: reconnected to the relay ${this.#base} as ${this.#alias} after ${Date.now() - this.#lostAt} ms`);
        else this.#log.info?.(`duet: connected to the relay ${this.#base} as ${this.#alias}`);
        this.#lostAt = 0;
        resolve();
      };
      ws.onclose = (ev) => {
        if (!settled) {
          if (ev.code === 4001) {
            fail(new DuetError('ErrUnauthorized', `the relay refused authentication: ${ev.reason || 'unauthorized'} (is ${this.#alias} registered on this relay?)`));
          } else if (ev.code === 1013 && ev.reason === 'too_many_sessions') {
            fail(new DuetError('ErrTooManySessions', `the relay refused the session: ${this.#alias} has the maximum number of sessions on this relay node; close another device's session or try again later`));
          } else {
            fail(new DuetError('ErrNetwork', `the relay connection closed during the handshake (code ${ev.code}${ev.reason ? ', ' + ev.reason : ''})`));
          }
          return;
        }
        if (this.#ws === ws) this.#lost(ev);
      };
      ws.onerror = () => { /* onclose follows with the code */ };
    });
  }

  #dispatch(ws, data) {
    if (typeof data !== 'string') {
      this.#log.warn('duet: the relay sent a binary frame; ignored');
      return;
    }
    let head;
    try {
      head = JSON.parse(data);
    } catch {
      this.#log.warn('duet: the relay sent a frame that is not JSON; ignored');
      return;
    }
    switch (head?.type) {
      case 'undeliverable': {
        const n = { id: head.id, to: head.to, reason: head.reason };
        if (n.reason === 'recipient_busy' && this.#resendBusy(n)) return;
        this.#calls?.handleUndeliverable(n);
        this.#callback('onUndeliverable', n);
        return;
      }
      case 'error': {
        this.#log.warn(`duet: the relay refused a frame: ${head.code}: ${head.message}${head.id ? ' (id ' + head.id + ')' : ''}`);
        const n = { code: head.code, message: head.message, id: head.id ?? '' };
        this.#calls?.handleRelayError(n);
        this.#callback('onRelayError', n);
        return;
      }
      case 'pong':
        if (this.#live?.ws === ws) this.#live.deadline = 0;
        return;
      case 'reconnect':
        this.#log.info?.('duet: the relay is restarting; reconnecting');
        ws.close(1000, 'relay restarting');
        return;
    }
    let env;
    try {
      env = decodeEnvelope(data);
    } catch (e) {
      this.#log.warn(`duet: the relay delivered an invalid envelope; dropped: ${e.message}`);
      return;
    }
    if (env.to !== this.#alias) {
      this.#log.warn(`duet: the relay delivered an envelope for ${env.to}; dropped`);
      return;
    }
    if (this.#calls && CALL_TYPES.includes(env.type)) {
      this.#calls.handleEnvelope(env);
      return;
    }
    this.#callback('onEnvelope', env);
  }

  #callback(name, arg) {
    const fn = this[name];
    if (typeof fn !== 'function') return;
    try {
      const r = fn(arg);
      if (r && typeof r.catch === 'function') r.catch((e) => this.#log.error(`duet: ${name} failed`, e));
    } catch (e) {
      this.#log.error(`duet: ${name} threw`, e);
    }
  }

  #lost(ev) {
    this.#stopLiveness();
    this.#ws = null;
    this.#token = '';
    if (this.#closed) return;
    this.#state.set('disconnected');
    this.#lostAt ||= Date.now();
    this.#log.info?.(`duet: relay connection lost (${this.#base}, code ${ev.code}${ev.reason ? ', ' + ev.reason : ''}); reconnecting${this.#bases.length > 1 ? ' to the next relay' : ''}`);
    this.#reconnectLoop();
  }

  async #reconnectLoop() {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      for (let attempt = 0; !this.#closed; attempt++) {
        // With other relays to try, the first round goes at once (a jitter
        // spreads a lost node's clients); then the backoff.
        const wait = this.#immediate ? 0 : this.#bases.length > 1 && attempt === 0 ? Math.floor(Math.random() * FAILOVER_JITTER_MS) : backoff(attempt);
        this.#immediate = false;
        await new Promise((resolve) => {
          this.#sleep = { timer: setTimeout(resolve, wait), resolve };
        });
        this.#sleep = null;
        if (this.#closed) return;
        try {
          await this.#dialAny(true);
          return;
        } catch (e) {
          if (this.#closed) return;
          this.#state.set('disconnected');
          this.#log.warn(`duet: relay reconnect attempt ${attempt + 1} failed: ${e.message}`);
          this.#callback('onError', e);
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  // The relay's clock minus this machine's, from the ready frame's time
  // (taken halfway between auth and ready).
  #noteSkew(relayMs, sent, received) {
    if (!Number.isFinite(relayMs) || relayMs <= 0 || !sent) return;
    // `|| 0`: Math.round gives -0 for a skew in (-0.5, 0], which is not
    // JSON (a CDP evaluation reports it unserializable, as null).
    this.#skewMs = Math.round(relayMs - (sent + received) / 2) || 0;
    if (Math.abs(this.#skewMs) > SKEW_WARN_MS) {
      this.#log.warn(`duet: this machine's clock is ${Math.round(this.#skewMs / 1000)} s off the relay's (relay minus local); signaling refuses envelopes more than 60 s off: set the clock`);
    }
  }

  /**
   * The relay's clock minus this machine's in milliseconds, measured when
   * the connection was last authenticated (0 before). Signaling refuses
   * envelopes more than 60 s off: show the user a warning well before.
   * @returns {number}
   */
  get clockSkewMs() {
    return this.#skewMs;
  }

  #startLiveness(ws) {
    this.#stopLiveness();
    const l = { ws, deadline: 0, lastPing: Date.now(), lastTick: Date.now(), timer: 0 };
    l.timer = setInterval(() => this.#tick(l), live.watchMs);
    this.#live = l;
  }

  #stopLiveness() {
    if (this.#live) clearInterval(this.#live.timer);
    this.#live = null;
  }

  #tick(l) {
    if (this.#live !== l) return;
    const now = Date.now();
    // Timers do not run while the machine sleeps: a long gap is a wake
    // (unless the page is hidden, where Chromium throttles timers to one a
    // minute; there the ping deadline finds a dead connection).
    const gap = now - l.lastTick - live.watchMs;
    l.lastTick = now;
    if (gap > live.wakeGapMs && globalThis.document?.visibilityState !== 'hidden') {
      this.#reconnectNow(`woke from sleep (${Math.round(gap / 1000)} s)`);
      return;
    }
    if (l.deadline && now >= l.deadline) {
      this.#reconnectNow('the relay did not answer a ping');
      return;
    }
    if (!l.deadline && now - l.lastPing >= live.pingIntervalMs) this.#ping(live.pingTimeoutMs);
  }

  // Sends a liveness ping that must be answered within timeoutMs (an
  // earlier, later deadline is shortened).
  #ping(timeoutMs) {
    const l = this.#live;
    if (!l) return;
    const now = Date.now();
    l.lastPing = now;
    l.deadline = l.deadline ? Math.min(l.deadline, now + timeoutMs) : now + timeoutMs;
    try {
      l.ws.send('{"type":"ping"}');
    } catch { /* the deadline finds it dead */ }
    if (timeoutMs < live.watchMs) {
      setTimeout(() => this.#tick(l), timeoutMs + 1);
    }
  }

  // Drops the current connection (or the backoff wait) and dials again at
  // once.
  #reconnectNow(why) {
    if (this.#closed) return;
    this.#immediate = true;
    const ws = this.#ws;
    if (ws) {
      this.#log.info?.(`duet: relay connection is dead: ${why}; reconnecting`);
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close(4000, 'dead connection');
      } catch { /* already closing */ }
      this.#lost({ code: 4000, reason: why });
    } else if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
    }
  }

  // Network and page events (browsers only): online → reconnect at once;
  // offline, a network change, the page shown again → a quick ping.
  #watchNetwork() {
    if (this.#netListeners) return;
    const quick = () => {
      if (this.#live) this.#ping(live.netCheckMs);
      else this.#reconnectNow('the network changed');
    };
    const ls = [];
    const on = (target, ev, fn) => {
      if (typeof target?.addEventListener !== 'function') return;
      target.addEventListener(ev, fn);
      ls.push([target, ev, fn]);
    };
    on(globalThis, 'online', () => this.#reconnectNow('the browser is online again'));
    on(globalThis, 'offline', quick);
    on(globalThis.navigator?.connection, 'change', quick);
    on(globalThis.document, 'visibilitychange', () => {
      if (globalThis.document.visibilityState === 'visible') quick();
    });
    this.#netListeners = ls;
  }

  #waitConnected(ms) {
    return new Promise((resolve, reject) => {
      let sub = null;
      const timer = setTimeout(() => {
        sub?.unsubscribe();
        reject(notConnected());
      }, ms);
      sub = this.#state.subscribe((s) => {
        if (s === 'connected' || s === 'closed') {
          clearTimeout(timer);
          queueMicrotask(() => sub?.unsubscribe());
          if (s === 'connected') resolve();
          else reject(closedErr());
        }
      });
    });
  }

  async #bearer() {
    if (this.#closed) throw closedErr();
    if (this.#token && Date.now() < this.#tokenRenew) return this.#token;
    if (this.#state.value === 'connected' && this.#ws) {
      // The token is about to expire: reconnecting gets a fresh one.
      const ws = this.#ws;
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(4000, 'refreshing the token');
      this.#lost({ code: 4000, reason: 'refreshing the token' });
    } else if (this.#state.value !== 'connecting' && !this.#reconnecting) {
      throw notConnected();
    }
    await this.#waitConnected(AUTH_TIMEOUT_MS + BACKOFF_MAX_MS);
    return this.#token;
  }

  async #authed(path) {
    return httpJSON(this.#fetch, 'GET', this.#base + path, { token: await this.#bearer() });
  }

  /**
   * Sends one envelope; its `from` is set to this alias. Throws
   * ErrNotConnected while the connection is down, ErrEnvelope for an invalid
   * or oversized envelope.
   * @param {import('./duet').Envelope} envelope
   */
  send(envelope) {
    if (this.#closed) throw closedErr();
    const ws = this.#ws;
    if (!ws || this.#state.value !== 'connected' || ws.readyState !== 1) throw notConnected();
    const text = encodeEnvelope({ ...envelope, from: this.#alias });
    const n = utf8(text).length;
    if (n > MAX_ENVELOPE_SIZE) throw new DuetError('ErrEnvelope', `invalid envelope: ${n} bytes exceeds the relay's ${MAX_ENVELOPE_SIZE}-byte frame limit`);
    if (envelope.id) {
      this.#sent.delete(envelope.id);
      this.#sent.set(envelope.id, text);
      if (this.#sent.size > BUSY_KEEP) this.#sent.delete(this.#sent.keys().next().value);
    }
    ws.send(text);
  }

  /**
   * A recipient_busy notice (§9.2): the envelope is sent once more after
   * BUSY_RETRY_MS; only a second refusal reaches onUndeliverable. Returns
   * whether it will be resent.
   */
  #resendBusy(n) {
    const text = this.#sent.get(n.id);
    if (!text) return false;
    this.#sent.set(n.id, null);
    this.#log.debug?.(`duet: ${n.to} is busy; sending ${n.id} again`);
    setTimeout(() => {
      const ws = this.#ws;
      if (!this.#closed && ws && ws.readyState === 1) {
        ws.send(text);
        return;
      }
      this.#calls?.handleUndeliverable(n);
      this.#callback('onUndeliverable', n);
    }, BUSY_RETRY_MS);
    return true;
  }

  /**
   * The signaling session with peer, from its pinned keys (peerKeys). All
   * sessions of this client share one nonce cache.
   * @param {string} peer
   * @returns {Promise<Session>}
   */
  session(peer) {
    return this.#peerSession(peer).then((p) => p.session);
  }

  /**
   * The signaling session with peer and the pinned public keys it was made
   * from (the call module needs the peer's signing key for media keys).
   * With fresh, peer's keys are fetched from the relay and checked against
   * the pin first (rejecting with ErrKeyChanged when they changed), and the
   * held session is kept only while its keys are those; without, a held
   * session is returned as it is.
   * @param {string} peer
   * @param {{fresh?: boolean}} [opts]
   * @returns {Promise<{session: Session, keys: import('./duet').PublicKeys}>}
   */
  sessionWithKeys(peer, { fresh = false } = {}) {
    return fresh ? this.#freshSession(peer) : this.#peerSession(peer);
  }

  /**
   * The signaling session held for peer, with its keys, while those are
   * still the pinned ones; else null. Asks the relay nothing: a caller
   * seals its offer with it at once and checks the fresh keys after.
   * @param {string} peer
   * @returns {Promise<{session: Session, keys: import('./duet').PublicKeys} | null>}
   */
  async heldSession(peer) {
    // The last session made, never a lookup in flight: a key check still
    // pending (a hung relay) does not hold the next call's offer.
    const h = this.#held.get(peer);
    if (!h) return null;
    const pinned = await this.#pins.pinned(peer).catch(() => null);
    if (!pinned || !equalBytes(pinned.signing, h.keys.signing) || !equalBytes(pinned.agreement, h.keys.agreement)) return null;
    return h;
  }

  #peerSession(peer) {
    const h = this.#held.get(peer);
    if (h) return Promise.resolve(h); // not a lookup in flight
    return this.#sessions.get(peer) ?? this.#freshSession(peer);
  }

  #freshSession(peer) {
    const s = this.peerKeys(peer).then(async (keys) => {
      const h = this.#held.get(peer);
      if (h && equalBytes(h.keys.signing, keys.signing) && equalBytes(h.keys.agreement, keys.agreement)) return h;
      return { session: await Session.between(this.#identity, keys, { replay: this.#replay }), keys };
    });
    this.#sessions.set(peer, s);
    s.then((h) => {
      if (this.#sessions.get(peer) === s) this.#held.set(peer, h);
    }, (e) => {
      if (this.#sessions.get(peer) !== s) return;
      this.#sessions.delete(peer);
      // A lookup that failed for a network or relay reason says nothing
      // against the session held before it, which stays (if it was good);
      // a changed key drops it.
      const held = this.#held.get(peer);
      if (e?.name === 'ErrKeyChanged') this.#held.delete(peer);
      else if (held) this.#sessions.set(peer, Promise.resolve(held));
    });
    return s;
  }

  /**
   * Starts the call module (the seed's client.initCalls): afterwards
   * client.calls places and answers calls, and every call_* envelope goes
   * to it instead of onEnvelope. signingPrivKey and signingPubKey must be
   * this client's identity's signing key pair (compared by value: the keys
   * of another deriveIdentity of the same mnemonic are accepted),
   * myAliasId its alias; alwaysRelay, when given, a boolean
   * (ErrInvalidOption); workerUrl, when given, the URL of the E2EE worker's
   * script (a string or URL, resolved against the page's address;
   * ErrInvalidOption when it is neither or does not parse), for an app
   * that serves the worker elsewhere than beside the SDK's module. Calling
   * it again returns the existing module when the options it gives agree
   * with the first call's, and throws ErrCallsStarted when alwaysRelay,
   * workerUrl or logger differ (a module's options never change).
   * @param {import('./duet').InitCallsOptions} opts
   * @returns {CallModule}
   */
  initCalls(opts = {}) {
    if (this.#closed) throw closedErr();
    const { signingPrivKey, signingPubKey, myAliasId, alwaysRelay, workerUrl, logger } = opts ?? {};
    const own = this.#identity.signingKey;
    if (signingPrivKey !== undefined && signingPrivKey !== own.privateKey) {
      const pub = publicKeyOf(signingPrivKey);
      if (!pub || !equalBytes(pub, own.publicKey)) {
        throw new DuetError('ErrIdentityKey', `initCalls: signingPrivKey is not the signing key of this client's identity (pass identity.signingKey.privateKey${pub ? '' : ' of an identity from deriveIdentity or createIdentity'})`);
      }
    }
    if (signingPubKey !== undefined && !equalBytes(signingPubKey, own.publicKey)) {
      throw new DuetError('ErrIdentityKey', 'initCalls: signingPubKey is not the public signing key of this client\'s identity (pass identity.signingKey.publicKey)');
    }
    if (alwaysRelay !== undefined && typeof alwaysRelay !== 'boolean') {
      throw new DuetError('ErrInvalidOption', `initCalls: alwaysRelay must be true or false, not ${typeof alwaysRelay} ${String(alwaysRelay).slice(0, 16)}`);
    }
    let worker;
    if (workerUrl !== undefined) {
      if (typeof workerUrl !== 'string' && !(workerUrl instanceof URL)) {
        throw new DuetError('ErrInvalidOption', `initCalls: workerUrl must be a string or a URL, not ${typeof workerUrl}`);
      }
      try {
        worker = new URL(workerUrl, globalThis.location?.href).href;
      } catch {
        throw new DuetError('ErrInvalidOption', `initCalls: workerUrl "${String(workerUrl).slice(0, 64)}" is not a URL (give the E2EE worker script's address, absolute or relative to the page)`);
      }
    }
    if (myAliasId !== undefined) {
      if (!validAlias(myAliasId)) throw new DuetError('ErrInvalidAlias', `initCalls: myAliasId "${String(myAliasId).slice(0, 32)}" is not an alias`);
      if (this.#alias && myAliasId !== this.#alias) throw new DuetError('ErrInvalidAlias', `initCalls: myAliasId ${myAliasId} is not this client's alias ${this.#alias}`);
    }
    if (this.#calls) {
      const c = this.#calls;
      const relayDiffers = alwaysRelay !== undefined && alwaysRelay !== c.alwaysRelay;
      const workerDiffers = worker !== undefined && worker !== c.workerUrl;
      const loggerDiffers = logger !== undefined && logger !== this.#callsLogger;
      if (relayDiffers || workerDiffers || loggerDiffers) {
        const which = relayDiffers ? `alwaysRelay: ${c.alwaysRelay}` : workerDiffers ? `workerUrl: ${c.workerUrl}` : 'another logger';
        throw new DuetError('ErrCallsStarted', `initCalls: the call module was already started with ${which}; its options cannot change (use client.calls, or a new DuetClient)`);
      }
      return c;
    }
    if (myAliasId !== undefined) this.#alias = myAliasId;
    this.#callsLogger = logger ?? this.#log;
    this.#calls = new CallModule(this, { alwaysRelay: alwaysRelay === true, workerUrl: worker, logger: this.#callsLogger });
    return this.#calls;
  }

  /** @returns {CallModule|null} the call module, after initCalls */
  get calls() {
    return this.#calls;
  }

  /**
   * Seals message (whose `from` is set to this alias) for message.to and
   * sends it, with an optional client id the relay echoes in notices.
   * @param {import('./duet').OutgoingMessage} message
   * @param {{id?: string}} [opts]
   * @returns {Promise<import('./duet').Envelope>} the envelope sent
   */
  async sendMessage(message, opts = {}) {
    const session = await this.session(message.to);
    const env = await session.seal({ ...message, from: this.#alias });
    if (opts.id) env.id = opts.id;
    this.send(env);
    return env;
  }

  /**
   * Opens an envelope from a peer (Session.open with the sender's session).
   * @param {import('./duet').Envelope} envelope
   * @returns {Promise<import('./duet').Message>}
   */
  async open(envelope) {
    if (envelope?.to !== this.#alias) {
      throw new DuetError('ErrRouteMismatch', `envelope addressed to ${envelope?.to}, not to ${this.#alias}`);
    }
    return (await this.session(envelope.from)).open(envelope);
  }

  async #fetchKeys(peer) {
    if (!validAlias(peer)) throw new DuetError('ErrInvalidAlias', `"${String(peer).slice(0, 32)}" is not an alias (u followed by 8 digits)`);
    let r;
    try {
      r = await this.#authed(`/api/v1/keys/${peer}`);
    } catch (e) {
      e.message = `fetching the keys of ${peer}: ${e.message}`;
      throw e;
    }
    if (r?.alias !== peer) throw new DuetError('ErrRelay', `the relay answered keys of "${String(r?.alias).slice(0, 32)}" for ${peer}`);
    let signing;
    let agreement;
    try {
      signing = fromBase64(r.ed25519, 32);
      agreement = fromBase64(r.x25519, 32);
    } catch (e) {
      throw new DuetError('ErrInvalidPublicKey', `the relay sent invalid keys for ${peer}: ${e.message}`);
    }
    return checkPublicKeys(signing, agreement);
  }

  /**
   * The public keys of peer from the relay, checked against the pin store
   * (pinned on first use). A key that differs from the pinned one rejects
   * with ErrKeyChanged.
   * @param {string} peer
   * @returns {Promise<import('./duet').PublicKeys>}
   */
  async peerKeys(peer) {
    const keys = await this.#fetchKeys(peer);
    await this.#pins.check(peer, keys);
    return keys;
  }

  /**
   * Fetches peer's current keys and pins them, replacing an earlier pin. Call
   * it only after the users compared the new safety number out of band.
   * @param {string} peer
   * @returns {Promise<import('./duet').PublicKeys>}
   */
  async acceptKey(peer) {
    const keys = await this.#fetchKeys(peer);
    await this.#pins.accept(peer, keys);
    this.#sessions.delete(peer);
    this.#held.delete(peer);
    return keys;
  }

  /**
   * The safety number between this user and peer, from peer's pinned keys;
   * null when peer has no pin yet.
   * @param {string} peer
   * @returns {Promise<string|null>}
   */
  async safetyNumber(peer) {
    const keys = await this.#pins.pinned(peer);
    return keys ? safetyNumber(this.#identity, keys) : null;
  }

  /**
   * The relay's ICE configuration (§9.4), cached for its ttl less a margin
   * (a tenth, at most a minute) so that a new call never gets credentials
   * about to expire. Concurrent calls share one request. The cache holds
   * while the client stays on one relay node: after a failover the
   * surviving node's configuration (its TURN) is fetched.
   * @returns {Promise<import('./duet').ICEConfig>}
   */
  iceConfig() {
    if (this.#ice && iceNow() < this.#iceExp && this.#iceBase === this.#base) return Promise.resolve(this.#ice);
    this.#iceInflight ??= (async () => {
      try {
        const cfg = await this.#authed('/api/v1/calls/ice-config');
        if (cfg?.ice_transport_policy !== 'all' && cfg?.ice_transport_policy !== 'relay') {
          throw new DuetError('ErrRelay', `the relay sent ice_transport_policy "${String(cfg?.ice_transport_policy).slice(0, 16)}" (want all or relay)`);
        }
        if (!Number.isInteger(cfg.ttl) || cfg.ttl < 0 || !Array.isArray(cfg.ice_servers)) {
          throw new DuetError('ErrRelay', 'the relay sent an ICE config without an integer ttl and an ice_servers array');
        }
        const ttl = cfg.ttl * 1000;
        this.#ice = cfg;
        this.#iceExp = iceNow() + ttl - Math.min(ttl / 10, 60_000);
        this.#iceBase = this.#base;
        return cfg;
      } finally {
        this.#iceInflight = null;
      }
    })();
    return this.#iceInflight;
  }

  /** Closes the connection and stops reconnecting. */
  close() {
    if (this.#closed) return;
    this.#calls?.close();
    this.#closed = true;
    this.#stopLiveness();
    for (const [target, ev, fn] of this.#netListeners ?? []) target.removeEventListener(ev, fn);
    this.#netListeners = null;
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
    }
    const ws = this.#ws;
    this.#ws = null;
    this.#token = '';
    if (ws) ws.close(1000, 'client closing');
    this.#state.set('closed');
    this.#state.close();
  }
}

// rtcConfiguration lives with the peer connection (call-pc.js); exported
// here as before.
export { rtcConfiguration } from './call-pc.js';
