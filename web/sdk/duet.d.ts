// TypeScript declarations of the duet browser SDK (duet.js and the modules
// it re-exports). Wire formats: docs/PROTOCOL.md.

// ------------------------------------------------------------------ errors

/**
 * Names of the SDK's errors. Most match a Go SDK sentinel of the same name
 * (identity, wire, e2ee, client, call packages); ErrRelayURL, ErrNetwork,
 * ErrTimeout, ErrE2EE, ErrStorage and ErrUnsupported are the browser's own.
 * ErrBusy is a busy callee (call(), as the Go call package's ErrBusy), and
 * also what connect() throws when it was already called.
 */
export type DuetErrorName =
  // identity / bip39
  | 'ErrWordCount' | 'ErrUnknownWord' | 'ErrChecksum' | 'ErrEntropySize'
  | 'ErrInvalidPublicKey' | 'ErrInvalidAlias' | 'ErrKeystoreCorrupt'
  // canonical JSON, envelopes and signaling (§4.4)
  | 'ErrInvalidJSON' | 'ErrEnvelope' | 'ErrCryptoVersion' | 'ErrMalformed' | 'ErrDecrypt'
  | 'ErrSignature' | 'ErrStale' | 'ErrFuture' | 'ErrReplay' | 'ErrReplayCacheFull'
  | 'ErrRouteMismatch' | 'ErrKey'
  // media frames (§5)
  | 'ErrCallID' | 'ErrIdentityKey' | 'ErrPeerKey' | 'ErrInvalidKey' | 'ErrEpochOrder'
  | 'ErrInvalidKind' | 'ErrEmptyFrame' | 'ErrKeyExhausted' | 'ErrShortFrame'
  | 'ErrUnknownEpoch' | 'ErrAuth' | 'ErrTooOld'
  // relay client (§9)
  | 'ErrRelay' | 'ErrRelayURL' | 'ErrNetwork' | 'ErrTimeout' | 'ErrUnauthorized'
  | 'ErrNotConnected' | 'ErrClosed' | 'ErrBusy' | 'ErrKeyChanged' | 'ErrTooManySessions'
  // calls
  | 'ErrInCall' | 'ErrNoIncomingCall' | 'ErrAlreadyAnswering' | 'ErrNoMedia' | 'ErrCallEnded'
  | 'ErrNoCall' | 'ErrNoVideo' | 'ErrRenegotiating' | 'ErrRenegotiationFailed'
  | 'ErrDeclined' | 'ErrNoAnswer' | 'ErrOffline' | 'ErrUnavailable' | 'ErrICEFailed' | 'ErrMediaTimeout' | 'ErrDisconnected'
  | 'ErrMediaSetup' | 'ErrE2EE' | 'TimeoutError' | 'NotSupportedError'
  | 'ErrInvalidOption' | 'ErrCallsStarted'
  // environment
  | 'ErrUnsupported' | 'ErrStorage';

/** Every SDK failure. Branch on `name`; `message` says what to do. */
export declare class DuetError extends Error {
  constructor(name: DuetErrorName | string, message: string, details?: object);
  name: DuetErrorName | string;
  /** ErrUnknownWord: 1-based position of the first unknown word. */
  position?: number;
  /** ErrWordCount: how many words were given. */
  count?: number;
  /** ErrUnknownWord: the word, normalised. */
  word?: string;
  /** ErrRelay: the HTTP status and the relay's error code. */
  status?: number;
  code?: string;
  /** ErrKeyChanged: the peer alias and the pinned and offered keys. */
  peer?: string;
  pinned?: PublicKeys;
  offered?: PublicKeys;
}

export declare function toHex(b: Uint8Array): string;
export declare function fromHex(s: string): Uint8Array;
/** Standard base64 with padding. */
export declare function toBase64(b: Uint8Array): string;
/** Strict standard base64; with size ≥ 0 the result must be size bytes. Throws TypeError. */
export declare function fromBase64(s: string, size?: number): Uint8Array;

// ------------------------------------------------------------------- BIP39

export declare const DEFAULT_WORDS: 12;
/** The BIP39 English word list. */
export declare const wordList: readonly string[];
/** Lower-cases ASCII letters and collapses white space; does not validate. */
export declare function normalizeMnemonic(m: string): string;
/** Rejects with ErrUnknownWord, ErrWordCount or ErrChecksum (in that order). */
export declare function validateMnemonic(m: string): Promise<void>;
export declare function mnemonicToEntropy(m: string): Promise<Uint8Array>;
/** 16 bytes → 12 words, 32 bytes → 24 words; other sizes: ErrEntropySize. */
export declare function entropyToMnemonic(entropy: Uint8Array): Promise<string>;
export declare function generateMnemonic(words?: 12 | 24): Promise<string>;
/** The 64-byte BIP39 seed (empty passphrase, PBKDF2-HMAC-SHA512, 2048 rounds). */
export declare function mnemonicToSeed(m: string): Promise<Uint8Array>;

