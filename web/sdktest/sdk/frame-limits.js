// Test version of the SDK's frame-limits.js: the web tests' servers serve
// it at /sdk/frame-limits.js (the shipped module stays at
// /sdk/frame-limits.js?shipped), in the page and in the E2EE worker, as
// Go's tests shorten the e2ee package's limits through an unexported
// field. It exports what the shipped module does, with limits the tests
// may shrink so that the 80 % and 100 % paths run without 2^24
// encryptions. Never packed nor served by the relay.
//
// In a worker it also takes {type: 'test-rekey-after', frames: n}: the key
// in use signals rekey-needed after n more frames, as it would at 80 % of
// its budget. The budget is that key's (its epoch's): a key that replaces
// it has the whole budget.

import * as shipped from './frame-limits.js?shipped';

export { MAX_FRAMES_PER_KEY, MAX_BYTES_PER_KEY, REKEY_FRAMES, REKEY_BYTES } from './frame-limits.js?shipped';

const defaults = shipped.keyLimits(0);
let limits = defaults;
const asked = new Map(); // epoch → frames its key was asked limits for (one per frame encrypted)
let lastEpoch = -1;
let budget = null; // {epoch, rekeyFrames}: one key's budget from test-rekey-after

export function keyLimits(epoch) {
  const n = (asked.get(epoch) ?? 0) + 1;
  asked.set(epoch, n);
  lastEpoch = epoch;
  if (budget && budget.epoch === epoch) return { ...limits, rekeyFrames: budget.rekeyFrames };
  return limits;
}

/** Every key's limits from now on: the shipped ones overridden by lim ({} restores them). */
export function setLimits(lim) {
  limits = { ...defaults, ...lim };
}

/** The key that encrypted last signals rekey-needed after n more frames. */
export function rekeyAfter(n) {
  budget = { epoch: lastEpoch, rekeyFrames: (asked.get(lastEpoch) ?? 0) + n };
}

if (typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope) {
  globalThis.addEventListener('message', (ev) => {
    if (ev.data?.type === 'test-rekey-after') rekeyAfter(ev.data.frames);
  });
}
