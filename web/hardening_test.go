package web_test

// Issue 14's browser SDK checks: the seed's own setup code (initCalls with
// the keys of a second deriveIdentity, options that cannot be ignored,
// reject() as forgiving as hangup()), the remote stream emitted again when
// video joins, and no hung I/O (a relay that never answers).

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	duetcall "github.com/duetcall/duet/call"
)

// initCallsChecks runs the seed's setup code against initCalls in a page:
// the private key of a second deriveIdentity of the same mnemonic, a
// foreign key, a non-boolean alwaysRelay, a second initCalls agreeing with
// the first and one that does not, and reject() / hangup() with nothing
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
  fresh.close();
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
// non-SDK key (ErrIdentityKey), a non-boolean alwaysRelay
// (ErrInvalidOption) and a second initCalls whose options differ
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
// send); a call to a peer with no held session fails with ErrTimeout when
// the lookup's deadline (10 s) passes, and ends, instead of staying
// 'calling'. Also: the remote stream is emitted again once video joins
// the audio.
func TestCallsHungRelay(t *testing.T) {
	env := startCallEnv(t)
	alice := env.openTab(t, "alice", "")
	alice.setup(false)
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

	// The relay stops answering the browser's key lookups.
	env.hangRequests("/api/v1/keys/")
	defer env.hangRequests("")
	drive[bool](alice, 5*time.Second, "reset()")
	start := time.Now()
	if r := drive[jsResult](alice, 20*time.Second, fmt.Sprintf("call(%q, false)", bot.alias)); !r.OK {
		t.Fatalf("call with the held session while the key lookup hangs: %+v", r)
	}
	answer(bot)
	alice.waitState("connected", 15*time.Second)
	bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	if env.hung.Load() == 0 {
		t.Fatal("the browser's fresh key lookup never reached the hung relay")
	}
	t.Logf("connected %v after call() with the key lookup hung", time.Since(start).Round(time.Millisecond))
	hangStart := time.Now()
	if r := drive[jsResult](alice, 5*time.Second, "hangup()"); !r.OK {
		t.Errorf("hangup: %+v", r)
	}
	if st := drive[jsStatus](alice, 5*time.Second, "status()"); st.State != "hangup" {
		t.Errorf("alice after hangup(): %+v; want hangup", st)
	}
	bot.waitState(5*time.Second, "alice's call_hangup", func(s duetcall.Status) bool { return s.State == duetcall.StateHangup })
	t.Logf("the peer ended %v after hangup()", time.Since(hangStart).Round(time.Millisecond))

	// No held session: the offer waits for the lookup, which times out.
	bot2 := env.newGoBot(t, "gobot2", false)
	drive[bool](alice, 5*time.Second, "reset()")
	start = time.Now()
	r := drive[jsResult](alice, 30*time.Second, fmt.Sprintf("call(%q, false)", bot2.alias))
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
