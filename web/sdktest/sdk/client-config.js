// Test version of the SDK's client-config.js: the web tests' servers serve
// it at /sdk/client-config.js (the shipped module stays at
// /sdk/client-config.js?shipped), as Go's tests add export_test.go to a
// package. It exports what the shipped module does, with liveness timings,
// an HTTP deadline and an ICE cache clock the tests may change through the
// controls below. Never packed nor served by the relay.

import * as shipped from './client-config.js?shipped';

export { PING_INTERVAL_MS, PING_TIMEOUT_MS, NET_CHECK_TIMEOUT_MS } from './client-config.js?shipped';

/** The liveness timings, at the shipped values until setLiveness. */
export const LIVENESS = { ...shipped.LIVENESS };

export let HTTP_TIMEOUT_MS = shipped.HTTP_TIMEOUT_MS;

let skew = 0;

/** The ICE cache's clock: Date.now() moved ahead by setICEClockSkew. */
export function iceNow() {
  return Date.now() + skew;
}

/** Overrides liveness timings ({pingIntervalMs, pingTimeoutMs, netCheckMs, watchMs, wakeGapMs}); {} restores them. */
export function setLiveness(t) {
  Object.assign(LIVENESS, shipped.LIVENESS, t ?? {});
}

/** Moves the ICE config cache's clock ms ahead of Date.now() (0 restores it). */
export function setICEClockSkew(ms) {
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError('setICEClockSkew: ms must be a non-negative number');
  skew = ms;
}

/** Sets the deadline of the client's HTTP requests (0 restores the shipped one); returns it. */
export function setHTTPTimeout(ms) {
  HTTP_TIMEOUT_MS = ms > 0 ? ms : shipped.HTTP_TIMEOUT_MS;
  return HTTP_TIMEOUT_MS;
}
