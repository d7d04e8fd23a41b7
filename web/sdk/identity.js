// Identity: long-term keys from a BIP39 mnemonic (docs/PROTOCOL.md §1.2),
// public key checks, aliases (§1.3), safety numbers (§1.4) and the identity
// record in IndexedDB.

import { mnemonicToSeed, generateMnemonic, normalizeMnemonic, validateMnemonic } from './bip39.js';
import { hkdf, digest, importEd25519Seed, importX25519Private, x25519 } from './primitives.js';
import { DuetError, compareBytes, concat, utf8 } from './util.js';
import { DEFAULT_DB, STORE_IDENTITY, idbDelete, idbGet, idbPut } from './store.js';

/** HKDF info of the Ed25519 seed. */
export const INFO_SIGNING_KEY = 'duet/v1/identity/ed25519';
/** HKDF info of the X25519 private key. */
export const INFO_AGREEMENT_KEY = 'duet/v1/identity/x25519';
/** Domain-separation prefix of the safety number hash. */
export const SAFETY_NUMBER_LABEL = 'duet/v1/safety-number';
/** Size of both public keys. */
export const PUBLIC_KEY_SIZE = 32;

/**
 * The two 32-byte private keys derived from a BIP39 seed (§1.2):
 * HKDF-SHA256(ikm = seed, salt = empty, info, 32) for each info string.
 * @param {Uint8Array} bip39Seed 64 bytes
 * @returns {Promise<{ed25519Seed: Uint8Array, x25519Private: Uint8Array}>}
 */
export async function identitySeeds(bip39Seed) {
  const empty = new Uint8Array(0);
  const [ed25519Seed, x25519Private] = await Promise.all([
    hkdf(bip39Seed, empty, INFO_SIGNING_KEY, 32),
    hkdf(bip39Seed, empty, INFO_AGREEMENT_KEY, 32),
  ]);
  return { ed25519Seed, x25519Private };
}

/**
 * Validates a mnemonic and derives the identity from it. The same mnemonic
 * always gives the same keys, byte for byte the Go SDK's. Private keys are
 * non-extractable CryptoKeys; `mnemonic` is the normalised mnemonic (it is
 * the secret: show it once, store it only with saveIdentity).
 *
 * Invalid mnemonics reject with ErrUnknownWord, ErrWordCount or ErrChecksum.
 * @param {string} mnemonic
 * @returns {Promise<import('./duet').Identity>}
 */
export async function deriveIdentity(mnemonic) {
  const seed = await mnemonicToSeed(mnemonic);
  const { ed25519Seed, x25519Private } = await identitySeeds(seed);
  const [signingKey, agreementKey] = await Promise.all([
    importEd25519Seed(ed25519Seed),
    importX25519Private(x25519Private),
  ]);
  ed25519Seed.fill(0);
  x25519Private.fill(0);
  seed.fill(0);
  return Object.freeze({
    mnemonic: normalizeMnemonic(mnemonic),
    signingKey: Object.freeze(signingKey),
    agreementKey: Object.freeze(agreementKey),
  });
}

/**
 * Creates a new identity from a fresh mnemonic of 12 (default) or 24 words.
 * @param {12|24} [words]
 * @returns {Promise<import('./duet').Identity>}
 */
export async function createIdentity(words = 12) {
  return deriveIdentity(await generateMnemonic(words));
}

/**
 * The public keys of an identity.
 * @param {import('./duet').Identity} id
 * @returns {import('./duet').PublicKeys}
 */
export function publicKeys(id) {
  return { signing: id.signingKey.publicKey.slice(), agreement: id.agreementKey.publicKey.slice() };
}

function keysOf(x, which) {
  const k = x && x.signingKey ? publicKeys(x) : x;
  if (!k || !(k.signing instanceof Uint8Array) || !(k.agreement instanceof Uint8Array) ||
      k.signing.length !== PUBLIC_KEY_SIZE || k.agreement.length !== PUBLIC_KEY_SIZE) {
    throw new DuetError('ErrInvalidPublicKey', `${which}: want an Identity or {signing, agreement} with 32-byte Uint8Array keys`);
  }
  return k;
}

/**
 * The safety number of two parties (§1.4): 12 groups of 5 digits separated
 * by spaces (71 characters). Symmetric: safetyNumber(a, b) ===
 * safetyNumber(b, a). Each argument is an Identity or PublicKeys.
 * @param {import('./duet').Identity|import('./duet').PublicKeys} a
 * @param {import('./duet').Identity|import('./duet').PublicKeys} b
 * @returns {Promise<string>}
 */
