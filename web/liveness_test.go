package web_test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duetcall/duet/internal/vectors"
)

// freezeProxy forwards TCP connections to target; freeze makes every
// connection open at that moment silently swallow what either side sends,
// like a path that died without a close. Later connections forward
// normally.
type freezeProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen []*atomic.Bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f := new(atomic.Bool)
			p.mu.Lock()
			p.frozen = append(p.frozen, f)
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, up, f)
			go p.pipe(up, c, f)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezeProxy) pipe(dst, src net.Conn, frozen *atomic.Bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		f.Store(true)
	}
}

// TestClientLiveness: the browser SDK finds a dead relay connection by its
// ping and reconnects, reconnects at once on the online event, and reports
// its clock skew with the relay.
func TestClientLiveness(t *testing.T) {
	node := startRelayNode(t, t.TempDir())
	mux := sdkMux()
	mux.Handle("/api/", node.Handler())
	srv := startServer(t, mux)
	proxy := newFreezeProxy(t, srv.Listener.Addr().String())

	ctx := newBrowser(t)
	l, stop := captureConsole(ctx, "alice: ")
	t.Cleanup(stop)
	t.Cleanup(func() {
		if t.Failed() {
			for _, line := range l.Lines() {
				t.Log(line)
			}
		}
	})
	p := &page{t: t, name: "alice", ctx: ctx, log: l}
	navigate(t, ctx, "http://"+proxy.ln.Addr().String()+"/sdktest/index.html")
	call[bool](p, "setLiveness({pingIntervalMs: 300, pingTimeoutMs: 800, watchMs: 100})")
	call[string](p, fmt.Sprintf("setup(%s, 'alice')", jsString(vectors.AliceMnemonic)))
	call[string](p, "connectedCount(1, 10000)")
	if skew := call[float64](p, "clockSkew()"); skew < -5000 || skew > 5000 {
		t.Errorf("clockSkewMs = %v on one machine, want about 0", skew)
	}

	// The path dies without a close: the ping finds it, the client
	// reconnects (a new connection through the proxy works).
	proxy.freeze()
	states := call[string](p, "connectedCount(2, 15000)")
	t.Logf("after the freeze: %s", states)

	// The browser says it is online again: reconnect at once.
	call[bool](p, "fireWindowEvent('online')")
	states = call[string](p, "connectedCount(3, 10000)")
	t.Logf("after online: %s", states)
}
