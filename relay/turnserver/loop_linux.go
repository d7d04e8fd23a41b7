package turnserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpLoop reads the server's UDP sockets, listening and relay, from one
// goroutine, as coturn reads its sockets from an event loop: the sockets
// sit in an epoll instance of the loop's own, out of the Go runtime's
// poller, and one wake-up of the loop takes the datagrams of every socket
// that is ready. With a goroutine per socket (pion/turn reads each
// listening and relay socket on one), every burst of datagrams woke several
// goroutines at once, and the runtime woke a thread for each but the first,
// which went back to sleep once its goroutine had run: at 50 allocations of
// a few hundred packets a second that cost as much as the relaying. When
// the loop is busy more than half of the time, half of the sockets move to
// a second epoll instance that a second goroutine (help) reads, so that a
// loaded server still relays on two cores, as coturn's two threads do; once
// the load falls to about a third of one goroutine's time, they move back
// (nextSharing).
//
// The loop relays ChannelData on known channels both ways itself
// (channels.forward, relayConn.relay) and drops what the tarpit says to;
// every other datagram waits in its socket's queue for pion/turn's
// goroutine (loopSocket.ReadFrom).
type udpLoop struct {
	sets [2]epollSet // sets[0]: run's, sets[1]: help's
	done sync.WaitGroup

	mu      sync.Mutex
	socks   map[int32]*loopSocket // by descriptor
	sharing bool                  // half of the sockets are in sets[1]
	next    int                   // the set a new socket goes to while sharing
	stopped bool                  // the sets are closed (their numbers may be other files')

	drops loopDrops
}

// epollSet is an epoll instance a goroutine of the loop reads. It waits in
// the runtime's poller (it is readable while a socket in it is) and is read
// with a non-blocking epoll_wait: no thread blocks in a system call for it.
type epollSet struct {
	ep   *os.File // non-blocking, in the runtime's poller
	epfd int      // its descriptor (ep.Fd would make it blocking)
	rc   syscall.RawConn
}

// Queues of datagrams for pion/turn, per socket: past them the loop drops,
// as a full socket receive buffer does. A listening socket's holds STUN
// requests (pion answers each in microseconds; a burst of Allocates
// waits here), a relay socket's the data of peers without a channel.
const (
	listenQueue = 1024
	relayQueue  = 64
)

// listenBatches is how many batches of datagrams the loop takes from a
// listening socket at a time (a relay socket's: one). A listening socket
// carries every client's datagrams, a relay socket one allocation's
// peers': read as little as a relay socket, it overflows under load while
// the loop serves the relay sockets.
const listenBatches = 16

// The loop measures how busy it is over windows of shareWindow.
const shareWindow = 10 * time.Millisecond

func newUDPLoop() (*udpLoop, error) {
	l := &udpLoop{socks: make(map[int32]*loopSocket)}
	for i := range l.sets {
		if err := l.sets[i].open(); err != nil {
			for _, set := range l.sets[:i] {
				_ = set.ep.Close()
			}
			return nil, err
		}
	}
	l.done.Add(2)
	go l.run()
	go l.help()
	return l, nil
}

func (set *epollSet) open() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("turnserver: epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return fmt.Errorf("turnserver: epoll: %w", err)
	}
	set.ep, set.epfd = os.NewFile(uintptr(epfd), "epoll"), epfd
	if set.rc, err = set.ep.SyscallConn(); err != nil {
		_ = set.ep.Close()
		return fmt.Errorf("turnserver: epoll: %w", err)
	}
	return nil
}

// run reads sets[0] until stop closes it, and moves sockets between the
// sets as it is busy.
func (l *udpLoop) run() {
	defer l.done.Done()
	st := newLoopState()
	for {
		busy, ok := l.round(&l.sets[0], st)
		if !ok {
			return // stop closed it
		}
		if busy >= 0 {
			l.mu.Lock()
			sharing := l.sharing
			l.mu.Unlock()
			l.share(nextSharing(sharing, busy))
		}
	}
}

// The loop shares its sockets with a second goroutine once its main
// goroutine is busy more than shareOn of a window's time, and takes them
// back once, sharing, it is busy less than shareOff. Sharing, it reads
// about half of the traffic: shareOff is a load of ~0.3 of one goroutine's
// time, so that a load near shareOn does not move the sockets back and
// forth every window (a system call per socket moved).
const (
	shareOn  = 0.5
	shareOff = 0.15
)

