package nattest

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAddressChangeMidCall: the caller's address changes during a call
// (Wi-Fi to another network, a DHCP renew). The call module restarts ICE on
// the new address and the call goes on; it ends by its own hangup after
// the duration, not with disconnected, and media resumed.
func TestAddressChangeMidCall(t *testing.T) {
	l := newLab(t, cone, open, cone, open)
	r := l.startRelay(relayOpts{})
	home, peer := twoUsers(l, r)
	done := make(chan callResult, 1)
	go func() { done <- l.placeCallQuiet(home, peer, r, 12*time.Second, 90*time.Second) }()
	l.waitCallerConnected(60 * time.Second)
	time.Sleep(time.Second) // media flows on the first path
	changed := time.Now()
	l.changeAddress(&l.a, "10.0.2.3")
	res := <-done
	if res.code != 0 || !strings.Contains(res.out, "state: hangup (user_hangup)") {
		t.Fatalf("the call did not survive the address change (exit %d):\n%s", res.code, res.out)
	}
	// 12 s of audio at 50 frames/s is 600 frames; an outage of up to 3 s
	// (the target) loses 150.
	m := regexp.MustCompile(`received \d+ B \(\d+ video / (\d+) audio frames\)`).FindStringSubmatch(res.out)
	if m == nil {
		t.Fatalf("no stats line:\n%s", res.out)
	}
	t.Logf("%s", m[0])
	if n, _ := strconv.Atoi(m[1]); n < 400 {
		t.Fatalf("media did not resume after the address change at %s: %d audio frames received of about 600:\n%s", changed.Format(time.TimeOnly), n, res.out)
	}
}
