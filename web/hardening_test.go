package web_test

// Issue 14's browser SDK checks: the seed's own setup code (initCalls with
// the keys of a second deriveIdentity, options that cannot be ignored,
// reject() as forgiving as hangup()), the remote stream emitted again when
// video joins, and no hung I/O (a relay that never answers).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/web"
)

// initCallsChecks runs the seed's setup code against initCalls in a page:
// the private key of a second deriveIdentity of the same mnemonic, a
// foreign key, a non-boolean alwaysRelay, a workerUrl that is not a URL,
// one relative to the page, a second initCalls agreeing with the first and
// one that does not, and reject() / hangup() with nothing
// ringing used fire-and-forget as the seed does.
const initCallsChecks = `(async () => {
  const duet = await import('/sdk/duet.js');
  const first = await duet.createIdentity();
  const again = await duet.deriveIdentity(first.mnemonic);
  const other = await duet.createIdentity();
  const client = new duet.DuetClient({ identity: first, aliasId: 'u12345678', pins: duet.PinStore.memory(), relayUrl: location.origin });
  const err = (f) => { try { f(); return ''; } catch (e) { return e.name; } };
  const out = {};
  out.foreignKey = err(() => client.initCalls({ signingPrivKey: other.signingKey.privateKey }));
  out.notAKey = err(() => client.initCalls({ signingPrivKey: {} }));
  const fresh = new duet.DuetClient({ identity: first, aliasId: 'u12345678', pins: duet.PinStore.memory(), relayUrl: location.origin });
  out.freshStringRelay = err(() => fresh.initCalls({ alwaysRelay: 'yes' }));
  out.numberWorker = err(() => fresh.initCalls({ workerUrl: 42 }));
  out.badWorker = err(() => fresh.initCalls({ workerUrl: 'http://[::1' }));
  fresh.close();
  const placed = new duet.DuetClient({ identity: first, aliasId: 'u12345678', pins: duet.PinStore.memory(), relayUrl: location.origin });
  const pm = placed.initCalls({ workerUrl: 'assets/e2ee.js' });
  out.workerUrl = pm.workerUrl;
  out.sameWorker = placed.initCalls({ workerUrl: new URL('assets/e2ee.js', location.href) }) === pm;
  out.otherWorker = err(() => placed.initCalls({ workerUrl: '/elsewhere.js' }));
  placed.close();
  let mod = null;
  out.secondDerive = err(() => {
    mod = client.initCalls({ signingPrivKey: again.signingKey.privateKey, signingPubKey: again.signingKey.publicKey, myAliasId: 'u12345678', alwaysRelay: false });
  });
  out.stringRelay = err(() => client.initCalls({ alwaysRelay: 'true' }));
  out.numberRelay = err(() => client.initCalls({ alwaysRelay: 1 }));
  out.same = mod !== null && client.initCalls({ signingPrivKey: first.signingKey.privateKey, alwaysRelay: false }) === mod;
  out.bare = mod !== null && client.initCalls() === mod;
  out.otherRelay = err(() => client.initCalls({ alwaysRelay: true }));
  out.otherLogger = err(() => client.initCalls({ logger: { warn() {}, error() {} } }));
  out.alwaysRelay = mod?.alwaysRelay ?? null;
  out.defaultWorker = mod?.workerUrl === new URL('/sdk/e2ee-worker.js', location.href).href;
  let unhandled = 0;
  addEventListener('unhandledrejection', (ev) => { unhandled++; ev.preventDefault(); });
  if (mod) {
    mod.reject();            // the seed's fire-and-forget use
    mod.reject('c-stale');
    mod.hangup();
    out.reject = await mod.reject().then(() => 'resolved', (e) => e.name);
    out.hangup = await mod.hangup().then(() => 'resolved', (e) => e.name);
  }
  await new Promise((r) => setTimeout(r, 200));
  out.unhandled = unhandled;
  client.close();
  return out;
})()`

