package call

import (
	"slices"
	"testing"

	"github.com/duetcall/duet/client"
)

// A STUN URL of a server that is also a UDP TURN server is dropped (pion
// gathers the same server-reflexive candidate from the TURN URL); other
// STUN URLs, and everything with TLS or TCP, stay.
func TestRTCConfigDropsSTUNDuplicatingTURN(t *testing.T) {
	m := &Module{}
	cfg := m.rtcConfig(client.ICEConfig{ICETransportPolicy: "all", ICEServers: []client.ICEServer{
		{URLs: []string{"stun:turn.example:3478", "stun:stun.example:3478", "stun:tcp.example"}},
		{URLs: []string{"turn:TURN.example?transport=udp", "turn:tcp.example:3478?transport=tcp"}, Username: "u", Credential: "c"},
		{URLs: []string{"stun:[::1]:3478"}},
		{URLs: []string{"turn:[::1]"}, Username: "u", Credential: "c"},
	}})
	var got []string
	for _, s := range cfg.ICEServers {
		got = append(got, s.URLs...)
	}
	want := []string{"stun:stun.example:3478", "stun:tcp.example", "turn:TURN.example?transport=udp", "turn:tcp.example:3478?transport=tcp", "turn:[::1]"}
	if !slices.Equal(got, want) {
		t.Fatalf("URLs %q, want %q", got, want)
	}
	if cfg.ICEServers[1].Username != "u" {
		t.Fatalf("TURN credentials lost: %+v", cfg.ICEServers[1])
	}
}
