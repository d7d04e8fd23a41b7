// Drives one DuetClient in one page for relay_test.go: register, connect,
// exchange sealed envelopes, relay notices, ICE config, key pinning and
// reconnects. Every function returns JSON-friendly values.

import * as duet from '/sdk/duet.js';
import * as clientConfig from '/sdk/client-config.js'; // the test version (sdktest/sdk/client-config.js)

let client;
let dbName;
const inbox = [];
const notices = [];
const states = [];
const waiters = [];
let iceRequests = 0;

function wake() {
  for (const w of waiters.splice(0)) w();
}

function waitFor(pred, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; states so far: ${states.join(' → ')}`)), ms);
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

let failKeyLookups = false;
const countingFetch = (url, init) => {
  if (String(url).endsWith('/api/v1/calls/ice-config')) iceRequests++;
  if (failKeyLookups && String(url).includes('/api/v1/keys/')) return Promise.reject(new TypeError('Failed to fetch'));
  return fetch(url, init);
};

/** Derives the identity, registers it, saves it, connects. Returns the alias. */
export async function setup(mnemonic, db) {
  dbName = db;
  const identity = await duet.deriveIdentity(mnemonic);
  const { alias } = await duet.register(location.origin, identity);
  await duet.saveIdentity({ mnemonic, aliasId: alias }, { dbName });
  const stored = await duet.loadIdentity({ dbName });
  client = new duet.DuetClient({
    relayUrl: location.origin,
    identity: await duet.deriveIdentity(stored.mnemonic),
    aliasId: stored.aliasId,
    pins: duet.PinStore.indexedDB({ dbName }),
    fetch: countingFetch,
  });
  client.observeState().subscribe((s) => {
    states.push(s);
    wake();
  });
  client.onEnvelope = async (env) => {
    try {
      inbox.push({ message: jsonable(await client.open(env)), id: env.id ?? '' });
    } catch (e) {
      inbox.push({ error: `${e.name}: ${e.message}` });
    }
    wake();
  };
  client.onUndeliverable = (n) => {
    notices.push({ kind: 'undeliverable', ...n });
    wake();
  };
  client.onRelayError = (n) => {
    notices.push({ kind: 'error', ...n });
    wake();
  };
  await client.connect();
  const again = await duet.register(location.origin, client.identity);
  if (again.alias !== alias || again.created) throw new Error(`registering again gave ${JSON.stringify(again)}, want ${alias} and created false`);
  return alias;
}

function jsonable(m) {
  const out = { ...m };
  if (m.epk) out.epk = duet.toBase64(m.epk);
  return out;
}

/** Seals message for message.to and sends it with id. */
export async function send(message, id) {
  const m = { ...message };
  if (m.epk === 'fresh') m.epk = (await duet.generateX25519()).publicKey;
  await client.sendMessage(m, { id });
  return true;
}

/** Sends an envelope of a type the relay refuses (unknown_type). */
export function sendUnknownType(to, id) {
  client.send({ type: 'chat', to, call_id: 'c1', crypto_v: 2, payload: 'AAAA', id });
  return true;
}

/** The next opened message (or open error), waiting up to ms. */
export function next(ms) {
  return waitFor(() => inbox.shift(), ms, 'an envelope');
}

/** The next relay notice, waiting up to ms. */
export function nextNotice(ms) {
  return waitFor(() => notices.shift(), ms, 'a relay notice');
}

/** Waits until the client has been connected n times in all. */
export function connectedCount(n, ms) {
  return waitFor(() => (states.filter((s) => s === 'connected').length >= n ? states.join(' → ') : undefined), ms, `connection number ${n}`);
}

export async function safety(peer) {
  return client.safetyNumber(peer);
}

/**
 * Moves the ICE cache's clock to skew ms ahead (the test client-config.js), fetches the ICE
 * config and reports whether it is the one of ice() and the request count.
 */
export async function iceAt(skew) {
  clientConfig.setICEClockSkew(skew);
  try {
    const cfg = await client.iceConfig();
    return { same: cfg === firstICE, requests: iceRequests };
  } finally {
    clientConfig.setICEClockSkew(0);
  }
}

let firstICE = null;

/** Fetches the ICE config twice and reports it with the request count. */
export async function ice() {
  const cfg = await client.iceConfig();
  const again = await client.iceConfig();
  firstICE = cfg;
  return { cfg, same: cfg === again, requests: iceRequests, rtc: duet.rtcConfiguration(cfg, { alwaysRelay: true }) };
}

/** Registers a fresh identity (never connected) and returns its alias. */
export async function registerOffline() {
  return (await duet.register(location.origin, await duet.createIdentity())).alias;
}

/**
 * Re-registers mnemonic's signing key with a new X25519 key, so that the
 * relay now publishes a changed key for that alias.
 */
export async function replaceAgreementKey(mnemonic) {
  const id = await duet.deriveIdentity(mnemonic);
  const x = await duet.generateX25519();
  return (await duet.register(location.origin, { ...id, agreementKey: x })).alias;
}

/**
 * A fresh key lookup of peer fails for a network reason: its error name,
 * and whether the session held for peer before it is the one returned
 * after it (key lookups still failing).
 */
export async function keyLookupFails(peer) {
  const held = (await client.sessionWithKeys(peer)).session;
  failKeyLookups = true;
  try {
    const error = await client.sessionWithKeys(peer, { fresh: true }).then(() => '', (e) => e.name);
    const after = await client.sessionWithKeys(peer).then((r) => r.session, () => null);
    return { error, kept: after === held };
  } finally {
    failKeyLookups = false;
  }
}

/** peerKeys, reporting the error name instead of throwing. */
export async function peerKeys(peer) {
  try {
    const k = await client.peerKeys(peer);
    return { ok: true, x25519: duet.toBase64(k.agreement) };
  } catch (e) {
    return { ok: false, error: e.name, message: e.message };
  }
}

export async function acceptKey(peer) {
  const k = await client.acceptKey(peer);
  return duet.toBase64(k.agreement);
}

export function state() {
  return client.state;
}

export function close() {
  client.close();
  return client.state;
}

/** Shortens the liveness timings (the test client-config.js). */
export function setLiveness(t) {
  clientConfig.setLiveness(t);
  return true;
}

/** Fires a window event (online, offline) as the browser would. */
export function fireWindowEvent(name) {
  globalThis.dispatchEvent(new Event(name));
  return true;
}

export function clockSkew() {
  return client.clockSkewMs;
}

/** How many relay notices arrived and were not taken yet. */
export function noticeCount() {
  return notices.length;
}

/**
 * Connects a second client of this page's identity and alias; returns
 * 'connected' or the error's name.
 */
export async function connectSecond() {
  const c = new duet.DuetClient({ relayUrl: location.origin, identity: client.identity, aliasId: client.aliasId, fetch: countingFetch });
  try {
    await c.connect();
    return 'connected';
  } catch (e) {
    return e.name;
  } finally {
    c.close();
  }
}

const stateTimes = []; // [state, ms] of setupNodes's client

/**
 * Registers with registerUrls (the first may be down) and connects with
 * relayUrl = urls (several relay nodes). Returns the alias.
 */
export async function setupNodes(mnemonic, registerUrls, urls) {
  const identity = await duet.deriveIdentity(mnemonic);
  const { alias } = await duet.register(registerUrls, identity);
  client = new duet.DuetClient({ relayUrl: urls, identity, aliasId: alias, pins: duet.PinStore.memory(), fetch: countingFetch });
  client.observeState().subscribe((s) => {
    states.push(s);
    stateTimes.push([s, performance.now()]);
    wake();
  });
  client.onEnvelope = async (env) => {
    try {
      inbox.push({ message: jsonable(await client.open(env)), id: env.id ?? '' });
    } catch (e) {
      inbox.push({ error: `${e.name}: ${e.message}` });
    }
    wake();
  };
  await client.connect();
  return alias;
}

/** The relay the client is connected to. */
export function relayUrl() {
  return client.relayUrl;
}

/** Milliseconds from the last connection's loss to the next connected. */
export function failoverMs() {
  let lost = -1;
  let ms = -1;
  for (const [s, t] of stateTimes) {
    if (s !== 'connected' && lost < 0) lost = t;
    if (s === 'connected' && lost >= 0) {
      ms = t - lost;
      lost = -1;
    }
  }
  return ms;
}