// TestInitCallsSeedSetup: initCalls compares the signing key by value (the
// seed's setup derives the identity again: accepted), refuses a foreign or
// non-SDK key (ErrIdentityKey), a non-boolean alwaysRelay or a workerUrl
// that is not a URL (ErrInvalidOption), resolves a relative workerUrl
// against the page, and a second initCalls whose options differ
// (ErrCallsStarted) while one that agrees returns the same module; reject()
// with nothing ringing resolves as hangup() does, leaving no unhandled
// rejection in fire-and-forget use.
func TestInitCallsSeedSetup(t *testing.T) {
	srv := startServer(t, sdkMux())
	ctx := newBrowser(t)
	navigate(t, ctx, srv.URL+"/sdktest/index.html")
	got, err := evalJS[map[string]any](ctx, 30*time.Second, initCallsChecks)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"foreignKey": "ErrIdentityKey", "notAKey": "ErrIdentityKey",
		"freshStringRelay": "ErrInvalidOption", "stringRelay": "ErrInvalidOption", "numberRelay": "ErrInvalidOption",
		"secondDerive": "", "same": true, "bare": true,
		"otherRelay": "ErrCallsStarted", "otherLogger": "ErrCallsStarted", "alwaysRelay": false,
		"reject": "resolved", "hangup": "resolved", "unhandled": float64(0),
		"numberWorker": "ErrInvalidOption", "badWorker": "ErrInvalidOption",
		"workerUrl": srv.URL + "/sdktest/assets/e2ee.js", "sameWorker": true, "otherWorker": "ErrCallsStarted", "defaultWorker": true,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %v, want %v", k, got[k], w)
		}
	}
}

// TestCallsHungRelay: a relay whose HTTP API stops answering (the test's
// handler holds the browser's key lookups forever) never hangs the browser
// SDK. A call to a peer whose signaling session the client holds goes out
// at once and connects while its fresh key lookup hangs (the call's sends
// use the call's own session, not the pending lookup); hangup() returns at
// once and the peer gets the call_hangup at once (not queued behind a
// send), all while the lookup still hangs (the page's deadline lengthened
// past the test); a call to a peer with no held session fails with
// ErrTimeout when the lookup's deadline passes (shortened to 2 s), and
// ends, instead of staying 'calling'; and a caller whose key lookup hangs
// holds none of the call in progress's messages (its hangup ends it). Also: the remote stream is emitted again once video joins
// the audio.
func TestCallsHungRelay(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	a := alice.setup(false)
	bot := env.newGoBot(t, "gobot", false)
	answer := func(b *goBot) {
		t.Helper()
		b.waitRing(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.mod.Answer(ctx); err != nil {
			t.Fatalf("%s: Answer: %v", b.name, err)
		}
	}

	// A first call: alice holds a session for the bot afterwards.
	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, true)", bot.alias)); !r.OK {
		t.Fatalf("call: %+v", r)
	}
	answer(bot)
	alice.waitState("connected", 15*time.Second)
	waitDiag(t, alice, "video decoding", func(d jsDiag) bool { return d.InVideo != nil && d.InVideo.FramesDecoded > 0 })
	if em := drive[[]any](alice, 5*time.Second, "remoteEmissions()"); !slices.Contains(em, any("audio+video")) {
		t.Errorf("remote streams emitted %v; want one with audio and video (emitted again when video joins)", em)
	}
	drive[jsResult](alice, 10*time.Second, "hangup()")
	bot.waitState(10*time.Second, "the first call's end", func(s duetcall.Status) bool { return s.State.Terminal() })

	// The relay stops answering the browser's key lookups; the page's
	// HTTP deadline is lengthened past the test (the test version of
	// client-config.js), so the lookup hangs throughout.
	env.hangRequests("/api/v1/keys/")
	defer env.hangRequests("")
	drive[float64](alice, 5*time.Second, "setHTTPTimeout(600000)")
	drive[bool](alice, 5*time.Second, "reset()")
	start := time.Now()
	drive[bool](alice, 5*time.Second, fmt.Sprintf("startCall(%q, false)", bot.alias))
	answer(bot)
	alice.waitState("connected", 20*time.Second)
	bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	t.Logf("connected %v after call() with the key lookup hung", time.Since(start).Round(time.Millisecond))
	hangStart := time.Now()
	if r := drive[jsResult](alice, 5*time.Second, "hangup()"); !r.OK {
		t.Errorf("hangup: %+v", r)
	}
	if st := drive[jsStatus](alice, 5*time.Second, "status()"); st.State != "hangup" {
		t.Errorf("alice after hangup(): %+v; want hangup", st)
	}
	bot.waitState(10*time.Second, "alice's call_hangup", func(s duetcall.Status) bool { return s.State == duetcall.StateHangup })
	t.Logf("the peer ended %v after hangup()", time.Since(hangStart).Round(time.Millisecond))
	if env.hungNow.Load() == 0 {
		t.Error("the browser's fresh key lookup was not hanging while the call connected and ended: the test proves nothing")
	}
	// call() waited for the key check that follows its offer: it settles
	// when the call ends, not when the lookup does.
	r := drive[jsResult](alice, 10*time.Second, "callResult()")
	t.Logf("call() settled after the hangup: %+v", r)

	// During a call, a caller unknown to alice (carol) calls her: the
	// lookup of carol's keys hangs, and holds nothing else: the call's
	// peer hangs up and alice's call ends at once (each sender's envelopes
	// are handled apart).
	drive[bool](alice, 5*time.Second, "reset()")
	drive[bool](alice, 5*time.Second, fmt.Sprintf("startCall(%q, false)", bot.alias))
	answer(bot)
	alice.waitState("connected", 20*time.Second)
	drive[bool](alice, 5*time.Second, "reset()") // the history from connected on
	carol := env.newGoBot(t, "carol", false)
	hungBefore := env.hung.Load()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := carol.mod.Call(cctx, a, duetcall.Media{Audio: true}); err != nil {
		t.Fatalf("carol calls alice: %v", err)
	}
	for deadline := time.Now().Add(15 * time.Second); env.hung.Load() == hungBefore; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice never looked up the keys of carol, who called her")
		}
	}
	if err := bot.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	if st := alice.waitState("hangup", 10*time.Second); st.Reason != "user_hangup" {
		t.Errorf("alice after the peer hung up while carol's key lookup hangs: %+v", st)
	}
	_ = carol.mod.Hangup()
	// No held session: the offer waits for the lookup, which times out
	// (the page's deadline shortened to 2 s; the SDK's is 10 s).
	bot2 := env.newGoBot(t, "gobot2", false)
	drive[float64](alice, 5*time.Second, "setHTTPTimeout(2000)")
	drive[bool](alice, 5*time.Second, "reset()")
	start = time.Now()
	r = drive[jsResult](alice, 30*time.Second, fmt.Sprintf("call(%q, false)", bot2.alias))
	took := time.Since(start)
	if r.OK || r.Name != "ErrTimeout" {
		t.Errorf("call while the key lookup hangs: %+v; want ErrTimeout", r)
	}
	st := alice.waitState("ended", 5*time.Second)
	if st.State != "ended" {
		t.Errorf("alice after the lookup's deadline: %+v; want ended", st)
	}
	t.Logf("call() failed after %v: %s", took.Round(time.Millisecond), r.Message)
}

