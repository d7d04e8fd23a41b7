// A call's figures (the Go SDK's call/stats.go): the Diag sample from the
// peer connection's getStats and the E2EE worker's frame counters, the
// 📊 [Diag #N] log line every DIAG_INTERVAL_MS while connected, and the
// check that no frame leaves without passing the worker.

import { mLines } from './call-pc.js';
import { callError } from './call-session.js';

/**
 * Collects s's figures (a Diag); with log, prints the 📊 [Diag #N] line and
 * publishes it. drv is the call module's driver.
 */
export async function sample(drv, s, log) {
  const report = await s.pc.getStats();
  const d = {
    n: log ? ++s.diagN : s.diagN,
    callId: s.id,
    peer: s.peer,
    state: s.state,
    connectedMs: s.connected ? Date.now() - s.connectedAt : 0,
    e2ee: s.e2eeMode,
    outVideo: null, outAudio: null, inVideo: null, inAudio: null,
    pair: '', rtt: 0, restarts: s.restarts, epoch: s.epoch,
    rekey: { epoch: s.epoch, sendEpoch: s.sendEpoch, requesting: s.rekey !== null, ...s.rekeys },
    mLines: { local: mLines(s.pc.localDescription?.sdp ?? ''), remote: mLines(s.pc.remoteDescription?.sdp ?? '') },
  };
  let selected = '';
  const byId = new Map();
  report.forEach((r) => {
    byId.set(r.id, r);
    if (r.type === 'transport' && r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
  });
  const codec = (r) => byId.get(r.codecId)?.mimeType ?? '';
  report.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      d.outVideo = {
        bytesSent: r.bytesSent ?? 0, packetsSent: r.packetsSent ?? 0, framesEncoded: r.framesEncoded ?? 0,
        frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0, framesPerSecond: r.framesPerSecond ?? 0,
        qualityLimitationReason: r.qualityLimitationReason ?? '', keyFramesEncoded: r.keyFramesEncoded ?? 0, codec: codec(r),
      };
    } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
      d.outAudio = { bytesSent: r.bytesSent ?? 0, packetsSent: r.packetsSent ?? 0, codec: codec(r) };
    } else if (r.type === 'inbound-rtp' && r.kind === 'video') {
      d.inVideo = {
        bytesReceived: r.bytesReceived ?? 0, packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
        framesReceived: r.framesReceived ?? 0, framesDecoded: r.framesDecoded ?? 0, framesDropped: r.framesDropped ?? 0,
        keyFramesDecoded: r.keyFramesDecoded ?? 0, frameWidth: r.frameWidth ?? 0, frameHeight: r.frameHeight ?? 0,
        framesPerSecond: r.framesPerSecond ?? 0, freezeCount: r.freezeCount ?? 0, pliCount: r.pliCount ?? 0, codec: codec(r),
      };
    } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      d.inAudio = {
        bytesReceived: r.bytesReceived ?? 0, packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
        totalSamplesReceived: r.totalSamplesReceived ?? 0, concealedSamples: r.concealedSamples ?? 0, codec: codec(r),
      };
    }
  });
  if (!selected) report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') selected = r.id; });
  const pair = byId.get(selected);
  if (pair) {
    d.rtt = pair.currentRoundTripTime ?? 0;
    d.pair = `${byId.get(pair.localCandidateId)?.candidateType ?? '?'}/${byId.get(pair.remoteCandidateId)?.candidateType ?? '?'}`;
  }
  const vs = s.pc.getSenders().find((x) => x.track?.kind === 'video');
  if (vs) {
    const p = vs.getParameters();
    d.videoSender = { maxBitrate: p.encodings?.[0]?.maxBitrate ?? 0, degradationPreference: p.degradationPreference ?? '' };
  }
  d.frames = await workerCounters(s);
  s.lastDiag = d;
  // Never media in the clear: frames the encoder produced must have gone
  // through the E2EE worker (a transform Chromium short-circuited would
  // let them pass unencrypted).
  const f0 = d.frames;
  if (f0 && !s.torn && ((d.outVideo?.framesEncoded ?? 0) > 30 && f0.encrypted.video === 0 ||
      (d.outAudio?.packetsSent ?? 0) > 100 && f0.encrypted.audio === 0)) {
    drv.fail(s, callError('ErrE2EE', 'media frames are leaving without passing the E2EE worker; the call was ended'));
    return d;
  }
  if (log && !s.torn) {
    drv.setDiag(s, d);
    const ov = d.outVideo;
    const iv = d.inVideo;
    const kb = (n) => `${Math.round((n ?? 0) / 1024)}KB`;
    const f = d.frames;
    drv.log.info?.(`📊 [Diag #${d.n}] state=${d.state} frame=${ov ? `${ov.frameWidth}x${ov.frameHeight}` : '-'} fps=${ov ? ov.framesPerSecond : '-'} qLimit=${ov ? ov.qualityLimitationReason || 'none' : '-'}` +
      ` out=v${kb(ov?.bytesSent)}/${ov?.framesEncoded ?? 0}f a${kb(d.outAudio?.bytesSent)}` +
      ` in=v${kb(iv?.bytesReceived)}/${iv?.framesDecoded ?? 0}dec/${iv?.framesDropped ?? 0}drop${iv ? ` ${iv.frameWidth}x${iv.frameHeight}` : ''} a${kb(d.inAudio?.bytesReceived)}` +
      ` rtt=${Math.round(d.rtt * 1000)}ms pair=${d.pair || '-'}` +
      (f ? ` e2ee=enc v${f.encrypted.video}/a${f.encrypted.audio} dec v${f.decrypted.video}/a${f.decrypted.audio} err ${f.decryptErrors}${f.lastDecryptError ? ` (${f.lastDecryptError})` : ''} replayed ${f.replayed} nokey ${f.droppedNoKey} streams ${f.streams}` : ''));
  }
  return d;
}

function workerCounters(s) {
  if (!s.worker || s.torn) return Promise.resolve(null);
  return new Promise((resolve) => {
    const id = ++s.workerSeq;
    s.workerReqs.set(id, resolve);
    s.worker.postMessage({ type: 'stats', id });
    setTimeout(() => {
      if (s.workerReqs.delete(id)) resolve(null);
    }, 1000);
  });
}