// -------------------------------------------------------------- primitives

export declare const PKCS8_ED25519_PREFIX: Uint8Array;
export declare const PKCS8_X25519_PREFIX: Uint8Array;
export declare function pkcs8Ed25519(seed: Uint8Array): Uint8Array;
export declare function pkcs8X25519(priv: Uint8Array): Uint8Array;
/** HKDF-SHA256. */
export declare function hkdf(ikm: BufferSource, salt: BufferSource, info: string | BufferSource, length: number): Promise<Uint8Array>;
/** A key pair: a non-extractable private CryptoKey and the 32-byte public key. */
export interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array;
}
export declare function importEd25519Seed(seed: Uint8Array): Promise<KeyPair>;
export declare function importX25519Private(priv: Uint8Array): Promise<KeyPair>;
/** A fresh X25519 key pair (a media ephemeral key). */
export declare function generateX25519(): Promise<KeyPair>;
/** X25519 shared secret; an all-zero result rejects with ErrPeerKey. */
export declare function x25519(privateKey: CryptoKey, peerPublic: Uint8Array): Promise<Uint8Array>;

// ---------------------------------------------------------------- identity

export declare const INFO_SIGNING_KEY: 'duet/v1/identity/ed25519';
export declare const INFO_AGREEMENT_KEY: 'duet/v1/identity/x25519';
export declare const SAFETY_NUMBER_LABEL: 'duet/v1/safety-number';
export declare const PUBLIC_KEY_SIZE: 32;

/** A user's identity: the normalised mnemonic and the two key pairs. */
export interface Identity {
  readonly mnemonic: string;
  /** Ed25519: signs signaling and relay challenges. */
  readonly signingKey: KeyPair;
  /** X25519: the signaling session key. */
  readonly agreementKey: KeyPair;
}
/** A party's public keys, 32 bytes each. */
export interface PublicKeys {
  signing: Uint8Array;
  agreement: Uint8Array;
}
/** The identity record kept in IndexedDB. aliasId is '' before registration. */
export interface StoredIdentity {
  mnemonic: string;
  aliasId?: string;
}
export interface StoreOptions {
  /** IndexedDB database name; default 'duet'. */
  dbName?: string;
}

export declare function identitySeeds(bip39Seed: Uint8Array): Promise<{ ed25519Seed: Uint8Array; x25519Private: Uint8Array }>;
/** Derives the identity of a mnemonic (async: WebCrypto). */
export declare function deriveIdentity(mnemonic: string): Promise<Identity>;
export declare function createIdentity(words?: 12 | 24): Promise<Identity>;
export declare function publicKeys(id: Identity): PublicKeys;
/** 12 groups of 5 digits; symmetric. */
export declare function safetyNumber(a: Identity | PublicKeys, b: Identity | PublicKeys): Promise<string>;
/** "u" followed by 8 ASCII digits. */
export declare function validAlias(s: unknown): s is string;
/** Checks a peer's keys (curve points, not of small order); ErrInvalidPublicKey. */
export declare function checkPublicKeys(signing: Uint8Array, agreement: Uint8Array): Promise<PublicKeys>;
export declare function loadIdentity(opts?: StoreOptions): Promise<{ mnemonic: string; aliasId: string } | null>;
export declare function saveIdentity(stored: StoredIdentity, opts?: StoreOptions): Promise<void>;
export declare function deleteIdentity(opts?: StoreOptions): Promise<void>;

// ---------------------------------------------------------- canonical JSON

export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };
export declare const MAX_JSON_SIZE: number;
export declare const MAX_JSON_DEPTH: number;
/** Strict §4.2 parser; throws ErrInvalidJSON. */
export declare function parseJSON(input: string | Uint8Array): JSONValue;
/** RFC 8785 text of a value; throws ErrInvalidJSON. */
export declare function canonicalJSON(value: JSONValue): string;
export declare function canonicalize(input: string | Uint8Array): string;

// --------------------------------------------------------------- signaling

export declare const CRYPTO_V2: 2;
export declare const SESSION_KEY_INFO: 'duet/v2/signaling-key';
export declare const NONCE_SIZE: 16;
export declare const IV_SIZE: 12;
export declare const EPK_SIZE: 32;
export declare const TIMESTAMP_WINDOW_MS: 60000;
export declare const NONCE_WINDOW_MS: 300000;
export declare const DEFAULT_REPLAY_CAPACITY: 65536;
export declare const MAX_ENVELOPE_SIZE: 65536;
export declare const MAX_PAYLOAD_SIZE: 49152;