// keyLike walks, through the DevTools protocol, every object reachable from
// the value of expr (own and private fields, Map and Set entries, promise
// results; not functions, whose closures it cannot see, and not the
// DuetClient, whose identity and per-peer sessions outlive calls), and
// returns the paths of the key-like values it finds: CryptoKeys, typed
// arrays and ArrayBuffers.
func keyLike(t *testing.T, tb *tab, expr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	root, err := chromedp.Run(ctx, chromedp.Evaluate[*runtime.RemoteObject](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %s: %v", tb.name, expr, err)
	}
	// A WeakSet in the page tells which objects were walked already (object
	// ids differ for one object reached twice).
	if _, err := evalJS[bool](tb.ctx, 5*time.Second, `(globalThis.__walked = new WeakSet(), true)`); err != nil {
		t.Fatal(err)
	}
	seen := func(o *runtime.RemoteObject) bool {
		r, err := chromedp.Call(ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
			FunctionDeclaration: `function() { if (globalThis.__walked.has(this)) return true; globalThis.__walked.add(this); return false; }`,
			ObjectID:            o.ObjectID, ReturnByValue: ptrTo(true),
		})
		if err != nil || r.Result == nil {
			return true
		}
		return string(r.Result.Value) == "true"
	}
	type item struct {
		path string
		o    *runtime.RemoteObject
	}
	var found []string
	queue := []item{{"calls", root}}
	for n := 0; len(queue) > 0; n++ {
		if n > 5000 {
			t.Fatalf("%s: more than 5000 objects reachable from the call module", tb.name)
		}
		it := queue[0]
		queue = queue[1:]
		o := it.o
		if o == nil || o.Type != "object" || o.ObjectID == "" || o.ClassName == "DuetClient" {
			continue
		}
		if o.ClassName == "CryptoKey" || o.Subtype == "typedarray" || o.Subtype == "arraybuffer" {
			found = append(found, fmt.Sprintf("%s (%s)", it.path, o.Description))
			continue
		}
		if seen(o) {
			continue
		}
		props, err := chromedp.Call(ctx, runtime.GetProperties, runtime.GetPropertiesParams{ObjectID: o.ObjectID, OwnProperties: ptrTo(true)})
		if err != nil {
			t.Fatalf("%s: properties of %s: %v", tb.name, it.path, err)
		}
		for _, p := range props.Result {
			if p.Value != nil && p.Name != "__proto__" {
				queue = append(queue, item{it.path + "." + p.Name, p.Value})
			}
		}
		for _, p := range props.PrivateProperties {
			if p.Value != nil {
				queue = append(queue, item{it.path + "." + p.Name, p.Value})
			}
		}
		for _, p := range props.InternalProperties {
			switch p.Name {
			case "[[Entries]]", "[[PromiseResult]]", "[[Target]]", "[[BoundThis]]", "[[BoundArgs]]":
				queue = append(queue, item{it.path + "." + p.Name, p.Value})
			}
		}
	}
	return found
}

