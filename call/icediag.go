package call

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/duetcall/duet/client"
)

// iceFacts are what a call knows about its connectivity: the ICE servers
// the relay offered and the candidate types gathered and received. An ICE
// failure says why from them (reason), instead of a bare ice_failed.
type iceFacts struct {
	mu                      sync.Mutex
	stun, turnUDP, turnTCP  bool
	turnTLS, relayPolicy    bool
	local, remote           map[string]int // candidate type → count
	localTotal, remoteTotal int
	configRecorded          bool

	// The deadline of the call's first connectivity checks.
	deadline      *time.Timer
	everConnected bool
}

// iceCheckDeadline bounds a call's first connectivity checks: with no
// working candidate pair by then, the call reports ICE failed (the caller
// then restarts ICE once, bounded by its own 10 s wait). pion's own deadline
// is its disconnected plus failed timeouts, 30 s, which made a call with no
// path end ice_failed after 40 s; now about 14 s (nattest
// TestNoTURNSymmetricFailsFast). Only the first checks: an outage of a
// connected call keeps the disconnected rules (PROTOCOL §10.6).
var iceCheckDeadline = 4 * time.Second

// checking arms the deadline when the first checks start; fail runs (on
// the timer's goroutine) when it passes without a connection.
func (f *iceFacts) checking(fail func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.everConnected || f.deadline != nil {
		return
	}
	f.deadline = time.AfterFunc(iceCheckDeadline, func() {
		f.mu.Lock()
		connected := f.everConnected
		f.mu.Unlock()
		if !connected {
			fail()
		}
	})
}

// connected stops the deadline for good.
func (f *iceFacts) connected() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.everConnected = true
	if f.deadline != nil {
		f.deadline.Stop()
	}
}

// config records the ICE servers offered for the call.
func (f *iceFacts) config(cfg client.ICEConfig, relayPolicy bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configRecorded, f.relayPolicy = true, relayPolicy
	for _, s := range cfg.ICEServers {
		for _, u := range s.URLs {
			switch {
			case strings.HasPrefix(u, "stun:"):
				f.stun = true
			case strings.HasPrefix(u, "turns:"):
				f.turnTLS = true
			case strings.HasPrefix(u, "turn:") && strings.Contains(u, "transport=tcp"):
				f.turnTCP = true
			case strings.HasPrefix(u, "turn:"):
				f.turnUDP = true
				f.stun = true // a UDP TURN server answers STUN too
			}
		}
	}
}

// addLocal records a gathered candidate of type typ (host, srflx, relay).
func (f *iceFacts) addLocal(typ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.local == nil {
		f.local = map[string]int{}
	}
	f.local[typ]++
	f.localTotal++
}

// addRemote records a candidate line received from the peer.
func (f *iceFacts) addRemote(line string) {
	typ := "unknown"
	if fields := strings.Fields(line); len(fields) > 0 {
		for i, w := range fields[:len(fields)-1] {
			if w == "typ" {
				typ = fields[i+1]
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.remote == nil {
		f.remote = map[string]int{}
	}
	f.remote[typ]++
	f.remoteTotal++
}

// reason says why no candidate pair could connect, from the facts.
func (f *iceFacts) reason() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	turnOffered := f.turnUDP || f.turnTCP || f.turnTLS
	var why string
	switch {
	case f.remoteTotal == 0:
		why = "the peer sent no ICE candidates (its network, or its connection to the relay, failed)"
	case turnOffered && f.local["relay"] == 0 && !f.turnTCP && !f.turnTLS && f.local["srflx"] == 0:
		why = "no route to the peer: UDP looks blocked here (no STUN or TURN answer) and the relay offers no TURN over TCP or TLS (run it without --no-turn-tcp, or give it a TLS certificate for turns:)"
	case turnOffered && f.local["relay"] == 0:
		why = "no TURN allocation succeeded here (offered: " + f.offered() + "): a firewall blocks the TURN server, or its credentials were refused"
	case !turnOffered && f.local["relay"] == 0 && f.remote["relay"] == 0:
		why = "no direct path worked and there is no TURN server to fall back to: both sides are probably behind symmetric NATs or firewalls; configure TURN on the relay (the embedded TURN is on unless --no-turn)"
	case f.local["relay"] > 0 && f.remote["relay"] > 0:
		why = "both sides had TURN allocations but no pair connected: the TURN server may refuse to relay between their addresses (private addresses need --turn-allow-peers), or UDP from the TURN server is blocked"
	default:
		why = "candidates were exchanged but no pair connected: a firewall drops the connectivity checks"
	}
	return fmt.Sprintf("%s (local candidates: %s; remote: %s; ICE servers offered: %s)", why, counts(f.local), counts(f.remote), f.offered())
}

func (f *iceFacts) offered() string {
	var o []string
	if f.stun {
		o = append(o, "stun")
	}
	for _, t := range []struct {
		on   bool
		name string
	}{{f.turnUDP, "turn/udp"}, {f.turnTCP, "turn/tcp"}, {f.turnTLS, "turns"}} {
		if t.on {
			o = append(o, t.name)
		}
	}
	if len(o) == 0 {
		return "none"
	}
	return strings.Join(o, ", ")
}

func counts(m map[string]int) string {
	var parts []string
	for _, t := range []string{"host", "srflx", "prflx", "relay", "unknown"} {
		if n := m[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
