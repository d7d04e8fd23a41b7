// A TypeScript app using every API the README and web/README show, imported
// by the package's name as an app installs it (resolved through
// web/sdk/package.json's exports and types). check.mjs compiles it with
// strict on; the annotations spell out the types the docs promise, so a
// declaration that drifts from the docs fails to compile. It is never run.
import {
  createIdentity, deriveIdentity, loadIdentity, saveIdentity, safetyNumber,
  DuetClient, DuetError, PinStore, e2eeSupport,
  type CallDiag, type CallError, type CallModule, type CallState, type CallStatus,
  type ConnState, type Envelope, type MediaState, type Identity, type OutgoingMessage, type PublicKeys,
  type StoredIdentity, type Subscription,
} from '@duetcall/duet';

declare function showRinging(fromAlias: string, isVideo: boolean): void;
declare function render(state: CallState): void;
declare const localVideo: HTMLVideoElement;
declare const remoteVideo: HTMLVideoElement;

export async function quickStart(): Promise<void> {
  // README: create, register, store, connect.
  const identity: Identity = await createIdentity(); // show identity.mnemonic once
  const mnemonic: string = identity.mnemonic;
  const client = new DuetClient({ identity }); // relay = this page's origin
  const { alias, created }: { alias: string; created: boolean } = await client.register();
  await saveIdentity({ mnemonic, aliasId: alias });
  client.onEnvelope = async (env: Envelope) => console.log(await client.open(env));
  await client.connect();
  const conn: ConnState = client.state;
  const connSub: Subscription = client.observeState().subscribe((s: ConnState) => console.log(s));
  connSub.unsubscribe();
  const hangupMsg: OutgoingMessage = { type: 'call_hangup', to: 'u12345678', call_id: 'c1', reason: 'user_hangup' };
  const sent: Envelope = await client.sendMessage(hangupMsg);
  console.log(created, conn, sent.id);

  // README: calls.
  const calls: CallModule = client.initCalls({
    signingPrivKey: identity.signingKey.privateKey, signingPubKey: identity.signingKey.publicKey,
    myAliasId: alias, alwaysRelay: false,
  });
  calls.onIncomingCall = (fromAlias: string, isVideo: boolean) => showRinging(fromAlias, isVideo);
  calls.onError = (err: CallError) => console.error('[Calls]', err.name, err.message);
  calls.observeState().subscribe((state: CallState) => render(state));
  calls.observeStatus().subscribe((s: CallStatus) => console.log(s.state, s.peer, s.callId, s.isVideo, s.incoming, s.reason));
  calls.observeLocalStream().subscribe((s: MediaStream | null) => { localVideo.srcObject = s; });
  calls.observeRemoteStream().subscribe((stream: MediaStream | null) => { remoteVideo.srcObject = stream; });
  calls.observeDiag().subscribe((d: CallDiag | null) => console.log(d?.pair, d?.rtt, d?.frames?.decrypted.video));
  const call: Promise<void> = calls.call('u87654321', { audio: true, video: true });
  await call;
  const diag: CallDiag | null = await calls.stats();
  const muted: boolean = calls.setMicrophoneEnabled(false);
  calls.setCameraEnabled(false);
  const mine: MediaState = calls.localMedia;
  const sharing: Promise<void> = calls.shareScreen();
  await sharing;
  const stopped: boolean = await calls.stopScreenShare();
  const upgraded: Promise<void> = calls.setVideo(true);
  await upgraded;
  calls.observePeerMedia().subscribe((m: MediaState) => console.log(m.audioMuted, m.videoOff, m.screen, muted, mine.audioMuted, stopped));
  const ended: Promise<void> = calls.hangup();
  await ended;
  const answered: Promise<void> = calls.answer();
  const rejected: Promise<void> = calls.reject();
  await Promise.allSettled([answered, rejected]);
  const same: CallModule | null = client.calls;
  console.log(diag?.e2ee, same === calls, e2eeSupport());

  // web/README: a changed key, safety numbers, accepting the new key.
  try {
    await calls.call('u87654321', { audio: true });
  } catch (e) {
    if (e instanceof DuetError && e.name === 'ErrKeyChanged') {
      const peer: string = e.peer ?? 'u87654321';
      const number: string | null = await client.safetyNumber(peer);
      const accepted: PublicKeys = await client.acceptKey(peer);
      console.log(number, accepted.signing.length, e.pinned, e.offered);
    }
  }
  client.close();
}

// README: a page of another origin, with the relay's URL; a restored
// identity and the safety number of two identities.
export async function fromAnotherOrigin(): Promise<string> {
  const stored: StoredIdentity | null = await loadIdentity();
  const identity: Identity = stored ? await deriveIdentity(stored.mnemonic) : await createIdentity();
  const client = new DuetClient({
    identity, relayUrl: 'https://relay.example', aliasId: stored?.aliasId, pins: PinStore.indexedDB(),
  });
  const other: Identity = await createIdentity(24);
  return safetyNumber(identity, other);
}