func ptrTo[T any](v T) *T { return &v }

// TestCallsForwardSecrecy: an ended call keeps no key. During a call (with
// a rekey of its own awaiting the reply its lost call_rekey never got) the
// walk from the call module finds its keys (so the walk sees them); once
// the call ended, nothing key-like is reachable from the module (its
// ephemeral keys, the peer's keys, the signaling session, rekey state:
// only figures stay, and stats() still answers), and the E2EE worker
// answered 'end' with 'ended' (its keys dropped) before it was terminated.
func TestCallsForwardSecrecy(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
	bot := env.newGoBot(t, "gobot", false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callBot(ctx, t, alice, bot, true)
	waitDiag(t, alice, "video decoding", func(d jsDiag) bool { return d.InVideo != nil && d.InVideo.FramesDecoded > 0 })
	// A rekey of alice's whose call_rekey is lost: its ephemeral key pair
	// waits for the reply (the retry) when the call ends.
	drive[bool](alice, 5*time.Second, "dropSends('call_rekey', 1)")
	if !drive[bool](alice, 5*time.Second, "forceRekey()") {
		t.Fatal("forceRekey: no call_rekey started")
	}
	during := keyLike(t, alice, `import('/sdktest/calls.js').then(m => m.module())`)
	if len(during) == 0 {
		t.Fatal("no key found from the call module during the call: the walk does not reach the call's keys")
	}
	if !slices.ContainsFunc(during, func(p string) bool { return strings.Contains(p, ".rekey.") }) {
		t.Errorf("the pending rekey's key is not among the keys found during the call: %v", during)
	}
	t.Logf("during the call: %d key-like values reachable: %s", len(during), strings.Join(during, ", "))

	drive[jsResult](alice, 10*time.Second, "hangup()")
	bot.waitState(10*time.Second, "the end", func(s duetcall.Status) bool { return s.State.Terminal() })
	type workerRec struct {
		Name   string   `json:"name"`
		Posted []string `json:"posted"`
	}
	var log []workerRec
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		log = drive[[]workerRec](alice, 5*time.Second, "workerLog()")
		if len(log) == 1 && slices.Contains(log[0].Posted, "ended") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the E2EE worker never answered 'end' with 'ended' (its keys dropped): %+v", log)
			break
		}
	}
	if after := keyLike(t, alice, `import('/sdktest/calls.js').then(m => m.module())`); len(after) != 0 {
		t.Errorf("after the call ended, key material is still reachable from the call module:\n%s", strings.Join(after, "\n"))
	}
	if d := alice.stats(); d.N == 0 && d.OutVideo == nil {
		t.Errorf("stats() after the call: %+v; want the last figures", d)
	}
}

