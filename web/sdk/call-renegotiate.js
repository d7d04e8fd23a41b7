// Media changes within a call (docs/PROTOCOL.md §10.10; the Go SDK's
// call/renegotiate.go): an audio call upgraded to video or downgraded by
// either side, as a call_offer with renegotiate for the same call_id and
// the sender's current ephemeral key (the media keys do not change),
// answered by call_answer. Every new sender and receiver gets its E2EE
// transform before the description that creates its stream is applied
// (Chromium lets frames bypass a transform set later), so no frame leaves
// or arrives unencrypted. d is the call module's driver.

import { equalBytes } from './util.js';
import { callError, VIDEO_CONSTRAINTS } from './call-session.js';
import { mLines, setupTransceiver } from './call-pc.js';

/** A video track to add with addTrack before an offer that brings video is applied (replaced by null after). */
function placeholderVideoTrack() {
  const c = globalThis.document?.createElement?.('canvas');
  const t = c?.captureStream?.(1)?.getVideoTracks?.()[0];
  if (!t) throw callError('ErrMediaSetup', 'no canvas capture to prepare a video receiver');
  return t;
}

/** send_renegotiation: add (video) or remove (!video) the camera, then offer. */
export async function sendRenegotiation(d, s, video) {
  try {
    const vt = s.pc.getTransceivers().find((t) => t.sender.track?.kind === 'video');
    if (video && !vt) {
      const cam = await navigator.mediaDevices.getUserMedia({ video: { ...VIDEO_CONSTRAINTS } });
      s.checkLive();
      const track = cam.getVideoTracks()[0];
      track.enabled = !s.media.videoOff;
      s.localStream.addTrack(track);
      // A video transceiver that only receives (the peer upgraded first)
      // takes the camera; else addTrack makes one, its transforms set
      // before the offer.
      const recv = s.pc.getTransceivers().find((t) => t.receiver.track?.kind === 'video' && !t.sender.track && t.e2eeAttached);
      if (recv) {
        await recv.sender.replaceTrack(track);
        recv.direction = 'sendrecv';
      } else {
        s.pc.addTrack(track, s.localStream);
        for (const t of s.pc.getTransceivers()) if (!t.e2eeAttached) setupTransceiver(d, s, t, t.sender.track?.kind ?? t.receiver.track.kind);
      }
      d.setLocal(s, new MediaStream(s.localStream.getTracks()));
    } else if (!video && vt) {
      const track = vt.sender.track;
      await vt.sender.replaceTrack(null);
      vt.direction = 'recvonly';
      track.stop();
      s.localStream.removeTrack(track);
      d.setLocal(s, new MediaStream(s.localStream.getTracks()));
    }
    const offer = await s.pc.createOffer();
    s.checkLive();
    await s.pc.setLocalDescription(offer);
    s.checkLive();
    d.log.info?.(`🔵 [CallModule] renegotiating (${video ? 'video' : 'audio only'}): m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
    await d.queueSend(s, { type: 'call_offer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey, renegotiate: true });
  } catch (e) {
    d.renegotiated(s, callError('ErrRenegotiationFailed', `the media change did not start: ${e.message}`));
  }
}

/**
 * apply_renegotiation: the peer's offer (ours rolled back if it crossed
 * and lost), answered. A new video m-line is received (its transforms set
 * before the offer is applied) without sending: this side upgrades itself
 * with setVideo(true).
 */
export async function applyRenegotiation(d, s, msg) {
  if (!s.pc || !equalBytes(msg.epk, s.peerEPK)) {
    d.drop('renegotiation_mismatch');
    return;
  }
  try {
    if (s.pc.signalingState === 'have-local-offer') await s.pc.setLocalDescription({ type: 'rollback' });
    const had = s.pc.getTransceivers().filter((t) => t.mid !== null).length;
    let placeholder = null;
    if (mLines(msg.sdp).length > had) {
      placeholder = placeholderVideoTrack();
      s.pc.addTrack(placeholder, new MediaStream([placeholder]));
      for (const t of s.pc.getTransceivers()) if (!t.e2eeAttached) setupTransceiver(d, s, t, 'video');
    }
    await s.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    s.checkLive();
    for (const t of s.pc.getTransceivers()) {
      if (t.sender.track === placeholder && placeholder) {
        await t.sender.replaceTrack(null);
        t.direction = 'recvonly';
        setupTransceiver(d, s, t, 'video');
      } else if (t.mid !== null && !t.e2eeAttached) {
        t.direction = 'inactive'; // never media past the E2EE worker
      }
    }
    placeholder?.stop();
    const answer = await s.pc.createAnswer();
    s.checkLive();
    await s.pc.setLocalDescription(answer);
    s.checkLive();
    d.log.info?.(`🔵 [CallModule] the peer changed the call's media: answer m-lines ${JSON.stringify(mLines(s.pc.localDescription.sdp))}`);
    await d.queueSend(s, { type: 'call_answer', sdp: s.pc.localDescription.sdp, epk: s.ephem.publicKey });
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `the peer's media change: ${e.message}`));
  }
}

/** apply_renegotiation_answer: the peer's answer to our renegotiation. */
export async function applyRenegotiationAnswer(d, s, msg) {
  if (!s.pc || !equalBytes(msg.epk, s.peerEPK) || s.pc.signalingState !== 'have-local-offer') {
    d.drop('renegotiation_mismatch');
    d.renegotiated(s, callError('ErrRenegotiationFailed', 'the answer does not match the offer'));
    return;
  }
  try {
    await s.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    d.renegotiated(s, null);
  } catch (e) {
    d.renegotiated(s, callError('ErrRenegotiationFailed', `the answer: ${e.message}`));
    d.fail(s, callError('ErrMediaSetup', `renegotiation answer: ${e.message}`));
  }
}

/** renegotiation_end: ours will not complete (glare, timeout, interrupted). */
export async function renegotiationEnded(d, s, why) {
  if (why !== 'glare' && s.pc?.signalingState === 'have-local-offer') {
    try {
      await s.pc.setLocalDescription({ type: 'rollback' });
    } catch { /* closed */ }
  }
  d.renegotiated(s, callError('ErrRenegotiationFailed', `the media change did not complete (${why})`));
}
