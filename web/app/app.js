// duet demo app: create or restore an identity, dial an alias, answer,
// talk, hang up. Everything it does goes through the browser SDK at /sdk/.

import {
  DuetClient, createIdentity, deriveIdentity, loadIdentity, saveIdentity, validAlias, validateMnemonic,
} from '/sdk/duet.js';

const $ = (id) => document.getElementById(id);
const screens = ['onboarding', 'backup', 'home', 'incoming', 'call'];

let client = null;
let calls = null;
let messageTimer = null;
let lastStatus = null;
let ringingCall; // the call id the incoming screen shows
let statsOn = false;

/** The app's state, for people and for tests: window.duetApp. */
const app = { alias: '', state: 'starting', messages: [], diag: null };
window.duetApp = app;

function show(screen) {
  for (const s of screens) $(s).hidden = s !== screen;
  app.screen = screen;
}

function message(text, kind = 'info', ms = 6000) {
  const el = $('message');
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
  app.messages.push({ text, kind });
  clearTimeout(messageTimer);
  if (ms > 0) messageTimer = setTimeout(() => { el.hidden = true; }, ms);
}

/** A clear sentence for every error the SDK reports. */
function errorText(e, peer) {
  const who = peer || 'The other side';
  switch (e?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera or microphone access was denied. Allow it in the browser’s site settings (the icon left of the address), then call again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found. Connect one, or make an audio call.';
    case 'NotReadableError':
      return 'The camera or microphone is in use by another app. Close it and try again.';
    case 'TimeoutError':
      return `The camera or microphone did not start (${e.message}). Check the device and try again.`;
    case 'NotSupportedError':
      return 'This page needs a secure context (https or localhost) to use the camera and microphone.';
    case 'ErrAlreadyAnswering':
      return 'Already answering this call…';
    case 'ErrNoAnswer':
      return `${who} did not answer.`;
    case 'ErrDeclined':
    case 'ErrBusy':
      return ''; // the call's ending says it (endText)
    case 'ErrOffline':
      return `${who} is offline: none of their devices is connected.`;
    case 'ErrUnavailable':
      return `The relay could not deliver the call to ${who} for now (it is overloaded). Try again in a moment.`;
    case 'ErrICEFailed':
      return `No network path to ${who}: the connection could not be established (a TURN server may be needed).`;
    case 'ErrMediaTimeout':
      return `No audio or video arrived from ${who} for 15 s; the call ended.`;
    case 'ErrDisconnected':
      return `The connection to ${who} was lost.`;
    case 'ErrKeyChanged':
      return `${who}'s security keys changed since your last call. Compare safety numbers with them before calling again.`;
    case 'ErrInvalidAlias':
      return e.message;
    case 'ErrInCall':
      return 'You are already in a call. Hang up first.';
    case 'ErrNotConnected':
    case 'ErrNetwork':
      return 'Not connected to the relay. It reconnects by itself; try again in a moment.';
    case 'ErrRelay':
      return e.status === 404 ? `${who} is not a known alias.` : `The relay refused: ${e.message}`;
    case 'ErrE2EE':
    case 'ErrUnsupported':
      return `Media encryption is not available: ${e.message}`;
    case 'ErrCallEnded':
      return '';
  }
  return `Call failed: ${e?.message ?? e}`;
}

/** The message for how a call ended (st.reason: the SDK's ending). */
function endText(st) {
  const who = st.peer;
  switch (st.reason) {
    case 'declined':
      return st.incoming ? '' : `${who} declined the call.`;
    case 'busy':
      return `${who} is busy in another call.`;
    case 'user_hangup':
      return 'Call ended.';
    case 'missed':
      return `Missed call from ${who}.`;
    case 'answered_elsewhere':
      return 'Answered on another device.';
    case 'declined_elsewhere':
      return 'Declined on another device.';
    case 'busy_elsewhere':
      return `Missed call from ${who} (busy on another device).`;
    default:
      return ''; // a failure: onError says what happened
  }
}

/** Endings that are no failure: shown as information, never as an error. */
const PLAIN_ENDINGS = ['user_hangup', 'missed', 'answered_elsewhere', 'declined_elsewhere', 'busy_elsewhere'];

// ------------------------------------------------------------- identity

