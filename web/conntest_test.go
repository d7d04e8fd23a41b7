package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestAppConnectionTest: the demo app's "Test my connection" runs in
// Chromium against the relay and its TURN server (UDP, loopback) and
// reports a verdict per line: the relay, its connection, the clock, the
// ICE servers, STUN and a TURN allocation.
func TestAppConnectionTest(t *testing.T) {
	env := startCallEnv(t)
	tb := env.openTab(t, "app", "/")
	appWait(t, tb, 10*time.Second, `window.duetApp.screen === 'onboarding'`)
	appRun(t, tb, 10*time.Second, "create", chromedp.Click(chromedp.CSS(`#create`)))
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'backup'`)
	appRun(t, tb, 10*time.Second, "confirm backup", chromedp.Click(chromedp.CSS(`#saved-check`)), chromedp.Click(chromedp.CSS(`#backup-done`)))
	appWait(t, tb, 15*time.Second, `window.duetApp.screen === 'home'`)
	appRun(t, tb, 10*time.Second, "open the test", chromedp.Click(chromedp.CSS(`#conn-test-box summary`)), chromedp.Click(chromedp.CSS(`#conn-test-run`)))
	appWait(t, tb, 40*time.Second, `window.duetApp.connTest.done === true`)
	type line struct{ Verdict, What, Detail, Fix string }
	lines := drive0[[]line](t, tb, `window.duetApp.connTest.lines`)
	got := map[string]string{}
	for _, l := range lines {
		t.Logf("%-4s %-16s %s %s", l.Verdict, l.What, l.Detail, l.Fix)
		got[l.What] = l.Verdict
	}
	for _, what := range []string{"secure page", "relay", "relay connection", "clock", "ICE servers", "TURN udp"} {
		if got[what] != "ok" {
			t.Errorf("%s: %q, want ok", what, got[what])
		}
	}
	if text := drive0[string](t, tb, `document.querySelector('#conn-test').textContent`); !strings.Contains(text, "TURN udp") {
		t.Errorf("the page does not show the lines: %q", text)
	}
}
