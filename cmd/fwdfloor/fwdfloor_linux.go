//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/duetcall/duet/internal/proccpu"
)

const header = 16 // destination index (4), due time (8, ns since the run began), sequence (4)

// serveEnv names the forwarder a child process is to be (see run):
// "KIND PORT SIZE".
const serveEnv = "FWDFLOOR_SERVE"

// config is one measurement.
type config struct {
	forwarder string // poller, goroutines, or a program
	sessions  int
	rate      float64 // frames per second
	duration  time.Duration
	size      int           // bytes per frame
	genCPU    time.Duration // the generator's CPU per frame, 0: its own
}

// result is what a measurement found.
type result struct {
	sent, delivered int64
	p50, p99, late  time.Duration
	forwarderCPU    time.Duration
	generatorCPU    time.Duration
}

func main() {
	if v := os.Getenv(serveEnv); v != "" {
		fail(serveChild(v))
	}
	var cfg config
	flag.StringVar(&cfg.forwarder, "forwarder", "poller", "poller, goroutines, or a program run as `PROGRAM PORT SIZE`")
	flag.IntVar(&cfg.sessions, "sessions", 5000, "sessions (TCP connections)")
	flag.Float64Var(&cfg.rate, "rate", 10000, "frames per second")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "sending time")
	flag.IntVar(&cfg.size, "size", 600, "frame size in bytes (a loadtest envelope is 574 bytes of JSON)")
	flag.DurationVar(&cfg.genCPU, "generator-cpu", 0, "the CPU time the generator spends per frame, made up by spinning while it waits (to load the cores as duet loadtest does; 0: its own)")
	flag.Parse()
	r, err := run(cfg)
	if err != nil {
		fail(err)
	}
	perFrame := func(d time.Duration) float64 { return float64(d) / float64(max(r.delivered, 1)) / 1e3 }
	fmt.Printf("floor %s: %d sessions, %d of %d frames of %d bytes delivered at %.0f/s; latency p50 %.2f ms, p99 %.2f ms (the generator up to %.2f ms late); forwarder CPU %.2f s, %.1f µs per frame; generator CPU %.1f µs per frame\n",
		filepath.Base(cfg.forwarder), cfg.sessions, r.delivered, r.sent, cfg.size, cfg.rate, ms(r.p50), ms(r.p99), ms(r.late),
		r.forwarderCPU.Seconds(), perFrame(r.forwarderCPU), perFrame(r.generatorCPU))
}

// serveChild is the forwarder of a child process: spec is serveEnv's value.
func serveChild(spec string) error {
	var kind string
	var port, size int
	if _, err := fmt.Sscan(spec, &kind, &port, &size); err != nil {
		return fmt.Errorf("%s=%q: want KIND PORT SIZE: %w", serveEnv, spec, err)
	}
	return serveFloor(kind, port, size)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fwdfloor:", err)
	os.Exit(1)
}

