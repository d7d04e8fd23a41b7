// Test version of the SDK's call-config.js: the web tests' servers serve
// it at /sdk/call-config.js (the shipped module stays at
// /sdk/call-config.js?shipped), as Go's tests add export_test.go to a
// package. It exports what the shipped module does, with a timing table
// the tests may shorten and call ids they may choose, plus the controls
// below. Never packed nor served by the relay.

import * as shipped from './call-config.js?shipped';

export { ANSWER_TIMEOUT_MS, DISCONNECTED_TIMEOUT_MS, MEDIA_TIMEOUT_MS, GUM_TIMEOUT_MS, DIAG_INTERVAL_MS } from './call-config.js?shipped';

/** The call module's timings, at the shipped values until setTimings. */
export const T = { ...shipped.T };

let next = '';

export function newCallID() {
  if (next) {
    const id = next;
    next = '';
    return id;
  }
  return shipped.newCallID();
}

/** Shortens (or lengthens) timings of this page's call modules; returns the table. */
export function setTimings(t) {
  for (const [k, v] of Object.entries(t ?? {})) {
    if (!(k in T)) throw new TypeError(`unknown timing ${k}`);
    if (!(Number.isFinite(v) && v > 0)) throw new TypeError(`timing ${k} must be a positive number of ms`);
    T[k] = v;
  }
  return { ...T };
}

/** The timing table now. */
export function timings() {
  return { ...T };
}

/** The next call() of this page uses call id id (glare tests choose which call wins). */
export function nextCallID(id) {
  next = String(id);
}