// nextSharing is whether the loop is to share its sockets after a window
// in which its main goroutine was busy that share of the time.
func nextSharing(sharing bool, busy float64) bool {
	if sharing {
		return busy >= shareOff
	}
	return busy > shareOn
}

// help reads sets[1] until stop closes it (it waits in the runtime's
// poller while sets[1] is empty).
func (l *udpLoop) help() {
	defer l.done.Done()
	st := newLoopState()
	for {
		if _, ok := l.round(&l.sets[1], st); !ok {
			return
		}
	}
}

// share moves every other socket to sets[1] (on: every other listening
// socket, every other relay socket), or them all back to sets[0] (off).
func (l *udpLoop) share(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sharing == on || l.stopped {
		return
	}
	l.sharing = on
	var count [2]int // relay sockets, listening sockets: alternated apart
	for _, s := range l.socks {
		to := 0
		if on {
			kind := min(s.batches-1, 1)
			to = count[kind] % 2
			count[kind]++
		}
		if s.set != to {
			l.move(s, to)
		}
	}
}

// move moves s to sets[to]; l.mu is held.
func (l *udpLoop) move(s *loopSocket, to int) {
	_ = unix.EpollCtl(l.sets[s.set].epfd, unix.EPOLL_CTL_DEL, int(s.fd), nil)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: s.fd}
	if unix.EpollCtl(l.sets[to].epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev) == nil {
		s.set = to
		return
	}
	// Cannot happen with a valid socket; back where it was read.
	_ = unix.EpollCtl(l.sets[s.set].epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev)
}

// loopState is what one goroutine of a loop reads with.
type loopState struct {
	events []unix.EpollEvent
	n      int
	ready  []*loopSocket
	r      *batchReader
	wait   func(fd uintptr) bool // a RawConn.Read callback: epoll_wait without waiting

	busy   time.Duration // reading, since window
	window time.Time
}

func newLoopState() *loopState {
	st := &loopState{events: make([]unix.EpollEvent, 128), r: newBatchReader(listenBatch), window: time.Now()}
	st.ready = make([]*loopSocket, 0, len(st.events))
	st.wait = func(fd uintptr) bool {
		var done bool
		st.n, done, _ = nonBlocking("epoll_pwait", func() (uintptr, syscall.Errno) {
			n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&st.events[0])), uintptr(len(st.events)), 0, 0, 0)
			return n, e
		})
		return done && st.n > 0
	}
	return st
}

// round waits for ready sockets in set and reads them; false once set is
// closed. busy is the share of its time st's goroutine spent reading over
// the last shareWindow, once one has passed (else -1).
func (l *udpLoop) round(set *epollSet, st *loopState) (busy float64, ok bool) {
	if err := set.rc.Read(st.wait); err != nil {
		return 0, false
	}
	start := time.Now()
	st.ready = st.ready[:0]
	l.mu.Lock()
	for _, ev := range st.events[:st.n] {
		if s := l.socks[ev.Fd]; s != nil {
			st.ready = append(st.ready, s)
		}
	}
	l.mu.Unlock()
	// Level-triggered: a socket with more than a batch is ready again at
	// the next epoll_wait, after the others had their turn. One that has
	// just moved may still be read by the other goroutine: it is skipped
	// (and ready again).
	for _, s := range st.ready {
		if s.reading.CompareAndSwap(false, true) {
			s.read(st.r)
			s.reading.Store(false)
		}
	}
	end := time.Now()
	st.busy += end.Sub(start)
	busy = -1
	if d := end.Sub(st.window); d >= shareWindow {
		busy = float64(st.busy) / float64(d)
		st.busy, st.window = 0, end
	}
	return busy, true
}

