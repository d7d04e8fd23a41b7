// RFC 8785 (JCS) canonical JSON restricted to the subset of
// docs/PROTOCOL.md §4.2, matching the Go SDK's wire.Canonicalize: integers
// only (±(2^53−1), no fraction, exponent, leading zero or -0), no duplicate
// keys (JSON.parse silently keeps the last one, so this module has its own
// strict parser), valid UTF-8 and no lone surrogates, at most 64 KiB of text
// and 32 levels of nesting. No DOM: this module also runs in workers.

import { DuetError, fromUTF8, utf8 } from './util.js';

/** Largest JSON text the parser accepts, in UTF-8 bytes. */
export const MAX_JSON_SIZE = 65_536; // 64 KiB
/** Deepest nesting of objects and arrays. */
export const MAX_JSON_DEPTH = 32;

function invalid(msg) {
  return new DuetError('ErrInvalidJSON', `invalid JSON for canonicalization: ${msg}`);
}

function truncate(s, n) {
  return s.length <= n ? s : s.slice(0, n) + '...';
}

/**
 * Parses JSON text strictly under the §4.2 rules and returns plain JS values
 * (objects, arrays, strings, safe integers, booleans, null). A Uint8Array is
 * decoded as strict UTF-8. Failures throw DuetError ErrInvalidJSON naming
 * the problem and its position (in UTF-16 code units of the text).
 * @param {string|Uint8Array} input
 * @returns {import('./duet').JSONValue}
 */
export function parseJSON(input) {
  let text;
  if (typeof input === 'string') {
    if (!input.isWellFormed()) throw invalid('lone surrogate in the text');
    const n = utf8(input).length;
    if (n > MAX_JSON_SIZE) throw invalid(`${n} bytes exceeds the ${MAX_JSON_SIZE}-byte limit`);
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.length > MAX_JSON_SIZE) throw invalid(`${input.length} bytes exceeds the ${MAX_JSON_SIZE}-byte limit`);
    try {
      text = fromUTF8(input);
    } catch {
      throw invalid('invalid UTF-8');
    }
  } else {
    throw new TypeError(`parseJSON wants a string or a Uint8Array, got ${typeof input}`);
  }
  const p = new Parser(text);
  p.ws();
  const v = p.value();
  p.ws();
  if (p.pos !== text.length) throw p.err('trailing data after the JSON value');
  return v;
}

class Parser {
  constructor(s) {
    this.s = s;
    this.pos = 0;
    this.depth = 0;
  }

  err(msg) {
    return invalid(`${msg} at character ${this.pos}`);
  }

