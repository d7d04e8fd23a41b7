package web_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	duetcall "github.com/duetcall/duet/call"
	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/web"
)

// appRun runs actions in the app tab within timeout, failing the test.
func appRun(t *testing.T, tb *tab, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("app: %s: %v", what, err)
	}
}

// appWait waits until the JS expression is true in the app tab.
func appWait(t *testing.T, tb *tab, timeout time.Duration, expr string) {
	t.Helper()
	_, err := evalJS[bool](tb.ctx, timeout+time.Second, fmt.Sprintf(`new Promise((resolve, reject) => {
		const end = Date.now() + %d;
		const tick = () => { try { if (%s) return resolve(true); } catch {} ; if (Date.now() > end) return reject(new Error('timed out')); setTimeout(tick, 100); };
		tick();
	})`, timeout.Milliseconds(), expr))
	if err != nil {
		state, _ := evalJS[string](tb.ctx, 2*time.Second, `JSON.stringify({state: window.duetApp?.state, screen: window.duetApp?.screen, messages: window.duetApp?.messages})`)
		t.Fatalf("app: waiting for %s: %v; app %s", expr, err, state)
	}
}

// artifactDir is where the test keeps what a person may want to look at
// (DUET_ARTIFACTS, else a fresh directory under the system temp dir that is
// not removed).
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DUET_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "duet-web-artifacts-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// regionStats returns the mean and standard deviation of the luminance of
// the pixels of img inside r.
func regionStats(img image.Image, r image.Rectangle) (mean, stddev float64, n int) {
	r = r.Intersect(img.Bounds())
	var sum, sq float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			l := (0.299*float64(cr) + 0.587*float64(cg) + 0.114*float64(cb)) / 257
			sum += l
			sq += l * l
			n++
		}
	}
	if n == 0 {
		return 0, 0, 0
	}
	mean = sum / float64(n)
	return mean, math.Sqrt(math.Max(sq/float64(n)-mean*mean, 0)), n
}

type rect struct{ X, Y, W, H float64 }

// noOverflow checks that the app's current screen fits the phone's width:
// nothing scrolls sideways.
func noOverflow(t *testing.T, tb *tab, screen string) {
	t.Helper()
	w := drive0[struct{ Scroll, Client int }](t, tb, `({Scroll: document.documentElement.scrollWidth, Client: document.documentElement.clientWidth})`)
	if w.Scroll > w.Client {
		t.Errorf("app: the %s screen is %d px wide on a %d px wide viewport: it scrolls sideways", screen, w.Scroll, w.Client)
	}
}