// adopt takes c, a UDP socket, out of the runtime's poller: the loopSocket
// it returns reads and writes a duplicate of c's descriptor, and c is
// closed. The loop reads it once add is called. When it cannot, it returns
// nil and leaves c as it is.
func (l *udpLoop) adopt(c net.PacketConn, queue, batches int) *loopSocket {
	u, ok := rawUDP(c)
	if !ok {
		return nil
	}
	fd := -1
	if err := u.rc.Control(func(s uintptr) {
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	}); err != nil || fd < 0 {
		return nil
	}
	// The duplicate shares the socket's file status: blocking, so that
	// os.NewFile keeps it out of the runtime's poller (every call on it
	// passes MSG_DONTWAIT).
	if err := unix.SetNonblock(fd, false); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "udp")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil
	}
	_ = c.Close()
	return &loopSocket{
		f: f, rc: rc, fd: int32(fd), loop: l,
		ip6: u.ip6, laddr: u.laddr,
		in: make(chan queued, queue), batches: batches,
		closed: make(chan struct{}),
	}
}

// add starts reading s: consume takes each datagram first (the datagram at
// b[channelDataHeader:][:n], with room for a ChannelData header before it
// and padding after), and what it does not take is queued for ReadFrom.
// On failure s is closed.
func (l *udpLoop) add(s *loopSocket, consume func(b []byte, n int, src net.Addr) bool) error {
	s.consume = consume
	l.mu.Lock()
	err := net.ErrClosed
	if !l.stopped {
		if l.sharing {
			s.set, l.next = l.next, 1-l.next
		}
		l.socks[s.fd] = s
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: s.fd}
		err = unix.EpollCtl(l.sets[s.set].epfd, unix.EPOLL_CTL_ADD, int(s.fd), &ev)
	}
	l.mu.Unlock()
	if err != nil {
		s.Close()
		return fmt.Errorf("turnserver: epoll: %w", err)
	}
	return nil
}

// remove stops reading s, whose descriptor is still open (its number may
// be reused once it is closed).
func (l *udpLoop) remove(s *loopSocket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.socks[s.fd] == s {
		delete(l.socks, s.fd)
	}
	if !l.stopped {
		_ = unix.EpollCtl(l.sets[s.set].epfd, unix.EPOLL_CTL_DEL, int(s.fd), nil)
	}
}

// loopDrops counts the datagrams the loop dropped itself (the kernel's
// drops at a full receive buffer are counted by the kernel: /proc/net/udp,
// RcvbufErrors in /proc/net/snmp).
type loopDrops struct {
	queueFull      atomic.Uint64 // a socket's queue for pion/turn was full
	sendBufferFull atomic.Uint64 // a socket's send buffer was full
}

// dropped returns the counts of the loop's drops (dropReasons order).
func (l *udpLoop) dropped() [2]uint64 {
	if l == nil {
		return [2]uint64{}
	}
	return [2]uint64{l.drops.queueFull.Load(), l.drops.sendBufferFull.Load()}
}

// stop ends run and help; Server.Close calls it once pion/turn closed its
// sockets.
func (l *udpLoop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	for _, set := range l.sets {
		_ = set.ep.Close()
	}
	l.done.Wait()
}

