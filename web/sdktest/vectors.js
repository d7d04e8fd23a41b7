// Verifies every file of testdata/vectors with the browser SDK, plus the
// SDK's own behaviour around them. web_test.go imports this module in
// Chromium, calls run(), and asserts each reported check one by one.
//
// A check is {name, ok, error}. The names of the vector checks are part of
// the contract with web_test.go, which derives the list it expects from the
// vector files themselves.

import * as duet from '/sdk/duet.js';
import * as frameLimits from '/sdk/frame-limits.js'; // the test version (sdktest/sdk/frame-limits.js)
import { english } from '/sdk/wordlist.js';

const { DuetError, toHex, fromHex } = duet;

const results = [];

async function check(name, fn) {
  try {
    await fn();
    results.push({ name, ok: true });
  } catch (e) {
    results.push({ name, ok: false, error: `${e?.name ?? 'Error'}: ${e?.message ?? e}` });
  }
}

function eq(got, want, what) {
  if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

async function rejects(fn, wantName, what = 'call') {
  let r;
  try {
    r = await fn();
  } catch (e) {
    if (e?.name !== wantName) throw new Error(`${what}: want ${wantName}, got ${e?.name}: ${e?.message}`);
    return e;
  }
  throw new Error(`${what}: accepted (${JSON.stringify(r)?.slice(0, 80)}), want ${wantName}`);
}

async function load(base, file) {
  const r = await fetch(base + file);
  if (!r.ok) throw new Error(`fetching ${base + file}: ${r.status}`);
  return r.json();
}

const ids = new Map();
function identity(mnemonic) {
  if (!ids.has(mnemonic)) ids.set(mnemonic, duet.deriveIdentity(mnemonic));
  return ids.get(mnemonic);
}

async function pkcs8Public(alg, pkcs8Hex) {
  const k = await crypto.subtle.importKey('pkcs8', fromHex(pkcs8Hex), { name: alg }, true, alg === 'Ed25519' ? ['sign'] : ['deriveBits']);
  const jwk = await crypto.subtle.exportKey('jwk', k);
  return toHex(Uint8Array.from(atob(jwk.x.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)));
}

// ------------------------------------------------------------ identity.json

async function identityVectors(f) {
  const P = 'identity.json';
  for (const [i, v] of f.identities.entries()) {
    const p = `${P}/identities[${i}]`;
    await check(`${p}/bip39_seed`, async () => eq(toHex(await duet.mnemonicToSeed(v.mnemonic)), v.bip39_seed, 'seed'));
    const seeds = duet.identitySeeds(fromHex(v.bip39_seed));
    await check(`${p}/ed25519_seed`, async () => eq(toHex((await seeds).ed25519Seed), v.ed25519_seed, 'ed25519 seed'));
    await check(`${p}/x25519_private`, async () => eq(toHex((await seeds).x25519Private), v.x25519_private, 'x25519 private'));
    await check(`${p}/pkcs8_ed25519`, async () => eq(toHex(duet.pkcs8Ed25519(fromHex(v.ed25519_seed))), v.pkcs8_ed25519, 'pkcs8'));
    await check(`${p}/pkcs8_x25519`, async () => eq(toHex(duet.pkcs8X25519(fromHex(v.x25519_private))), v.pkcs8_x25519, 'pkcs8'));
    await check(`${p}/ed25519_public from PKCS8`, async () => {
      eq(await pkcs8Public('Ed25519', v.pkcs8_ed25519), v.ed25519_public, 'public key');
      // A signature by the PKCS8 key verifies with the vector's raw public key.
      const priv = await crypto.subtle.importKey('pkcs8', fromHex(v.pkcs8_ed25519), 'Ed25519', false, ['sign']);
      const pub = await crypto.subtle.importKey('raw', fromHex(v.ed25519_public), 'Ed25519', false, ['verify']);
      const msg = new TextEncoder().encode('duet');
      const sig = await crypto.subtle.sign('Ed25519', priv, msg);
      if (!(await crypto.subtle.verify('Ed25519', pub, sig, msg))) throw new Error('signature does not verify');
    });
    await check(`${p}/x25519_public from PKCS8`, async () => eq(await pkcs8Public('X25519', v.pkcs8_x25519), v.x25519_public, 'public key'));
    await check(`${p}/deriveIdentity public keys`, async () => {
      const id = await identity(v.mnemonic);
      eq(toHex(id.signingKey.publicKey), v.ed25519_public, 'ed25519');
      eq(toHex(id.agreementKey.publicKey), v.x25519_public, 'x25519');
      eq(id.mnemonic, v.mnemonic, 'mnemonic');
      if (!(id.signingKey.privateKey instanceof CryptoKey) || id.signingKey.privateKey.extractable) {
        throw new Error('signing private key should be a non-extractable CryptoKey');
      }
    });
    await check(`${p}/entropy round trip`, async () => {
      const e = await duet.mnemonicToEntropy(v.mnemonic);
      eq(await duet.entropyToMnemonic(e), v.mnemonic, 'mnemonic');
    });
  }
  const sn = f.safety_number;
  await check(`${P}/safety_number`, async () => {
    eq(await duet.safetyNumber(await identity(sn.a_mnemonic), await identity(sn.b_mnemonic)), sn.safety_number, 'safety number');
  });
  await check(`${P}/safety_number symmetric`, async () => {
    const a = duet.publicKeys(await identity(sn.a_mnemonic));
    const b = duet.publicKeys(await identity(sn.b_mnemonic));
    eq(await duet.safetyNumber(b, a), sn.safety_number, 'safety number (b, a)');
  });
  const names = { word_count: 'ErrWordCount', unknown_word: 'ErrUnknownWord', checksum: 'ErrChecksum' };
  for (const [i, v] of f.invalid_mnemonics.entries()) {
    await check(`${P}/invalid_mnemonics[${i}] (${v.why})`, async () => {
      if (!names[v.why]) throw new Error(`unknown category ${v.why}`);
      const e = await rejects(() => duet.validateMnemonic(v.mnemonic), names[v.why], 'validateMnemonic');
      await rejects(() => duet.deriveIdentity(v.mnemonic), names[v.why], 'deriveIdentity');
      if (v.why === 'unknown_word') {
        const words = duet.normalizeMnemonic(v.mnemonic).split(' ');
        eq(e.position, words.findIndex((w) => !english.includes(w)) + 1, 'position');
        eq(e.word, words[e.position - 1], 'word');
        if (!e.message.includes(e.word)) throw new Error(`message does not name the word: ${e.message}`);
      }
    });
  }
}

async function identityExtraVectors(f) {
  const P = 'identity.json';
  const names = { word_count: 'ErrWordCount', unknown_word: 'ErrUnknownWord', checksum: 'ErrChecksum' };
  for (const c of f.normalisation) {
    await check(`${P}/normalisation/${c.name}`, async () => {
      eq(duet.normalizeMnemonic(c.input), c.normalised, 'normalised');
      if (c.error) {
        await rejects(() => duet.validateMnemonic(c.input), names[c.error], 'validateMnemonic');
      } else {
        await duet.validateMnemonic(c.input);
        const id = await duet.deriveIdentity(c.input);
        eq(id.mnemonic, c.normalised, 'deriveIdentity keeps the normal form');
      }
    });
  }
  const self = await identity(f.identities[0].mnemonic);
  const eph = await duet.generateX25519();
  for (const k of f.invalid_public_keys) {
    await check(`${P}/invalid_public_keys/${k.name}`, async () => {
      await rejects(() => duet.checkPublicKeys(fromHex(k.ed25519), fromHex(k.x25519)), 'ErrInvalidPublicKey', 'checkPublicKeys');
      const x = fromHex(k.x25519);
      if (x.length === 32 && k.name.startsWith('X25519')) {
        // Low order: no session key and no media keys either.
        await rejects(() => duet.sessionKey(self, { signing: fromHex(f.identities[1].ed25519_public), agreement: x }), 'ErrKey', 'sessionKey');
        await rejects(() => duet.deriveMediaKeys({
          ephemeralPrivate: eph.privateKey, peerEphemeral: x, callId: 'c1', epoch: 0,
          selfSigning: fromHex(f.identities[0].ed25519_public), peerSigning: fromHex(f.identities[1].ed25519_public),
        }), 'ErrPeerKey', 'deriveMediaKeys');
      }
    });
  }
}

// ------------------------------------------------------ envelope_errors.json

async function envelopeErrorVectors(f) {
  const sender = await identity(f.sender_mnemonic);
  const receiver = await identity(f.receiver_mnemonic);
  const openStep = async (rx, clock, st, what) => {
    clock.now = st.open_at_ms;
    let got = '';
    try {
      await rx.open(duet.decodeEnvelope(st.envelope));
    } catch (e) {
      got = e?.name ?? String(e);
      if (st.error !== got) throw new Error(`${what}: ${got}: ${e?.message}; want ${st.error || 'opened'}`);
    }
    if (st.error !== got) throw new Error(`${what}: opened; want ${st.error}`);
  };
  for (const c of f.cases) {
    await check(`envelope_errors.json/${c.name}`, async () => {
      const clock = { now: 0 };
      const opts = { now: () => clock.now };
      if (c.replay_capacity) opts.replay = new duet.NonceCache(c.replay_capacity);
      const rx = await duet.Session.between(receiver, duet.publicKeys(sender), opts);
      for (const [i, b] of (c.before ?? []).entries()) await openStep(rx, clock, b, `before[${i}]`);
      await openStep(rx, clock, c, `step ${c.step}`);
    });
  }
}

// ------------------------------------------------------ frame_sequences.json

function directionKey(k) {
  return { epoch: k.epoch, key: fromHex(k.key), baseIV: fromHex(k.base_iv) };
}

async function frameSequenceVectors(f) {
  const P = 'frame_sequences.json';
  const keys = new Map(f.keys.map((k) => [k.epoch, directionKey(k)]));
  await check(`${P}/limits`, async () => {
    const l = f.limits;
    eq(duet.OVERHEAD, l.overhead, 'overhead');
    eq(duet.REPLAY_WINDOW, l.replay_window, 'replay window');
    eq(duet.MAX_FRAMES_PER_KEY, l.max_frames_per_key, 'max frames');
    eq(duet.REKEY_FRAMES, l.rekey_frames, 'rekey frames');
    eq(duet.MAX_BYTES_PER_KEY, l.max_bytes_per_key, 'max bytes');
    eq(duet.REKEY_BYTES, l.rekey_bytes, 'rekey bytes');
    eq(duet.REKEY_GRACE_MS, l.rekey_grace_ms, 'rekey grace');
  });
  for (const sq of f.sequences) {
    await check(`${P}/${sq.name}`, async () => {
      let now = 0;
      const d = await duet.FrameDecryptor.create(keys.get(0), { now: () => now });
      for (const [i, st] of sq.steps.entries()) {
        now = st.at_ms;
        const what = `step ${i} (${st.note})`;
        let got = '';
        let out;
        try {
          if (st.op === 'add_key') await d.addKey(keys.get(st.epoch));
          else if (st.op === 'decrypt') out = await d.decrypt(fromHex(st.frame), st.kind);
          else throw new Error(`unknown op ${st.op}`);
        } catch (e) {
          got = e?.name;
          if (got !== st.error) throw new Error(`${what}: ${got}: ${e?.message}; want ${st.error || 'success'}`);
        }
        if (got !== st.error) throw new Error(`${what}: succeeded; want ${st.error}`);
        if (!st.error && st.op === 'decrypt') eq(toHex(out), st.plaintext, `${what} plaintext`);
      }
    });
  }
  for (const c of f.encrypt_limits) {
    await check(`${P}/encrypt_limits/${c.name}`, async () => {
      const e = await duet.FrameEncryptor.create(keys.get(0), { firstSeq: c.first_seq });
      for (const [i, st] of c.steps.entries()) {
        let got = '';
        try {
          eq(toHex(await e.encrypt(fromHex(st.plaintext), st.kind)), st.encrypted ?? '', `step ${i} encrypted`);
        } catch (err) {
          got = err?.name;
          if (got !== st.error) throw err;
        }
        eq(got, st.error, `step ${i} error`);
        eq(e.usage.rekeyNeeded, st.rekey_needed_after, `step ${i} rekeyNeeded`);
      }
    });
  }
}

// ----------------------------------------------------------- relay_auth.json

async function relayAuthVectors(f) {
  const P = 'relay_auth.json';
  const id = await identity(f.mnemonic);
  await check(`${P}/keys`, async () => {
    eq(toHex(id.signingKey.publicKey), f.ed25519_public, 'ed25519');
    eq(toHex(id.agreementKey.publicKey), f.x25519_public, 'x25519');
  });
  await check(`${P}/register`, async () => {
    eq(duet.REGISTER_CONTEXT, f.register.domain, 'domain');
    // register() against a fetch that serves the vector's challenge and
    // records the request it then sends.
    let body;
    const fetch = async (url, init) => {
      const json = (v) => new Response(JSON.stringify(v), { status: 200, headers: { 'Content-Type': 'application/json' } });
      if (url.endsWith('/api/v1/challenge')) return json({ challenge: duet.toBase64(fromHex(f.register.challenge)), expires_in: 60 });
      if (url.endsWith('/api/v1/register')) {
        body = JSON.parse(init.body);
        return json({ alias: 'u10000001', created: true });
      }
      return new Response('{}', { status: 404 });
    };
    const r = await duet.register('http://relay.invalid', id, { fetch });
    eq(r.alias, 'u10000001', 'alias');
    eq(duet.canonicalJSON(body), duet.canonicalJSON(f.register_request), 'request body');
    eq(toHex(duet.fromBase64(body.signature)), f.register.signature, 'signature');
  });
  await check(`${P}/register_pow`, async () => {
    const pw = f.register_pow;
    eq(duet.REGISTER_POW_CONTEXT, pw.domain, 'domain');
    // register() against a relay that answers pow_bits: the request it
    // sends carries the first counter that solves it.
    let body;
    const fetch = async (url, init) => {
      const json = (v) => new Response(JSON.stringify(v), { status: 200, headers: { 'Content-Type': 'application/json' } });
      if (url.endsWith('/api/v1/challenge')) return json({ challenge: duet.toBase64(fromHex(f.register.challenge)), expires_in: 60, pow_bits: pw.bits });
      if (url.endsWith('/api/v1/register')) {
        body = JSON.parse(init.body);
        return json({ alias: 'u10000001', created: true });
      }
      return new Response('{}', { status: 404 });
    };
    await duet.register('http://relay.invalid', id, { fetch });
    eq(duet.canonicalJSON(body), duet.canonicalJSON(pw.register_request), 'request body');
    eq(toHex(duet.fromBase64(body.pow)), pw.nonce, 'nonce');
  });
  await check(`${P}/ws_auth`, async () => {
    eq(duet.WS_AUTH_CONTEXT, f.ws_auth.domain, 'domain');
    const msg = new Uint8Array([...new TextEncoder().encode(duet.WS_AUTH_CONTEXT), ...fromHex(f.ws_auth.challenge)]);
    eq(toHex(msg), f.ws_auth.message, 'message');
    const sig = new Uint8Array(await crypto.subtle.sign('Ed25519', id.signingKey.privateKey, msg));
    eq(toHex(sig), f.ws_auth.signature, 'signature');
    eq(f.ws_auth_frame.signature, duet.toBase64(sig), 'auth frame');
  });
}

// --------------------------------------------------------- session_key.json

async function sessionKeyVectors(f) {
  const P = 'session_key.json';
  const a = await identity(f.a_mnemonic);
  const b = await identity(f.b_mnemonic);
  await check(`${P}/x25519_shared`, async () => {
    eq(toHex(await duet.x25519(a.agreementKey.privateKey, b.agreementKey.publicKey)), f.x25519_shared, 'a→b');
    eq(toHex(await duet.x25519(b.agreementKey.privateKey, a.agreementKey.publicKey)), f.x25519_shared, 'b→a');
  });
  await check(`${P}/transcript`, async () => {
    eq(toHex(duet.sessionTranscript(duet.publicKeys(a), duet.publicKeys(b))), f.transcript, 'a');
    eq(toHex(duet.sessionTranscript(duet.publicKeys(b), duet.publicKeys(a))), f.transcript, 'b');
  });
  await check(`${P}/session_key (a)`, async () => eq(toHex(await duet.sessionKey(a, duet.publicKeys(b))), f.session_key, 'key'));
  await check(`${P}/session_key (b)`, async () => eq(toHex(await duet.sessionKey(b, duet.publicKeys(a))), f.session_key, 'key'));
}

// ------------------------------------------------------ canonical_json.json

async function canonicalVectors(f) {
  for (const c of f.cases) {
    await check(`canonical_json.json/${c.name}`, async () => {
      if (c.invalid) {
        await rejects(() => duet.canonicalize(c.input), 'ErrInvalidJSON', 'canonicalize(string)');
        await rejects(() => duet.canonicalize(new TextEncoder().encode(c.input)), 'ErrInvalidJSON', 'canonicalize(bytes)');
        return;
      }
      eq(duet.canonicalize(c.input), c.canonical, 'canonical (string input)');
      eq(duet.canonicalize(new TextEncoder().encode(c.input)), c.canonical, 'canonical (UTF-8 input)');
      eq(duet.canonicalJSON(duet.parseJSON(c.canonical)), c.canonical, 'canonical is a fixed point');
    });
  }
}

// ----------------------------------------------------------- envelopes.json

function withoutSeal(blob) {
  const o = duet.parseJSON(blob);
  delete o._sig;
  delete o._ts;
  delete o._nonce;
  return o;
}

async function envelopeVectors(f) {
  const P = 'envelopes.json';
  const alice = await identity(f.cases[0].sender_mnemonic);
  const bob = await identity(f.cases[0].receiver_mnemonic);
  await check(`${P}/session_key`, async () => eq(toHex(await duet.sessionKey(alice, duet.publicKeys(bob))), f.session_key, 'key'));
  for (const c of f.cases) {
    const p = `${P}/${c.name}`;
    const sender = await identity(c.sender_mnemonic);
    const receiver = await identity(c.receiver_mnemonic);
    const openAt = c.open_at_ms;
    const rx = await duet.Session.between(receiver, duet.publicKeys(sender), { now: () => openAt });
    let opened;
    await check(`${p}/signed_blob`, async () => {
      const key = await crypto.subtle.importKey('raw', fromHex(f.session_key), 'AES-GCM', false, ['decrypt']);
      const sealed = duet.fromBase64(c.envelope.payload);
      eq(toHex(sealed.subarray(0, 12)), c.iv, 'iv');
      const blob = new TextDecoder().decode(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.subarray(0, 12) }, key, sealed.subarray(12)));
      eq(blob, c.signed_blob, 'decrypted blob');
      eq(duet.canonicalize(blob), blob, 'blob is canonical');
      eq(toHex(duet.fromBase64(duet.parseJSON(blob)._nonce)), c.nonce, 'nonce');
    });
    await check(`${p}/open`, async () => {
      const env = duet.decodeEnvelope(JSON.stringify(c.envelope));
      opened = await rx.open(env);
      eq(opened.type, c.type, 'type');
      eq(duet.canonicalJSON(duet.messageToInner(opened)), duet.canonicalJSON(withoutSeal(c.signed_blob)), 'opened message');
    });
    await check(`${p}/replay refused`, async () => {
      await rejects(() => rx.open(duet.decodeEnvelope(JSON.stringify(c.envelope))), 'ErrReplay', 'second open');
    });
    await check(`${p}/reseal`, async () => {
      if (!opened) throw new Error('open failed, nothing to reseal');
      const tx = await duet.Session.between(sender, duet.publicKeys(receiver));
      const ts = duet.parseJSON(c.signed_blob)._ts;
      const env = await tx.sealWith(opened, { ts, nonce: fromHex(c.nonce), iv: fromHex(c.iv) });
      eq(env.payload, c.envelope.payload, 'payload');
      env.id = c.envelope.id;
      eq(duet.encodeEnvelope(env), JSON.stringify(c.envelope), 'encoded envelope');
    });
  }
}

