package ice

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetcall/duet/relay/turnserver"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// TestEmbeddedCredentialsAllocate runs the real chain: the resolver issues
// credentials for the embedded server, a pion/turn client uses exactly what
// the ice-config answer says, allocates a relay on loopback and relays a
// packet; credentials issued by a clock two hours behind are refused.
func TestEmbeddedCredentialsAllocate(t *testing.T) {
	secret := []byte("embedded-secret-0123456789abcdef")
	srv, err := turnserver.Start(context.Background(), turnserver.Config{
		ListenAddr: "127.0.0.1:0",
		TCP:        true,
		RelayIP:    net.IPv4(127, 0, 0, 1),
		Secret:     secret,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := srv.Addr().(*net.UDPAddr).Port

	r := newResolver(t, Options{Embedded: &Embedded{Host: "127.0.0.1", Port: port, TCP: true, Secret: secret}})
	cfg := get(t, r)
	hp := "127.0.0.1:" + strconv.Itoa(port)
	wantURLs := [][]string{{"stun:" + hp}, {"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}}
	if len(cfg.ICEServers) != 2 || !reflect.DeepEqual([][]string{cfg.ICEServers[0].URLs, cfg.ICEServers[1].URLs}, wantURLs) {
		t.Fatalf("servers = %+v, want URLs %v", cfg.ICEServers, wantURLs)
	}
	if cfg.TTL != 3600 && cfg.TTL != 3599 { // whole-second expiry, real clock
		t.Errorf("ttl = %d, want 3600 (or 3599 across a second boundary)", cfg.TTL)
	}
	turnServer := cfg.ICEServers[1]
	if !strings.HasSuffix(turnServer.Username, ":"+string(alice)) {
		t.Errorf("username %q, want <expiry>:%s", turnServer.Username, alice)
	}

	relayConn := allocateWith(t, hp, turnServer.Username, turnServer.Credential)
	if relayConn == nil {
		t.Fatal("allocation with issued credentials refused")
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := relayConn.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q, %v; want hello", buf[:n], err)
	}

	// Credentials issued with a clock two hours behind expired an hour ago.
	past := newResolver(t, Options{
		Embedded: &Embedded{Host: "127.0.0.1", Port: port, Secret: secret},
		Now:      func() time.Time { return time.Now().Add(-2 * time.Hour) },
	})
	old, err := past.Get(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tryAllocate(t, hp, old.ICEServers[1].Username, old.ICEServers[1].Credential); !isUnauthorized(err) {
		t.Fatalf("allocation with expired credentials: %v, want 401", err)
	}
	// A credential for another user does not authenticate this one.
	other := strings.Replace(turnServer.Username, string(alice), "u00000001", 1)
	if _, err := tryAllocate(t, hp, other, turnServer.Credential); !isUnauthorized(err) {
		t.Fatalf("allocation with a swapped username: %v, want 401", err)
	}
}

func isUnauthorized(err error) bool {
	var te *stun.TurnError
	return errors.As(err, &te) && te.ErrorCodeAttr.Code == stun.CodeUnauthorized
}

func allocateWith(t *testing.T, server, user, pass string) net.PacketConn {
	t.Helper()
	c, err := tryAllocate(t, server, user, pass)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	return c
}

func tryAllocate(t *testing.T, server, user, pass string) (net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relayConn, err := c.AllocateWithContext(ctx)
	if err == nil {
		t.Cleanup(func() { relayConn.Close() })
	}
	return relayConn, err
}
