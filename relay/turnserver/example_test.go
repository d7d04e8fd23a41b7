package turnserver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/duetcall/duet/relay/turnserver"
)

// Start the embedded server with a secret persisted in the data directory,
// and mint credentials for a user the way relay/ice does.
func Example() {
	dir, _ := os.MkdirTemp("", "duet")
	defer os.RemoveAll(dir)
	secret, err := turnserver.LoadOrCreateSecret(filepath.Join(dir, "turn.secret"))
	if err != nil {
		panic(err)
	}
	srv, err := turnserver.Start(context.Background(), turnserver.Config{
		ListenAddr: "127.0.0.1:0",
		Secret:     secret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, // local demo only
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	fmt.Println("relay IP:", srv.RelayIP())

	user, _ := turnserver.Credentials(secret, "u12345678", time.Unix(1800000000, 0))
	fmt.Println("username:", user)
	// Output:
	// relay IP: 127.0.0.1
	// username: 1800000000:u12345678
}