async function start() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('sw.js').catch((e) => console.warn('🔥 [App] service worker:', e.message));
  }
  let stored = null;
  try {
    stored = await loadIdentity();
  } catch (e) {
    message(`Could not read the saved identity: ${e.message}`, 'error', 0);
  }
  if (!stored) {
    show('onboarding');
    app.state = 'onboarding';
    return;
  }
  await connect(await deriveIdentity(stored.mnemonic), stored.aliasId);
}

async function connect(identity, aliasId) {
  client = new DuetClient({ identity, aliasId });
  if (!aliasId) {
    const { alias } = await client.register();
    await saveIdentity({ mnemonic: identity.mnemonic, aliasId: alias });
  }
  client.observeState().subscribe((s) => {
    $('conn').dataset.state = s;
    $('conn').textContent = s === 'connected' ? 'online' : s;
  });
  client.onError = (e) => console.warn('🔥 [App] relay:', e.message);
  await client.connect();
  calls = client.initCalls({
    signingPrivKey: identity.signingKey.privateKey,
    signingPubKey: identity.signingKey.publicKey,
    myAliasId: client.aliasId,
  });
  wireCalls();
  app.alias = client.aliasId;
  $('my-alias').textContent = client.aliasId;
  $('home-alias').textContent = client.aliasId;
  $('me').hidden = false;
  app.state = 'ready';
  show('home');
}

$('create').addEventListener('click', async () => {
  $('create').disabled = true;
  try {
    const identity = await createIdentity();
    const c = new DuetClient({ identity });
    const { alias } = await c.register();
    await saveIdentity({ mnemonic: identity.mnemonic, aliasId: alias });
    const ol = $('words');
    ol.replaceChildren(...identity.mnemonic.split(' ').map((w) => {
      const li = document.createElement('li');
      li.textContent = w;
      return li;
    }));
    app.state = 'backup';
    show('backup');
    $('backup-done').onclick = async () => {
      ol.replaceChildren(); // shown once
      $('backup-done').disabled = true;
      await connect(identity, alias).catch(fatal);
    };
  } catch (e) {
    fatal(e);
  } finally {
    $('create').disabled = false;
  }
});

$('saved-check').addEventListener('change', (ev) => {
  $('backup-done').disabled = !ev.target.checked;
});

$('restore-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const words = $('restore-words').value;
  try {
    await validateMnemonic(words);
  } catch (e) {
    message(e.name === 'ErrUnknownWord' ? `Word ${e.position} (“${e.word}”) is not a recovery word.` :
      e.name === 'ErrWordCount' ? 'A recovery phrase has 12 or 24 words.' :
        'These words do not form a valid recovery phrase (checksum). Check each word.', 'error');
    return;
  }
  try {
    const identity = await deriveIdentity(words);
    $('restore-words').value = '';
    await connect(identity, '');
    message(`Restored: you are ${client.aliasId} again.`, 'ok');
  } catch (e) {
    fatal(e);
  }
});

function fatal(e) {
  console.error('🔥 [App]', e);
  message(e?.name === 'ErrNetwork' ? 'Cannot reach the relay. Is it running?' : `Error: ${e?.message ?? e}`, 'error', 0);
}

// ---------------------------------------------------------------- calls

function wireCalls() {
  calls.onIncomingCall = (from, isVideo, callId) => {
    console.log(`🔥 [App] incoming ${isVideo ? 'video' : 'audio'} call from ${from}`);
    ringingCall = callId; // accept and reject act on this call only
    $('incoming-from').textContent = from;
    $('incoming-kind').textContent = isVideo ? 'Video call' : 'Audio call';
    $('accept').disabled = false;
    $('reject').disabled = false;
    show('incoming');
  };
  calls.onError = (e) => {
    console.error('[Calls]', e.name, e.message);
    // A call refused because the caller's keys changed has no call status:
    // the error names the peer.
    const text = errorText(e, e.peer ?? calls.status.peer);
    if (text) message(text, 'error', 9000);
  };
  calls.observeStatus().subscribe(onStatus);
  calls.observeLocalStream().subscribe((s) => {
    $('local-video').srcObject = s;
    $('local-video').hidden = !s || s.getVideoTracks().length === 0;
    // The buttons say what the call sends (a stream emitted again after an
    // upgrade keeps the call's mute and camera state).
    const mine = calls.localMedia;
    $('mute').setAttribute('aria-pressed', String(mine.audioMuted));
    $('mute').textContent = mine.audioMuted ? 'Unmute' : 'Mute';
    $('camera').setAttribute('aria-pressed', String(mine.videoOff));
    $('camera').textContent = mine.videoOff ? 'Camera on' : 'Camera';
    $('upgrade').hidden = !s || s.getVideoTracks().length > 0 || app.state !== 'connected';
    $('camera').disabled = !s || s.getVideoTracks().length === 0;
    $('share').disabled = !s || s.getVideoTracks().length === 0;
    $('share').setAttribute('aria-pressed', 'false');
    $('share').textContent = 'Share';
  });
  calls.observeRemoteStream().subscribe((s) => {
    $('remote-video').srcObject = s;
    if (s) $('remote-video').play().catch(() => {});
  });
  calls.observeDiag().subscribe((d) => {
    app.diag = d;
    if (d) renderStats(d);
  });
  // The peer's announced media state (PROTOCOL §10.9): a muted badge, and
  // their alias in place of a black picture while their camera is off.
  calls.observePeerMedia().subscribe((m) => {
    app.peerMedia = m;
    renderPeer();
  });
}