export type CallType = 'call_offer' | 'call_answer' | 'call_ice' | 'call_reject' | 'call_hangup' | 'call_rekey' | 'call_select' | 'call_media';
export type Reason = 'user_hangup' | 'declined' | 'busy' | 'no_answer' | 'ice_failed' | 'media_timeout' | 'disconnected' | 'error';
export declare const CALL_TYPES: readonly CallType[];
export declare const REASONS: readonly Reason[];

/** What the relay forwards (§2). */
export interface Envelope {
  type: string;
  to: string;
  from: string;
  call_id: string;
  crypto_v: number;
  /** base64(iv || AES-GCM ciphertext || tag) */
  payload: string;
  /** Client message id, echoed in relay notices. */
  id?: string;
}

export interface Route {
  from: string;
  to: string;
  call_id: string;
}
/** A canonical ICE candidate (§3.1). */
export interface ICECandidate {
  candidate: string;
  sdp_mid: string | null;
  sdp_mline: number | null;
}
/** A call message in the clear: route fields plus the type's fields (§3). */
export type Message = Route & (
  | { type: 'call_offer'; sdp: string; epk: Uint8Array; ice_restart?: boolean; renegotiate?: boolean }
  | { type: 'call_answer'; sdp: string; epk: Uint8Array }
  | ({ type: 'call_ice' } & (ICECandidate | { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }))
  | { type: 'call_reject'; reason: Reason }
  | { type: 'call_hangup'; reason: Reason }
  | { type: 'call_rekey'; epoch: number; epk: Uint8Array }
  | { type: 'call_select'; selected: string; outcome: 'answered' | 'declined' | 'busy' }
  /** The sender's media state (§10.9); screen is omitted when false. */
  | { type: 'call_media'; audio_muted: boolean; video_off: boolean; screen?: boolean }
) & {
  /** The sender's device id (1..64 of [A-Za-z0-9_-], §3, §10.4); absent from senders that do not tell their devices apart. */
  device?: string;
};
/** A message to send (DuetClient.sendMessage): `from` may be left out, the client sets it to its alias. */
export type OutgoingMessage = WithoutFrom<Message>;
type WithoutFrom<M> = M extends unknown ? Omit<M, 'from'> & { from?: string } : never;

export declare function validID(s: unknown): boolean;
/** Throws ErrEnvelope or ErrCryptoVersion. */
export declare function validateEnvelope(e: Envelope): void;
/** Strict decoding; throws ErrEnvelope or ErrCryptoVersion. */
export declare function decodeEnvelope(data: string | Uint8Array): Envelope;
export declare function encodeEnvelope(e: Envelope): string;
export declare function sessionTranscript(self: PublicKeys, peer: PublicKeys): Uint8Array;
/** The §4.1 session key; a low-order peer key rejects with ErrKey. */
export declare function sessionKey(self: Identity, peer: PublicKeys): Promise<Uint8Array>;
/** Inner payload (without seal fields) of an app message; throws ErrMalformed. */
export declare function messageToInner(m: Message): Record<string, JSONValue>;
/** Canonical ICE from either shape (or an RTCIceCandidate); throws ErrMalformed. */
export declare function normalizeICE(c: string | object): ICECandidate;
/** A line starting with "m=video ". */
export declare function isVideoOffer(sdp: string): boolean;
/** Drop-counter label of an open() error. */
export declare function dropReason(e: unknown): string;

/** The bounded nonce cache of §4.4; share one across a peer set. */
export declare class NonceCache {
  constructor(capacity?: number);
  readonly capacity: number;
  readonly size: number;
  seen(nonce: string, now: number): boolean;
  /** Throws ErrReplay or ErrReplayCacheFull. */
  add(nonce: string, ts: number, now: number): void;
}

export interface SessionOptions {
  identity: Identity;
  /** The peer's pinned Ed25519 public key. */
  peerSigningKey: Uint8Array;
  /** The session key from sessionKey(). */
  key: Uint8Array;
  replay?: NonceCache;
  /** Clock in Unix ms; default Date.now. */
  now?: () => number;
}
/** Seals to one peer and opens the peer's envelopes (§4.3, §4.4). */
export declare class Session {
  private constructor();
  static create(opts: SessionOptions): Promise<Session>;
  static between(identity: Identity, peer: PublicKeys, opts?: { replay?: NonceCache; now?: () => number }): Promise<Session>;
  seal(message: Message): Promise<Envelope>;
  /** Deterministic seal for test vectors only. */
  sealWith(message: Message, fixed: { ts: number; nonce: Uint8Array; iv: Uint8Array }): Promise<Envelope>;
  /**
   * Rejects with ErrCryptoVersion, ErrMalformed, ErrDecrypt, ErrSignature,
   * ErrStale, ErrFuture, ErrReplay, ErrRouteMismatch or ErrReplayCacheFull.
   * Opened offers carry ice_restart (false by default); ICE is canonical.
   */
  open(env: Envelope): Promise<Message>;
}

