package call

import (
	"net"
	"time"

	"github.com/pion/transport/v5"
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
