// duet browser SDK: end-to-end-encrypted 1:1 calls over a duet relay.
// Plain ES modules on WebCrypto, no dependencies, no build step. The wire
// formats are docs/PROTOCOL.md; every module interoperates byte for byte with
// the Go SDK (identity, wire, e2ee, client). TypeScript declarations:
// duet.d.ts.
//
//   import { createIdentity, DuetClient, saveIdentity } from '/sdk/duet.js';
//
// Worker code (an RTCRtpScriptTransform) should import './frame.js' directly:
// it needs no DOM.

export { DuetError, toHex, fromHex, toBase64, fromBase64 } from './util.js';
export {
  DEFAULT_WORDS, wordList, normalizeMnemonic, validateMnemonic, mnemonicToEntropy,
  entropyToMnemonic, generateMnemonic, mnemonicToSeed,
} from './bip39.js';
export {
  PKCS8_ED25519_PREFIX, PKCS8_X25519_PREFIX, pkcs8Ed25519, pkcs8X25519, hkdf,
  importEd25519Seed, importX25519Private, generateX25519, x25519,
} from './primitives.js';
export {
  INFO_SIGNING_KEY, INFO_AGREEMENT_KEY, SAFETY_NUMBER_LABEL, PUBLIC_KEY_SIZE, identitySeeds,
  deriveIdentity, createIdentity, publicKeys, safetyNumber, validAlias, checkPublicKeys,
  loadIdentity, saveIdentity, deleteIdentity,
} from './identity.js';
export { MAX_JSON_SIZE, MAX_JSON_DEPTH, parseJSON, canonicalJSON, canonicalize } from './canonical.js';
export {
  CRYPTO_V2, SESSION_KEY_INFO, NONCE_SIZE, IV_SIZE, EPK_SIZE, TIMESTAMP_WINDOW_MS, NONCE_WINDOW_MS,
  DEFAULT_REPLAY_CAPACITY, MAX_ENVELOPE_SIZE, MAX_PAYLOAD_SIZE, CALL_TYPES, REASONS, validID,
  validateEnvelope, decodeEnvelope, encodeEnvelope, sessionTranscript, sessionKey, NonceCache,
  normalizeICE, isVideoOffer, messageToInner, Session, dropReason,
} from './signal.js';
export {
  MEDIA_INFO_PREFIX, OVERHEAD, REPLAY_WINDOW, MAX_FRAMES_PER_KEY, MAX_BYTES_PER_KEY, REKEY_FRAMES,
  REKEY_BYTES, REKEY_GRACE_MS, deriveMediaKeys, clearHeaderLen, FrameEncryptor, FrameDecryptor,
} from './frame.js';
export { HotValue } from './observable.js';
export {
  REGISTER_CONTEXT, REGISTER_POW_CONTEXT, MAX_REGISTER_POW_BITS, WS_AUTH_CONTEXT, backoff, relayBaseURL, relayList, register, PinStore, DuetClient,
  rtcConfiguration,
} from './client.js';
export {
  CallModule, CALL_STATES, CALL_ENDINGS, ANSWER_TIMEOUT_MS, DISCONNECTED_TIMEOUT_MS, MEDIA_TIMEOUT_MS, GUM_TIMEOUT_MS,
  DIAG_INTERVAL_MS, MAX_VIDEO_BITRATE, VIDEO_CONSTRAINTS, DEGRADATION_PREFERENCE, mLines, e2eeSupport,
} from './calls.js';