// ------------------------------------------------------------ media frames

export declare const MEDIA_INFO_PREFIX: 'duet/v2/media-frame';
/** Counter and tag: 24 bytes per frame. */
export declare const OVERHEAD: 24;
export declare const REPLAY_WINDOW: 2048;
export declare const MAX_FRAMES_PER_KEY: number;
export declare const MAX_BYTES_PER_KEY: number;
export declare const REKEY_FRAMES: number;
export declare const REKEY_BYTES: number;
export declare const REKEY_GRACE_MS: 10000;

export type FrameKind = 'vp8' | 'opus' | 'other';
/** One direction's key for one epoch. */
export interface DirectionKey {
  epoch: number;
  key: Uint8Array;
  baseIV: Uint8Array;
}
export interface MediaKeyParams {
  /** Own ephemeral X25519 private key (generateX25519). */
  ephemeralPrivate: CryptoKey;
  /** The peer's epk from its offer, answer or rekey. */
  peerEphemeral: Uint8Array;
  callId: string;
  selfSigning: Uint8Array;
  peerSigning: Uint8Array;
  /** 0 for the offer/answer exchange, then the call_rekey epochs. */
  epoch?: number;
}
export declare function deriveMediaKeys(p: MediaKeyParams): Promise<{ send: DirectionKey; recv: DirectionKey }>;
export declare function clearHeaderLen(frame: Uint8Array, kind: FrameKind): number;

export interface Usage {
  epoch: number;
  frames: number;
  bytes: number;
  rekeyNeeded: boolean;
}
export interface EncryptorOptions {
  /** Called once per key when usage reaches 80 %. */
  onRekeyNeeded?: (epoch: number) => void;
  /** First sequence number (test vectors only); default 0. */
  firstSeq?: number;
}
export declare class FrameEncryptor {
  private constructor();
  static create(key: DirectionKey, opts?: EncryptorOptions): Promise<FrameEncryptor>;
  readonly usage: Usage;
  setKey(key: DirectionKey): Promise<void>;
  encrypt(frame: BufferSource, kind: FrameKind): Promise<Uint8Array>;
}
export declare class FrameDecryptor {
  private constructor();
  static create(key: DirectionKey, opts?: { now?: () => number }): Promise<FrameDecryptor>;
  readonly epoch: number;
  addKey(key: DirectionKey): Promise<void>;
  decrypt(frame: BufferSource, kind: FrameKind): Promise<Uint8Array>;
}

// ---------------------------------------------------------- hot observable

export interface Subscription {
  unsubscribe(): void;
}
export interface Observable<T> {
  /** Calls fn with the current value at once, then with every change. */
  subscribe(fn: (v: T) => void): Subscription;
}
export declare class HotValue<T> implements Observable<T> {
  constructor(initial: T);
  readonly value: T;
  set(v: T): void;
  subscribe(fn: (v: T) => void): Subscription;
  close(): void;
}

// ------------------------------------------------------------ relay client

export declare const REGISTER_CONTEXT: 'duet/v1/register';
/** The prefix of the registration proof of work's hash (§9.1), and the most bits register() solves. */
export declare const REGISTER_POW_CONTEXT: 'duet/v1/register-pow';
export declare const MAX_REGISTER_POW_BITS: 28;
export declare const WS_AUTH_CONTEXT: 'duet/v1/ws-auth';
/** Reconnect delay of attempt n, ms. */
export declare function backoff(attempt: number): number;
export declare function relayBaseURL(relayUrl: string): string;
/** The relays of a relayUrl option (one URL, several separated by commas, or an array), normalised. */
export declare function relayList(relayUrl: string | string[]): string[];
/** relayUrl may list several nodes: one not reached, or answering 5xx, passes to the next. */
export declare function register(relayUrl: string | string[], identity: Identity, opts?: { fetch?: typeof fetch }): Promise<{ alias: string; created: boolean }>;

export declare class PinStore {
  private constructor();
  static indexedDB(opts?: StoreOptions): PinStore;
  static memory(): PinStore;
  pinned(peer: string): Promise<PublicKeys | null>;
  /** Pins on first use; a different key rejects with ErrKeyChanged. */
  check(peer: string, keys: PublicKeys): Promise<void>;
  accept(peer: string, keys: PublicKeys): Promise<void>;
}