async function envelopeErrors(f) {
  const P = 'envelopes';
  const c = f.cases[0];
  const alice = await identity(c.sender_mnemonic);
  const bob = await identity(c.receiver_mnemonic);
  const env = () => duet.decodeEnvelope(JSON.stringify(c.envelope));
  const rx = (now = c.open_at_ms) => duet.Session.between(bob, duet.publicKeys(alice), { now: () => now });
  const ts = duet.parseJSON(c.signed_blob)._ts;
  await check(`${P}/crypto_v 1 refused`, async () => {
    await rejects(async () => (await rx()).open({ ...env(), crypto_v: 1 }), 'ErrCryptoVersion', 'open');
    await rejects(() => duet.decodeEnvelope(JSON.stringify({ ...c.envelope, crypto_v: 3 })), 'ErrCryptoVersion', 'decodeEnvelope');
  });
  await check(`${P}/short payload refused`, async () => {
    await rejects(async () => (await rx()).open({ ...env(), payload: 'AAAAAAAAAAAA' }), 'ErrMalformed', 'open');
  });
  await check(`${P}/tampered payload refused`, async () => {
    const b = duet.fromBase64(c.envelope.payload);
    b[40] ^= 1;
    await rejects(async () => (await rx()).open({ ...env(), payload: duet.toBase64(b) }), 'ErrDecrypt', 'open');
  });
  await check(`${P}/wrong signer refused`, async () => {
    // The right session key, but a pinned signing key that is not the sender's.
    const other = await duet.createIdentity();
    const s = await duet.Session.create({ identity: bob, peerSigningKey: other.signingKey.publicKey, key: fromHex(f.session_key), now: () => c.open_at_ms });
    await rejects(() => s.open(env()), 'ErrSignature', 'open');
  });
  await check(`${P}/stale refused`, async () => {
    await rejects(async () => (await rx(ts + 60_000)).open(env()), 'ErrStale', 'open 60 s later');
    await (await rx(ts + 59_999)).open(env()); // still inside the window
  });
  await check(`${P}/future refused`, async () => {
    await rejects(async () => (await rx(ts - 60_000)).open(env()), 'ErrFuture', 'open 60 s earlier');
    await (await rx(ts - 59_999)).open(env());
  });
  await check(`${P}/route mismatch refused`, async () => {
    await rejects(async () => (await rx()).open({ ...env(), call_id: 'another-call' }), 'ErrRouteMismatch', 'open');
  });
  await check(`${P}/failed open does not burn the nonce`, async () => {
    const s = await rx();
    await rejects(() => s.open({ ...env(), call_id: 'another-call' }), 'ErrRouteMismatch', 'open');
    await s.open(env());
  });
  await check(`${P}/decodeEnvelope is strict`, async () => {
    const j = JSON.stringify(c.envelope);
    await rejects(() => duet.decodeEnvelope(j.replace('{', '{"extra":1,')), 'ErrEnvelope', 'unknown field');
    await rejects(() => duet.decodeEnvelope(j.replace('{', '{"type":"x",')), 'ErrEnvelope', 'duplicate key');
    await rejects(() => duet.decodeEnvelope(JSON.stringify({ ...c.envelope, to: 'u123' })), 'ErrEnvelope', 'bad alias');
    await rejects(() => duet.decodeEnvelope(JSON.stringify({ ...c.envelope, id: '' })), 'ErrEnvelope', 'empty id');
    await rejects(() => duet.decodeEnvelope(JSON.stringify({ ...c.envelope, crypto_v: '2' })), 'ErrEnvelope', 'string crypto_v');
  });
  await check(`${P}/dropReason labels`, async () => {
    eq(duet.dropReason(new DuetError('ErrStale', '')), 'stale', 'stale');
    eq(duet.dropReason(new DuetError('ErrReplayCacheFull', '')), 'replay_cache_full', 'full');
    eq(duet.dropReason(new Error('x')), 'other', 'other');
    eq(duet.dropReason(null), '', 'none');
  });
}

