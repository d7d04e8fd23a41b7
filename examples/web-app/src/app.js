// A minimal duet app: it creates an identity, registers it with a relay on
// another origin, connects, and calls an alias (an audio call), showing the
// call's state and the E2EE worker's frame counts. The SDK is the npm
// package @duetcall/duet: index.html imports it by name through an import
// map, bundled.html loads dist/app.js, this file bundled by esbuild
// (npm run build), with the E2EE worker as a second entry point beside it.
//
// Query parameters: relay (the relay's URL; default http://localhost:8080),
// callee (the alias to call), worker (where the E2EE worker's script is,
// when the app serves it elsewhere than beside the SDK: initCalls'
// workerUrl; the build also puts a copy in assets/duet-e2ee.js).
import { createIdentity, DuetClient, e2eeSupport } from '@duetcall/duet';

const params = new URLSearchParams(location.search);
const root = document.getElementById('app');
root.innerHTML = `
  <h1>duet example</h1>
  <p>this browser: <span id="support"></span></p>
  <label>relay <input id="relay" size="32"></label>
  <label>callee <input id="callee" size="10" placeholder="u12345678"></label>
  <button id="call">Call</button> <button id="hangup" disabled>Hang up</button>
  <p>you: <span id="alias">-</span>, state: <span id="state">idle</span></p>
  <p id="stats"></p>
  <p id="error" role="alert"></p>
  <audio id="remote" autoplay></audio>`;
/** @type {(id: string) => any} the page's elements (inputs, buttons, audio) */
const $ = (id) => document.getElementById(id);
$('support').textContent = e2eeSupport() || 'no frame encryption: calls will fail';
$('relay').value = params.get('relay') ?? 'http://localhost:8080';
$('callee').value = params.get('callee') ?? '';

/** @type {import('@duetcall/duet').DuetClient | null} */
let client = null;
/** @type {import('@duetcall/duet').CallModule | null} */
let calls = null;

// connect registers a fresh identity with the relay and connects, once.
// A real app stores the identity (saveIdentity) and shows its mnemonic.
async function connect() {
  if (calls) return calls;
  const identity = await createIdentity();
  client = new DuetClient({ identity, relayUrl: $('relay').value });
  const { alias } = await client.register();
  $('alias').textContent = alias;
  await client.connect();
  const workerUrl = params.get('worker');
  calls = client.initCalls({
    signingPrivKey: identity.signingKey.privateKey, signingPubKey: identity.signingKey.publicKey,
    myAliasId: alias,
    ...(workerUrl ? { workerUrl } : {}),
  });
  calls.onError = (err) => showError(err);
  calls.observeStatus().subscribe((s) => {
    $('state').textContent = s.reason ? `${s.state} (${s.reason})` : s.state;
    $('hangup').disabled = !['calling', 'connecting', 'connected'].includes(s.state);
  });
  calls.observeRemoteStream().subscribe((stream) => { $('remote').srcObject = stream; });
  calls.observeDiag().subscribe((d) => showStats(d));
  return calls;
}

function showStats(d) {
  const f = d?.frames;
  if (!f) return;
  const stats = $('stats');
  stats.dataset.encrypted = String(f.encrypted.audio);
  stats.dataset.decrypted = String(f.decrypted.audio);
  stats.dataset.e2ee = d.e2ee;
  stats.textContent = `${d.e2ee}: ${f.encrypted.audio} audio frames encrypted, ${f.decrypted.audio} decrypted, ${f.decryptErrors} failed; path ${d.pair}`;
}

function showError(err) {
  console.error('[example]', err.name, err.message);
  $('error').textContent = `${err.name}: ${err.message}`;
}

$('call').addEventListener('click', async () => {
  $('error').textContent = '';
  try {
    const c = await connect();
    await c.call($('callee').value.trim(), { audio: true, video: false });
  } catch (err) {
    showError(err);
  }
});
$('hangup').addEventListener('click', () => calls?.hangup());
