package relay_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"github.com/duetcall/duet/internal/syncbuf"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

// wsToken authenticates a raw WebSocket session for id and returns the
// token of its ready frame.
func wsToken(t *testing.T, base string, id *identity.Identity, alias identity.Alias) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	var ch, ready struct{ Type, Challenge, Token string }
	read := func(v any) {
		_, b, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	read(&ch)
	chal, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	auth, _ := json.Marshal(map[string]string{"type": "auth", "alias": string(alias),
		"signature": base64.StdEncoding.EncodeToString(ed25519.Sign(id.SigningKey, relay.WSAuthMessage(chal)))})
	if err := conn.Write(ctx, websocket.MessageText, auth); err != nil {
		t.Fatal(err)
	}
	read(&ready)
	if ready.Type != "ready" || ready.Token == "" {
		t.Fatalf("ready: %+v", ready)
	}
	return ready.Token
}

// TestGoClientRenewsToken: the Go client keeps looking up keys and ICE
// servers after its first token expired (the relay's token lifetime is
// shortened to 2 s): it reconnects for a fresh token before it expires, and
// logs the reconnection.
func TestGoClientRenewsToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	discard := slog.New(slog.DiscardHandler)
	res, err := ice.New(ice.Options{STUNURLs: []string{"stun:127.0.0.1:9"}, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.New(ctx, relay.Options{DataDir: t.TempDir(), ICE: res, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	relay.SetTokenTTL(srv, 2*time.Second)
	ts := httptest.NewServer(srv.Handler())
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		ts.Close()
	}()
	newUser := func() (*identity.Identity, identity.Alias) {
		m, _ := identity.NewMnemonic(0)
		id, _ := identity.FromMnemonic(m)
		alias, _, err := client.Register(ctx, nil, ts.URL, id)
		if err != nil {
			t.Fatal(err)
		}
		return id, alias
	}
	a, aliasA := newUser()
	b, aliasB := newUser()

	var logs syncbuf.Buffer
	c, err := client.Connect(ctx, client.Options{RelayURL: ts.URL, Identity: a, Alias: aliasA,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PeerKeys(ctx, aliasB); err != nil {
		t.Fatalf("PeerKeys with a fresh token: %v", err)
	}

	// Wait until the relay refuses a token issued after the client's.
	later := wsToken(t, ts.URL, b, aliasB)
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/keys/"+string(aliasA), nil)
		req.Header.Set("Authorization", "Bearer "+later)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay still accepts a 2 s token after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := c.PeerKeys(ctx, aliasB); err != nil {
		t.Fatalf("PeerKeys after the first token expired: %v", err)
	}
	if _, err := c.ICEConfig(ctx); err != nil {
		t.Fatalf("ICEConfig after the first token expired: %v", err)
	}
	if c.State().Get() != client.StateConnected {
		t.Errorf("state %s, want connected", c.State().Get())
	}
	// The client logs "relay reconnected" once its dial returns, which may
	// be just after the calls above got the fresh token: wait for it.
	for _, want := range []string{"relay token expires soon", "relay reconnected"} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q line at info within 10 s:\n%s", want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
