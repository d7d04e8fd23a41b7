// The caller's side of a call (the Go SDK's call/session.go startCaller and
// the caller's half of signal.go): the peer connection and the offer, sent
// with the signaling session held for the peer or once its keys are
// checked; the answer of the device the state machine selected; the ICE
// restart offer and its answer. d is the call module's driver: these run
// for the machine's setup_caller, apply_answer, restart_ice and
// apply_restart_answer actions, and report back with d.feed / d.fail.

import { generateX25519 } from './primitives.js';
import { equalBytes } from './util.js';
import { T, callError } from './call-session.js';
import {
  callRTCConfig, flushLocal, getUserMedia, installKeys, mLines, newPC, refreshICEServers, remoteReady, setupTransceiver,
} from './call-pc.js';

/**
 * setup_caller: media, peer connection, offer; sends it and feeds
 * offer_sent (or, with a held session whose fresh key lookup then finds a
 * changed key, key_changed). Resolves once that is known; rejects with the
 * failure (which the driver feeds as failed).
 */
export async function startCaller(d, s) {
  const c = d.client;
  const step = (n, m) => d.log.info?.(`🔴 [CallModule] STEP ${n}: ${m}`);
  step(1, `calling ${s.peer} (${s.video ? 'video' : 'audio'}), call_id=${s.id}; fetching keys and ICE config`);
  // A key change is refused at every call. With a session held for the
  // peer whose keys are still the pinned ones, the offer goes out at once,
  // sealed to them, and the fresh keys are checked after it (a round trip
  // less before the peer rings); else the offer waits for them.
  const heldP = c.heldSession(s.peer); // before the fresh lookup replaces it
  heldP.catch(() => {});
  const keysP = c.sessionWithKeys(s.peer, { fresh: true });
  let lookedUp = null; // the lookup's outcome, once it is in
  keysP.then(() => (lookedUp = { ok: true }), (e) => (lookedUp = { e }));
  const iceP = c.iceConfig();
  iceP.catch(() => {});
  step(2, 'getUserMedia');
  const stream = await getUserMedia(d, s, s.video);
  s.checkLive();
  const ice = await s.untilTorn(iceP);
  s.ephem = await generateX25519();
  const cfg = callRTCConfig(ice, d.alwaysRelay);
  d.log.info?.(`🟡 [CallModule] iceServers=${JSON.stringify(cfg.iceServers.map((x) => x.urls))} policy=${cfg.iceTransportPolicy}`);
  step(3, 'creating the peer connection');
  newPC(d, s, cfg);
  step(4, 'adding local tracks');
  const kinds = s.video ? ['audio', 'video'] : ['audio'];
  for (const kind of kinds) {
    const track = kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    const t = s.pc.addTransceiver(track ?? kind, { direction: 'sendrecv', streams: [stream] });
    setupTransceiver(d, s, t, kind);
  }
  step(5, 'creating the offer');
  const offer = await s.pc.createOffer();
  s.checkLive();
  step(6, 'setting the local description (ICE gathering starts)');
  await s.pc.setLocalDescription(offer);
  s.checkLive();
  d.log.info?.(`🔴 [CallModule] STEP 6.5: offer m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
  let held = await heldP.catch(() => null);
  s.checkLive();
  // A lookup that is in already wins over the held session: its session,
  // or its key change (not a failure to look up).
  if (held && lookedUp && (lookedUp.ok || lookedUp.e?.name === 'ErrKeyChanged')) held = null;
  if (held) step(7, 'sending call_offer with the session held for the peer (its keys are checked after)');
  else step(7, "waiting for the peer's checked keys, then sending call_offer");
  const { session, keys } = held ?? (await s.untilTorn(keysP));
  s.checkLive();
  s.session = session;
  s.peerKeys = keys;
  s.offerID = `o${s.id}`;
  // Sealed here and handed to the socket with offer_sent fed in the same
  // task: no received message is handled between the offer leaving and the
  // machine knowing it did (glare, PROTOCOL §10.5, depends on it).
  const env = await session.seal({
    type: 'call_offer', from: c.aliasId, to: s.peer, call_id: s.id, device: d.device,
    sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey,
  });
  s.checkLive();
  env.id = s.offerID;
  s.offerEnv = env;
  d.sendEnvelope(env);
  s.offerSent = true;
  d.feed({ kind: 'offer_sent', call_id: s.id });
  step(8, `offer sent; waiting for the answer (${T.answer / 1000} s)`);
  flushLocal(d, s);
  if (!held) return;
  try {
    await s.untilTorn(keysP);
  } catch (e) {
    if (s.torn) return; // the call ended: the check no longer matters
    // A changed key fails the call as it would before the offer (the peer
    // is told); another failure says nothing against the pinned keys the
    // offer was sealed to.
    if (e?.name === 'ErrKeyChanged' && !s.torn) {
      s.failure = e;
      d.feed({ kind: 'key_changed', call_id: s.id });
      throw e;
    }
    if (!s.torn) d.log.warn(`[CallModule] checking the keys of ${s.peer} failed; the call goes on with the pinned ones: ${e?.message}`);
  }
}

/** apply_answer: the selected device's answer: media keys, remote description. */
export async function applyAnswer(d, s, msg) {
  s.device = msg.device ?? '';
  s.peerEPK = msg.epk;
  d.log.info?.(`🔴 [CallModule] STEP 8.5: answer received${s.device ? ` from device ${s.device}` : ''}`);
  try {
    await installKeys(d, s, msg.epk);
    s.checkLive();
    await s.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    s.checkLive();
    d.log.info?.(`🔴 [CallModule] STEP 8.6: answer m-lines ${JSON.stringify(mLines(msg.sdp))}`);
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `the callee's answer: ${e.message}`));
    return;
  }
  remoteReady(d, s);
}

/** restart_ice: an ICE restart offer (gathering anew on the current interfaces). */
export async function restartICE(d, s) {
  s.restarts++;
  s.localReady = false;
  d.log.info?.('🔵 [CallModule] ICE restart: restartIce() and a new offer');
  try {
    await refreshICEServers(d, s);
    s.checkLive();
    s.pc.restartIce();
    const offer = await s.pc.createOffer({ iceRestart: true });
    s.checkLive();
    await s.pc.setLocalDescription(offer);
    s.checkLive();
    await d.queueSend(s, { type: 'call_offer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey, ice_restart: true });
    flushLocal(d, s);
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `ICE restart: ${e.message}`));
  }
}

/** apply_restart_answer: the answer to our ICE restart offer. */
export async function applyRestartAnswer(d, s, msg) {
  if (!equalBytes(msg.epk, s.peerEPK) || s.pc?.signalingState !== 'have-local-offer') {
    d.drop('restart_mismatch');
    return;
  }
  try {
    await s.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `ICE restart answer: ${e.message}`));
  }
}