  ws() {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  value() {
    const s = this.s;
    if (this.pos >= s.length) throw this.err('unexpected end of input');
    const c = s[this.pos];
    switch (c) {
      case '{': return this.object();
      case '[': return this.array();
      case '"': return this.string();
      case 't': return this.literal('true', true);
      case 'f': return this.literal('false', false);
      case 'n': return this.literal('null', null);
    }
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    throw this.err(`unexpected character ${JSON.stringify(c)}`);
  }

  literal(lit, v) {
    if (!this.s.startsWith(lit, this.pos)) throw this.err(`invalid literal (want ${lit})`);
    this.pos += lit.length;
    return v;
  }

  enter() {
    if (++this.depth > MAX_JSON_DEPTH) throw this.err(`nesting deeper than ${MAX_JSON_DEPTH} levels`);
  }

  object() {
    this.enter();
    this.pos++; // {
    this.ws();
    const obj = {};
    const seen = new Set();
    if (this.s[this.pos] === '}') {
      this.pos++;
      this.depth--;
      return obj;
    }
    for (;;) {
      if (this.s[this.pos] !== '"') throw this.err('expected a string object key');
      const k = this.string();
      if (seen.has(k)) throw this.err(`duplicate object key ${JSON.stringify(truncate(k, 32))}`);
      seen.add(k);
      this.ws();
      if (this.s[this.pos] !== ':') throw this.err("expected ':' after object key");
      this.pos++;
      this.ws();
      // defineProperty, so that a key such as "__proto__" is an own property.
      Object.defineProperty(obj, k, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.ws();
      const c = this.s[this.pos];
      if (c === ',') {
        this.pos++;
        this.ws();
        continue;
      }
      if (c === '}') {
        this.pos++;
        break;
      }
      throw this.err("expected ',' or '}' in object");
    }
    this.depth--;
    return obj;
  }

  array() {
    this.enter();
    this.pos++; // [
    this.ws();
    const arr = [];
    if (this.s[this.pos] === ']') {
      this.pos++;
      this.depth--;
      return arr;
    }
    for (;;) {
      arr.push(this.value());
      this.ws();
      const c = this.s[this.pos];
      if (c === ',') {
        this.pos++;
        this.ws();
        continue;
      }
      if (c === ']') {
        this.pos++;
        break;
      }
      throw this.err("expected ',' or ']' in array");
    }
    this.depth--;
    return arr;
  }

  number() {
    const s = this.s;
    const start = this.pos;
    const neg = s[this.pos] === '-';
    if (neg) this.pos++;
    const isDigit = (i) => i < s.length && s[i] >= '0' && s[i] <= '9';
    if (!isDigit(this.pos)) throw this.err('expected a digit');
    if (s[this.pos] === '0') {
      this.pos++;
      if (isDigit(this.pos)) throw this.err('number with a leading zero');
    } else {
      let digits = 0;
      while (isDigit(this.pos)) {
        if (++digits > 16) throw this.err(`integer out of the range ±${Number.MAX_SAFE_INTEGER}`);
        this.pos++;
      }
    }
    const c = s[this.pos];
    if (c === '.') throw this.err('number with a fraction (only integers are allowed)');
    if (c === 'e' || c === 'E') throw this.err('number with an exponent (only plain integers are allowed)');
    const n = Number(s.slice(start, this.pos));
    if (!Number.isSafeInteger(n)) throw this.err(`integer out of the range ±${Number.MAX_SAFE_INTEGER}`);
    if (Object.is(n, -0)) throw this.err('-0 is not allowed');
    return n;
  }

  string() {
    const s = this.s;
    this.pos++; // opening quote
    let out = '';
    let start = this.pos;
    for (;;) {
      if (this.pos >= s.length) throw this.err('unterminated string');
      const c = s.charCodeAt(this.pos);
      if (c === 0x22) {
        out += s.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c === 0x5c) {
        out += s.slice(start, this.pos);
        out += this.escape();
        start = this.pos;
        continue;
      }
      if (c < 0x20) throw this.err(`unescaped control character U+${c.toString(16).padStart(4, '0').toUpperCase()} in string`);
      this.pos++;
    }
  }

  escape() {
    const s = this.s;
    this.pos++; // backslash
    if (this.pos >= s.length) throw this.err('unterminated escape');
    const e = s[this.pos++];
    switch (e) {
      case '"': case '\\': case '/': return e;
      case 'b': return '\b';
      case 'f': return '\f';
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'u': {
        const r = this.hex4();
        if (r >= 0xd800 && r <= 0xdfff) {
          if (r >= 0xdc00) throw this.err(`lone low surrogate \\u${r.toString(16).padStart(4, '0')}`);
          if (s[this.pos] !== '\\' || s[this.pos + 1] !== 'u') throw this.err(`lone high surrogate \\u${r.toString(16).padStart(4, '0')}`);
          this.pos += 2;
          const lo = this.hex4();
          if (lo < 0xdc00 || lo > 0xdfff) throw this.err(`high surrogate \\u${r.toString(16).padStart(4, '0')} not followed by a low surrogate`);
          return String.fromCharCode(r, lo);
        }
        return String.fromCharCode(r);
      }
    }
    throw this.err(`invalid escape \\${e}`);
  }

  hex4() {
    const h = this.s.slice(this.pos, this.pos + 4);
    if (h.length < 4) throw this.err('truncated \\u escape');
    if (!/^[0-9a-fA-F]{4}$/.test(h)) throw this.err(`invalid hex digits "${h}" in \\u escape`);
    this.pos += 4;
    return parseInt(h, 16);
  }
}

const ESC = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function quote(s) {
  if (!s.isWellFormed()) throw invalid('lone surrogate in a string');
  // eslint-disable-next-line no-control-regex
  return '"' + s.replace(/["\\\u0000-\u001f]/g, (c) =>
    ESC[c] ?? '\\u00' + c.charCodeAt(0).toString(16).padStart(2, '0')) + '"';
}

function ser(v, depth) {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isInteger(v)) throw invalid(`number ${v} is not an integer (only integers are allowed)`);
      if (!Number.isSafeInteger(v)) throw invalid(`integer ${v} out of the range ±${Number.MAX_SAFE_INTEGER}`);
      if (Object.is(v, -0)) throw invalid('-0 is not allowed');
      return String(v);
    case 'string':
      return quote(v);
    case 'object': {
      if (depth >= MAX_JSON_DEPTH) throw invalid(`nesting deeper than ${MAX_JSON_DEPTH} levels (or a cycle)`);
      if (Array.isArray(v)) return '[' + v.map((x) => ser(x, depth + 1)).join(',') + ']';
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw invalid(`cannot encode a ${v.constructor?.name ?? 'non-plain object'} (encode bytes as base64 strings first)`);
      }
      // Array.prototype.sort compares strings by UTF-16 code units, which is
      // RFC 8785's order.
      const keys = Object.keys(v).sort();
      return '{' + keys.map((k) => {
        if (v[k] === undefined) throw invalid(`member ${JSON.stringify(truncate(k, 32))} is undefined (leave it out or use null)`);
        return quote(k) + ':' + ser(v[k], depth + 1);
      }).join(',') + '}';
    }
  }
  throw invalid(`cannot encode a value of type ${typeof v}`);
}

/**
 * Returns the RFC 8785 canonical JSON text of a JS value (plain objects,
 * arrays, strings, safe integers, booleans, null). Anything else (a fraction,
 * -0, an unsafe integer, undefined, bytes, a lone surrogate) throws
 * ErrInvalidJSON. Encode it with TextEncoder for the bytes to sign.
 * @param {import('./duet').JSONValue} value
 * @returns {string}
 */
export function canonicalJSON(value) {
  return ser(value, 0);
}

/**
 * Parses JSON text strictly (parseJSON) and returns its canonical form.
 * @param {string|Uint8Array} input
 * @returns {string}
 */
export function canonicalize(input) {
  return canonicalJSON(parseJSON(input));
}