export type ConnState = 'connecting' | 'connected' | 'disconnected' | 'closed';
export interface Undeliverable {
  id: string;
  to: string;
  /**
   * 'offline' (no session of the recipient), 'unavailable' (the relay node
   * cannot reach its message bus) or 'recipient_busy' (the recipient is sent
   * more than it takes; the client already sent the envelope once more).
   */
  reason: 'offline' | 'unavailable' | 'recipient_busy' | string;
}
export interface RelayError {
  code: string;
  message: string;
  id: string;
}
export interface ICEServer {
  urls: string[] | string;
  username?: string;
  credential?: string;
}
/** GET /api/v1/calls/ice-config (§9.4). */
export interface ICEConfig {
  ttl: number;
  ice_transport_policy: 'all' | 'relay';
  ice_servers: ICEServer[];
}
export interface DuetClientOptions {
  identity: Identity;
  /**
   * Default: the page's origin. Several nodes of one deployment (an array,
   * or separated by commas): the client connects to any that answers and,
   * when it loses its node, to the next at once.
   */
  relayUrl?: string | string[];
  /** From register() or loadIdentity(). */
  aliasId?: string;
  /** Default PinStore.indexedDB(). */
  pins?: PinStore;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  logger?: Pick<Console, 'warn' | 'error'> & Partial<Pick<Console, 'info' | 'debug'>>;
  onEnvelope?: (env: Envelope) => void | Promise<void>;
  onUndeliverable?: (n: Undeliverable) => void;
  onRelayError?: (e: RelayError) => void;
  onError?: (e: DuetError) => void;
}
export declare class DuetClient {
  constructor(opts: DuetClientOptions);
  readonly aliasId: string;
  readonly identity: Identity;
  readonly state: ConnState;
  /** The relay connected to, or last tried (normalised). */
  readonly relayUrl: string;
  /**
   * The relay's clock minus this machine's, in ms, measured at the last
   * authentication (0 before). Envelopes more than 60 s off are refused:
   * warn the user to set the clock well before that.
   */
  readonly clockSkewMs: number;
  onEnvelope: ((env: Envelope) => void | Promise<void>) | null;
  onUndeliverable: ((n: Undeliverable) => void) | null;
  onRelayError: ((e: RelayError) => void) | null;
  onError: ((e: DuetError) => void) | null;
  observeState(): Observable<ConnState>;
  register(): Promise<{ alias: string; created: boolean }>;
  connect(): Promise<void>;
  send(envelope: Envelope): void;
  session(peer: string): Promise<Session>;
  sendMessage(message: OutgoingMessage, opts?: { id?: string }): Promise<Envelope>;
  open(envelope: Envelope): Promise<Message>;
  peerKeys(peer: string): Promise<PublicKeys>;
  acceptKey(peer: string): Promise<PublicKeys>;
  safetyNumber(peer: string): Promise<string | null>;
  iceConfig(): Promise<ICEConfig>;
  /**
   * The signaling session with peer and the pinned keys it was made from.
   * With fresh, the keys are fetched and checked against the pin first
   * (ErrKeyChanged when they changed; a failed lookup keeps the held session).
   */
  sessionWithKeys(peer: string, opts?: { fresh?: boolean }): Promise<{ session: Session; keys: PublicKeys }>;
  /**
   * The signaling session held for peer while its keys are still the pinned
   * ones, else null; asks the relay nothing. call() seals its offer with it
   * at once and checks the fresh keys after.
   */
  heldSession(peer: string): Promise<{ session: Session; keys: PublicKeys } | null>;
  /**
   * Starts the call module (the seed's client.initCalls); call_* envelopes
   * then go to it. The signing keys must be this client's identity's
   * (compared by value; else ErrIdentityKey), alwaysRelay a boolean (else
   * ErrInvalidOption). Called again, it returns the same module when the
   * options it gives agree with the first call's, and throws
   * ErrCallsStarted when alwaysRelay, workerUrl or logger differ;
   * ErrInvalidAlias when myAliasId is not an alias.
   */
  initCalls(opts?: InitCallsOptions): CallModule;
  /** The call module, after initCalls (else null). */
  readonly calls: CallModule | null;
  close(): void;
}
/** RTCConfiguration from the relay's ICE config. */
export declare function rtcConfiguration(cfg: ICEConfig, opts?: { alwaysRelay?: boolean }): RTCConfiguration;

// ------------------------------------------------------------- call module

/** Lifecycle constants (docs/PROTOCOL.md §6); the same in the Go SDK, not configurable. */
export declare const ANSWER_TIMEOUT_MS: 15000;
export declare const DISCONNECTED_TIMEOUT_MS: 8000;
export declare const MEDIA_TIMEOUT_MS: 15000;
export declare const GUM_TIMEOUT_MS: 6000;
export declare const DIAG_INTERVAL_MS: 2000;
export declare const MAX_VIDEO_BITRATE: 1500000;
/** getUserMedia video constraints: 1280x720 at 30 fps, ideal. */
export declare const VIDEO_CONSTRAINTS: Readonly<MediaTrackConstraints>;
export declare const DEGRADATION_PREFERENCE: 'maintain-framerate';

