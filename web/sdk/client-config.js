// The relay client's configuration: the liveness timings of
// docs/PROTOCOL.md §9.2, the deadline of its HTTP requests, and the clock
// of its ICE config cache. Constants only: nothing here can be changed at
// run time (the objects are frozen). The SDK's own tests serve a test
// version of this module at its URL (web/sdktest/sdk/), as Go's tests add
// export_test.go to a package; the shipped SDK has no test hook.

/**
 * Liveness of the relay connection (docs/PROTOCOL.md §9.2): a
 * {"type":"ping"} frame after PING_INTERVAL_MS without one, and no pong
 * within PING_TIMEOUT_MS means the connection is dead (its network went
 * away without a close): the client reconnects at once. It also reconnects
 * at once on the browser's `online` event and after a wake from sleep, and
 * checks the connection with a quick ping (NET_CHECK_TIMEOUT_MS) on
 * `offline`, a network-type change and when the page becomes visible.
 */
export const PING_INTERVAL_MS = 15_000;
export const PING_TIMEOUT_MS = 10_000;
export const NET_CHECK_TIMEOUT_MS = 3_000;

/**
 * The liveness timings in ms, read at each use: besides the three above,
 * how often the ping deadline and the clock are checked (watchMs), and the
 * clock gap taken for a wake from sleep (wakeGapMs: timers stop while the
 * machine sleeps).
 */
export const LIVENESS = Object.freeze({
  pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS, netCheckMs: NET_CHECK_TIMEOUT_MS,
  watchMs: 1_000, wakeGapMs: 5_000,
});

/**
 * The deadline of every HTTP request to the relay (registration, key
 * lookups, the ICE config), as the Go SDK's key lookup (call's
 * keysTimeout) and handshake (authTimeout) bounds: a relay that does not
 * answer fails the request with ErrTimeout instead of hanging it.
 */
export const HTTP_TIMEOUT_MS = 10_000;

/**
 * The clock of the ICE config cache (ms since the epoch).
 * @returns {number}
 */
export function iceNow() {
  return Date.now();
}
