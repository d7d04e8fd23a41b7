package call

import (
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// turnDialTimeout bounds the TCP connect to a TURN server (turn: with
// transport=tcp, and turns:). pion dials them with net.DialTCP, which has
// no timeout of its own: behind a firewall that drops the SYN (a network
// that lets only port 443 out) the dial waits for the kernel's SYN
// retries, about two minutes, and so do pion's gathering and the peer
// connection's Close, which waits for it (a call that had ended hung
// there; nattest TestOnly443UsesTURNOverTLS).
const turnDialTimeout = 5 * time.Second

// dialTimeoutNet is n with TCP dials bounded by turnDialTimeout.
type dialTimeoutNet struct{ transport.Net }

func (n dialTimeoutNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	d := net.Dialer{Timeout: turnDialTimeout}
	if laddr != nil {
		d.LocalAddr = laddr
	}
	c, err := d.Dial(network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// callNet is the network a call's ICE agent gathers on: stdnet's, with its
// interface list re-read before an ICE restart (updateInterfaces).
// stdnet.Net.UpdateInterfaces replaces the list without a lock, while
// gathering goroutines of the previous ICE generation may still read it
// (a TURN allocation that has not answered when a restart begins): the
// list is read into a new stdnet.Net and swapped in under a lock instead.
// Dials, listens and lookups are the first stdnet.Net's, which use no list.
type callNet struct {
	*stdnet.Net

	mu     sync.RWMutex
	ifaces *stdnet.Net // the current interface list; never changed, replaced
}

func newCallNet() (*callNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &callNet{Net: n, ifaces: n}, nil
}

// UpdateInterfaces re-reads the machine's interfaces.
func (c *callNet) UpdateInterfaces() error {
	n, err := stdnet.NewNet()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.ifaces = n
	c.mu.Unlock()
	return nil
}

func (c *callNet) list() *stdnet.Net {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ifaces
}

func (c *callNet) Interfaces() ([]*transport.Interface, error) { return c.list().Interfaces() }

func (c *callNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	return c.list().InterfaceByIndex(index)
}

func (c *callNet) InterfaceByName(name string) (*transport.Interface, error) {
	return c.list().InterfaceByName(name)
}
