// WebCrypto primitives shared by the SDK modules: HKDF-SHA256, Ed25519,
// X25519 and their PKCS8 imports from 32-byte seeds (docs/PROTOCOL.md §1.2),
// SHA digests. No DOM: this module also runs in workers.

import { DuetError, bytes, concat, fromHex, isZero } from './util.js';

const subtle = globalThis.crypto?.subtle;

function needSubtle() {
  if (!subtle) {
    throw new DuetError('ErrUnsupported',
      'WebCrypto (crypto.subtle) is not available: duet needs a secure context (https or localhost) in a browser with Ed25519 and X25519 (Chromium 137 or newer)');
  }
  return subtle;
}

/** PKCS8 prefix of an Ed25519 private key seed (RFC 8410). */
export const PKCS8_ED25519_PREFIX = fromHex('302e020100300506032b657004220420');
/** PKCS8 prefix of an X25519 private key (RFC 8410). */
export const PKCS8_X25519_PREFIX = fromHex('302e020100300506032b656e04220420');

/**
 * HKDF-SHA256 (RFC 5869).
 * @param {BufferSource} ikm input key material
 * @param {BufferSource} salt may be empty
 * @param {string|BufferSource} info ASCII string or bytes
 * @param {number} length output bytes
 * @returns {Promise<Uint8Array>}
 */
export async function hkdf(ikm, salt, info, length) {
  const s = needSubtle();
  const key = await s.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const infoBytes = typeof info === 'string' ? new TextEncoder().encode(info) : info;
  const bits = await s.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: infoBytes }, key, length * 8);
  return new Uint8Array(bits);
}

/**
 * @param {'SHA-256'|'SHA-512'} alg
 * @param {BufferSource} data
 * @returns {Promise<Uint8Array>}
 */
export async function digest(alg, data) {
  return new Uint8Array(await needSubtle().digest(alg, data));
}

/** @param {Uint8Array} seed 32 bytes @returns {Uint8Array} the PKCS8 encoding */
export function pkcs8Ed25519(seed) {
  checkLen(seed, 32, 'Ed25519 seed');
  return concat(PKCS8_ED25519_PREFIX, seed);
}

/** @param {Uint8Array} priv 32 bytes @returns {Uint8Array} the PKCS8 encoding */
export function pkcs8X25519(priv) {
  checkLen(priv, 32, 'X25519 private key');
  return concat(PKCS8_X25519_PREFIX, priv);
}

function checkLen(b, n, what) {
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw new DuetError('ErrKey', `${what} must be a Uint8Array of ${n} bytes, got ${b instanceof Uint8Array ? b.length + ' bytes' : typeof b}`);
  }
}

function b64url(s) {
  const std = s.replace(/-/g, '+').replace(/_/g, '/');
  const padded = std + '='.repeat((4 - (std.length % 4)) % 4);
  const bin = atob(padded);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Imports a private key from its PKCS8 form and reads its public key. The
 * returned private key is not extractable.
 * @param {'Ed25519'|'X25519'} alg
 * @param {Uint8Array} pkcs8
 * @param {KeyUsage[]} usages
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>}
 */
async function importPrivate(alg, pkcs8, usages) {
  const s = needSubtle();
  let jwk;
  try {
    // Extractable only long enough to read the public key (JWK "x").
    const tmp = await s.importKey('pkcs8', pkcs8, { name: alg }, true, usages);
    jwk = await s.exportKey('jwk', tmp);
  } catch (e) {
    throw new DuetError('ErrUnsupported', `importing an ${alg} key into WebCrypto failed (${e.name}: ${e.message}); duet needs ${alg} in WebCrypto (Chromium 137 or newer)`);
  }
  const privateKey = await s.importKey('jwk', jwk, { name: alg }, false, usages);
  const publicKey = b64url(jwk.x);
  publicOf.set(privateKey, publicKey.slice());
  return { privateKey, publicKey };
}

// The public key of every private key importPrivate made: a private key is
// not extractable, so this is how two of them are compared by value (the
// keys of two deriveIdentity calls of one mnemonic are equal).
const publicOf = new WeakMap();