/** The seed's call states. */
export type CallState = 'idle' | 'calling' | 'ringing' | 'connecting' | 'connected' | 'hangup' | 'rejected' | 'ended';
export declare const CALL_STATES: readonly CallState[];

/**
 * Why a call ended, as this app sees it (CallStatus.reason in the end
 * states; docs/PROTOCOL.md §10.3, the Go SDK's Status.Reason):
 * 'user_hangup' (either side hung up), 'declined' / 'busy' (the callee
 * refused; an error for the caller), 'no_answer', 'offline' (the relay could
 * not deliver the offer: no device of the callee is connected),
 * 'unavailable' (the relay kept refusing the offer, sent again with backoff,
 * for a passing reason until the answer timeout: the callee's relay is
 * overloaded or cannot reach its message bus), 'missed' (a ringing callee whose caller gave up,
 * or whose ring ran out: not an error), 'answered_elsewhere' /
 * 'declined_elsewhere' / 'busy_elsewhere' (another device of this user
 * answered, declined, was busy: not errors), 'ice_failed', 'disconnected',
 * 'media_timeout', 'error' (a local failure).
 */
export type CallEndReason = 'user_hangup' | 'declined' | 'busy' | 'no_answer' | 'offline' | 'unavailable' | 'missed'
  | 'answered_elsewhere' | 'declined_elsewhere' | 'busy_elsewhere' | 'ice_failed' | 'disconnected' | 'media_timeout' | 'error';
/** Every CallEndReason. */
export declare const CALL_ENDINGS: readonly CallEndReason[];

export interface CallStatus {
  state: CallState;
  /** The peer's alias ('' before the first call). */
  peer: string;
  callId: string;
  /** From the offer's m=video line. */
  isVideo: boolean;
  /** True when the peer called us. */
  incoming: boolean;
  /**
   * The ending, set in the end states (hangup, rejected, ended): why the
   * call ended, e.g. 'missed' or 'answered_elsewhere' (CallEndReason).
   */
  reason: CallEndReason | '';
  /**
   * True while the connection of a call that was connected is down and
   * being recovered (ICE restart, docs/PROTOCOL.md §10.6); the state stays
   * 'connected' meanwhile.
   */
  recovering: boolean;
}

/**
 * One side's media state in a call (docs/PROTOCOL.md §10.9): what the peer
 * announced (observePeerMedia) or what this side sends (localMedia). All
 * false: microphone and camera on, no screen shared.
 */
export interface MediaState {
  /** The microphone is muted (silence is sent). */
  readonly audioMuted: boolean;
  /** The camera is off: show the peer's avatar or alias instead of its video. */
  readonly videoOff: boolean;
  /** The video is a shared screen. */
  readonly screen: boolean;
}

/**
 * Errors onError receives (and call() / answer() reject with). `name` is
 * one of: 'NotAllowedError' (camera or microphone permission denied, from
 * getUserMedia), 'NotFoundError' / 'NotReadableError' (no usable device),
 * 'TimeoutError' ('getUserMedia timeout after 6000ms'),
 * 'ErrAlreadyAnswering' ('answer() called while already answering'),
 * the caller's 'ErrDeclined', 'ErrBusy', 'ErrNoAnswer', 'ErrOffline' (the
 * callee refused, did not answer, is not connected), 'ErrUnavailable' (the
 * relay kept refusing the offer for now: overloaded or unreachable; try
 * again later), 'ErrICEFailed',
 * 'ErrMediaTimeout', 'ErrDisconnected', 'ErrMediaSetup', 'ErrE2EE',
 * 'ErrKeyChanged', 'ErrUnsupported', 'NotSupportedError' (no secure
 * context); and, from call() before any call starts (never given to
 * onError), 'ErrInCall', 'ErrNoMedia', 'ErrInvalidAlias', 'ErrClosed';
 * from answer() / reject() 'ErrNoIncomingCall'. Endings the peer or another
 * device decided for a callee (missed, answered elsewhere, the peer hung
 * up) are not errors: see CallStatus.reason.
 */
export type CallError = DuetError | DOMException;

