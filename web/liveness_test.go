package web_test

import (
	"fmt"
	"testing"

	"github.com/duetcall/duet/internal/testproxy"
	"github.com/duetcall/duet/internal/vectors"
)

// TestClientLiveness: the browser SDK finds a dead relay connection by its
// ping and reconnects, reconnects at once on the online event, and reports
// its clock skew with the relay.
func TestClientLiveness(t *testing.T) {
	node := startRelayNode(t, t.TempDir())
	mux := sdkMux()
	mux.Handle("/api/", node.Handler())
	srv := startServer(t, mux)
	proxy := testproxy.New(t, srv.Listener.Addr().String())

	p := openPages(t, proxy.URL("http"), "alice")[0]
	call[bool](p, "setLiveness({pingIntervalMs: 300, pingTimeoutMs: 800, watchMs: 100})")
	call[string](p, fmt.Sprintf("setup(%s, 'alice')", jsString(vectors.AliceMnemonic)))
	call[string](p, "connectedCount(1, 10000)")
	if skew := call[float64](p, "clockSkew()"); skew < -5000 || skew > 5000 {
		t.Errorf("clockSkewMs = %v on one machine, want about 0", skew)
	}

	// The path dies without a close: the ping finds it, the client
	// reconnects (a new connection through the proxy works).
	proxy.Freeze()
	states := call[string](p, "connectedCount(2, 15000)")
	t.Logf("after the freeze: %s", states)

	// The browser says it is online again: reconnect at once.
	call[bool](p, "fireWindowEvent('online')")
	states = call[string](p, "connectedCount(3, 10000)")
	t.Logf("after online: %s", states)
}
