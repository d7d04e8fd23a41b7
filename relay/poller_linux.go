//go:build linux

package relay

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// poller holds the node's idle sessions without a goroutine each: a
// session whose client has sent nothing for a while (wsConn.idleAfter)
// parks its socket in one epoll instance and its reading goroutine ends;
// when the socket becomes readable (a frame, the client's close, a reset),
// a new goroutine reads it (wsConn.resume). The Go runtime's own poller
// keeps the socket too, for writes.
//
// The epoll instance itself waits in the Go runtime's poller (it is
// readable while it holds a ready socket), and run collects its events
// with a non-blocking epoll_wait: no thread blocks in a system call for
// it, which would wake the runtime's monitor thread from its sleep each
// time a parked session woke.
type poller struct {
	ep   *os.File // the epoll instance, non-blocking, in the runtime's poller
	epfd int      // its descriptor (ep.Fd would make it blocking)
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
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	p := &poller{ep: os.NewFile(uintptr(epfd), "epoll"), epfd: epfd, done: make(chan struct{}), parked: make(map[int32]*wsConn)}
	rc, err := p.ep.SyscallConn()
	if err != nil {
		_ = p.ep.Close()
		return nil, fmt.Errorf("relay: epoll: %w", err)
	}
	go p.run(rc)
	return p, nil
}

// run resumes the sessions whose sockets became readable, until stop
// closes the epoll instance.
func (p *poller) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		n := 0
		err := rc.Read(func(fd uintptr) bool {
			n = epollReady(int(fd), events)
			return n > 0
		})
		if err != nil {
			return // stop closed it
		}
		for _, ev := range events[:n] {
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

// epollReady collects the ready events of epfd without waiting (0: none).
func epollReady(epfd int, events []syscall.EpollEvent) int {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0 // cannot happen with a valid descriptor; stop ends run
		}
		return int(n)
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
	if c.fd < 0 || p.stopped {
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
	_ = p.ep.Close()
	<-p.done
}

// socketFD is c's socket number, -1 when it has none.
func socketFD(c syscall.RawConn) int32 {
	fd := int32(-1)
	if c != nil {
		_ = c.Control(func(s uintptr) { fd = int32(s) })
	}
	return fd
}
