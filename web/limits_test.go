package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/duetcall/duet/internal/vectors"
	"github.com/duetcall/duet/relay"
	"github.com/duetcall/duet/relay/ice"
)

// TestClientRelayLimits: the browser SDK against a relay that refuses every
// envelope for lack of queue budget (one byte) and allows one session per
// alias, and asks for a 12-bit proof of work at registration (setup
// registers): an envelope refused with recipient_busy is sent once more and only
// the second refusal reaches onUndeliverable; a second session of an alias
// fails with ErrTooManySessions.
func TestClientRelayLimits(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	resolver, err := ice.New(ice.Options{STUNURLs: []string{testSTUN}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := relay.New(ctx, relay.Options{DataDir: t.TempDir(), ICE: resolver, Logger: logger, QueueBudget: 1, MaxSessionsPerAlias: 1, RegisterPoWBits: 12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownRelay(t, node) })
	mux := sdkMux()
	mux.Handle("/api/", node.Handler())
	srv := startServer(t, mux)
	pages := openPages(t, srv.URL, "alice", "bob")
	alice, bob := pages[0], pages[1]
	call[string](alice, fmt.Sprintf("setup(%s, 'alice-limits')", jsString(vectors.AliceMnemonic)))
	b := call[string](bob, fmt.Sprintf("setup(%s, 'bob-limits')", jsString(vectors.BobMnemonic)))

	start := time.Now()
	call[bool](alice, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'call-1', reason: 'user_hangup'}, 'm1')", b))
	n := call[notice](alice, "nextNotice(10000)")
	if n.Kind != "undeliverable" || n.ID != "m1" || n.To != b || n.Reason != "recipient_busy" {
		t.Fatalf("notice %+v: want undeliverable m1 recipient_busy", n)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("the notice came after %v: the envelope was not sent again after 1 s", el)
	}
	// The next notice is m2's, not a second one for m1 (which would come
	// before it).
	call[bool](alice, fmt.Sprintf("send({type: 'call_hangup', to: %q, call_id: 'call-2', reason: 'user_hangup'}, 'm2')", b))
	if n := call[notice](alice, "nextNotice(10000)"); n.ID != "m2" || n.Reason != "recipient_busy" {
		t.Errorf("notice %+v: want m2's recipient_busy", n)
	}
	if c := call[int](alice, "noticeCount()"); c != 0 {
		t.Errorf("%d more notices, want none", c)
	}
	if got := call[string](alice, "connectSecond()"); got != "ErrTooManySessions" {
		t.Errorf("a second session of alice: %s, want ErrTooManySessions", got)
	}
}
