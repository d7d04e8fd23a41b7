package relay

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// confirmWait bounds one confirmation round trip.
const confirmWait = 5 * time.Second

// confirmer accounts for the envelopes a node handed to NATS. A publish
// that returns nil is only buffered in nats.go (and the kernel): when the
// connection to the NATS server dies, what was not written or not read by
// the server yet is lost with no error and no answer, so the sender gets
// no notice (about 1 in 300 envelopes sent around a NATS node's death).
// The confirmer asks the server for a PING/PONG round trip whenever
// envelopes were published since the last one; the PONG means the server
// read them all. When the round trip fails (the connection dropped, or no
// answer within confirmWait), the envelopes it covered are counted as
// dropped, reason unconfirmed: their fate is unknown (some may have gone
// through), so no notice is sent, but none goes uncounted.
type confirmer struct {
	nc    *nats.Conn
	drops *dropCounter

	mu        sync.Mutex
	published uint64 // envelopes published successfully
	settled   uint64 // of those, confirmed or counted as unconfirmed

	wake     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newConfirmer(nc *nats.Conn, drops *dropCounter) *confirmer {
	c := &confirmer{nc: nc, drops: drops, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// sent records a successful publish.
func (c *confirmer) sent() {
	c.mu.Lock()
	c.published++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// lost is called when the NATS connection drops: whatever was published
// and not confirmed yet went with it, or may have. (A publish after this
// fails at once, see nats.ReconnectBufSize(-1).)
func (c *confirmer) lost() {
	c.mu.Lock()
	n := c.published - c.settled
	c.settled = c.published
	c.mu.Unlock()
	if n > 0 {
		c.drops.Add(DropUnconfirmed, n)
	}
}

func (c *confirmer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		n, settled := c.published, c.settled
		c.mu.Unlock()
		if n == settled {
			continue
		}
		err := c.nc.FlushTimeout(confirmWait)
		c.mu.Lock()
		var unconfirmed uint64
		if c.settled < n { // else lost() counted them meanwhile
			if err != nil {
				unconfirmed = n - c.settled
			}
			c.settled = n
		}
		c.mu.Unlock()
		if unconfirmed > 0 {
			c.drops.Add(DropUnconfirmed, unconfirmed)
		}
	}
}

// stop ends the confirmer; envelopes published after its last round trip
// are not accounted.
func (c *confirmer) stop() {
	c.stopOnce.Do(func() { close(c.quit) })
	<-c.done
}
