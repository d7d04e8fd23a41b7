//go:build linux

package relay

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// poller holds the node's sessions between their clients' messages
// without a goroutine each: a session with nothing left to read parks its
// socket in one epoll instance and its reading goroutine ends; when the
// socket becomes readable (a frame, the client's close, a reset), the
// poller's goroutine serves it (wsConn.wake: session.wake reads it once,
// handles the messages that came whole and parks it again, or hands it to
// a goroutine of its own, session.handOff). One wake-up of the poller serves
// every session that is ready, and an envelope costs no goroutine switch.
// The Go runtime's own poller keeps the socket too, for writes.
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

	again bool // run's round may have left events (see rest); run's goroutine

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

// run serves the sessions whose sockets became readable, until stop
// closes the epoll instance.
//
// It serves them within one RawConn.Read of the epoll instance: the
// runtime clears the instance's readiness when Read starts, not when it
// waits again, so a socket that became readable while the sessions were
// served wakes the next wait at once, and the wait after a round of
// wake-ups needs no epoll_wait of its own to see that nothing is left:
// one system call per wake-up of the poller. Only a round that may have
// left events (a full batch; a session parked again with bytes still
// unread, see rest) collects again before it waits.
func (p *poller) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	_ = rc.Read(func(fd uintptr) bool { // returns once stop closed it
		for {
			n := epollReady(int(fd), events)
			if n == 0 {
				return false
			}
			p.again = false
			for _, ev := range events[:n] {
				p.serve(ev.Fd)
			}
			if n < len(events) && !p.again {
				return false
			}
		}
	})
}

// serve serves the parked session of socket fd, which is readable.
func (p *poller) serve(fd int32) {
	p.mu.Lock()
	c := p.parked[fd]
	delete(p.parked, fd)
	if c == nil && !p.stopped {
		// Not a parked session's (a stale event of a socket that was
		// closed): out of the set, else it would be ready at every wait.
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	}
	p.mu.Unlock()
	if c != nil {
		c.wake() // it calls rest, or release before another goroutine reads
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
// node is stopping, c is closed): the caller keeps reading. The wait is
// level-triggered: a socket that is readable when it parks, or whose
// client's end came with its last bytes, wakes it at once.
func (p *poller) park(c *wsConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || c.dead || c.fd < 0 {
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: c.fd}
	if syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(c.fd), &ev) != nil {
		return false
	}
	p.parked[c.fd] = c
	return true
}

// rest parks c again from its wake, on the poller's goroutine: its socket
// is still in the epoll set (no system call). more: the socket may still
// hold bytes (the last read filled the buffer), so that run collects
// again before it waits. False when it cannot park (as park), the socket
// then out of the set.
func (p *poller) rest(c *wsConn, more bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || c.dead {
		p.releaseLocked(c)
		return false
	}
	p.parked[c.fd] = c
	p.again = p.again || more
	return true
}

// release takes c's socket out of the epoll set before another goroutine
// reads it (it would be ready again at every wait until then).
func (p *poller) release(c *wsConn) {
	p.mu.Lock()
	p.releaseLocked(c)
	p.mu.Unlock()
}

// releaseLocked is release with p.mu held. A closed connection's socket
// is out of the set already (forget), and its number may be another's.
func (p *poller) releaseLocked(c *wsConn) {
	if !c.dead && !p.stopped {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.fd), nil)
	}
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