/**
 * The public key of a private key this SDK imported (deriveIdentity,
 * createIdentity), or undefined for any other value.
 * @param {unknown} privateKey
 * @returns {Uint8Array|undefined}
 */
export function publicKeyOf(privateKey) {
  const k = privateKey && typeof privateKey === 'object' ? publicOf.get(privateKey) : undefined;
  return k?.slice();
}

/**
 * Imports an Ed25519 private key from its 32-byte RFC 8032 seed.
 * @param {Uint8Array} seed
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>}
 */
export function importEd25519Seed(seed) {
  return importPrivate('Ed25519', pkcs8Ed25519(seed), ['sign']);
}

/**
 * Imports an X25519 private key from its 32 bytes (RFC 7748 scalar before
 * clamping).
 * @param {Uint8Array} priv
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>}
 */
export function importX25519Private(priv) {
  return importPrivate('X25519', pkcs8X25519(priv), ['deriveBits']);
}

/**
 * Generates a fresh X25519 key pair (an ephemeral key for media, §5.1).
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>}
 */
export async function generateX25519() {
  const s = needSubtle();
  const kp = await s.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  const publicKey = new Uint8Array(await s.exportKey('raw', kp.publicKey));
  return { privateKey: kp.privateKey, publicKey };
}

/**
 * X25519(priv, peer): the 32-byte shared secret. An all-zero result (a
 * low-order peer key) throws DuetError `ErrPeerKey`.
 * @param {CryptoKey} privateKey
 * @param {Uint8Array} peerPublic 32 bytes
 * @returns {Promise<Uint8Array>}
 */
export async function x25519(privateKey, peerPublic) {
  const s = needSubtle();
  checkLen(bytes(peerPublic), 32, 'X25519 public key');
  const pub = await s.importKey('raw', peerPublic, { name: 'X25519' }, true, []);
  let shared;
  try {
    shared = new Uint8Array(await s.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
  } catch (e) {
    // WebCrypto refuses an all-zero result with an OperationError.
    throw new DuetError('ErrPeerKey', `X25519 with the peer's key failed (${e.name}: ${e.message}); the key is of low order or broken`);
  }
  if (isZero(shared)) throw new DuetError('ErrPeerKey', 'X25519 gave an all-zero shared secret (low-order peer key)');
  return shared;
}

/**
 * Signs data with an Ed25519 private key.
 * @param {CryptoKey} privateKey
 * @param {BufferSource} data
 * @returns {Promise<Uint8Array>} 64 bytes
 */
export async function ed25519Sign(privateKey, data) {
  return new Uint8Array(await needSubtle().sign({ name: 'Ed25519' }, privateKey, data));
}

/**
 * Imports a 32-byte Ed25519 public key for verification.
 * @param {Uint8Array} publicKey
 * @returns {Promise<CryptoKey>}
 */
export async function importEd25519Public(publicKey) {
  checkLen(publicKey, 32, 'Ed25519 public key');
  return needSubtle().importKey('raw', publicKey, { name: 'Ed25519' }, true, ['verify']);
}

/**
 * Verifies an Ed25519 signature.
 * @param {CryptoKey} publicKey from importEd25519Public
 * @param {Uint8Array} sig
 * @param {BufferSource} data
 * @returns {Promise<boolean>}
 */
export async function ed25519Verify(publicKey, sig, data) {
  return needSubtle().verify({ name: 'Ed25519' }, publicKey, sig, data);
}

/**
 * Imports a raw AES-256-GCM key, not extractable.
 * @param {Uint8Array} key 32 bytes
 * @returns {Promise<CryptoKey>}
 */
export async function importAESGCM(key) {
  checkLen(key, 32, 'AES-256 key');
  if (isZero(key)) throw new DuetError('ErrKey', 'all-zero AES key: derive the key first');
  return needSubtle().importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/** @returns {SubtleCrypto} crypto.subtle, or a DuetError if missing */
export function subtleCrypto() {
  return needSubtle();
}