function renderPeer() {
  const st = app.status;
  const m = app.peerMedia ?? { audioMuted: false, videoOff: false, screen: false };
  const videoOff = !!st?.isVideo && m.videoOff;
  $('peer-muted').hidden = !m.audioMuted;
  $('audio-only').hidden = !!st?.isVideo && !videoOff;
  $('audio-avatar').textContent = videoOff ? '👤' : '🔊';
  $('peer-camera-off').hidden = !videoOff;
  $('remote-video').hidden = videoOff;
  // A shared screen is shown whole, full size (no crop, no local preview over it).
  $('call').classList.toggle('peer-screen', !!st?.isVideo && m.screen && !videoOff);
}

function onStatus(st) {
  app.state = st.state;
  app.status = st;
  // recovering: the connection is down and being restored (ICE restart);
  // the state stays connected meanwhile.
  $('call-state').textContent = st.state === 'calling' ? 'calling…' : st.recovering ? 'reconnecting…' : st.state;
  $('call-state').dataset.state = st.state;
  $('call-peer').textContent = st.peer;
  $('audio-peer').textContent = st.peer;
  // An audio call can become a video call once connected (PROTOCOL §10.10).
  let local = null;
  calls.observeLocalStream().subscribe((x) => { local = x; }).unsubscribe();
  $('upgrade').hidden = st.state !== 'connected' || !local || local.getVideoTracks().length > 0;
  renderPeer();
  switch (st.state) {
    case 'ringing':
      if (st.incoming) show('incoming');
      break;
    case 'calling':
    case 'connecting':
    case 'connected':
      show('call');
      break;
    case 'hangup':
    case 'rejected':
    case 'ended': {
      const t = endText(st);
      if (t) message(t, PLAIN_ENDINGS.includes(st.reason) ? 'info' : 'error');
      show('home');
      $('stats').textContent = '';
      break;
    }
  }
  lastStatus = st;
}

$('dial-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const alias = $('dial-alias').value.trim().toLowerCase();
  const video = ev.submitter?.value === 'video';
  if (!validAlias(alias)) {
    message('An alias is u followed by 8 digits, like u12345678.', 'error');
    return;
  }
  console.log(`🟠 [App] calls.call(${alias}, {video: ${video}})`);
  for (const b of [$('dial-audio'), $('dial-video')]) b.disabled = true;
  try {
    await calls.call(alias, { audio: true, video });
  } catch (e) {
    // onError shows what failed once the call started (the keys, the relay,
    // the media); these refusals come before, and never reach it:
    if (['ErrInCall', 'ErrInvalidAlias', 'ErrNoMedia', 'ErrClosed'].includes(e.name)) {
      message(errorText(e, alias), 'error');
    }
  } finally {
    for (const b of [$('dial-audio'), $('dial-video')]) b.disabled = false;
  }
});

$('accept').addEventListener('click', async () => {
  console.log('🔥 [App] accept');
  $('accept').disabled = true; // the seed: no double answer
  $('reject').disabled = true;
  try {
    await calls.answer(ringingCall);
  } catch { /* onError shows it */ }
});

$('reject').addEventListener('click', () => {
  console.log('🔥 [App] reject');
  $('accept').disabled = true;
  $('reject').disabled = true;
  // Rejects (never throws) when the call stopped ringing meanwhile; the
  // state observer already shows how it ended.
  calls.reject(ringingCall).catch((e) => console.warn(`[App] reject: ${e.name}: ${e.message}`));
});