async function signalBehaviour(f) {
  const P = 'signal';
  const alice = await identity(f.cases[0].sender_mnemonic);
  const bob = await identity(f.cases[0].receiver_mnemonic);
  const a = await duet.Session.between(alice, duet.publicKeys(bob));
  const b = await duet.Session.between(bob, duet.publicKeys(alice));
  const route = { from: 'u10000001', to: 'u20000002', call_id: 'rt-1' };
  const epk = crypto.getRandomValues(new Uint8Array(32));
  const msgs = [
    { type: 'call_offer', sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n', epk, ice_restart: true },
    { type: 'call_answer', sdp: 'v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n', epk },
    { type: 'call_ice', candidate: 'candidate:1 1 udp 1 192.0.2.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 },
    { type: 'call_ice', candidate: '' },
    { type: 'call_reject', reason: 'busy' },
    { type: 'call_hangup', reason: 'no_answer' },
    { type: 'call_rekey', epoch: 1, epk },
  ];
  for (const m of msgs) {
    await check(`${P}/seal and open ${m.type}${m.type === 'call_ice' && !m.candidate ? ' (end of candidates)' : ''}`, async () => {
      const env = await a.seal({ ...route, ...m });
      const got = await b.open(duet.decodeEnvelope(duet.encodeEnvelope(env)));
      eq(duet.canonicalJSON(duet.messageToInner(got)), duet.canonicalJSON(duet.messageToInner({ ...route, ...m })), 'message');
      if (m.epk) eq(toHex(got.epk), toHex(epk), 'epk');
      if (m.type === 'call_ice') {
        eq(got.sdp_mid, m.sdpMid ?? null, 'sdp_mid');
        eq(got.sdp_mline, m.sdpMLineIndex ?? null, 'sdp_mline');
      }
    });
  }
  await check(`${P}/seal refuses invalid messages`, async () => {
    await rejects(() => a.seal({ ...route, type: 'call_hangup', reason: 'bored' }), 'ErrMalformed', 'bad reason');
    await rejects(() => a.seal({ ...route, type: 'call_offer', sdp: 'v=0', epk: new Uint8Array(31) }), 'ErrMalformed', 'short epk');
    await rejects(() => a.seal({ ...route, type: 'call_rekey', epoch: 0, epk }), 'ErrMalformed', 'epoch 0');
    await rejects(() => a.seal({ ...route, type: 'call_ice', candidate: 'c', sdp_mid: '0', sdpMid: '1' }), 'ErrMalformed', 'disagreeing mid');
    await rejects(() => a.seal({ ...route, type: 'call_hangup', reason: 'busy', extra: 1 }), 'ErrMalformed', 'unknown field');
    await rejects(() => a.seal({ ...route, to: 'bob', type: 'call_hangup', reason: 'busy' }), 'ErrMalformed', 'bad alias');
    await rejects(() => a.seal({ ...route, type: 'chat', reason: 'busy' }), 'ErrMalformed', 'unknown type');
  });
  await check(`${P}/ICE normalisation`, async () => {
    const canon = { candidate: 'candidate:x', sdp_mid: '0', sdp_mline: 0 };
    const same = (got, what) => eq(JSON.stringify(got), JSON.stringify(canon), what);
    same(duet.normalizeICE({ candidate: 'candidate:x', sdpMid: '0', sdpMLineIndex: 0 }), 'browser form');
    same(duet.normalizeICE('{"candidate":"candidate:x","sdp_mid":"0","sdp_mline":0}'), 'canonical JSON');
    same(duet.normalizeICE({ candidate: 'candidate:x', sdp_mid: '0', sdpMid: '0', sdp_mline: 0, sdpMLineIndex: 0 }), 'both forms agreeing');
    same(duet.normalizeICE(new RTCIceCandidate({ candidate: 'candidate:x', sdpMid: '0', sdpMLineIndex: 0 })), 'RTCIceCandidate');
    eq(JSON.stringify(duet.normalizeICE({ candidate: '' })), '{"candidate":"","sdp_mid":null,"sdp_mline":null}', 'end of candidates');
    await rejects(() => duet.normalizeICE({ candidate: 'c', sdp_mline: 0, sdpMLineIndex: 1 }), 'ErrMalformed', 'disagreeing line');
    await rejects(() => duet.normalizeICE({ candidate: 'c', sdp_mline: 65536 }), 'ErrMalformed', 'line out of range');
    await rejects(() => duet.normalizeICE({ candidate: 'c', usernameFragment: 'x' }), 'ErrMalformed', 'unknown key');
    await rejects(() => duet.normalizeICE({ sdpMid: '0' }), 'ErrMalformed', 'no candidate');
  });
  await check(`${P}/isVideoOffer`, async () => {
    eq(duet.isVideoOffer('v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\n'), true, 'audio+video');
    eq(duet.isVideoOffer('m=video 9 X 96\r\n'), true, 'video first');
    eq(duet.isVideoOffer('v=0\r\nm=audio 9 X 111\r\n'), false, 'audio only');
    eq(duet.isVideoOffer('v=0\r\na=x m=video 9\r\n'), false, 'm=video not at a line start');
    eq(duet.isVideoOffer('v=0\r\nm=videox 9\r\n'), false, 'm=videox');
  });
  await check(`${P}/nonce cache is bounded`, async () => {
    const c = new duet.NonceCache(2);
    c.add('a', 1000, 1000);
    c.add('b', 1000, 1000);
    await rejects(() => c.add('c', 1000, 2000), 'ErrReplayCacheFull', 'full of fresh nonces');
    await rejects(() => c.add('a', 1000, 2000), 'ErrReplay', 'replay');
    c.add('c', 1000, 61_000); // a and b can no longer pass the 60 s window
    eq(c.size, 1, 'size after evicting stale timestamps');
    eq(c.seen('c', 61_000 + 5 * 60_000), false, 'forgotten after 5 minutes');
    eq(c.size, 0, 'size after the nonce window');
  });
}

// -------------------------------------------------------------- frames.json

async function mediaKeys(f) {
  const caller = await identity(f.caller_mnemonic);
  const callee = await identity(f.callee_mnemonic);
  const ce = await duet.importX25519Private(fromHex(f.caller_ephemeral_private));
  const ee = await duet.importX25519Private(fromHex(f.callee_ephemeral_private));
  const callerKeys = await duet.deriveMediaKeys({
    ephemeralPrivate: ce.privateKey, peerEphemeral: ee.publicKey, callId: f.call_id,
    selfSigning: caller.signingKey.publicKey, peerSigning: callee.signingKey.publicKey, epoch: 0,
  });
  const calleeKeys = await duet.deriveMediaKeys({
    ephemeralPrivate: ee.privateKey, peerEphemeral: ce.publicKey, callId: f.call_id,
    selfSigning: callee.signingKey.publicKey, peerSigning: caller.signingKey.publicKey, epoch: 0,
  });
  return { caller, callee, ce, ee, callerKeys, calleeKeys };
}

function sameKey(k, want, what) {
  eq(toHex(k.key), want.key, `${what} key`);
  eq(toHex(k.baseIV), want.base_iv, `${what} base_iv`);
}

function runWorker(msg) {
  return new Promise((resolve, reject) => {
    const w = new Worker('/sdktest/frame_worker.js', { type: 'module' });
    const timer = setTimeout(() => {
      w.terminate();
      reject(new Error('the frame worker did not answer within 10 s'));
    }, 10_000);
    w.onmessage = (ev) => {
      clearTimeout(timer);
      w.terminate();
      resolve(ev.data);
    };
    w.onerror = (ev) => {
      clearTimeout(timer);
      w.terminate();
      reject(new Error(`the frame worker failed: ${ev.message || 'module did not load'}`));
    };
    w.postMessage(msg);
  });
}

async function frameVectors(f) {
  const P = 'frames.json';
  const k = await mediaKeys(f);
  await check(`${P}/caller_to_callee keys`, async () => {
    sameKey(k.callerKeys.send, f.caller_to_callee, 'caller send');
    sameKey(k.calleeKeys.recv, f.caller_to_callee, 'callee recv');
  });
  await check(`${P}/callee_to_caller keys`, async () => {
    sameKey(k.calleeKeys.send, f.callee_to_caller, 'callee send');
    sameKey(k.callerKeys.recv, f.callee_to_caller, 'caller recv');
  });
  const dec = {
    caller_to_callee: await duet.FrameDecryptor.create(k.calleeKeys.recv),
    callee_to_caller: await duet.FrameDecryptor.create(k.callerKeys.recv),
  };
  const send = { caller_to_callee: k.callerKeys.send, callee_to_caller: k.calleeKeys.send };
  for (const fr of f.frames) {
    const p = `${P}/${fr.name}`;
    await check(`${p}/decrypt`, async () => {
      eq(fr.epoch, 0, 'epoch of the vector');
      eq(toHex(await dec[fr.direction].decrypt(fromHex(fr.encrypted), fr.kind)), fr.plaintext, 'plaintext');
    });
    await check(`${p}/replay refused`, async () => {
      await rejects(() => dec[fr.direction].decrypt(fromHex(fr.encrypted), fr.kind), 'ErrReplay', 'second decrypt');
    });
    await check(`${p}/reencrypt`, async () => {
      const enc = await duet.FrameEncryptor.create(send[fr.direction], { firstSeq: fr.seq });
      eq(toHex(await enc.encrypt(fromHex(fr.plaintext), fr.kind)), fr.encrypted, 'encrypted frame');
      eq(enc.usage.frames, fr.seq + 1, 'frames used');
    });
  }
  for (const [i, r] of f.rekeys.entries()) {
    const ce = await duet.importX25519Private(fromHex(r.caller_ephemeral_private));
    const ee = await duet.importX25519Private(fromHex(r.callee_ephemeral_private));
    const common = { callId: f.call_id, epoch: r.epoch };
    const callerKeys = await duet.deriveMediaKeys({ ...common, ephemeralPrivate: ce.privateKey, peerEphemeral: ee.publicKey, selfSigning: k.caller.signingKey.publicKey, peerSigning: k.callee.signingKey.publicKey });
    const calleeKeys = await duet.deriveMediaKeys({ ...common, ephemeralPrivate: ee.privateKey, peerEphemeral: ce.publicKey, selfSigning: k.callee.signingKey.publicKey, peerSigning: k.caller.signingKey.publicKey });
    await check(`${P}/rekeys[${i}] keys`, async () => {
      sameKey(callerKeys.send, r.caller_to_callee, 'caller send');
      sameKey(calleeKeys.recv, r.caller_to_callee, 'callee recv');
      sameKey(calleeKeys.send, r.callee_to_caller, 'callee send');
      sameKey(callerKeys.recv, r.callee_to_caller, 'caller recv');
      eq(callerKeys.send.epoch, r.epoch, 'epoch');
    });
    const recv = { caller_to_callee: calleeKeys.recv, callee_to_caller: callerKeys.recv };
    const snd = { caller_to_callee: callerKeys.send, callee_to_caller: calleeKeys.send };
    for (const fr of r.frames) {
      await check(`${P}/${fr.name}/decrypt`, async () => {
        eq(fr.epoch, r.epoch, 'epoch of the vector');
        const d = await duet.FrameDecryptor.create(recv[fr.direction]);
        eq(toHex(await d.decrypt(fromHex(fr.encrypted), fr.kind)), fr.plaintext, 'plaintext');
        const enc = fromHex(fr.encrypted);
        const h = duet.clearHeaderLen(fromHex(fr.plaintext), fr.kind);
        const ctr = new DataView(enc.buffer, enc.byteOffset + h, 8);
        eq(ctr.getUint32(0), fr.epoch, 'counter epoch (big-endian)');
        eq(ctr.getUint32(4), fr.seq, 'counter seq');
      });
      await check(`${P}/${fr.name}/reencrypt`, async () => {
        const enc = await duet.FrameEncryptor.create(snd[fr.direction], { firstSeq: fr.seq });
        eq(toHex(await enc.encrypt(fromHex(fr.plaintext), fr.kind)), fr.encrypted, 'encrypted frame');
      });
    }
  }
  let worker;
  try {
    worker = await runWorker({
      frames: f,
      callerSigning: toHex(k.caller.signingKey.publicKey),
      calleeSigning: toHex(k.callee.signingKey.publicKey),
    });
  } catch (e) {
    worker = { error: e.message };
  }
  for (const fr of f.frames) {
    await check(`${P}/${fr.name}/worker decrypt`, async () => {
      if (worker.error) throw new Error(worker.error);
      if (worker.hasDocument) throw new Error('the worker has a document: not a DOM-free context');
      const r = worker.results.find((x) => x.name === fr.name);
      if (!r) throw new Error('the worker did not report this frame');
      if (!r.ok) throw new Error(r.error);
    });
  }
}

async function frameBehaviour(f) {
  const P = 'frames';
  const k = await mediaKeys(f);
  const fr = f.frames[0];
  await check(`${P}/tampered frame refused`, async () => {
    const d = await duet.FrameDecryptor.create(k.calleeKeys.recv);
    for (const i of [0, 20, fromHex(fr.encrypted).length - 1]) { // clear header, ciphertext, tag
      const b = fromHex(fr.encrypted);
      b[i] ^= 0x80;
      await rejects(() => d.decrypt(b, fr.kind), 'ErrAuth', `byte ${i} flipped`);
    }
    eq(toHex(await d.decrypt(fromHex(fr.encrypted), fr.kind)), fr.plaintext, 'untampered frame after failures');
  });
  await check(`${P}/short frame refused`, async () => {
    const d = await duet.FrameDecryptor.create(k.calleeKeys.recv);
    await rejects(() => d.decrypt(new Uint8Array(24), 'opus'), 'ErrShortFrame', 'decrypt');
    const e = await duet.FrameEncryptor.create(k.callerKeys.send);
    await rejects(() => e.encrypt(new Uint8Array(0), 'opus'), 'ErrEmptyFrame', 'encrypt');
    await rejects(() => e.encrypt(new Uint8Array(5), 'h264'), 'ErrInvalidKind', 'encrypt');
  });
  await check(`${P}/replay window`, async () => {
    const e = await duet.FrameEncryptor.create(k.callerKeys.send);
    const d = await duet.FrameDecryptor.create(k.calleeKeys.recv);
    const frames = [];
    for (let i = 0; i < 2050; i++) frames.push(await e.encrypt(Uint8Array.of(0xfc, i & 0xff), 'opus'));
    await d.decrypt(frames[2049], 'opus'); // highest = 2049
    await d.decrypt(frames[2], 'opus'); // 2049 - 2 < 2048: inside the window
    await rejects(() => d.decrypt(frames[2], 'opus'), 'ErrReplay', 'seq 2 again');
    await rejects(() => d.decrypt(frames[1], 'opus'), 'ErrTooOld', 'seq 1 (2048 behind)');
    await d.decrypt(frames[100], 'opus'); // out of order inside the window
  });
  await check(`${P}/rekey-needed at 80% and refusal at 100% (frames)`, async () => {
    let fired = [];
    const e = await duet.FrameEncryptor.create(k.callerKeys.send, { onRekeyNeeded: (ep) => fired.push(ep) });
    frameLimits.setLimits({ maxFrames: 10, rekeyFrames: 8 }); // every key's, until restored below
    for (let i = 0; i < 7; i++) await e.encrypt(Uint8Array.of(1, 2, 3), 'other');
    eq(fired.length, 0, 'signals before 80 %');
    eq(e.usage.rekeyNeeded, false, 'usage.rekeyNeeded before 80 %');
    await e.encrypt(Uint8Array.of(1), 'other');
    eq(JSON.stringify(fired), '[0]', 'signals at 80 %');
    await e.encrypt(Uint8Array.of(1), 'other');
    await e.encrypt(Uint8Array.of(1), 'other');
    eq(fired.length, 1, 'signals after 80 % (once per key)');
    eq(e.usage.rekeyNeeded, true, 'usage.rekeyNeeded');
    await rejects(() => e.encrypt(Uint8Array.of(1), 'other'), 'ErrKeyExhausted', 'frame 11 of 10');
    const next = await duet.deriveMediaKeys({
      ephemeralPrivate: k.ce.privateKey, peerEphemeral: k.ee.publicKey, callId: f.call_id,
      selfSigning: k.caller.signingKey.publicKey, peerSigning: k.callee.signingKey.publicKey, epoch: 1,
    });
    await rejects(() => e.setKey(k.callerKeys.send), 'ErrEpochOrder', 'same epoch again');
    await e.setKey(next.send);
    eq(JSON.stringify(e.usage), '{"epoch":1,"frames":0,"bytes":0,"rekeyNeeded":false}', 'usage after setKey');
    const out = await e.encrypt(Uint8Array.of(1), 'other');
    eq(toHex(out.subarray(0, 8)), '0000000100000000', 'counter epoch 1, seq 0');
    frameLimits.setLimits({});
  });
  await check(`${P}/rekey-needed at 80% and refusal at 100% (bytes)`, async () => {
    let fired = 0;
    const e = await duet.FrameEncryptor.create(k.callerKeys.send, { onRekeyNeeded: () => fired++ });
    frameLimits.setLimits({ maxBytes: 100, rekeyBytes: 80 });
    await e.encrypt(new Uint8Array(51).fill(0xfc), 'opus'); // 50 body bytes
    eq(fired, 0, 'signals at 50 bytes');
    await e.encrypt(new Uint8Array(31).fill(0xfc), 'opus'); // 80
    eq(fired, 1, 'signals at 80 bytes');
    await e.encrypt(new Uint8Array(21).fill(0xfc), 'opus'); // 100
    await rejects(() => e.encrypt(new Uint8Array(2).fill(0xfc), 'opus'), 'ErrKeyExhausted', '101 bytes');
    eq(e.usage.bytes, 100, 'bytes');
    frameLimits.setLimits({});
  });
  await check(`${P}/rekey grace`, async () => {
    frameLimits.setLimits({}); // the shipped limits, whatever a failed check above left
    let now = 1_000_000;
    const next = await duet.deriveMediaKeys({
      ephemeralPrivate: k.ee.privateKey, peerEphemeral: k.ce.publicKey, callId: f.call_id,
      selfSigning: k.callee.signingKey.publicKey, peerSigning: k.caller.signingKey.publicKey, epoch: 1,
    });
    const d = await duet.FrameDecryptor.create(k.calleeKeys.recv, { now: () => now });
    const e0 = await duet.FrameEncryptor.create(k.callerKeys.send);
    const a = await e0.encrypt(Uint8Array.of(0xfc, 1), 'opus');
    const b = await e0.encrypt(Uint8Array.of(0xfc, 2), 'opus');
    const c = await e0.encrypt(Uint8Array.of(0xfc, 3), 'opus');
    const z = await e0.encrypt(Uint8Array.of(0xfc, 4), 'opus');
    await d.addKey(next.recv);
    eq(d.epoch, 1, 'epoch after addKey');
    await rejects(() => d.addKey(k.calleeKeys.recv), 'ErrEpochOrder', 'older key');
    // No epoch-1 frame yet: epoch 0 still decrypts, long after addKey.
    now += 30_000;
    await d.decrypt(z, 'opus');
    const e1 = await duet.FrameEncryptor.create((await duet.deriveMediaKeys({
      ephemeralPrivate: k.ce.privateKey, peerEphemeral: k.ee.publicKey, callId: f.call_id,
      selfSigning: k.caller.signingKey.publicKey, peerSigning: k.callee.signingKey.publicKey, epoch: 1,
    })).send);
    eq(toHex(await d.decrypt(await e1.encrypt(Uint8Array.of(0xfc, 9), 'opus'), 'opus')), 'fc09', 'epoch 1 frame');
    // The grace runs from that first epoch-1 frame.
    now += 9_999;
    await d.decrypt(a, 'opus');
    now += 1;
    await rejects(() => d.decrypt(b, 'opus'), 'ErrUnknownEpoch', 'epoch 0 after the grace');
    await rejects(() => d.decrypt(c, 'opus'), 'ErrUnknownEpoch', 'epoch 0 after the grace, again');
    eq(toHex(await d.decrypt(await e1.encrypt(Uint8Array.of(0xfc, 10), 'opus'), 'opus')), 'fc0a', 'epoch 1 frame after the grace');
  });
  await check(`${P}/deriveMediaKeys refuses bad input`, async () => {
    const base = {
      ephemeralPrivate: k.ce.privateKey, peerEphemeral: k.ee.publicKey, callId: f.call_id,
      selfSigning: k.caller.signingKey.publicKey, peerSigning: k.callee.signingKey.publicKey,
    };
    await rejects(() => duet.deriveMediaKeys({ ...base, peerEphemeral: new Uint8Array(32) }), 'ErrPeerKey', 'all-zero peer key');
    await rejects(() => duet.deriveMediaKeys({ ...base, callId: '' }), 'ErrCallID', 'empty call id');
    await rejects(() => duet.deriveMediaKeys({ ...base, callId: 'x'.repeat(256) }), 'ErrCallID', 'long call id');
    await rejects(() => duet.deriveMediaKeys({ ...base, peerSigning: base.selfSigning }), 'ErrIdentityKey', 'same signing keys');
  });
  await check(`${P}/round trip with generated ephemeral keys`, async () => {
    const x = await duet.generateX25519();
    const y = await duet.generateX25519();
    const common = { callId: 'call-1', epoch: 0 };
    const kx = await duet.deriveMediaKeys({ ...common, ephemeralPrivate: x.privateKey, peerEphemeral: y.publicKey, selfSigning: k.caller.signingKey.publicKey, peerSigning: k.callee.signingKey.publicKey });
    const ky = await duet.deriveMediaKeys({ ...common, ephemeralPrivate: y.privateKey, peerEphemeral: x.publicKey, selfSigning: k.callee.signingKey.publicKey, peerSigning: k.caller.signingKey.publicKey });
    const e = await duet.FrameEncryptor.create(kx.send);
    const d = await duet.FrameDecryptor.create(ky.recv);
    const frame = crypto.getRandomValues(new Uint8Array(1200));
    frame[0] &= 0xfe; // VP8 key frame
    const enc = await e.encrypt(frame, 'vp8');
    eq(enc.length, frame.length + duet.OVERHEAD, 'overhead');
    eq(toHex(enc.subarray(0, 10)), toHex(frame.subarray(0, 10)), 'clear header');
    eq(toHex(await d.decrypt(enc, 'vp8')), toHex(frame), 'round trip');
  });
}

// ---------------------------------------------------------------- the rest

async function sdkBehaviour(idf) {
  await check('bip39/word list sha256', async () => {
    eq(english.length, 2048, 'words');
    const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(english.join('\n') + '\n')));
    eq(toHex(sum), '2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda', 'sha256');
  });
  await check('bip39/generate 12 and 24 words', async () => {
    for (const n of [12, 24]) {
      const m = await duet.generateMnemonic(n);
      eq(m.split(' ').length, n, 'words');
      await duet.validateMnemonic(m);
    }
    eq((await duet.generateMnemonic()).split(' ').length, 12, 'default');
    await rejects(() => duet.generateMnemonic(15), 'ErrWordCount', '15 words');
    const id = await duet.createIdentity();
    eq(id.mnemonic.split(' ').length, 12, 'createIdentity words');
  });
  await check('bip39/normalisation', async () => {
    const m = idf.identities[0].mnemonic;
    const messy = `  ${m.toUpperCase().replace(/ /g, '\u00a0\t ')} \n`;
    eq(duet.normalizeMnemonic(messy), m, 'normalised');
    eq(toHex(await duet.mnemonicToSeed(messy)), idf.identities[0].bip39_seed, 'seed of the messy form');
    await rejects(() => duet.validateMnemonic(m.replace('about', 'abóut')), 'ErrUnknownWord', 'non-ASCII letter');
  });
  await check('identity/checkPublicKeys', async () => {
    for (const v of idf.identities) await duet.checkPublicKeys(fromHex(v.ed25519_public), fromHex(v.x25519_public));
    const x = fromHex(idf.identities[0].x25519_public);
    const ed = fromHex(idf.identities[0].ed25519_public);
    const ident = new Uint8Array(32);
    ident[0] = 1; // y = 1: the identity point, small order
    await rejects(() => duet.checkPublicKeys(ident, x), 'ErrInvalidPublicKey', 'small-order Ed25519 key');
    const nonCanonical = new Uint8Array(32).fill(0xff);
    nonCanonical[31] = 0x7f; // y = 2^255 - 1 ≥ p
    await rejects(() => duet.checkPublicKeys(nonCanonical, x), 'ErrInvalidPublicKey', 'non-canonical Ed25519 key');
    await rejects(() => duet.checkPublicKeys(ed, new Uint8Array(32)), 'ErrInvalidPublicKey', 'all-zero X25519 key');
    const order8 = fromHex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800');
    await rejects(() => duet.checkPublicKeys(ed, order8), 'ErrInvalidPublicKey', 'X25519 point of order 8');
    await rejects(() => duet.checkPublicKeys(ed.subarray(1), x), 'ErrInvalidPublicKey', '31-byte key');
  });
  await check('identity/IndexedDB save and load', async () => {
    const opts = { dbName: 'duet-vectors-test' };
    const m = idf.identities[1].mnemonic;
    await duet.deleteIdentity(opts);
    eq(await duet.loadIdentity(opts), null, 'empty store');
    await duet.saveIdentity({ mnemonic: `  ${m.toUpperCase()} ` }, opts);
    eq(JSON.stringify(await duet.loadIdentity(opts)), JSON.stringify({ mnemonic: m, aliasId: '' }), 'before registration');
    await duet.saveIdentity({ mnemonic: m, aliasId: 'u12345678' }, opts);
    const got = await duet.loadIdentity(opts);
    eq(JSON.stringify(got), JSON.stringify({ mnemonic: m, aliasId: 'u12345678' }), 'loaded');
    eq(toHex((await duet.deriveIdentity(got.mnemonic)).signingKey.publicKey), idf.identities[1].ed25519_public, 'keys of the loaded mnemonic');
    await rejects(() => duet.saveIdentity({ mnemonic: m, aliasId: 'x1' }, opts), 'ErrInvalidAlias', 'bad alias');
    await rejects(() => duet.saveIdentity({ mnemonic: idf.invalid_mnemonics[2].mnemonic }, opts), 'ErrChecksum', 'bad mnemonic');
    eq((await duet.loadIdentity(opts)).aliasId, 'u12345678', 'unchanged after refused saves');
    await duet.deleteIdentity(opts);
    eq(await duet.loadIdentity(opts), null, 'after delete');
  });
  await check('client/PinStore in IndexedDB', async () => {
    const pins = duet.PinStore.indexedDB({ dbName: 'duet-vectors-test' });
    const k1 = { signing: fromHex(idf.identities[0].ed25519_public), agreement: fromHex(idf.identities[0].x25519_public) };
    const k2 = { signing: fromHex(idf.identities[1].ed25519_public), agreement: fromHex(idf.identities[1].x25519_public) };
    eq(await pins.pinned('u55555555'), null, 'no pin');
    await pins.check('u55555555', k1); // trust on first use
    await pins.check('u55555555', k1);
    const again = duet.PinStore.indexedDB({ dbName: 'duet-vectors-test' });
    const e = await rejects(() => again.check('u55555555', k2), 'ErrKeyChanged', 'changed key');
    eq(e.peer, 'u55555555', 'error names the peer');
    await again.accept('u55555555', k2);
    await pins.check('u55555555', k2);
    eq(toHex((await pins.pinned('u55555555')).signing), idf.identities[1].ed25519_public, 'pinned after accept');
  });
  await check('canonical/JS values', async () => {
    eq(duet.canonicalJSON({ b: [1, 'x', null, true], a: { d: false, c: -3 } }), '{"a":{"c":-3,"d":false},"b":[1,"x",null,true]}', 'object');
    for (const [v, what] of [[{ a: -0 }, '-0'], [{ a: 1.5 }, 'fraction'], [{ a: 2 ** 53 }, 'unsafe integer'],
      [{ a: undefined }, 'undefined'], [{ a: new Uint8Array(1) }, 'bytes'], [{ a: '\ud800' }, 'lone surrogate'], [{ a: NaN }, 'NaN']]) {
      await rejects(() => duet.canonicalJSON(v), 'ErrInvalidJSON', what);
    }
    const o = duet.parseJSON('{"__proto__":{"x":1},"a":1}');
    eq(Object.getPrototypeOf(o), Object.prototype, 'prototype untouched');
    eq(duet.canonicalJSON(o), '{"__proto__":{"x":1},"a":1}', '__proto__ as a plain key');
    let deep = '1';
    for (let i = 0; i < 33; i++) deep = `[${deep}]`;
    await rejects(() => duet.parseJSON(deep), 'ErrInvalidJSON', '33 levels');
    await rejects(() => duet.parseJSON('{"a":01}'), 'ErrInvalidJSON', 'leading zero');
    await rejects(() => duet.parseJSON(Uint8Array.of(0x22, 0xff, 0x22)), 'ErrInvalidJSON', 'invalid UTF-8');
    await rejects(() => duet.parseJSON('"a\u0001"'), 'ErrInvalidJSON', 'raw control character');
  });
}

