// The call module's configuration: the lifecycle constants of
// docs/PROTOCOL.md §6, the timing table every timer of the call module
// reads (T), and how call ids are made. Constants only: nothing here can be
// changed at run time (the objects are frozen). The SDK's own tests serve
// a test version of this module at its URL (web/sdktest/sdk/), as Go's
// tests add export_test.go to a package; the shipped SDK has no test hook.

/** Lifecycle constants (docs/PROTOCOL.md §6); not configurable. */
export const ANSWER_TIMEOUT_MS = 15_000;
export const DISCONNECTED_TIMEOUT_MS = 8_000;
export const MEDIA_TIMEOUT_MS = 15_000;
export const GUM_TIMEOUT_MS = 6_000;
export const DIAG_INTERVAL_MS = 2_000;

/** The call module's timings in ms, read at each use. */
export const T = Object.freeze({
  answer: ANSWER_TIMEOUT_MS,
  ring: ANSWER_TIMEOUT_MS + 5_000, // a callee whose caller's hangup was lost stops ringing
  disconnected: DISCONNECTED_TIMEOUT_MS,
  media: MEDIA_TIMEOUT_MS,
  mediaCheck: 1_000,
  diag: DIAG_INTERVAL_MS,
  gum: GUM_TIMEOUT_MS,
  restartDelay: 2_000, // caller: ICE restart this long after disconnected
  restartWait: 10_000, // the bound of an ICE restart
  rekeyRetry: 10_000,
  rekeySwitch: 2_000,
  // caller: the first wait before an offer the relay refused for a passing
  // reason (recipient_busy, unavailable) goes again; it doubles per refusal
  // up to 8 s while the answer timer runs (PROTOCOL §10.8)
  offerRetry: 1_000,
});

/**
 * A new call id: 16 random bytes, base64url (22 characters).
 * @returns {string}
 */
export function newCallID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