// run starts the forwarder, drives it and measures what it spent.
func run(cfg config) (result, error) {
	forwarder, sessions, rate, size, genCPU := cfg.forwarder, cfg.sessions, cfg.rate, cfg.size, cfg.genCPU
	if size < header {
		return result{}, fmt.Errorf("-size %d: at least %d", size, header)
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	var cmd *exec.Cmd
	switch forwarder {
	case "poller", "goroutines":
		self, err := os.Executable()
		if err != nil {
			return result{}, err
		}
		cmd = exec.Command(self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", serveEnv, forwarder, port, size))
	default:
		cmd = exec.Command(forwarder, strconv.Itoa(port), strconv.Itoa(size))
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("starting the forwarder: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// One connection at a time, so that the forwarder accepts them in this
	// order (the frames name their destination by it).
	conns := make([]net.Conn, sessions)
	for i := range conns {
		deadline := time.Now().Add(5 * time.Second)
		for {
			conns[i], err = net.Dial("tcp", addr)
			if err == nil || i > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // the forwarder is starting
		}
		if err != nil {
			return result{}, fmt.Errorf("session %d: %w", i, err)
		}
		defer conns[i].Close()
	}
	// Every session's first frame goes to itself: once each has come
	// back, the forwarder has accepted them all.
	total := int(math.Round(rate * cfg.duration.Seconds()))
	lat := make([]atomic.Int64, total) // arrival - due, +1 (0: not arrived)
	base := time.Now()                 // frames carry their due time as time since base (monotonic)
	var arrived atomic.Int64
	var ready sync.WaitGroup
	ready.Add(sessions)
	for _, c := range conns {
		go func() {
			b := make([]byte, size)
			first := true
			for {
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				if first {
					first = false
					ready.Done()
					continue
				}
				due := int64(binary.LittleEndian.Uint64(b[4:]))
				seq := binary.LittleEndian.Uint32(b[12:])
				if int(seq) < total && lat[seq].CompareAndSwap(0, int64(time.Since(base))-due+1) {
					arrived.Add(1)
				}
			}
		}()
	}
	b := make([]byte, size)
	for i, c := range conns {
		binary.LittleEndian.PutUint32(b, uint32(i))
		if _, err := c.Write(b); err != nil {
			return result{}, fmt.Errorf("session %d: %w", i, err)
		}
	}
	if !waitGroup(&ready, 30*time.Second) {
		return result{}, errors.New("the forwarder did not return every session's first frame within 30 s")
	}
	time.Sleep(time.Second) // settle

	cpu0, err := proccpu.Of(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	own0, _ := proccpu.Self()
	start := time.Now()
	var late time.Duration
	for k := range total {
		due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		if d := time.Until(due); d <= 0 {
			late = max(late, -d)
		} else if genCPU > 0 && spent(own0) < time.Duration(k)*genCPU {
			for time.Now().Before(due) { // spin: the generator's CPU
			}
		} else {
			time.Sleep(d)
		}
		src, dst := rand.IntN(sessions), rand.IntN(sessions)
		binary.LittleEndian.PutUint32(b, uint32(dst))
		binary.LittleEndian.PutUint64(b[4:], uint64(due.Sub(base)))
		binary.LittleEndian.PutUint32(b[12:], uint32(k))
		if _, err := conns[src].Write(b); err != nil {
			return result{}, fmt.Errorf("session %d: %w", src, err)
		}
	}
	for wait := time.Now().Add(5 * time.Second); arrived.Load() < int64(total) && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	cpu1, err := proccpu.Of(cmd.Process.Pid)
	if err != nil {
		return result{}, err
	}
	own := spent(own0)
	got := arrived.Load()
	var ds []time.Duration
	for i := range lat {
		if v := lat[i].Load(); v != 0 {
			ds = append(ds, time.Duration(v-1))
		}
	}
	slices.Sort(ds)
	pct := func(q float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		return ds[int(q*float64(len(ds)-1))]
	}
	return result{
		sent: int64(total), delivered: got, p50: pct(.5), p99: pct(.99), late: late,
		forwarderCPU: cpu1 - cpu0, generatorCPU: own,
	}, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// spent is the CPU time this process has used beyond since (an earlier
// proccpu.Self reading).
func spent(since time.Duration) time.Duration {
	d, _ := proccpu.Self()
	return d - since
}

func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serveFloor is the forwarder: it accepts connections on 127.0.0.1:port
// and writes each frame to the connection it names.
func serveFloor(kind string, port, size int) error {
	switch kind {
	case "goroutines":
		return serveGoroutines(port, size)
	case "poller":
		return servePoller(port, size)
	}
	return fmt.Errorf("%s: forwarder %q: want poller or goroutines", serveEnv, kind)
}

func serveGoroutines(port, size int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	var mu sync.RWMutex
	var conns []net.Conn
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		go func() {
			b := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				mu.RLock()
				if d := int(binary.LittleEndian.Uint32(b)); d < len(conns) {
					_, _ = conns[d].Write(b)
				}
				mu.RUnlock()
			}
		}()
	}
}

// servePoller waits as the relay's poller does (relay/poller_linux.go):
// its epoll instance is in the Go runtime's poller, and one goroutine
// collects the ready sockets without waiting and serves them, reading and
// writing with raw system calls (a frame is written whole or not at all:
// a floor, not a relay).
func servePoller(port, size int) error {
	ls, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	_ = syscall.SetsockoptInt(ls, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(ls, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := syscall.Listen(ls, 4096); err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.SetNonblock(ep, true); err != nil {
		return err
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, ls, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(ls)}); err != nil {
		return err
	}
	rc, err := os.NewFile(uintptr(ep), "epoll").SyscallConn()
	if err != nil {
		return err
	}
	type conn struct {
		fd   int
		buf  []byte
		have int
	}
	var (
		conns  []*conn
		byFD   = map[int32]*conn{}
		events = make([]syscall.EpollEvent, 128)
	)
	serve := func(c *conn) {
		for {
			n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&c.buf[c.have])), uintptr(size-c.have))
			if e != 0 || n == 0 {
				return
			}
			c.have += int(n)
			if c.have < size {
				return
			}
			c.have = 0
			if d := int(binary.LittleEndian.Uint32(c.buf)); d < len(conns) {
				_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(conns[d].fd), uintptr(unsafe.Pointer(&c.buf[0])), uintptr(size))
			}
		}
	}
	return rc.Read(func(uintptr) bool {
		for {
			n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			if e != 0 || n == 0 {
				return false
			}
			for _, ev := range events[:n] {
				if int(ev.Fd) != ls {
					if c := byFD[ev.Fd]; c != nil {
						serve(c)
					}
					continue
				}
				fd, _, err := syscall.Accept4(ls, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
				if err != nil {
					continue
				}
				_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
				c := &conn{fd: fd, buf: make([]byte, size)}
				conns = append(conns, c)
				byFD[int32(fd)] = c
				_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
			}
		}
	})
}