/**
 * Runs every check and returns {checks, passed, failed}.
 * @param {string} base URL of the vector files, ending in '/'
 */
export async function run(base) {
  const file = {};
  for (const n of ['identity.json', 'session_key.json', 'canonical_json.json', 'envelopes.json', 'frames.json',
    'envelope_errors.json', 'frame_sequences.json', 'relay_auth.json']) {
    try {
      file[n] = await load(base, n);
    } catch (e) {
      results.push({ name: `${n}/load`, ok: false, error: e.message });
    }
  }
  const guard = async (n, fn) => {
    if (!file[n]) return;
    try {
      await fn(file[n]);
    } catch (e) {
      results.push({ name: `${n}/setup`, ok: false, error: `${e?.name}: ${e?.message}` });
    }
  };
  await guard('identity.json', identityVectors);
  await guard('identity.json', identityExtraVectors);
  await guard('envelope_errors.json', envelopeErrorVectors);
  await guard('frame_sequences.json', frameSequenceVectors);
  await guard('relay_auth.json', relayAuthVectors);
  await guard('session_key.json', sessionKeyVectors);
  await guard('canonical_json.json', canonicalVectors);
  await guard('envelopes.json', envelopeVectors);
  await guard('envelopes.json', envelopeErrors);
  await guard('envelopes.json', signalBehaviour);
  await guard('frames.json', frameVectors);
  await guard('frames.json', frameBehaviour);
  await guard('identity.json', sdkBehaviour);
  const passed = results.filter((r) => r.ok).length;
  console.log(`duet vectors: ${passed} of ${results.length} checks passed in ${navigator.userAgent.match(/Chrom\w+\/[\d.]+/)?.[0]}`);
  return { checks: results, passed, failed: results.length - passed };
}