// testHookNames are the test hooks the browser SDK used to ship (issue 14):
// no shipped file may contain them.
var testHookNames = []string{
	"testHooks", "testState", "_forceICERestart", "_postWorker", "_forceRekey", "_rekeyNeeded", "_rekeyState",
	"setTimings", "setLimits", "setE2EEMode", "forcedMode", "dropSends", "nextCallID", "test-rekey-after",
	"setLiveness", "setICEClockSkew", "setHTTPTimeout", "testRekey",
}

// testOnlyNames returns the test hooks src contains.
func testOnlyNames(src []byte) []string {
	var out []string
	for _, n := range testHookNames {
		if bytes.Contains(src, []byte(n)) {
			out = append(out, n)
		}
	}
	return out
}

// shippedExports lists, in the page, every module of the SDK as the relay
// serves it: its exports, and the own properties of the prototypes of the
// classes it exports (test hooks used to be underscore methods).
const shippedExports = `(async () => {
  const out = {};
  for (const name of NAMES) {
    const m = await import('/sdk/' + name);
    const e = { exports: Object.keys(m), methods: [] };
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'function' && v.prototype) {
        for (const p of Object.getOwnPropertyNames(v.prototype)) e.methods.push(k + '.' + p);
        for (const p of Object.getOwnPropertyNames(v)) e.methods.push(k + '.' + p);
      }
    }
    out[name] = e;
  }
  return out;
})()`

// TestSDKShipsNoTestHooks: the SDK as the relay serves it (web.Handler, as
// `duet relay` does) and as npm packs it (TestSDKPackage checks the
// tarball) contains no test hook: no file names one (testHookNames), no
// module exports testHooks or anything test-like, and no exported class
// has an underscore method. The test versions of the modules of constants
// (sdktest/sdk/, served only by the test servers) export at least what
// the shipped ones do, so the tests run the shipped code.
func TestSDKShipsNoTestHooks(t *testing.T) {
	entries, err := fs.ReadDir(web.SDK, ".")
	if err != nil {
		t.Fatal(err)
	}
	var modules []string
	for _, e := range entries {
		b, err := fs.ReadFile(web.SDK, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, hook := range testOnlyNames(b) {
			t.Errorf("the shipped %s contains the test hook %q: test-only code belongs in web/sdktest", e.Name(), hook)
		}
		if strings.HasSuffix(e.Name(), ".js") && e.Name() != "e2ee-worker.js" {
			modules = append(modules, e.Name())
		}
	}

	// The relay's handler, with the SDK as shipped (no testSDK).
	srv := startServer(t, web.Handler(http.NotFoundHandler()))
	ctx := newBrowser(t)
	navigate(t, ctx, srv.URL+"/sdk/package.json")
	names, _ := json.Marshal(modules)
	type mod struct {
		Exports []string `json:"exports"`
		Methods []string `json:"methods"`
	}
	got, err := evalJS[map[string]mod](ctx, 30*time.Second, strings.Replace(shippedExports, "NAMES", string(names), 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(modules) {
		t.Fatalf("read %d modules, want %d", len(got), len(modules))
	}
	testLike := regexp.MustCompile(`(?i)^(test|_)|hook`)
	for name, m := range got {
		for _, e := range m.Exports {
			if testLike.MatchString(e) {
				t.Errorf("the shipped %s exports %s", name, e)
			}
		}
		for _, p := range m.Methods {
			if testLike.MatchString(p[strings.Index(p, ".")+1:]) {
				t.Errorf("the shipped %s has %s", name, p)
			}
		}
	}

	// The test versions export what the shipped modules do.
	tsrv := startServer(t, sdkMux())
	navigate(t, ctx, tsrv.URL+"/sdktest/index.html")
	for _, name := range testSDKModules {
		missing, err := evalJS[[]string](ctx, 10*time.Second, fmt.Sprintf(`Promise.all([import('/sdk/%[1]s'), import('/sdk/%[1]s?shipped')]).then(([t, s]) => Object.keys(s).filter((k) => !(k in t) || typeof t[k] !== typeof s[k]))`, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("sdktest/sdk/%s lacks the shipped module's exports %v", name, missing)
		}
		if slices.Contains(got[name].Exports, "setTimings") {
			t.Errorf("the shipped %s exports setTimings", name)
		}
	}
}
