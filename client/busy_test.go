package client

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/duetcall/duet/relay"
)

// startRelayWith is startRelay with relay options.
func startRelayWith(t *testing.T, o relay.Options) *testRelay {
	t.Helper()
	r := &testRelay{t: t, dir: t.TempDir(), ice: startRelay(t).ice, opts: o}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// TestRecipientBusyResentOnce: an envelope refused with recipient_busy is
// sent once more; only the second refusal reaches OnUndeliverable. (A relay
// whose queued-bytes budget is one byte refuses every envelope.)
func TestRecipientBusyResentOnce(t *testing.T) {
	r := startRelayWith(t, relay.Options{QueueBudget: 1})
	a := connect(t, r, newIdentity(t), nil)
	b := connect(t, r, newIdentity(t), nil)
	start := time.Now()
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "m1")); err != nil {
		t.Fatal(err)
	}
	u := recv(t, a.undeliv, "the undeliverable notice")
	if u.ID != "m1" || u.Reason != ReasonRecipientBusy || u.To != b.c.Alias() {
		t.Fatalf("got %+v, want recipient_busy for m1", u)
	}
	if el := time.Since(start); el < busyRetry {
		t.Errorf("notice after %v: the envelope was not sent again first", el)
	}
	// The next notice is m2's, not a second one for m1 (which would come
	// before it).
	if err := a.c.Send(context.Background(), envelope(b.c.Alias(), "m2")); err != nil {
		t.Fatal(err)
	}
	if u := recv(t, a.undeliv, "m2's notice"); u.ID != "m2" {
		t.Fatalf("got %+v, want m2's notice", u)
	}
}

// TestTooManySessions: past the relay's cap on sessions per alias, Connect
// fails with ErrTooManySessions.
func TestTooManySessions(t *testing.T) {
	r := startRelayWith(t, relay.Options{MaxSessionsPerAlias: 1})
	a := connect(t, r, newIdentity(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Connect(ctx, Options{RelayURL: r.url(), Identity: a.id, Alias: a.c.Alias(), Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("second session: %v, want ErrTooManySessions", err)
	}
}

// TestRegisterPoW: against a relay that asks for a proof of work, Register
// solves it.
func TestRegisterPoW(t *testing.T) {
	r := startRelayWith(t, relay.Options{RegisterPoWBits: 12})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, created, err := Register(ctx, nil, r.url(), newIdentity(t)); err != nil || !created {
		t.Fatalf("Register = %v, %v", created, err)
	}
}