/** One Diag sample (every 2 s while connected; also CallModule.stats()). */
export interface CallDiag {
  n: number;
  callId: string;
  peer: string;
  state: CallState;
  connectedMs: number;
  e2ee: 'script-transform' | 'encoded-streams';
  outVideo: { bytesSent: number; packetsSent: number; framesEncoded: number; frameWidth: number; frameHeight: number; framesPerSecond: number; qualityLimitationReason: string; keyFramesEncoded: number; codec: string } | null;
  outAudio: { bytesSent: number; packetsSent: number; codec: string } | null;
  inVideo: { bytesReceived: number; packetsReceived: number; packetsLost: number; framesReceived: number; framesDecoded: number; framesDropped: number; keyFramesDecoded: number; frameWidth: number; frameHeight: number; framesPerSecond: number; freezeCount: number; pliCount: number; codec: string } | null;
  inAudio: { bytesReceived: number; packetsReceived: number; packetsLost: number; totalSamplesReceived: number; concealedSamples: number; codec: string } | null;
  /** Selected candidate pair types, e.g. 'host/host' or 'relay/relay'. */
  pair: string;
  /** Round-trip time of the selected pair, seconds. */
  rtt: number;
  restarts: number;
  /** Media key epoch (call_rekey). */
  epoch: number;
  /**
   * Media rekey (call_rekey, docs/PROTOCOL.md §5.4): the epoch agreed and
   * the one sending uses, whether a call_rekey of ours awaits its reply,
   * the call_rekey sent (requests, replies) and the worker's rekey-needed
   * signals that started none (ignored: a newer epoch was agreed already).
   */
  rekey: { epoch: number; sendEpoch: number; requesting: boolean; requests: number; replies: number; ignored: number };
  mLines: { local: string[]; remote: string[] };
  /** The video sender's parameters (set after connect: 1.5 Mbps, maintain-framerate). */
  videoSender?: { maxBitrate: number; degradationPreference: string };
  /** The E2EE worker's counts. */
  frames: {
    encrypted: { audio: number; video: number };
    decrypted: { audio: number; video: number };
    /** Plaintext bytes of the frames decrypted, by kind. */
    bytesIn: { audio: number; video: number };
    /** Plaintext bytes of the frames encrypted, by kind. */
    bytesOut: { audio: number; video: number };
    droppedNoKey: number;
    encryptErrors: number;
    /** Frames that did not authenticate or had an unknown key epoch. */
    decryptErrors: number;
    /** Frames delivered again (refused by the replay window). */
    replayed: number;
    lastDecryptError: string;
    streams: number;
    sendEpoch: number;
    recvEpoch: number;
    /** The encoder's MIME type per sent kind, as frames report it: keys 'send audio', 'send video' (e.g. 'audio/opus'). */
    mime: Partial<Record<'send audio' | 'send video', string>>;
  } | null;
}

export interface InitCallsOptions {
  /** The identity's Ed25519 private key (identity.signingKey.privateKey, of this or another deriveIdentity of the same mnemonic). */
  signingPrivKey?: CryptoKey;
  /** The identity's Ed25519 public key (identity.signingKey.publicKey). */
  signingPubKey?: Uint8Array;
  /** This user's alias (the client's). */
  myAliasId?: string;
  /** Force TURN (iceTransportPolicy 'relay'): the peer never sees this side's address. Default false; a non-boolean is ErrInvalidOption. */
  alwaysRelay?: boolean;
  /**
   * The E2EE worker's script (a copy of the package's e2ee-worker.js with its
   * imports, e.g. bundled into one file), absolute or relative to the page's
   * address. Default: e2ee-worker.js beside the module that holds the SDK
   * (new URL('./e2ee-worker.js', import.meta.url)). For bundlers and CDNs that
   * put the worker elsewhere; on another origin than the page it is started
   * through a blob: module (CORS and the CSP's worker-src blob: needed).
   * Neither a string nor a URL, or unparsable: ErrInvalidOption.
   */
  workerUrl?: string | URL;
  logger?: Pick<Console, 'warn' | 'error'> & Partial<Pick<Console, 'info' | 'debug'>>;
}

