// @ts-check
// Byte helpers and the SDK's error type. No DOM: this module also runs in
// workers.

/**
 * The error every SDK function throws for a protocol or input failure. Its
 * `name` is the Go SDK's sentinel name (for example `ErrDecrypt`,
 * `ErrWordCount`, `ErrKeyChanged`), so callers branch on `err.name`; the
 * message says what failed and, where it helps, what to do. Extra fields
 * (such as `position` and `word` for `ErrUnknownWord`) are documented where
 * they are thrown.
 */
export class DuetError extends Error {
  /**
   * @param {string} name the error name, e.g. 'ErrDecrypt'
   * @param {string} message human-readable text
   * @param {object} [details] extra fields copied onto the error
   */
  constructor(name, message, details) {
    super(message);
    this.name = name;
    if (details) Object.assign(this, details);
  }
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** @param {string} s @returns {Uint8Array} the UTF-8 bytes of s */
export function utf8(s) {
  return encoder.encode(s);
}

/**
 * The length of s in UTF-8 bytes (as TextEncoder encodes it: a lone
 * surrogate counts as U+FFFD), without encoding it: the wire's length
 * limits count bytes, as the Go SDK's len() does, not UTF-16 code units.
 * @param {string} s
 * @returns {number}
 */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Decodes UTF-8 strictly: invalid sequences throw a TypeError.
 * @param {BufferSource} b
 * @returns {string}
 */
export function fromUTF8(b) {
  return strictDecoder.decode(b);
}

/**
 * Returns b as a Uint8Array view (no copy for a Uint8Array).
 * @param {BufferSource} b
 * @returns {Uint8Array}
 */
export function bytes(b) {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw new TypeError('expected a Uint8Array, ArrayBuffer or typed array');
}

/** @param {...Uint8Array} parts @returns {Uint8Array} the concatenation */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Compares a and b lexicographically as unsigned bytes.
 * @param {Uint8Array} a @param {Uint8Array} b
 * @returns {number} negative, 0 or positive
 */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** @param {Uint8Array} a @param {Uint8Array} b @returns {boolean} */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** @param {Uint8Array} b @returns {boolean} whether every byte is zero */
export function isZero(b) {
  let d = 0;
  for (let i = 0; i < b.length; i++) d |= b[i];
  return d === 0;
}

/** @param {number} n @returns {Uint8Array} n cryptographically random bytes */
export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

const HEX = '0123456789abcdef';

/** @param {Uint8Array} b @returns {string} lower-case hex */
export function toHex(b) {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i] >> 4] + HEX[b[i] & 15];
  return s;
}

/** @param {string} s hex, either case, even length @returns {Uint8Array} */
export function fromHex(s) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError(`invalid hex string (${typeof s === 'string' ? s.length + ' characters' : typeof s})`);
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64INDEX = (() => {
  const t = new Int16Array(128).fill(-1);
  for (let i = 0; i < 64; i++) t[B64.charCodeAt(i)] = i;
  return t;
})();

/**
 * Encodes b as standard base64 with padding (RFC 4648 §4).
 * @param {Uint8Array} b
 * @returns {string}
 */
export function toBase64(b) {
  let s = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i + 1 === b.length) {
    const n = b[i] << 16;
    s += B64[n >> 18] + B64[(n >> 12) & 63] + '==';
  } else if (i + 2 === b.length) {
    const n = (b[i] << 16) | (b[i + 1] << 8);
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + '=';
  }
  return s;
}

/** @param {number} n @returns {number} the base64 length of n bytes */
export function base64Len(n) {
  return 4 * Math.ceil(n / 3);
}

/**
 * Decodes standard, padded base64 strictly, as the Go SDK does: only the
 * alphabet, correct padding, no line breaks, zero padding bits. With size ≥ 0
 * the result must be exactly size bytes. Failures throw a TypeError whose
 * message says what is wrong; callers wrap it in their own error.
 * @param {string} s
 * @param {number} [size]
 * @returns {Uint8Array}
 */
export function fromBase64(s, size = -1) {
  if (typeof s !== 'string') throw new TypeError(`want a base64 string, got ${typeof s}`);
  if (size >= 0 && s.length !== base64Len(size)) {
    throw new TypeError(`want base64 of ${size} bytes (${base64Len(size)} characters), got ${s.length} characters`);
  }
  if (s.length % 4 !== 0) throw new TypeError(`base64 length ${s.length} is not a multiple of 4`);
  let pad = 0;
  if (s.endsWith('==')) pad = 2;
  else if (s.endsWith('=')) pad = 1;
  const body = s.length - pad;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < body; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64INDEX[c] : -1;
    if (v < 0) throw new TypeError(`invalid base64 character at index ${i}`);
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw new TypeError('base64 has non-zero padding bits');
  // 65 bytes encode to as many characters as 64.
  if (size >= 0 && out.length !== size) throw new TypeError(`want base64 of ${size} bytes, got ${out.length} bytes`);
  return out;
}
