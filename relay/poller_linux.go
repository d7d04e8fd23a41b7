//go:build linux

package relay

import (
	"fmt"
	"sync"
	"syscall"
)

// poller holds the node's idle sessions without a goroutine each: a
// session whose client has sent nothing for a while (wsConn.idleAfter)
// parks its socket in one epoll instance and its reading goroutine ends;
// when the socket becomes readable (a frame, the client's close, a reset),
// a new goroutine reads it (wsConn.resume). The Go runtime's own poller
// keeps the socket too, for writes.
type poller struct {
	epfd int
	wake [2]int // a pipe: a byte on it stops run
	done chan struct{}

	mu      sync.Mutex
	parked  map[int32]*wsConn // by socket
	stopped bool
}

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	p := &poller{epfd: epfd, done: make(chan struct{}), parked: make(map[int32]*wsConn)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	go p.run()
	return p, nil
}

func (p *poller) closeFDs() {
	_ = syscall.Close(p.epfd)
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // cannot happen with a valid epoll descriptor; parked sessions end at their close
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(p.wake[0]) {
				return
			}
			p.mu.Lock()
			c := p.parked[ev.Fd]
			delete(p.parked, ev.Fd)
			p.mu.Unlock()
			if c != nil {
				go c.resume()
			}
		}
	}
}

// park waits for c's socket to become readable; false when it cannot (the
// node is stopping, c is closed): the caller keeps reading.
func (p *poller) park(c *wsConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || c.dead || c.fd < 0 {
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: c.fd}
	err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(c.fd), &ev)
	if err == syscall.ENOENT {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(c.fd), &ev)
	}
	if err != nil {
		return false
	}
	p.parked[c.fd] = c
	return true
}

// forget is called before c's socket is closed: it takes the socket out
// of the epoll set (its number may be reused at once) and reports whether
// c was parked, so that the caller resumes it to read the end.
func (p *poller) forget(c *wsConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.dead = true
	if c.fd < 0 {
		return false
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.fd), nil)
	if p.parked[c.fd] != c {
		return false
	}
	delete(p.parked, c.fd)
	return true
}

// stop ends run once no session is parked any more (Server.Shutdown calls
// it after every session ended).
func (p *poller) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wake[1], []byte{0})
	<-p.done
	p.closeFDs()
}

// socketFD is c's socket number, -1 when it has none.
func socketFD(c syscall.RawConn) int32 {
	fd := int32(-1)
	if c != nil {
		_ = c.Control(func(s uintptr) { fd = int32(s) })
	}
	return fd
}
