// Media rekey (docs/PROTOCOL.md §5.4; the Go SDK's call/rekey.go): the
// side whose media key is nearly used up sends call_rekey{epoch+1, epk}, the
// peer replies with its own epk for that epoch, and both move to the keys
// derived from the two. The state machine hands each received call_rekey of
// the call in progress here (its rekey action); d is the call module's
// driver.

import { deriveMediaKeys } from './frame.js';
import { generateX25519 } from './primitives.js';
import { T, callError } from './call-session.js';
import { wipeKeys } from './call-pc.js';

// docs/PROTOCOL.md §5.4, as the Go SDK's rekey.go: the side whose key is
// nearly used up sends call_rekey{epoch+1, epk}; the peer replies with
// its own epk for that epoch. Both install the receive key at once; the
// initiator switches sending on the reply, the responder when the first
// frame of the new epoch arrives or once 2 s pass with no frame of the
// old one (a reply that was lost). When both keys run out
// together, the requests may cross (each side uses the other's epk), or
// one side answers the other's before its own key signals: the epoch is
// agreed (s.epoch) as soon as a call_rekey is accepted, before anything is
// awaited, and a signal of a key older than it, or while the switch to it
// is pending, starts no rekey. So each epoch has one key pair.

/**
 * The worker's rekey-needed for its key of epoch. Rekeys unless the call
 * already agreed on a newer epoch or the switch to it is pending (the
 * peer's call_rekey came first): that epoch's key, with its whole budget,
 * replaces this one. Returns whether a call_rekey was sent.
 */
export function onRekeyNeeded(d, s, epoch) {
  if (epoch !== s.epoch || s.sendEpoch !== s.epoch) {
    s.rekeys.ignored++;
    d.log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; no rekey: epoch ${s.epoch} is agreed and ${s.sendEpoch === s.epoch ? 'in use' : 'pending'}`);
    return false;
  }
  if (startRekey(d, s)) {
    d.log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; rekeying`);
    return true;
  }
  s.rekeys.ignored++;
  d.log.info?.(`🔵 [CallModule] media key of epoch ${epoch} nearly used up; no rekey now: ${s.rekey ? `the request for epoch ${s.rekey.epoch} awaits its reply` : 'the call is not connected, or is ending'}`);
  return false;
}

/**
 * Sends call_rekey for the next epoch with a fresh ephemeral key, unless
 * one is awaiting its reply (the retry timer sends it again) or a switch
 * is pending. Synchronous: s.rekey is set, and the request queued, before
 * any other handler runs.
 */
export function startRekey(d, s) {
  if (s.torn || !s.connected || !s.worker || s.rekey || s.sendEpoch !== s.epoch) return false;
  const r = { epoch: s.epoch + 1, key: generateX25519() };
  r.key.catch((e) => {
    d.log.warn(`[CallModule] rekey: ephemeral key: ${e.name}: ${e.message}`);
    if (s.rekey === r) {
      s.rekey = null;
      s.clearTimer('rekeyRetry');
    }
  });
  s.rekey = r;
  sendRekey(d, s, r);
  return true;
}

function sendRekey(d, s, r) {
  s.setTimer('rekeyRetry', T.rekeyRetry, () => {
    if (s.rekey === r && !s.torn) sendRekey(d, s, r);
  });
  s.rekeys.requests++;
  d.log.info?.(`🔵 [CallModule] sending call_rekey for epoch ${r.epoch}`);
  const body = r.key.then((k) => ({ type: 'call_rekey', epoch: r.epoch, epk: k.publicKey }));
  d.queueSend(s, body, undefined, 'call_rekey').catch(() => {});
}

export async function onRekey(d, s, msg) {
  if (s.torn || !s.worker || !s.ephem) return d.drop('unexpected');
  const epoch = msg.epoch;
  let key; // a promise of our X25519 pair for epoch
  let initiator = false;
  if (s.rekey && s.rekey.epoch === epoch) {
    // The reply to ours, or the peer's own request for the same epoch
    // sent concurrently: each side uses the other's key.
    key = s.rekey.key;
    initiator = true;
    s.rekey = null;
    s.clearTimer('rekeyRetry');
    // Should it have been the peer's request and ours was lost, the peer
    // sends its request again: it is answered with our key for this
    // epoch, the one we derive with (as the Go SDK does).
    const body = key.then((k) => ({ type: 'call_rekey', epoch, epk: k.publicKey }));
    body.catch(() => {});
    s.lastReply = { epoch, body };
  } else if (epoch === s.epoch + 1) {
    key = generateX25519();
  } else if (epoch === s.epoch && s.lastReply?.epoch === epoch) {
    s.rekeys.replies++;
    d.queueSend(s, s.lastReply.body, undefined, 'call_rekey').catch(() => {}); // our reply was lost
    return;
  } else {
    d.drop('rekey_epoch');
    return;
  }
  // The epoch is agreed from here on, before anything is awaited: a
  // rekey-needed of the old key handled meanwhile must not start a
  // call_rekey of its own for this epoch (the peer would get two keys for
  // it) nor one for the next (sending would move past the key the pending
  // switch installs).
  s.epoch = epoch;
  let keys;
  let pair;
  try {
    pair = await key;
    keys = await deriveMediaKeys({
      ephemeralPrivate: pair.privateKey, peerEphemeral: msg.epk, callId: s.id,
      selfSigning: d.client.identity.signingKey.publicKey, peerSigning: s.peerKeys.signing, epoch,
    });
  } catch (e) {
    d.fail(s, callError('ErrMediaSetup', `rekey to epoch ${epoch}: ${e.message}`));
    return;
  }
  const epk = pair.publicKey;
  pair = null; // the ephemeral private key derived all it will
  if (s.torn) {
    wipeKeys(keys.send, keys.recv);
    return;
  }
  s.worker.postMessage({ type: 'add-recv', key: keys.recv });
  if (initiator) {
    s.worker.postMessage({ type: 'set-send', key: keys.send });
    wipeKeys(keys.send, keys.recv);
    return;
  }
  const reply = { type: 'call_rekey', epoch, epk };
  s.lastReply = { epoch, body: reply };
  s.worker.postMessage({ type: 'pending-send', key: keys.send });
  wipeKeys(keys.send, keys.recv);
  armSwitch(s, T.rekeySwitch);
  s.rekeys.replies++;
  d.log.info?.(`🔵 [CallModule] answering call_rekey for epoch ${epoch}`);
  d.queueSend(s, reply).catch(() => {});
}

/**
 * The responder's switch wait: in ms, the worker switches sending to the
 * pending key unless the peer's frames still come under the old one
 * (then it answers send-deferred, and the wait is armed again).
 */
export function armSwitch(s, ms) {
  s.setTimer('switch', ms, () => s.worker?.postMessage({ type: 'commit-send', quiet: T.rekeySwitch }));
}