// TestDemoApp uses the demo app as a person would, on a phone-sized
// screen and under the headers duet relay serves it with (its CSP and
// permissions policy: no violation may be reported): create an identity
// (the recovery phrase is shown once), take a video call from a Go SDK
// peer on the incoming-call screen, look at the call (a screenshot whose
// remote video must not be blank, kept as a test artifact), open the
// stats, mute, turn the camera off and on, see the peer's mute and camera
// off, share the screen and stop, hang up; see a browser peer's screen
// share shown whole; take an audio call the Go peer upgrades to video,
// then press Video; then read the
// messages for a call the caller hung up while it rang, a busy callee, a
// callee that does not answer, an offline callee and a denied camera; no
// screen scrolls sideways. In another origin (so another storage), restore
// an identity from its recovery phrase.
func TestDemoApp(t *testing.T) {
	env := startCallEnv(t)
	tb := env.openTab(t, "app", "/")
	appRun(t, tb, 10*time.Second, "phone viewport", chromedp.EmulateViewport(390, 844))

	// Installable: the manifest parses, and the service worker (app shell
	// only) takes control.
	appWait(t, tb, 10*time.Second, `window.duetApp.screen === 'onboarding'`)
	noOverflow(t, tb, "onboarding")
	got := drive0[map[string]string](t, tb, `fetch(location.href).then(r => ({csp: r.headers.get('content-security-policy'), pp: r.headers.get('permissions-policy')}))`)
	if got["csp"] != web.AppCSP || got["pp"] != web.AppPermissionsPolicy {
		t.Errorf("the app is served with CSP %q and Permissions-Policy %q; want duet relay's %q, %q", got["csp"], got["pp"], web.AppCSP, web.AppPermissionsPolicy)
	}
	sw := drive0[string](t, tb, `navigator.serviceWorker.ready.then(r => r.active.scriptURL)`)
	man := drive0[string](t, tb, `fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json()).then(m => m.display + ' ' + m.icons.length)`)
	if !strings.HasSuffix(sw, "/sw.js") || man != "standalone 3" {
		t.Errorf("PWA: service worker %q, manifest %q", sw, man)
	}

	// Create an identity.
	appRun(t, tb, 10*time.Second, "create", chromedp.Click(chromedp.CSS(`#create`)))
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'backup'`)
	words := drive0[int](t, tb, `document.querySelectorAll('#words li').length`)
	warning := drive0[string](t, tb, `document.querySelector('#backup .warning').textContent`)
	if words != 12 || !strings.Contains(warning, "only time") {
		t.Errorf("backup screen: %d words, warning %q", words, warning)
	}
	noOverflow(t, tb, "backup")
	appRun(t, tb, 10*time.Second, "confirm backup", chromedp.Click(chromedp.CSS(`#saved-check`)), chromedp.Click(chromedp.CSS(`#backup-done`)))
	appWait(t, tb, 15*time.Second, `window.duetApp.state === 'ready' && window.duetApp.screen === 'home'`)
	if n := drive0[int](t, tb, `document.querySelectorAll('#words li').length`); n != 0 {
		t.Errorf("the recovery phrase is still in the page after the backup screen (%d words)", n)
	}
	alias := drive0[string](t, tb, `window.duetApp.alias`)
	if shown := drive0[string](t, tb, `document.getElementById('home-alias').textContent`); shown != alias || alias == "" {
		t.Fatalf("home shows alias %q, app has %q", shown, alias)
	}
	noOverflow(t, tb, "home")

	// A Go peer calls with video; the app rings saying so; accept.
	bot := env.newGoBot(t, "gobot", false)
	ctx := context.Background()
	if err := bot.mod.Call(ctx, identityAlias(alias), duetcall.Media{Audio: true, Video: true}); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'incoming'`)
	kind := drive0[string](t, tb, `document.getElementById('incoming-kind').textContent`)
	from := drive0[string](t, tb, `document.getElementById('incoming-from').textContent`)
	if !strings.Contains(kind, "Video") || from != string(bot.alias) {
		t.Errorf("incoming screen: %q from %q; want a video call from %s", kind, from, bot.alias)
	}
	noOverflow(t, tb, "incoming")
	appRun(t, tb, 10*time.Second, "accept", chromedp.Click(chromedp.CSS(`#accept`)))
	appWait(t, tb, 20*time.Second, `window.duetApp.state === 'connected' && window.duetApp.screen === 'call'`)
	bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	// The remote video plays, and the Diag feeds the stats panel.
	appWait(t, tb, 15*time.Second, `(() => { const v = document.getElementById('remote-video'); return v.videoWidth > 0 && v.currentTime > 1.5; })()`)
	appRun(t, tb, 10*time.Second, "stats", chromedp.Click(chromedp.CSS(`#stats-toggle`)))
	appWait(t, tb, 10*time.Second, `document.getElementById('stats').textContent.includes('Diag #')`)
	appRun(t, tb, 10*time.Second, "mute", chromedp.Click(chromedp.CSS(`#mute`)))
	if muted := drive0[bool](t, tb, `window.duetApp && !document.getElementById('local-video').srcObject.getAudioTracks()[0].enabled`); !muted {
		t.Error("the mute button did not disable the microphone track")
	}
	noOverflow(t, tb, "call")
	// The camera toggle: off, then on again.
	camera := func() (enabled bool, pressed string) {
		v := drive0[struct {
			Enabled bool
			Pressed string
		}](t, tb, `({Enabled: document.getElementById('local-video').srcObject.getVideoTracks()[0].enabled, Pressed: document.getElementById('camera').getAttribute('aria-pressed')})`)
		return v.Enabled, v.Pressed
	}
	appRun(t, tb, 10*time.Second, "camera off", chromedp.Click(chromedp.CSS(`#camera`)))
	if on, pressed := camera(); on || pressed != "true" {
		t.Errorf("after the camera button: video track enabled %v, aria-pressed %q; want the camera off", on, pressed)
	}
	appRun(t, tb, 10*time.Second, "camera on", chromedp.Click(chromedp.CSS(`#camera`)))
	if on, pressed := camera(); !on || pressed != "false" {
		t.Errorf("after the camera button again: video track enabled %v, aria-pressed %q; want the camera on", on, pressed)
	}

	sctx, scancel := context.WithTimeout(tb.ctx, 10*time.Second)
	shot, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	scancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := artifactDir(t)
	path := filepath.Join(dir, "demo-app-mid-call.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the demo app mid-call (390x844): %s", path)
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("decoding the screenshot: %v", err)
	}
	r := drive0[rect](t, tb, `(() => { const b = document.getElementById('remote-video').getBoundingClientRect(); return {X: b.x, Y: b.y, W: b.width, H: b.height}; })()`)
	dpr := float64(img.Bounds().Dx()) / 390
	// The video's content box: the element letterboxes the 16:9 picture.
	vw := drive0[float64](t, tb, `document.getElementById('remote-video').videoWidth`)
	vh := drive0[float64](t, tb, `document.getElementById('remote-video').videoHeight`)
	cw, ch := r.W, r.W*vh/vw
	if ch > r.H {
		ch, cw = r.H, r.H*vw/vh
	}
	cx, cy := r.X+(r.W-cw)/2, r.Y+(r.H-ch)/2
	box := image.Rect(int(cx*dpr), int(cy*dpr), int((cx+cw)*dpr), int((cy+ch)*dpr))
	mean, sd, n := regionStats(img, box)
	t.Logf("remote video %vx%v shown in %v: luminance mean %.1f, stddev %.1f over %d pixels", vw, vh, box, mean, sd, n)
	if n < 10000 || sd < 20 || mean < 10 {
		t.Errorf("the remote video looks blank in the screenshot (mean %.1f, stddev %.1f over %d pixels): %s", mean, sd, n, path)
	}

	// The Go peer mutes and turns its camera off (call_media): the app
	// shows a muted badge and the peer's alias in place of the video; and
	// back.
	if err := bot.mod.SetMicrophoneEnabled(false); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 10*time.Second, `!document.getElementById('peer-muted').hidden && document.getElementById('audio-only').hidden`)
	if err := bot.mod.SetCameraEnabled(false); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 10*time.Second, fmt.Sprintf(`!document.getElementById('audio-only').hidden && document.getElementById('remote-video').hidden && !document.getElementById('peer-camera-off').hidden && document.getElementById('audio-peer').textContent === %q`, bot.alias))
	noOverflow(t, tb, "call, peer muted with the camera off")
	if err := bot.mod.SetMicrophoneEnabled(true); err != nil {
		t.Fatal(err)
	}
	if err := bot.mod.SetCameraEnabled(true); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 10*time.Second, `document.getElementById('peer-muted').hidden && document.getElementById('audio-only').hidden && !document.getElementById('remote-video').hidden`)
	// The share button: the app shares its screen in place of the camera
	// (the Go peer sees screen in call_media), and stops.
	appRun(t, tb, 10*time.Second, "share", chromedp.Click(chromedp.CSS(`#share`)))
	appWait(t, tb, 10*time.Second, `document.getElementById('share').getAttribute('aria-pressed') === 'true' && document.getElementById('share').textContent === 'Stop sharing'`)
	bot.waitPeerMedia(duetcall.MediaState{AudioMuted: true, Screen: true}, 10*time.Second)
	noOverflow(t, tb, "call, sharing the screen")
	appRun(t, tb, 10*time.Second, "stop sharing", chromedp.Click(chromedp.CSS(`#share`)))
	appWait(t, tb, 10*time.Second, `document.getElementById('share').getAttribute('aria-pressed') === 'false'`)
	bot.waitPeerMedia(duetcall.MediaState{AudioMuted: true}, 10*time.Second)
	// The app's own mute reached the Go peer.
	if pm := bot.mod.PeerMedia().Get(); !pm.AudioMuted {
		t.Errorf("the Go peer's view of the app's media after its mute button: %+v; want audio muted", pm)
	}

	// Hang up from the app.
	appRun(t, tb, 10*time.Second, "hang up", chromedp.Click(chromedp.CSS(`#hangup`)))
	st := bot.waitState(5*time.Second, "hangup", func(s duetcall.Status) bool { return s.State.Terminal() })
	if st.State != duetcall.StateHangup {
		t.Errorf("Go peer after the app hung up: %+v", st)
	}
	appWait(t, tb, 5*time.Second, `window.duetApp.screen === 'home'`)

	// A browser peer (the SDK test page) calls with video and shares its
	// screen: the app shows the share whole, without the local preview
	// over it, and goes back when the share stops.
	sharer := env.openTab(t, "sharer", "")
	sharer.setup(false)
	if r := drive[jsResult](sharer, 20*time.Second, fmt.Sprintf("call(%q, true)", alias)); !r.OK {
		t.Fatalf("sharer call: %+v", r)
	}
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'incoming'`)
	appRun(t, tb, 10*time.Second, "accept the sharer", chromedp.Click(chromedp.CSS(`#accept`)))
	appWait(t, tb, 20*time.Second, `window.duetApp.state === 'connected'`)
	if r := drive[jsResult](sharer, 15*time.Second, "shareScreen()"); !r.OK {
		t.Fatalf("shareScreen: %+v", r)
	}
	appWait(t, tb, 20*time.Second, `document.getElementById('call').classList.contains('peer-screen') && document.getElementById('remote-video').videoWidth === 800 && getComputedStyle(document.getElementById('local-video')).display === 'none'`)
	noOverflow(t, tb, "call, the peer shares its screen")
	drive[bool](sharer, 10*time.Second, "stopScreenShare()")
	appWait(t, tb, 20*time.Second, `!document.getElementById('call').classList.contains('peer-screen')`)
	drive[jsResult](sharer, 10*time.Second, "hangup()")
	appWait(t, tb, 10*time.Second, `window.duetApp.screen === 'home'`)
	sharer.close()

	// An audio call from the Go peer becomes a video call both ways: the Go
	// peer upgrades (the app shows its video in place of the audio-only
	// screen), then the app's Video button sends the camera.
	if err := bot.mod.Call(ctx, identityAlias(alias), duetcall.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'incoming'`)
	appRun(t, tb, 10*time.Second, "accept the audio call", chromedp.Click(chromedp.CSS(`#accept`)))
	appWait(t, tb, 20*time.Second, `window.duetApp.state === 'connected' && !document.getElementById('upgrade').hidden && !document.getElementById('audio-only').hidden`)
	bot.waitState(10*time.Second, "connected", func(s duetcall.Status) bool { return s.State == duetcall.StateConnected })
	if err := bot.mod.SetVideo(ctx, true); err != nil {
		t.Fatalf("the Go peer's upgrade: %v", err)
	}
	appWait(t, tb, 20*time.Second, `document.getElementById('audio-only').hidden && document.getElementById('remote-video').videoWidth > 0`)
	appRun(t, tb, 10*time.Second, "video", chromedp.Click(chromedp.CSS(`#upgrade`)))
	appWait(t, tb, 20*time.Second, `document.getElementById('upgrade').hidden && !document.getElementById('camera').disabled`)
	vn := bot.mod.Stats().VideoFramesReceived
	for deadline := time.Now().Add(20 * time.Second); bot.mod.Stats().VideoFramesReceived < vn+30; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the Go peer received %d video frames after the app's Video button", bot.mod.Stats().VideoFramesReceived-vn)
		}
	}
	noOverflow(t, tb, "call upgraded to video")
	if err := bot.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 10*time.Second, `window.duetApp.screen === 'home'`)

	// The caller hangs up while the app rings: the incoming screen goes
	// away, with a missed-call message.
	if err := bot.mod.Call(ctx, identityAlias(alias), duetcall.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'incoming'`)
	if err := bot.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	appWait(t, tb, 5*time.Second, fmt.Sprintf(`window.duetApp.screen === 'home' && document.getElementById('message').textContent === 'Missed call from %s.'`, bot.alias))
	// Shown as information, and no error with it (the seed's false
	// "did not answer" for the callee).
	if m := drive0[string](t, tb, `JSON.stringify(window.duetApp.messages.slice(-2))`); strings.Contains(m, `"error"`) || !strings.Contains(m, `"Missed call from`) {
		t.Errorf("app messages after a missed call: %s; want the missed call as info and no error", m)
	}

	// A second device of the same user (another tab of the app: the same
	// stored identity, its own call module): both ring; one answers or
	// declines, the other goes home saying so, never with an error.
	tb2 := env.openTab(t, "app2", "/")
	appRun(t, tb2, 10*time.Second, "phone viewport", chromedp.EmulateViewport(390, 844))
	appWait(t, tb2, 15*time.Second, fmt.Sprintf(`window.duetApp.state === 'ready' && window.duetApp.alias === %q`, alias))
	for _, c := range []struct{ button, text string }{{"#accept", "Answered on another device."}, {"#reject", "Declined on another device."}} {
		if err := bot.mod.Call(ctx, identityAlias(alias), duetcall.Media{Audio: true}); err != nil {
			t.Fatal(err)
		}
		appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'incoming'`)
		appWait(t, tb2, 15*time.Second, `window.duetApp.screen === 'incoming'`)
		appRun(t, tb2, 10*time.Second, c.button+" on the second device", chromedp.Click(chromedp.CSS(c.button)))
		appWait(t, tb, 10*time.Second, fmt.Sprintf(`window.duetApp.screen === 'home' && document.getElementById('message').textContent === %q && document.getElementById('message').dataset.kind === 'info'`, c.text))
		if c.button == "#accept" {
			appWait(t, tb2, 20*time.Second, `window.duetApp.state === 'connected'`)
			if err := bot.mod.Hangup(); err != nil {
				t.Fatal(err)
			}
		}
		appWait(t, tb2, 10*time.Second, `window.duetApp.screen === 'home'`)
		bot.waitState(10*time.Second, "the end of the call", func(s duetcall.Status) bool { return s.State.Terminal() })
	}
	if m := drive0[string](t, tb, `JSON.stringify(window.duetApp.messages.filter((m) => m.kind === 'error'))`); m != "[]" {
		t.Errorf("the first device showed errors while the second answered or declined: %s", m)
	}
	tb2.close()

	dial := func(a string, button string) {
		appRun(t, tb, 10*time.Second, "dial "+a,
			chromedp.SetValue(chromedp.CSS(`#dial-alias`), a),
			chromedp.Click(chromedp.CSS(button)))
	}
	// A busy callee: the Go peer rings for another Go peer's call.
	other := env.newGoBot(t, "gobot2", false)
	if err := other.mod.Call(ctx, bot.alias, duetcall.Media{Audio: true}); err != nil {
		t.Fatal(err)
	}
	bot.waitRing(10 * time.Second)
	dial(string(bot.alias), `#dial-audio`)
	appWait(t, tb, 10*time.Second, fmt.Sprintf(`window.duetApp.screen === 'home' && document.getElementById('message').textContent === '%s is busy in another call.'`, bot.alias))
	if err := other.mod.Hangup(); err != nil {
		t.Fatal(err)
	}
	bot.waitState(5*time.Second, "the other call's end", func(s duetcall.Status) bool { return s.State.Terminal() })

	// A callee that does not answer (the app's answer timeout shortened
	// through the call module's internal hook: the app's own module, the
	// same URL).
	drive0[map[string]float64](t, tb, `import('/sdk/call-config.js').then(m => m.setTimings({answer: 1500}))`)
	dial(string(bot.alias), `#dial-audio`)
	bot.waitRing(10 * time.Second)
	appWait(t, tb, 10*time.Second, fmt.Sprintf(`window.duetApp.screen === 'home' && document.getElementById('message').textContent === '%s did not answer.'`, bot.alias))
	if st := bot.waitState(5*time.Second, "no answer", func(s duetcall.Status) bool { return s.State.Terminal() }); st.Reason != duetcall.ReasonMissed {
		t.Errorf("Go callee after the app gave up: %+v; want missed", st)
	}

	// An offline callee: a clear message.
	off := env.newGoBot(t, "offline", false)
	off.mod.Close()
	off.c.Close()
	time.Sleep(200 * time.Millisecond)
	dial(string(off.alias), `#dial-audio`)
	appWait(t, tb, 10*time.Second, `document.getElementById('message').textContent.includes('offline')`)

	// An alias nobody registered: one clear message (the relay's 404), once.
	dial("u00000001", `#dial-audio`)
	appWait(t, tb, 10*time.Second, `document.getElementById('message').textContent.includes('not a known alias')`)
	if n := drive0[int](t, tb, `window.duetApp.messages.filter((m) => m.text.includes('not a known alias')).length`); n != 1 {
		t.Errorf("the unknown alias was reported %d times, want once", n)
	}

	// A denied camera: a clear message, no call.
	drive0[bool](t, tb, `(navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError')), true)`)
	dial(string(bot.alias), `#dial-video`)
	appWait(t, tb, 10*time.Second, `document.getElementById('message').textContent.includes('denied')`)
	msgs := drive0[string](t, tb, `JSON.stringify(window.duetApp.messages)`)
	t.Logf("app messages: %s", msgs)

	// Restore: in another origin (localhost instead of 127.0.0.1: an
	// empty IndexedDB), from the recovery phrase of an identity the Go SDK
	// registered. A phrase with a bad checksum is refused with a message;
	// the right one gives back the same alias.
	m, err := identity.NewMnemonic(12)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromMnemonic(m)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	registered, _, err := client.Register(rctx, http.DefaultClient, env.url, id)
	rcancel()
	if err != nil {
		t.Fatalf("registering the identity to restore: %v", err)
	}
	rt := env.openTabURL(t, "restore", strings.Replace(env.url, "127.0.0.1", "localhost", 1)+"/")
	appRun(t, rt, 10*time.Second, "phone viewport", chromedp.EmulateViewport(390, 844))
	appWait(t, rt, 10*time.Second, `window.duetApp.screen === 'onboarding'`)
	appRun(t, rt, 10*time.Second, "open restore", chromedp.Click(chromedp.CSS(`#restore-box summary`)))
	restore := func(words string) {
		appRun(t, rt, 10*time.Second, "restore",
			chromedp.SetValue(chromedp.CSS(`#restore-words`), words),
			chromedp.Click(chromedp.CSS(`#restore-form button[type=submit]`)))
	}
	restore(strings.Repeat("abandon ", 12))
	appWait(t, rt, 5*time.Second, `document.getElementById('message').textContent.includes('checksum')`)
	restore(m)
	appWait(t, rt, 15*time.Second, `window.duetApp.state === 'ready' && window.duetApp.screen === 'home'`)
	if got := drive0[string](t, rt, `window.duetApp.alias`); got != string(registered) {
		t.Errorf("restored alias %q; the phrase's identity is registered as %s", got, registered)
	}
	appWait(t, rt, 5*time.Second, fmt.Sprintf(`document.getElementById('message').textContent === 'Restored: you are %s again.'`, registered))
	noOverflow(t, rt, "home (restored)")

	for _, l := range append(tb.log.Lines(), rt.log.Lines()...) {
		if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "Permissions policy") || strings.Contains(l, "Permissions-Policy") {
			t.Errorf("the browser reported a policy violation: %s", l)
		}
	}
}

// drive0 evaluates a plain expression in the tab.
func drive0[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	v, err := evalJS[T](tb.ctx, 10*time.Second, expr)
	if err != nil {
		t.Fatalf("%s: %s: %v", tb.name, expr, err)
	}
	return v
}

func identityAlias(s string) identity.Alias { return identity.Alias(s) }
