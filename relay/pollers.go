package relay

// pollers are a node's pollers (see poller), one per two CPUs the runtime
// uses (pollerCount): each serves the wake-ups of its sessions on a
// goroutine of its own, so that a large node forwards on several cores. A
// session parks in the poller its socket's number picks. Nil where parking
// is unsupported.
type pollers []*poller

// pollerCount is how many pollers a node of procs CPUs (GOMAXPROCS) runs:
// one per two, at least one. One poller serves tens of thousands of
// envelopes a second on a core, and the fewer there are, the more ready
// sockets one wake-up serves: on 2 CPUs, at 10 000 envelopes/s, one poller
// spent about a tenth less CPU per envelope than two (make fwdbench). The
// other CPUs run what goes on goroutines (writers, TLS sessions, NATS).
func pollerCount(procs int) int { return max(1, procs/2) }

func newPollers(n int) (pollers, error) {
	ps := make(pollers, 0, n)
	for range n {
		p, err := newPoller()
		if err != nil || p == nil {
			ps.stop()
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// of is the poller of the socket numbered fd; nil without pollers.
func (ps pollers) of(fd int32) *poller {
	if len(ps) == 0 || fd < 0 {
		return nil
	}
	return ps[int(fd)%len(ps)]
}

// stop stops every poller (see poller.stop).
func (ps pollers) stop() {
	for _, p := range ps {
		p.stop()
	}
}
