package turnserver

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/syncbuf"
)

// TestDebugLogNotPerPacket: at debug level the server logs per allocation,
// not per relayed packet (pion's own debug lines, one per packet, are
// below debug).
func TestDebugLogNotPerPacket(t *testing.T) {
	var logs syncbuf.Buffer
	s := startServer(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	relayConn := allocate(t, newClient(t, s, user, pass))
	peer := newPeer(t, relayConn)
	buf := make([]byte, 1500)
	roundTrip := func() {
		t.Helper()
		if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_, from, err := peer.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
			t.Fatal(err)
		}
		if _, _, err := relayConn.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // the permission and channel set-up
	before := strings.Count(logs.String(), "\n")
	const n = 200
	for range n {
		roundTrip()
	}
	if grew := strings.Count(logs.String(), "\n") - before; grew >= n/10 {
		lines := strings.Split(logs.String(), "\n")
		t.Fatalf("%d log lines for %d relayed round trips at debug, e.g.:\n%s", grew, n, strings.Join(lines[before:min(before+5, len(lines))], "\n"))
	}
}
