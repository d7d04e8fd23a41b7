package call

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/duetcall/duet/call/fsm"
)

// netSignalWait bounds the wait for the relay connection after a network
// change, before the restart goes ahead anyway.
const netSignalWait = 3 * time.Second

// watchNetwork tells the state machine when the machine's interface
// addresses change during the call (Wi-Fi to mobile, a DHCP renewal): the
// caller then restarts ICE at once instead of waiting for the connection
// to be declared disconnected (PROTOCOL §10.6).
func (s *session) watchNetwork() {
	addrs := localAddrs
	if h := s.m.hooks.localAddrs; h != nil {
		addrs = h
	}
	last := addrs()
	t := time.NewTicker(s.m.tm.netCheck)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := addrs()
		if now == nil || slices.Equal(now, last) {
			continue
		}
		s.log.Info("call: the local network changed", "was", last, "now", now)
		last = now
		// The relay connection may have died with the old address: have
		// it checked (and redone) before the restart offer goes out.
		if nc, ok := s.m.sig.(interface{ NetworkChanged(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(s.ctx, netSignalWait)
			if err := nc.NetworkChanged(ctx); err != nil {
				s.log.Info("call: the relay connection is not back after the network change", "err", err)
			}
			cancel()
		}
		s.m.event(fsm.Event{Kind: fsm.EvNetChange, CallID: s.id}, input{})
	}
}

// localAddrs returns the machine's interface addresses, sorted; nil when
// they cannot be read.
func localAddrs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}
