// The media E2EE worker of a call (docs/PROTOCOL.md §5). calls.js starts one
// per call and attaches it to every sender and receiver, either as an
// RTCRtpScriptTransform (this worker then gets an `rtctransform` event per
// stream) or, where only the older API exists, by transferring the
// createEncodedStreams() pipes to it ({type: 'stream'} messages).
//
// Outgoing frames are encrypted with the call's FrameEncryptor (one per
// direction, shared by audio and video: one counter) and incoming ones
// decrypted with its FrameDecryptor. Nothing leaves unencrypted: until the
// keys arrive, and whenever a frame does not encrypt, it is dropped.
//
// Messages from calls.js:
//   {type: 'keys', send, recv}      the epoch-0 DirectionKeys
//   {type: 'add-recv', key}         a newer receive key (rekey)
//   {type: 'set-send', key}         switch sending to a newer key (rekey initiator)
//   {type: 'pending-send', key}     the responder's next send key: switch when
//                                   the peer's first frame of its epoch decrypts
//   {type: 'commit-send', quiet}    the switch wait ran out: switch to the
//                                   pending send key, unless a frame of the
//                                   old epoch decrypted less than quiet ms ago
//   {type: 'stream', readable, writable, dir, kind}  createEncodedStreams pipes
//   {type: 'stats', id}             answered with {type: 'stats', id, counters}
//   {type: 'end'}                   the call ended: every key is dropped (its bytes
//                                   zeroed), no frame passes any more; answered
//                                   with {type: 'ended'}
// Messages to calls.js:
//   {type: 'rekey-needed', epoch}   the send key reached 80 % of its budget
//   {type: 'send-switched', epoch}  sending moved to a new epoch
//   {type: 'send-deferred', wait}   commit-send kept the old key (the peer still
//                                   sends under it); commit again in wait ms
//   {type: 'error', message}        a key could not be installed
//   {type: 'ended'}                 the keys are dropped (the answer to 'end')
//
// The raw key bytes of every message are zeroed once imported: the worker
// keeps only non-extractable CryptoKeys (and the pending send key's bytes
// until the switch).

import { FrameDecryptor, FrameEncryptor, OVERHEAD } from './frame.js';

let enc = null;
let dec = null;
let pendingSend = null;
let oldFrameAt = 0; // when a frame older than pendingSend's epoch last decrypted
let ready = Promise.resolve();
let ended = false; // the call ended: keys dropped, nothing installed any more

const counters = {
  encrypted: { audio: 0, video: 0 },
  decrypted: { audio: 0, video: 0 },
  bytesIn: { audio: 0, video: 0 },
  bytesOut: { audio: 0, video: 0 },
  droppedNoKey: 0,
  encryptErrors: 0,
  decryptErrors: 0, // frames that do not authenticate (or of an unknown epoch)
  replayed: 0, // frames delivered again (ErrReplay, ErrTooOld): dropped
  lastDecryptError: '',
  streams: 0,
  sendEpoch: 0,
  recvEpoch: 0,
  mime: {},
};

function post(m) {
  self.postMessage(m);
}

// Key changes run in order, after one another (each awaits WebCrypto).
function serial(f) {
  ready = ready.then(f).catch((e) => post({ type: 'error', message: `${e.name}: ${e.message}` }));
  return ready;
}

// Sending moves to key: a newer epoch, with its whole budget.
async function setSend(key) {
  await enc.setKey(key);
  zero(key);
  counters.sendEpoch = key.epoch;
  post({ type: 'send-switched', epoch: key.epoch });
}

async function switchSend() {
  const k = pendingSend;
  pendingSend = null;
  if (!k || !enc) return;
  await setSend(k);
}

function zero(k) {
  k?.key?.fill?.(0);
  k?.baseIV?.fill?.(0);
}

// The call ended: the keys go (forward secrecy); frames in flight find no
// key and are dropped.
function end() {
  ended = true;
  enc = null;
  dec = null;
  zero(pendingSend);
  pendingSend = null;
  post({ type: 'ended' });
}

