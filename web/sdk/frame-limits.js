// The usage limits of a media frame key (docs/PROTOCOL.md §5.4): how many
// frames and body bytes one key may encrypt, and the 80 % at which the
// encryptor asks for a rekey. Constants only (frozen): no caller can raise
// a limit (past 2^32 frames the counter's 32-bit sequence field would
// wrap: AES-GCM nonce reuse). The SDK's own tests serve a test version of
// this module at its URL (web/sdktest/sdk/), as Go's tests add
// export_test.go to a package; the shipped SDK has no test hook.

/** Frames one key may encrypt. */
export const MAX_FRAMES_PER_KEY = 2 ** 24;
/** Body bytes one key may encrypt (16 GiB). */
export const MAX_BYTES_PER_KEY = 16 * 2 ** 30;
/** Usage at which rekey-needed is signalled (80 %, rounded down). */
export const REKEY_FRAMES = Math.floor((MAX_FRAMES_PER_KEY * 8) / 10); // 13 421 772
export const REKEY_BYTES = Math.floor((MAX_BYTES_PER_KEY * 8) / 10); // 13 743 895 347

const LIMITS = Object.freeze({
  maxFrames: MAX_FRAMES_PER_KEY, maxBytes: MAX_BYTES_PER_KEY,
  rekeyFrames: REKEY_FRAMES, rekeyBytes: REKEY_BYTES,
});

/**
 * The limits of the key of epoch, asked before each frame it encrypts: the
 * same for every key.
 * @param {number} epoch
 * @returns {{maxFrames: number, maxBytes: number, rekeyFrames: number, rekeyBytes: number}}
 */
export function keyLimits(epoch) {
  return LIMITS;
}