$('hangup').addEventListener('click', () => {
  console.log('🔥 [App] hang up');
  calls.hangup();
});

$('mute').addEventListener('click', () => {
  const muted = $('mute').getAttribute('aria-pressed') !== 'true';
  calls.setMicrophoneEnabled(!muted);
  $('mute').setAttribute('aria-pressed', String(muted));
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
});

$('camera').addEventListener('click', () => {
  const off = $('camera').getAttribute('aria-pressed') !== 'true';
  calls.setCameraEnabled(!off);
  $('camera').setAttribute('aria-pressed', String(off));
  $('camera').textContent = off ? 'Camera on' : 'Camera';
});

$('share').addEventListener('click', async () => {
  const sharing = $('share').getAttribute('aria-pressed') === 'true';
  $('share').disabled = true;
  try {
    if (sharing) await calls.stopScreenShare();
    else await calls.shareScreen();
  } catch (e) {
    if (e.name !== 'NotAllowedError') message(`Screen sharing failed: ${e.message}`, 'error');
  } finally {
    $('share').disabled = false;
  }
  const now = calls.localMedia.screen;
  $('share').setAttribute('aria-pressed', String(now));
  $('share').textContent = now ? 'Stop sharing' : 'Share';
});

$('upgrade').addEventListener('click', async () => {
  $('upgrade').disabled = true;
  try {
    await calls.setVideo(true);
  } catch (e) {
    if (e.name !== 'NotAllowedError') message(`Video could not be turned on: ${e.message}`, 'error');
    else message(errorText(e, calls.status.peer), 'error');
  } finally {
    $('upgrade').disabled = false;
  }
});

$('stats-toggle').addEventListener('click', () => {
  statsOn = !statsOn;
  $('stats-toggle').setAttribute('aria-pressed', String(statsOn));
  $('stats').hidden = !statsOn;
  if (app.diag) renderStats(app.diag);
});

function kbps(bytes, ms) {
  return ms > 0 ? Math.round((bytes * 8) / ms) : 0;
}

let prevDiag = null;
function renderStats(d) {
  const p = prevDiag && prevDiag.callId === d.callId ? prevDiag : null;
  prevDiag = d;
  const dt = p ? d.connectedMs - p.connectedMs : 0;
  const ov = d.outVideo;
  const iv = d.inVideo;
  const f = d.frames;
  const lines = [
    `Diag #${d.n}  ${d.state}  ${Math.round(d.connectedMs / 1000)} s  path ${d.pair || '-'}  rtt ${Math.round(d.rtt * 1000)} ms`,
    ov ? `send video ${ov.frameWidth}x${ov.frameHeight} @ ${ov.framesPerSecond ?? 0} fps  ${p?.outVideo ? kbps(ov.bytesSent - p.outVideo.bytesSent, dt) : '-'} kbit/s  limit ${ov.qualityLimitationReason || 'none'}` : 'send video -',
    iv ? `recv video ${iv.frameWidth}x${iv.frameHeight} @ ${iv.framesPerSecond ?? 0} fps  ${p?.inVideo ? kbps(iv.bytesReceived - p.inVideo.bytesReceived, dt) : '-'} kbit/s  decoded ${iv.framesDecoded}  dropped ${iv.framesDropped}` : 'recv video -',
    `audio sent ${Math.round((d.outAudio?.bytesSent ?? 0) / 1024)} KB  received ${Math.round((d.inAudio?.bytesReceived ?? 0) / 1024)} KB`,
    f ? `E2EE (${d.e2ee}) key epoch ${f.sendEpoch}: encrypted v${f.encrypted.video}/a${f.encrypted.audio}, decrypted v${f.decrypted.video}/a${f.decrypted.audio}, failed ${f.decryptErrors}` : '',
  ];
  $('stats').textContent = lines.filter(Boolean).join('\n');
}

start().catch(fatal);

// "Test my connection": what calls need, checked from this browser, one
// line each with a verdict and the fix (like `duet doctor`): a secure
// context, the relay, the relay connection and the clock, the ICE servers,
// and for each of them what this browser gathers through it (its public
// address through STUN; a relayed address through TURN over UDP, TCP, TLS).
const connTest = { done: false, lines: [] };
app.connTest = connTest;