/** The call module (client.initCalls, then client.calls). One call at a time. */
export declare class CallModule {
  private constructor();
  readonly state: CallState;
  readonly status: CallStatus;
  readonly alwaysRelay: boolean;
  /** The E2EE worker's script URL in use (initCalls' workerUrl, resolved; else e2ee-worker.js beside the SDK). */
  readonly workerUrl: string;
  /** This module's random device id, sent in every call message (docs/PROTOCOL.md §10.4). */
  readonly deviceId: string;
  /** Signaling frames and state machine events dropped, by reason. */
  readonly drops: Record<string, number>;
  /**
   * (fromAlias, isVideo, callId) when an offer arrives; isVideo from the
   * offer SDP's m=video. Pass callId to answer() / reject() so that they
   * act on this call only.
   */
  onIncomingCall: ((fromAlias: string, isVideo: boolean, callId: string) => void) | null;
  onError: ((err: CallError) => void) | null;
  /** Legacy callbacks; prefer the observables. */
  onLocalStream: ((stream: MediaStream | null) => void) | null;
  onRemoteStream: ((stream: MediaStream | null) => void) | null;
  onStateChange: ((state: CallState) => void) | null;
  /**
   * Resolves once the offer is sent (state 'calling'); when the peer's keys
   * were already held, after the check that they are still the directory's
   * too (up to the 10 s HTTP deadline), which may reject with
   * ErrKeyChanged after the offer went out. Rejects with ErrCallEnded when
   * the call is hung up during its setup. Audio is always sent (a video
   * call sends audio too): `audio: false` only refuses a call with neither
   * (ErrNoMedia), as the Go SDK's call.Media.
   */
  call(alias: string, media?: { audio?: boolean; video?: boolean }): Promise<void>;
  /**
   * Answers the ringing call; resolves when the answer is sent (state
   * 'connecting'). With callId, only that call: another one ringing (or
   * none) rejects with ErrNoIncomingCall.
   */
  answer(callId?: string): Promise<void>;
  /**
   * Rejects the ringing call (call_reject, declined; with callId only that
   * call). Never rejects: with nothing (or another call) ringing it does
   * nothing, as hangup() with no call. Resolves once the call has ended
   * and, when the relay connection is up, its call_reject was handed to it
   * (sealing it is local work); never waits on the network.
   */
  reject(callId?: string): Promise<void>;
  /**
   * Ends the call in progress (a ringing one is declined); resolves when
   * nothing is in progress too, and never rejects. Resolves once the call
   * has ended and, when the relay connection is up, its call_hangup was
   * handed to it, ahead of any send still queued; never waits on the
   * network.
   */
  hangup(): Promise<void>;
  /**
   * Mutes (false) or unmutes (true) the microphone of the call in progress
   * and tells the peer (call_media). False without a call; every call
   * starts unmuted.
   * @example
   * muteButton.onclick = () => calls.setMicrophoneEnabled(calls.localMedia.audioMuted);
   */
  setMicrophoneEnabled(on: boolean): boolean;
  /** Turns the camera of the call in progress off (false) or on (true) and tells the peer. False without a call. */
  setCameraEnabled(on: boolean): boolean;
  /** What the call in progress sends (all false without a call). */
  readonly localMedia: MediaState;
  /**
   * The peer's media state, hot: the current value at once, then each
   * change the peer announces; all false without a call.
   * @example
   * calls.observePeerMedia().subscribe((m) => { badge.hidden = !m.audioMuted; avatar.hidden = !m.videoOff; });
   */
  observePeerMedia(): Observable<MediaState>;
  /**
   * Shares the screen (getDisplayMedia, contentHint 'detail',
   * degradationPreference 'maintain-resolution') in place of the camera in
   * the video call in progress, E2EE like the camera; the peer's
   * observePeerMedia() shows screen: true. Rejects with ErrNoCall,
   * ErrNoVideo (an audio call), NotAllowedError (the user refused),
   * NotSupportedError (no getDisplayMedia), ErrCallEnded (the call ended
   * while the user chose).
   * @example
   * shareButton.onclick = () => (calls.localMedia.screen ? calls.stopScreenShare() : calls.shareScreen());
   */
  shareScreen(): Promise<void>;
  /**
   * Turns the connected call into a video call (on: this side sends its
   * camera) or stops sending video (off), by a renegotiation within the
   * call (PROTOCOL §10.10). The peer receives the video without sending
   * any, and its observeRemoteStream() emits a new stream with the video
   * track. Rejects with ErrNoCall, ErrNotConnected, ErrRenegotiating or
   * ErrRenegotiationFailed (the call goes on unchanged). status.isVideo is
   * true while either side sends video: whether this side does is in its
   * local stream.
   * @example
   * let sendingVideo = false;
   * calls.observeLocalStream().subscribe((s) => { sendingVideo = (s?.getVideoTracks().length ?? 0) > 0; });
   * videoButton.onclick = () => calls.setVideo(!sendingVideo);
   */
  setVideo(on: boolean): Promise<void>;
  /** Stops sharing: the camera is sent again. Resolves false when nothing was shared. */
  stopScreenShare(): Promise<boolean>;
  observeState(): Observable<CallState>;
  observeStatus(): Observable<CallStatus>;
  observeLocalStream(): Observable<MediaStream | null>;
  /** The remote stream, emitted once complete (audio and video both, once the peer's description is set), and as a new MediaStream when a track joins later; null between calls. */
  observeRemoteStream(): Observable<MediaStream | null>;
  observeDiag(): Observable<CallDiag | null>;
  stats(): Promise<CallDiag | null>;
  close(): void;
}
/** The m= lines of an SDP with their direction attribute. */
export declare function mLines(sdp: string): string[];
/** How this browser encrypts media frames, '' when it cannot. */
export declare function e2eeSupport(): 'script-transform' | 'encoded-streams' | '';
