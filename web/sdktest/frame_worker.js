// A module worker that decrypts the frames of frames.json with the SDK's
// frame module, to show that it runs without a DOM (as it will inside an
// RTCRtpScriptTransform). It answers one message with {hasDocument, results}.

import { FrameDecryptor, deriveMediaKeys } from '/sdk/frame.js';
import { importX25519Private } from '/sdk/primitives.js';
import { fromHex, toHex } from '/sdk/util.js';

self.onmessage = async (ev) => {
  const { frames: f, callerSigning, calleeSigning } = ev.data;
  const results = [];
  try {
    const ce = await importX25519Private(fromHex(f.caller_ephemeral_private));
    const ee = await importX25519Private(fromHex(f.callee_ephemeral_private));
    const callee = await deriveMediaKeys({
      ephemeralPrivate: ee.privateKey, peerEphemeral: ce.publicKey, callId: f.call_id,
      selfSigning: fromHex(calleeSigning), peerSigning: fromHex(callerSigning), epoch: 0,
    });
    const caller = await deriveMediaKeys({
      ephemeralPrivate: ce.privateKey, peerEphemeral: ee.publicKey, callId: f.call_id,
      selfSigning: fromHex(callerSigning), peerSigning: fromHex(calleeSigning), epoch: 0,
    });
    const dec = {
      caller_to_callee: await FrameDecryptor.create(callee.recv),
      callee_to_caller: await FrameDecryptor.create(caller.recv),
    };
    for (const fr of f.frames) {
      try {
        const got = toHex(await dec[fr.direction].decrypt(fromHex(fr.encrypted), fr.kind));
        if (got !== fr.plaintext) throw new Error(`plaintext ${got}, want ${fr.plaintext}`);
        results.push({ name: fr.name, ok: true });
      } catch (e) {
        results.push({ name: fr.name, ok: false, error: `${e.name}: ${e.message}` });
      }
    }
    self.postMessage({ hasDocument: typeof document !== 'undefined', results });
  } catch (e) {
    self.postMessage({ error: `worker setup: ${e.name}: ${e.message}` });
  }
};