// relaySocket is the relay socket on c that the loop reads, nil when c
// cannot be adopted (pion/turn then reads it itself).
func (l *udpLoop) relaySocket(c net.PacketConn, ch *channels) (*relayConn, error) {
	s := l.adopt(c, relayQueue, 1)
	if s == nil {
		return nil, nil
	}
	rc := ch.newRelayConn(s)
	// While pion/turn has datagrams of this socket (queued, or the one it
	// is relaying), later ones wait behind them: relayed at once, a
	// peer's datagram on a channel just bound would overtake older ones
	// still on their way to the client as Data indications. pion relays
	// them in order (relayConn.ReadFrom sends on a bound channel itself).
	err := l.add(s, func(b []byte, n int, src net.Addr) bool {
		return s.pending.Load() == 0 && rc.relay(b, n, src)
	})
	if err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

// listenSocket is the listening socket c as the loop reads it, c with
// batched reads by pion/turn when it cannot be adopted.
func (l *udpLoop) listenSocket(c net.PacketConn, q *quota, ch *channels) (net.PacketConn, error) {
	s := l.adopt(c, listenQueue, listenBatches)
	if s == nil {
		return batchSocket(c, listenBatch), nil
	}
	err := l.add(s, func(b []byte, n int, src net.Addr) bool {
		d := b[channelDataHeader : channelDataHeader+n]
		return ch.forward(d, src) || q.tarpit(d, src)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// reads reports whether c is a socket the loop reads (and relays
// ChannelData from).
func (*udpLoop) reads(c net.PacketConn) bool {
	_, ok := c.(*loopSocket)
	return ok
}

// loopSocket is a UDP socket read by a udpLoop. Its descriptor is an
// *os.File's: a call holds it (RawConn.Control), and Close defers closing
// the number until no call does.
type loopSocket struct {
	f     *os.File
	rc    syscall.RawConn
	fd    int32
	loop  *udpLoop
	ip6   bool
	laddr *net.UDPAddr

	consume func(b []byte, n int, src net.Addr) bool
	batches int         // read at most at a time (listenBatches or 1)
	set     int         // the loop's set it is in; the loop's mu guards it
	reading atomic.Bool // a goroutine of the loop is reading it
	in      chan queued // datagrams for pion/turn
	// pending counts the datagrams in queue and the one pion/turn took
	// last, until it asks for the next (it reads each socket on one
	// goroutine, and handles a datagram before it reads the next).
	pending   atomic.Int32
	handed    bool // ReadFrom returned a datagram (pion's goroutine only)
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// queued is a datagram waiting for pion/turn.
type queued struct {
	b   []byte
	src net.Addr
}

// read takes up to s.batches batches of datagrams from s: s.consume's
// first, the others to s's queue. On a goroutine of the loop.
func (s *loopSocket) read(r *batchReader) {
	for range s.batches {
		if s.rc.Control(r.recvDontWait) != nil {
			return // closed
		}
		for i := range r.n {
			b, n, src := r.datagram(i)
			if s.consume(b, n, src) {
				continue
			}
			s.pending.Add(1)
			select {
			case s.in <- queued{append([]byte(nil), b[channelDataHeader:channelDataHeader+n]...), src}:
			default: // pion is that far behind: dropped, as by a full socket
				s.pending.Add(-1)
				s.loop.drops.queueFull.Add(1)
			}
		}
		if r.n < len(r.hdrs) {
			return // emptied
		}
	}
}

// ReadFrom returns the next datagram the loop did not take; the one it
// returned before is done with.
func (s *loopSocket) ReadFrom(p []byte) (int, net.Addr, error) {
	if s.handed {
		s.handed = false
		s.pending.Add(-1)
	}
	select {
	case d := <-s.in:
		s.handed = true
		return copy(p, d.b), d.src, nil
	case <-s.closed:
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: s.laddr, Err: net.ErrClosed}
	}
}

// WriteTo sends p to addr at once or not at all: a datagram the socket's
// send buffer cannot take now is dropped, as a full device queue drops it,
// and reported sent: pion/turn logs every failed send at Error level, so
// an error here would flood the log while the buffer stays full.
func (s *loopSocket) WriteTo(p []byte, addr net.Addr) (int, error) {
	op := sendOps.Get().(*sendOp)
	defer sendOps.Put(op)
	if !op.prepare(p, addr, s.ip6, unix.MSG_DONTWAIT) {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: addr, Err: net.InvalidAddrError("not a UDP address of the socket's family")}
	}
	if op.ctl == nil {
		op.ctl = op.sendNow
	}
	if s.rc.Control(op.ctl) != nil {
		return op.result(net.ErrClosed, s.laddr, addr) // Control fails only on a closed file
	}
	n, err := op.result(nil, s.laddr, addr)
	if errors.Is(err, unix.EAGAIN) {
		s.loop.drops.sendBufferFull.Add(1)
		return len(p), nil
	}
	return n, err
}

func (s *loopSocket) Close() error {
	s.closeOnce.Do(func() {
		s.loop.remove(s)
		close(s.closed)
		s.closeErr = s.f.Close()
	})
	return s.closeErr
}

// LocalAddr is the socket's address, its IP in 16 bytes (as batchConn's).
func (s *loopSocket) LocalAddr() net.Addr { return s.laddr }

// errNoDeadline: pion/turn sets no deadline on UDP sockets.
var errNoDeadline = errors.New("turnserver: loop sockets take no deadline")

func (s *loopSocket) SetDeadline(time.Time) error      { return errNoDeadline }
func (s *loopSocket) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (s *loopSocket) SetWriteDeadline(time.Time) error { return errNoDeadline }