export async function safetyNumber(a, b) {
  const ka = keysOf(a, 'safetyNumber first argument');
  const kb = keysOf(b, 'safetyNumber second argument');
  let ba = concat(ka.signing, ka.agreement);
  let bb = concat(kb.signing, kb.agreement);
  if (compareBytes(ba, bb) > 0) [ba, bb] = [bb, ba];
  const d = await digest('SHA-512', concat(utf8(SAFETY_NUMBER_LABEL), ba, bb));
  const groups = [];
  for (let i = 0; i < 12; i++) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 256 + d[5 * i + j]; // < 2^40: exact
    groups.push(String(v % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

/**
 * Reports whether s is an alias: "u" followed by exactly 8 ASCII digits.
 * @param {unknown} s
 * @returns {s is string}
 */
export function validAlias(s) {
  return typeof s === 'string' && /^u[0-9]{8}$/.test(s);
}

// Ed25519 point checks with BigInt, as identity.ParsePublicKeys does.
const P = (1n << 255n) - 19n;
function modpow(b, e, m) {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}
const D = (((-121665n * modpow(121666n, P - 2n, P)) % P) + P) % P;
// y of the points of order 8 (the others of small order have y 0, 1, p-1).
const Y8 = 0x7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7n;

/** @returns {string} '' for a good key, else what is wrong */
function checkEd25519Public(b) {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? b[i] & 0x7f : b[i]);
  const xSign = b[31] >> 7;
  if (y >= P) return 'is not canonically encoded';
  const y2 = (y * y) % P;
  const u = (y2 - 1n + P) % P;
  const v = (D * y2 + 1n) % P;
  if (u === 0n) {
    if (xSign === 1) return 'is not canonically encoded';
  } else {
    const x2 = (u * modpow(v, P - 2n, P)) % P;
    if (modpow(x2, (P - 1n) / 2n, P) !== 1n) return 'is not a point on the curve';
  }
  if (y === 0n || y === 1n || y === P - 1n || y === Y8 || y === P - Y8) return 'is a small-order point';
  return '';
}

let x25519Probe;
async function checkX25519Public(b) {
  // Any fixed scalar works: X25519 clamps it to a multiple of the cofactor,
  // which sends exactly the low-order points to the refused all-zero output.
  x25519Probe ??= importX25519Private(new Uint8Array(32).fill(0x5a));
  try {
    await x25519((await x25519Probe).privateKey, b);
  } catch (e) {
    if (e.name === 'ErrPeerKey') return 'is a low-order point';
    throw e;
  }
  return '';
}

/**
 * Checks and copies a peer's public keys as the Go SDK's
 * identity.ParsePublicKeys does: 32 bytes each; the Ed25519 key a canonical
 * encoding of a curve point not of small order; the X25519 key not of low
 * order. Failures reject with ErrInvalidPublicKey.
 * @param {Uint8Array} signing
 * @param {Uint8Array} agreement
 * @returns {Promise<import('./duet').PublicKeys>}
 */
export async function checkPublicKeys(signing, agreement) {
  for (const [k, what] of [[signing, 'Ed25519'], [agreement, 'X25519']]) {
    if (!(k instanceof Uint8Array) || k.length !== PUBLIC_KEY_SIZE) {
      throw new DuetError('ErrInvalidPublicKey',
        `${what} public key is ${k instanceof Uint8Array ? k.length + ' bytes' : 'not a Uint8Array'}; want ${PUBLIC_KEY_SIZE} bytes`);
    }
  }
  let reason = checkEd25519Public(signing);
  if (reason) throw new DuetError('ErrInvalidPublicKey', `Ed25519 public key ${reason}; the peer's key is broken or forged`);
  reason = await checkX25519Public(agreement);
  if (reason) throw new DuetError('ErrInvalidPublicKey', `X25519 public key ${reason}; the peer's key is broken or forged`);
  return { signing: signing.slice(), agreement: agreement.slice() };
}

const IDENTITY_KEY = 'self';

/**
 * Loads the stored identity record from IndexedDB: {mnemonic, aliasId}, or
 * null when none is stored. Derive the keys with deriveIdentity(mnemonic).
 * @param {{dbName?: string}} [opts]
 * @returns {Promise<{mnemonic: string, aliasId: string}|null>}
 */
export async function loadIdentity(opts = {}) {
  const rec = await idbGet(opts.dbName ?? DEFAULT_DB, STORE_IDENTITY, IDENTITY_KEY);
  if (rec === undefined) return null;
  if (!rec || rec.version !== 1 || typeof rec.mnemonic !== 'string' || !(rec.aliasId === '' || validAlias(rec.aliasId))) {
    throw new DuetError('ErrKeystoreCorrupt', 'the stored identity record is corrupt; restore the identity from its mnemonic');
  }
  return { mnemonic: rec.mnemonic, aliasId: rec.aliasId };
}

/**
 * Stores the identity record ({mnemonic, aliasId}) in IndexedDB, replacing
 * any earlier one. The mnemonic is validated and normalised; aliasId may be
 * empty (or absent) before registration.
 * @param {import('./duet').StoredIdentity} stored
 * @param {{dbName?: string}} [opts]
 * @returns {Promise<void>}
 */
export async function saveIdentity(stored, opts = {}) {
  const mnemonic = stored?.mnemonic;
  await validateMnemonic(mnemonic);
  const aliasId = stored.aliasId ?? '';
  if (aliasId !== '' && !validAlias(aliasId)) {
    throw new DuetError('ErrInvalidAlias', `aliasId "${String(aliasId).slice(0, 32)}" is not an alias (u followed by 8 digits)`);
  }
  await idbPut(opts.dbName ?? DEFAULT_DB, STORE_IDENTITY, IDENTITY_KEY,
    { version: 1, mnemonic: normalizeMnemonic(mnemonic), aliasId });
}

/**
 * Deletes the stored identity record (the keys are gone from this browser
 * unless the mnemonic was written down).
 * @param {{dbName?: string}} [opts]
 * @returns {Promise<void>}
 */
export function deleteIdentity(opts = {}) {
  return idbDelete(opts.dbName ?? DEFAULT_DB, STORE_IDENTITY, IDENTITY_KEY);
}