function testLine(verdict, what, detail, fix = '') {
  connTest.lines.push({ verdict, what, detail, fix });
  const li = document.createElement('li');
  li.dataset.verdict = verdict;
  li.textContent = `${verdict} · ${what}: ${detail}${fix ? ' — fix: ' + fix : ''}`;
  $('conn-test').append(li);
}

// gather collects the candidates one ICE server yields within ms.
function gather(server, policy, ms) {
  return new Promise((resolve) => {
    const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: policy });
    const found = [];
    const done = () => {
      clearTimeout(timer);
      pc.close();
      resolve(found);
    };
    const timer = setTimeout(done, ms);
    pc.onicecandidate = (ev) => {
      if (!ev.candidate) return done();
      if (ev.candidate.candidate) found.push(ev.candidate);
    };
    pc.createDataChannel('test');
    pc.createOffer().then((o) => pc.setLocalDescription(o)).catch(done);
  });
}

async function runConnectionTest() {
  connTest.done = false;
  connTest.lines = [];
  $('conn-test').replaceChildren();
  $('conn-test-run').disabled = true;
  try {
    if (window.isSecureContext) testLine('ok', 'secure page', location.origin);
    else testLine('fail', 'secure page', 'this page is not https', 'open the app over https (the relay needs --tls-cert or --acme-domain)');
    try {
      const r = await fetch('/healthz', { cache: 'no-store' });
      testLine(r.ok ? 'ok' : 'fail', 'relay', r.ok ? 'reachable' : `answered ${r.status}`, r.ok ? '' : 'check the relay');
    } catch (e) {
      testLine('fail', 'relay', e.message, 'check the network and the relay');
    }
    if (client?.state === 'connected') testLine('ok', 'relay connection', 'connected');
    else testLine('fail', 'relay connection', client?.state ?? 'none', 'reload the page; if it stays offline, a proxy may block WebSockets');
    const skew = client?.clockSkewMs ?? 0;
    const s = Math.round(skew / 1000);
    if (Math.abs(skew) > 60_000) testLine('fail', 'clock', `${s} s off the relay's`, 'set this device\'s clock (automatic time)');
    else if (Math.abs(skew) > 30_000) testLine('warn', 'clock', `${s} s off the relay's`, 'set this device\'s clock (automatic time)');
    else testLine('ok', 'clock', `${s} s off the relay's`);
    let cfg;
    try {
      cfg = await client.iceConfig();
    } catch (e) {
      testLine('fail', 'ICE servers', e.message, 'the relay could not give ICE servers: check its TURN configuration');
      return;
    }
    const servers = cfg.ice_servers.map((srv) => ({ ...srv, urls: [].concat(srv.urls) }));
    const urls = servers.flatMap((srv) => srv.urls);
    testLine(urls.some((u) => u.startsWith('turn')) ? 'ok' : 'warn', 'ICE servers', urls.join(' '),
      urls.some((u) => u.startsWith('turn')) ? '' : 'no TURN: calls through strict NATs and firewalls will fail');
    let relayed = 0;
    for (const srv of servers) {
      for (const url of srv.urls) {
        const server = { urls: url, username: srv.username, credential: srv.credential };
        if (url.startsWith('stun:')) {
          const c = (await gather(server, 'all', 5000)).find((x) => x.type === 'srflx');
          if (c) testLine('ok', 'STUN', `${url} sees this browser at ${c.address}:${c.port}`);
          else testLine('warn', 'STUN', `${url}: no answer`, 'UDP looks blocked: calls need TURN over TCP or TLS');
          continue;
        }
        const kind = url.startsWith('turns:') ? 'TURN tls' : url.includes('transport=tcp') ? 'TURN tcp' : 'TURN udp';
        const c = (await gather(server, 'relay', 8000)).find((x) => x.type === 'relay');
        if (c) {
          relayed++;
          testLine('ok', kind, `relayed address ${c.address}:${c.port}`);
        } else {
          testLine('warn', kind, `${url}: no allocation`, 'the network blocks this transport to the TURN server');
        }
      }
    }
    if (urls.some((u) => u.startsWith('turn')) && relayed === 0) {
      testLine('fail', 'TURN', 'no allocation over any transport', 'open UDP or TCP 3478, or TCP 443, to the relay; TURN over TLS on 443 passes most firewalls');
    }
  } finally {
    connTest.done = true;
    $('conn-test-run').disabled = false;
  }
}

$('conn-test-run').addEventListener('click', () => { runConnectionTest(); });
