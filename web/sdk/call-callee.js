// The callee's side of a call (the Go SDK's call/session.go prepareCallee
// and startCallee): the answer to the offer that rang (media, peer
// connection with the E2EE transforms attached before the offer is set,
// the answer sent) and the answer to the caller's ICE restart offer. d is
// the call module's driver: these run for the state machine's send_answer
// and apply_restart actions, and report failures with d.fail.

import { generateX25519 } from './primitives.js';
import { equalBytes } from './util.js';
import { callError } from './call-session.js';
import {
  callRTCConfig, flushLocal, getUserMedia, installKeys, MAX_PENDING_CANDIDATES, mLines, newPC, refreshICEServers, remoteReady,
  setupTransceiver, splitCandidates,
} from './call-pc.js';

/** send_answer: media, peer connection, the offer set, the answer sent. */
export async function startCallee(d, s) {
  const c = d.client;
  const step = (n, m) => d.log.info?.(`🟢 [CallModule] ANSWER STEP ${n}: ${m}`);
  step(0, `answering ${s.peer} (${s.video ? 'video' : 'audio'})`);
  step(1, 'getUserMedia and the ICE configuration');
  const iceP = c.iceConfig();
  iceP.catch(() => {});
  const stream = await getUserMedia(d, s, s.video);
  s.checkLive();
  const ice = await s.untilTorn(iceP);
  step(2, 'deriving the media keys');
  s.ephem = await generateX25519();
  s.checkLive();
  const cfg = callRTCConfig(ice, d.alwaysRelay);
  d.log.info?.(`🟡 [CallModule] iceServers=${JSON.stringify(cfg.iceServers.map((x) => x.urls))} policy=${cfg.iceTransportPolicy}`);
  newPC(d, s, cfg);
  await installKeys(d, s, s.peerEPK);
  s.checkLive();
  // Chromium short-circuits the encoded transform of a sender or receiver
  // that has none when the description creating its stream is applied,
  // and frames then bypass a transform set later, unencrypted. So the
  // local tracks are added (addTrack: the offer's m-lines then reuse
  // these transceivers) and the transforms attached before the offer is
  // set.
  const wanted = s.video ? ['audio', 'video'] : ['audio'];
  for (const kind of wanted) {
    const track = kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    if (!track) continue;
    s.pc.addTrack(track, stream);
  }
  for (const t of s.pc.getTransceivers()) setupTransceiver(d, s, t, t.sender.track.kind);
  step(3, 'setting the remote offer');
  // The offer's candidates wait with those of call_ice until the caller
  // selects this device (releaseRemote).
  const offer = splitCandidates(s.offerSDP);
  s.holdRemote = true;
  s.pendRemote = [...offer.candidates, ...s.pendRemote];
  for (let n = s.pendRemote.length; n > MAX_PENDING_CANDIDATES; n--) d.drop('ice_queue_full');
  s.pendRemote.length = Math.min(s.pendRemote.length, MAX_PENDING_CANDIDATES);
  await s.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
  s.checkLive();
  for (const t of s.pc.getTransceivers()) {
    if (t.e2eeAttached && t.mid !== null) {
      t.direction = 'sendrecv';
      setupTransceiver(d, s, t, t.receiver.track.kind); // codec preferences for the answer
    } else if (t.mid !== null) {
      // An m-line none of our tracks took: it would carry media past the
      // E2EE worker, so it stays inactive.
      d.log.warn(`[CallModule] the offer's ${t.receiver.track.kind} m-line ${t.mid} has no local track; inactive`);
      t.direction = 'inactive';
    }
  }
  remoteReady(d, s);
  step(3.2, 'creating the answer');
  const answer = await s.pc.createAnswer();
  s.checkLive();
  await s.pc.setLocalDescription(answer);
  s.checkLive();
  step(3.5, `answer m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
  step(4, 'sending call_answer');
  await d.queueSend(s, { type: 'call_answer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey });
  s.checkLive();
  step(5, 'answer sent; connecting');
  flushLocal(d, s);
}

/** apply_restart: the caller's ICE restart offer, answered. */
export async function applyRestart(d, s, msg) {
  if (!s.pc || !s.remoteSet || !equalBytes(msg.epk, s.peerEPK)) {
    d.drop('restart_mismatch');
    return;
  }
  s.restarts++;
  s.localReady = false;
  d.log.info?.('🟢 [CallModule] ICE restart requested by the caller');
  try {
    await refreshICEServers(d, s);
    s.checkLive();
    await s.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    const answer = await s.pc.createAnswer();
    await s.pc.setLocalDescription(answer);
    s.checkLive();
    await d.queueSend(s, { type: 'call_answer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey });
    flushLocal(d, s);
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `ICE restart answer: ${e.message}`));
  }
}
