package testnats_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/duetcall/duet/internal/testnats"
)

func TestStart(t *testing.T) {
	ns := testnats.Start(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("JetStream is not enabled: %v", err)
	}
}
