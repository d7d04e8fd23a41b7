// BIP39 English mnemonics (docs/PROTOCOL.md §1.1), matching the Go SDK's
// identity package: the same normalisation, the same checks in the same
// order and the same error categories.

import { english } from './wordlist.js';
import { DuetError, randomBytes, utf8 } from './util.js';
import { digest, subtleCrypto } from './primitives.js';

/** Words in a new mnemonic unless 24 is asked for. */
export const DEFAULT_WORDS = 12;

const BITS_PER_WORD = 11;
const BIP39_ROUNDS = 2048;

const wordIndex = new Map(english.map((w, i) => [w, i]));

// Unicode White_Space, as Go's unicode.IsSpace (which differs from JS's \s:
// it includes U+0085 and excludes U+FEFF).
const WHITE_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

/** The BIP39 English word list (2048 words). */
export { english as wordList };

function asciiLower(s) {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function words(m) {
  if (typeof m !== 'string') throw new TypeError(`a mnemonic is a string, got ${typeof m}`);
  return m.split(WHITE_SPACE).filter((w) => w !== '').map(asciiLower);
}

/**
 * Returns m lower-cased (ASCII letters only) with runs of white space
 * collapsed to one space and no leading or trailing space. It does not
 * validate.
 * @param {string} m
 * @returns {string}
 */
export function normalizeMnemonic(m) {
  return words(m).join(' ');
}

function truncate(s, n) {
  return s.length <= n ? s : s.slice(0, n) + '...';
}

/**
 * Checks the normalised words and returns the entropy. Errors, checked in
 * this order: ErrUnknownWord (with `position`, 1-based, and `word`),
 * ErrWordCount, ErrChecksum.
 * @param {string[]} ws
 * @returns {Promise<Uint8Array>}
 */
async function decode(ws) {
  const idx = [];
  for (let i = 0; i < ws.length; i++) {
    const j = wordIndex.get(ws[i]);
    if (j === undefined) {
      throw new DuetError('ErrUnknownWord',
        `word ${i + 1} "${truncate(ws[i], 32)}" is not in the BIP39 English word list`,
        { position: i + 1, word: ws[i] });
    }
    idx.push(j);
  }
  if (ws.length !== 12 && ws.length !== 24) {
    throw new DuetError('ErrWordCount',
      `mnemonic has ${ws.length === 1 ? '1 word' : ws.length + ' words'}; want 12 or 24`,
      { count: ws.length });
  }
  const buf = new Uint8Array(Math.ceil((ws.length * BITS_PER_WORD) / 8));
  idx.forEach((j, i) => {
    for (let k = 0; k < BITS_PER_WORD; k++) {
      if ((j >> (BITS_PER_WORD - 1 - k)) & 1) {
        const b = i * BITS_PER_WORD + k;
        buf[b >> 3] |= 0x80 >> (b & 7);
      }
    }
  });
  const entLen = (ws.length * 4) / 3; // 16 or 32 bytes
  const csBits = entLen / 4; // 4 or 8
  const entropy = buf.slice(0, entLen);
  const sum = await digest('SHA-256', entropy);
  if (buf[entLen] >> (8 - csBits) !== sum[0] >> (8 - csBits)) {
    throw new DuetError('ErrChecksum', 'mnemonic checksum does not match (a word is wrong or the order is changed)');
  }
  return entropy;
}

/**
 * Validates m (after normalizeMnemonic) as a 12- or 24-word BIP39 English
 * mnemonic. It rejects with a DuetError named ErrUnknownWord (the first
 * unknown word, with `position` and `word`), ErrWordCount or ErrChecksum,
 * checked in that order, as the Go SDK does.
 * @param {string} m
 * @returns {Promise<void>}
 */
export async function validateMnemonic(m) {
  await decode(words(m));
}

/**
 * Returns the entropy (16 or 32 bytes) of a valid mnemonic.
 * @param {string} m
 * @returns {Promise<Uint8Array>}
 */
export function mnemonicToEntropy(m) {
  return decode(words(m));
}

/**
 * Encodes 16 bytes (12 words) or 32 bytes (24 words) of entropy as a
 * mnemonic. Other sizes reject with ErrEntropySize.
 * @param {Uint8Array} entropy
 * @returns {Promise<string>}
 */
export async function entropyToMnemonic(entropy) {
  if (!(entropy instanceof Uint8Array) || (entropy.length !== 16 && entropy.length !== 32)) {
    throw new DuetError('ErrEntropySize',
      `mnemonic entropy is ${entropy?.length} bytes; want 16 (12 words) or 32 (24 words)`);
  }
  const sum = await digest('SHA-256', entropy);
  const buf = new Uint8Array(entropy.length + 1);
  buf.set(entropy);
  buf[entropy.length] = sum[0];
  const n = (entropy.length * 8 + entropy.length / 4) / BITS_PER_WORD;
  const out = [];
  for (let i = 0; i < n; i++) {
    let idx = 0;
    for (let b = i * BITS_PER_WORD; b < (i + 1) * BITS_PER_WORD; b++) {
      idx = (idx << 1) | ((buf[b >> 3] >> (7 - (b & 7))) & 1);
    }
    out.push(english[idx]);
  }
  return out.join(' ');
}

/**
 * Returns a fresh mnemonic of 12 words (128 bits of entropy; the default) or
 * 24 words (256 bits) from crypto.getRandomValues. Other counts reject with
 * ErrWordCount.
 * @param {12|24} [count]
 * @returns {Promise<string>}
 */
export async function generateMnemonic(count = DEFAULT_WORDS) {
  if (count !== 12 && count !== 24) {
    throw new DuetError('ErrWordCount', `cannot make a ${count}-word mnemonic; use 12 or 24 words`);
  }
  return entropyToMnemonic(randomBytes((count * 4) / 3));
}

/**
 * Validates m and returns its 64-byte BIP39 seed with the empty passphrase:
 * PBKDF2-HMAC-SHA512(normalizeMnemonic(m), "mnemonic", 2048, 64). (NFKD is
 * the identity on a valid English mnemonic, which is ASCII.)
 * @param {string} m
 * @returns {Promise<Uint8Array>}
 */
export async function mnemonicToSeed(m) {
  const ws = words(m);
  await decode(ws);
  const s = subtleCrypto();
  const key = await s.importKey('raw', utf8(ws.join(' ').normalize('NFKD')), 'PBKDF2', false, ['deriveBits']);
  const bits = await s.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-512', salt: utf8('mnemonic'), iterations: BIP39_ROUNDS }, key, 512);
  return new Uint8Array(bits);
}