self.onmessage = (ev) => {
  const m = ev.data ?? {};
  if (ended) {
    for (const k of [m.send, m.recv, m.key]) zero(k);
    if (m.type === 'end') post({ type: 'ended' });
    return;
  }
  switch (m.type) {
    case 'end':
      serial(end);
      break;
    case 'keys':
      serial(async () => {
        const e = await FrameEncryptor.create(m.send, {
          onRekeyNeeded: (epoch) => post({ type: 'rekey-needed', epoch }),
        });
        const d = await FrameDecryptor.create(m.recv);
        zero(m.send);
        zero(m.recv);
        if (ended) return;
        enc = e;
        dec = d;
        counters.sendEpoch = m.send.epoch;
        counters.recvEpoch = m.recv.epoch;
      });
      break;
    case 'add-recv':
      serial(async () => {
        await dec.addKey(m.key);
        zero(m.key);
        counters.recvEpoch = m.key.epoch;
      });
      break;
    case 'set-send':
      serial(() => setSend(m.key));
      break;
    case 'pending-send':
      serial(() => {
        pendingSend = m.key;
        oldFrameAt = 0;
      });
      break;
    case 'commit-send':
      serial(() => {
        // A peer still sending under the old key has not had our reply.
        const left = oldFrameAt ? m.quiet - (performance.now() - oldFrameAt) : 0;
        if (pendingSend && left > 0) {
          post({ type: 'send-deferred', wait: Math.ceil(left) });
          return undefined;
        }
        return switchSend();
      });
      break;
    case 'stream':
      pipe(m.readable, m.writable, m.dir, m.kind);
      break;
    case 'stats':
      post({ type: 'stats', id: m.id, counters: structuredClone(counters) });
      break;
  }
};

// RTCRtpScriptTransform: one event per sender or receiver.
self.onrtctransform = (ev) => {
  const t = ev.transformer;
  pipe(t.readable, t.writable, t.options?.dir, t.options?.kind);
};

// The epoch of an encrypted frame: the high half of its counter, after the
// clear header (§5.2).
function frameEpoch(f, kind) {
  let h = kind === 'vp8' ? ((f[0] & 1) === 0 ? 10 : 3) : 1;
  h = Math.min(h, f.length - OVERHEAD);
  return new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(h);
}

function pipe(readable, writable, dir, kind) {
  if ((dir !== 'send' && dir !== 'recv') || (kind !== 'audio' && kind !== 'video')) {
    post({ type: 'error', message: `stream with dir ${dir} and kind ${kind}` });
    return;
  }
  counters.streams++;
  post({ type: 'stream', dir, kind });
  const fk = kind === 'video' ? 'vp8' : 'opus';
  const transform = dir === 'send'
    ? async (frame, ctl) => {
      const data = new Uint8Array(frame.data);
      if (!enc || data.length === 0) {
        counters.droppedNoKey++;
        return;
      }
      const mime = frame.getMetadata?.().mimeType;
      if (mime) counters.mime[`send ${kind}`] = mime;
      try {
        const out = await enc.encrypt(data, fk);
        frame.data = out.buffer;
        counters.encrypted[kind]++;
        counters.bytesOut[kind] += data.length;
        ctl.enqueue(frame);
      } catch (e) {
        counters.encryptErrors++;
      }
    }
    : async (frame, ctl) => {
      const data = new Uint8Array(frame.data);
      if (!dec) {
        counters.droppedNoKey++;
        return;
      }
      try {
        const epoch = data.length > OVERHEAD ? frameEpoch(data, fk) : -1;
        const out = await dec.decrypt(data, fk);
        frame.data = out.buffer;
        counters.decrypted[kind]++;
        counters.bytesIn[kind] += out.length;
        ctl.enqueue(frame);
        if (pendingSend) {
          if (epoch >= pendingSend.epoch) serial(switchSend);
          else oldFrameAt = performance.now();
        }
      } catch (e) {
        if (e.name === 'ErrReplay' || e.name === 'ErrTooOld') {
          counters.replayed++;
        } else {
          counters.decryptErrors++;
          counters.lastDecryptError = `${e.name}: ${e.message}`;
        }
      }
    };
  readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(writable)
    .catch(() => { /* the call ended */ });
}
