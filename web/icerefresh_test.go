package web_test

import (
	"slices"
	"testing"
	"time"
)

// TestICERestartTakesCurrentServers: before an ICE restart the browser's
// peer connection takes the ICE servers the client has now (after a
// failover, the surviving node's TURN), not the ones the call started with.
func TestICERestartTakesCurrentServers(t *testing.T) {
	env := startCallEnv(t)
	tb := env.openTab(t, "alice", "")
	urls := drive[[]string](tb, 10*time.Second, "refreshICECheck()")
	if !slices.Equal(urls, []string{"turn:127.0.0.1:40101?transport=udp"}) {
		t.Errorf("the peer connection's ICE servers after the refresh: %v, want the client's current TURN", urls)
	}
}
