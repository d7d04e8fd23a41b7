package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// The attacks of issue 12, each bounded in time and count.
var attacks = []attack{
	{"burst5", "5 sessions each send a 100-frame burst at once to a reading victim, 8 trials", attackBurst5},
	{"reconnect-loop", "one alias reconnects in a loop (new session, 100-frame burst, close) at a reading victim for 5 s", attackReconnect},
	{"slow-link", "one session at 48/s with 48 KiB payloads to a victim reading at 10 Mbit/s, 25 s", attackSlowLink},
	{"memory", "30 non-reading recipients (a new session each second), 90 senders at 45/s with 40 KiB payloads, 10 s", attackMemory},
	{"sessions-per-alias", "1000 sessions of one alias, one sender at 50/s to it, 8 s", attackSessions},
	{"ping-flood", "4 sessions send WebSocket pings as fast as they can, 8 s, a new session when one is closed", attackPingFlood},
	{"continuation-flood", "4 sessions send empty continuation fragments as fast as they can, 8 s, a new session when one is closed", attackContinuation},
	{"big-object", "one session at 50/s sends 64 KiB objects with ~10k keys, 8 s", attackBigObject},
	{"http-slow-body", "600 connections send a partial body to /register and /challenge and hold, 20 s", attackSlowBody},
	{"http-flood", "8 workers on one address: challenge+register for 3 s, then GET /keys on one token for 3 s", attackHTTPFlood},
	{"turn-allocations", "up to 1000 TURN allocations on one credential (16 at a time, each waiting up to 5 s for its answer), again for 5 s", attackTURN},
	{"turn-allocate-flood", "one credential's TURN quota filled, then 10,000 Allocates/s it refuses from 16 sockets, not waiting for answers, 5 s", attackTURNFlood},
	{"turn-tcp-idle", "2,000 TCP connections to TURN from 32 loopback addresses that never allocate, held until the relay closes them, at most 35 s", attackTURNTCPIdle},
}

// drainNotices reads and discards a session's frames, counting undeliverable
// notices by reason.
func drainNotices(ctx context.Context, c *websocket.Conn, busy, other *atomic.Int64) {
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if bytes.Contains(data, []byte(`"undeliverable"`)) {
			if bytes.Contains(data, []byte(`recipient_busy`)) {
				busy.Add(1)
			} else {
				other.Add(1)
			}
		}
	}
}

func attackBurst5(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 6)
	if err != nil {
		return "", "", err
	}
	disc := 0
	var busy, other atomic.Int64
	var reasons []string
	for trial := 0; trial < 8; trial++ {
		v, err := startVictim(ctx, e.r, us[0], 0)
		if err != nil {
			return "", "", err
		}
		var conns []*websocket.Conn
		for _, u := range us[1:] {
			c, err := connect(ctx, e.r, u)
			if err != nil {
				return "", "", err
			}
			go drainNotices(ctx, c, &busy, &other)
			conns = append(conns, c)
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					if c.Write(ctx, websocket.MessageText, envelope(us[i+1].alias, us[0].alias, 200)) != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		time.Sleep(1500 * time.Millisecond)
		if d := v.disconnected(); d != "" {
			disc++
			reasons = append(reasons, d)
		}
		for _, c := range conns {
			c.CloseNow()
		}
		v.conn.CloseNow()
	}
	return fmt.Sprintf("%d of 8 trials", disc), fmt.Sprintf("recipient_busy notices %d%s", busy.Load(), why(reasons)), nil
}

func why(reasons []string) string {
	if len(reasons) == 0 {
		return ""
	}
	return " (" + trim(reasons[0]) + ")"
}

func trim(s string) string {
	if len(s) > 90 {
		return s[:90] + "..."
	}
	return s
}

func attackReconnect(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 2)
	if err != nil {
		return "", "", err
	}
	v, err := startVictim(ctx, e.r, us[0], 0)
	if err != nil {
		return "", "", err
	}
	defer v.conn.CloseNow()
	start := time.Now()
	end := start.Add(e.dur(5 * time.Second))
	sent, sessions, refused := 0, 0, 0
	var discAt time.Duration
	var busy, other atomic.Int64
	for time.Now().Before(end) {
		c, err := connect(ctx, e.r, us[1])
		if err != nil {
			refused++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sessions++
		go drainNotices(ctx, c, &busy, &other)
		for range 100 {
			if c.Write(ctx, websocket.MessageText, envelope(us[1].alias, us[0].alias, 200)) != nil {
				break
			}
			sent++
		}
		c.Close(websocket.StatusNormalClosure, "")
		if discAt == 0 && v.disconnected() != "" {
			discAt = time.Since(start)
		}
	}
	el := time.Since(start).Seconds()
	time.Sleep(time.Second)
	if discAt == 0 && v.disconnected() != "" {
		discAt = time.Since(start)
	}
	d := "0"
	if discAt > 0 {
		d = fmt.Sprintf("1 (after %.1f s)", discAt.Seconds())
	}
	return d, fmt.Sprintf("%d sessions, %.0f env/s written by the attacker, victim got %d; refused sessions %d; recipient_busy %d",
		sessions, float64(sent)/el, v.got.Load(), refused, busy.Load()), nil
}

func attackSlowLink(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 2)
	if err != nil {
		return "", "", err
	}
	v, err := startVictim(ctx, e.r, us[0], 10_000_000/8)
	if err != nil {
		return "", "", err
	}
	defer v.conn.CloseNow()
	c, err := connect(ctx, e.r, us[1])
	if err != nil {
		return "", "", err
	}
	defer c.CloseNow()
	var busy, other atomic.Int64
	go drainNotices(ctx, c, &busy, &other)
	start := time.Now()
	var discAt time.Duration
	t := time.NewTicker(time.Second / 48)
	defer t.Stop()
	for time.Since(start) < e.dur(25*time.Second) {
		<-t.C
		if err := c.Write(ctx, websocket.MessageText, envelope(us[1].alias, us[0].alias, 48<<10)); err != nil {
			break
		}
		if discAt == 0 && v.disconnected() != "" {
			discAt = time.Since(start)
		}
	}
	d := "0"
	if discAt > 0 {
		d = fmt.Sprintf("1 (after %.0f s: %s)", discAt.Seconds(), trim(v.disconnected()))
	}
	return d, fmt.Sprintf("victim got %d frames (%.1f MB/s); recipient_busy %d, other undeliverable %d", v.got.Load(),
		float64(v.bytes.Load())/1e6/time.Since(start).Seconds(), busy.Load(), other.Load()), nil
}

func attackMemory(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 120)
	if err != nil {
		return "", "", err
	}
	recips, senders := us[:30], us[30:]
	var mu sync.Mutex
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	keep := func(c *websocket.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	actx, cancel := context.WithTimeout(ctx, e.dur(10*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	opened := atomic.Int64{}
	for _, u := range recips { // non-reading recipients, a new session each second
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if c, err := connect(actx, e.r, u); err == nil {
					keep(c)
					opened.Add(1)
				}
				select {
				case <-actx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	var busy, other atomic.Int64
	var sent atomic.Int64
	for i, u := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := connect(ctx, e.r, u)
			if err != nil {
				return
			}
			keep(c)
			go drainNotices(ctx, c, &busy, &other)
			to := recips[i%len(recips)].alias
			t := time.NewTicker(time.Second / 45)
			defer t.Stop()
			for {
				select {
				case <-actx.Done():
					return
				case <-t.C:
				}
				if c.Write(actx, websocket.MessageText, envelope(u.alias, to, 40<<10)) != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	return "n/a (recipients do not read)", fmt.Sprintf("%d recipient sessions opened, %d envelopes sent; recipient_busy %d, other undeliverable %d",
		opened.Load(), sent.Load(), busy.Load(), other.Load()), nil
}

func attackSessions(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 2)
	if err != nil {
		return "", "", err
	}
	var mu sync.Mutex
	var conns []*websocket.Conn
	refused := atomic.Int64{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var got atomic.Int64
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := connect(ctx, e.r, us[0])
			if err != nil {
				refused.Add(1)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				for {
					if _, _, err := c.Read(ctx); err != nil {
						return
					}
					got.Add(1)
				}
			}()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	s, err := connect(ctx, e.r, us[1])
	if err != nil {
		return "", "", err
	}
	defer s.CloseNow()
	var busy, other atomic.Int64
	go drainNotices(ctx, s, &busy, &other)
	t := time.NewTicker(time.Second / 50)
	defer t.Stop()
	start := time.Now()
	for time.Since(start) < e.dur(8*time.Second) {
		<-t.C
		if s.Write(ctx, websocket.MessageText, envelope(us[1].alias, us[0].alias, 200)) != nil {
			break
		}
	}
	return "n/a", fmt.Sprintf("%d sessions accepted, %d refused; %.0f writes/s to them", len(conns), refused.Load(),
		float64(got.Load())/time.Since(start).Seconds()), nil
}

// floodRaw runs 4 raw sessions writing chunk over and over for 8 s; a
// session the relay closes is replaced by a new one of the same alias at
// once (a persistent attacker), until the 8 s are over.
func floodRaw(ctx context.Context, e *env, first, chunk []byte, per int) (string, string, error) {
	us, err := registerN(ctx, e.r, 4)
	if err != nil {
		return "", "", err
	}
	var frames, opened, closed, refused atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(e.dur(8 * time.Second))
	for _, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				w, err := dialRaw(ctx, e.r, u)
				if err != nil {
					refused.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				opened.Add(1)
				if floodOne(w, first, chunk, per, end, &frames) {
					closed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return "n/a", fmt.Sprintf("%.0f frames/s written (into the socket: not all read) by 4 aliases; %d sessions opened, %d closed by the relay, %d refused",
		float64(frames.Load())/e.dur(8*time.Second).Seconds(), opened.Load(), closed.Load(), refused.Load()), nil
}

// floodOne writes first, then chunk (per frames) over and over on w until
// end or until the relay closes it (reported true).
func floodOne(w *rawWS, first, chunk []byte, per int, end time.Time, frames *atomic.Int64) bool {
	defer w.c.Close()
	go func() { _, _ = io.Copy(io.Discard, w.br) }()
	if first != nil {
		_, _ = w.c.Write(first)
	}
	for time.Now().Before(end) {
		_ = w.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := w.c.Write(chunk); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue // the relay stopped reading (backpressure)
			}
			return true
		}
		frames.Add(int64(per))
	}
	return false
}

func attackPingFlood(ctx context.Context, e *env) (string, string, error) {
	ping := frame(0x89, nil)
	chunk := bytes.Repeat(ping, 4096)
	return floodRaw(ctx, e, nil, chunk, 4096)
}

func attackContinuation(ctx context.Context, e *env) (string, string, error) {
	cont := frame(0x00, nil)
	chunk := bytes.Repeat(cont, 4096)
	return floodRaw(ctx, e, frame(0x01, []byte(`{"type":`)), chunk, 4096)
}

func attackBigObject(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 1)
	if err != nil {
		return "", "", err
	}
	var sb strings.Builder
	sb.WriteByte('{')
	for i := 0; sb.Len() < 64<<10-32; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"k%d":0`, i)
	}
	sb.WriteByte('}')
	obj := []byte(sb.String())
	c, err := connect(ctx, e.r, us[0])
	if err != nil {
		return "", "", err
	}
	defer c.CloseNow()
	var busy, other atomic.Int64
	go drainNotices(ctx, c, &busy, &other)
	t := time.NewTicker(time.Second / 50)
	defer t.Stop()
	start := time.Now()
	n := 0
	for time.Since(start) < e.dur(8*time.Second) {
		<-t.C
		if c.Write(ctx, websocket.MessageText, obj) != nil {
			break
		}
		n++
	}
	return "n/a", fmt.Sprintf("%d objects of %d bytes sent", n, len(obj)), nil
}

func attackSlowBody(ctx context.Context, e *env) (string, string, error) {
	host := strings.TrimPrefix(e.r.base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 600 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			break
		}
		path := "/api/v1/register"
		if i%2 == 1 {
			path = "/api/v1/challenge"
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ed", path, host)
		conns = append(conns, c)
	}
	time.Sleep(e.dur(20 * time.Second))
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [512]byte
		n, err := c.Read(b[:])
		if ne, ok := err.(net.Error); ok && ne.Timeout() && n == 0 {
			open++ // nothing answered, still open
		}
	}
	return "n/a", fmt.Sprintf("%d of %d slow-body connections still open after %.0f s", open, len(conns), e.dur(20*time.Second).Seconds()), nil
}

func attackHTTPFlood(ctx context.Context, e *env) (string, string, error) {
	us, err := registerN(ctx, e.r, 2)
	if err != nil {
		return "", "", err
	}
	// A token for the keys lookups.
	token, err := connectToken(ctx, e.r, us[0])
	if err != nil {
		return "", "", err
	}
	var ok, limited, failed atomic.Int64
	run := func(d time.Duration, f func() (int, error)) float64 {
		ok.Store(0)
		limited.Store(0)
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					st, err := f()
					switch {
					case err != nil:
						failed.Add(1)
					case st == 200:
						ok.Add(1)
					case st == 429:
						limited.Add(1)
					default:
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return d.Seconds()
	}
	const attacker = "198.19.0.1" // every request from one address (X-Forwarded-For)
	sec := run(e.dur(3*time.Second), func() (int, error) {
		_, err := registerXFF(ctx, e.r, attacker)
		if err != nil {
			if strings.Contains(err.Error(), " 429 ") {
				return 429, nil
			}
			return 0, err
		}
		return 200, nil
	})
	regOK, regLim := float64(ok.Load())/sec, limited.Load()
	sec = run(e.dur(3*time.Second), func() (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.r.base+"/api/v1/keys/"+us[1].alias, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-For", attacker)
		resp, err := httpClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	})
	return "n/a", fmt.Sprintf("registrations %.0f/s (%d answered 429); keys lookups %.0f/s (%d answered 429); %d other failures",
		regOK, regLim, float64(ok.Load())/sec, limited.Load(), failed.Load()), nil
}

// turnCredentials registers an identity and returns the relay's UDP TURN
// server address and the credentials its ICE config hands that identity.
func turnCredentials(ctx context.Context, e *env) (addr, username, password string, err error) {
	us, err := registerN(ctx, e.r, 1)
	if err != nil {
		return "", "", "", err
	}
	token, err := connectToken(ctx, e.r, us[0])
	if err != nil {
		return "", "", "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.r.base+"/api/v1/calls/ice-config", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", "", "", err
	}
	var cfg struct {
		Servers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"ice_servers"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if err != nil {
		return "", "", "", err
	}
	for _, srv := range cfg.Servers {
		for _, u := range srv.URLs {
			if strings.HasPrefix(u, "turn:") && strings.Contains(u, "transport=udp") {
				addr = strings.SplitN(strings.TrimPrefix(u, "turn:"), "?", 2)[0]
				username, password = srv.Username, srv.Credential
			}
		}
	}
	if addr == "" {
		return "", "", "", fmt.Errorf("no TURN server in the ICE config %+v", cfg)
	}
	return addr, username, password, nil
}

func attackTURN(ctx context.Context, e *env) (string, string, error) {
	addr, username, password, err := turnCredentials(ctx, e)
	if err != nil {
		return "", "", err
	}
	// Rounds of 1000, each holding what it got until its end, for 5 s: one
	// round takes well under a second when every Allocate is answered, too
	// few of the bystander's envelopes for a p99. A client waits up to 5 s
	// for its answer (the relay may leave a refused one unanswered), and no
	// longer than the attack.
	actx, cancel := context.WithTimeout(ctx, e.dur(5*time.Second))
	defer cancel()
	fds0, fdsPeak := e.r.fds(), 0
	var c allocCounts
	start := time.Now()
	rounds := 0
	for rounds == 0 || actx.Err() == nil {
		rounds++
		fdsPeak = max(fdsPeak, allocateRound(actx, addr, username, password, &c, e.r.fds))
	}
	return "n/a", fmt.Sprintf("%d rounds in %.1f s: %.0f allocations per round, %d refused 486 (quota), %d unanswered, %d other failures, %d cut at the end; relay fds %d -> %d",
		rounds, time.Since(start).Seconds(), float64(c.ok.Load())/float64(rounds), c.quota.Load(), c.unanswered.Load(), c.other.Load(), c.cut.Load(), fds0, fdsPeak), nil
}

// allocCounts are the outcomes of the TURN attack's Allocates: cut are
// those still waiting for an answer when the attack ended.
type allocCounts struct {
	ok, quota, unanswered, other, cut atomic.Int64
}

// allocateRound tries up to 1000 TURN allocations, 16 at a time (an
// unanswered one waits 5 s: the tarpit makes most of a round wait), until ctx is
// done, counts them, and returns the relay's fds (fds) while it holds those
// it got; then it releases them.
func allocateRound(ctx context.Context, addr, username, password string, counts *allocCounts, fds func() int) int {
	var mu sync.Mutex
	var closers []io.Closer
	defer func() {
		for _, c := range slices.Backward(closers) { // allocations, clients, sockets
			c.Close()
		}
	}()
	keep := func(c io.Closer) {
		mu.Lock()
		closers = append(closers, c)
		mu.Unlock()
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
launch:
	for range 1000 {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := turnClient(addr, username, password, keep)
			if err != nil {
				counts.other.Add(1)
				return
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			relayConn, err := c.AllocateWithContext(actx)
			switch {
			case err == nil:
				counts.ok.Add(1)
				keep(relayConn)
			case strings.Contains(err.Error(), "486"):
				counts.quota.Add(1)
			case ctx.Err() != nil:
				counts.cut.Add(1)
			case actx.Err() != nil || strings.Contains(err.Error(), "retransmissions failed"):
				counts.unanswered.Add(1)
			default:
				counts.other.Add(1)
			}
		}()
	}
	wg.Wait()
	return fds()
}

// turnClient is a listening pion TURN client of addr with the credentials,
// on a socket of its own on loopback, its logs off; keep gets the socket and
// then the client, to close them in reverse order.
func turnClient(addr, username, password string, keep func(io.Closer)) (*turn.Client, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	keep(conn)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: username, Password: password, LoggerFactory: lf})
	if err != nil {
		return nil, err
	}
	keep(closerFunc(func() error { c.Close(); return nil }))
	if err := c.Listen(); err != nil {
		return nil, err
	}
	return c, nil
}

// attackTURNFlood fills one credential's allocation quota, then sends
// authenticated Allocate requests that the quota refuses at turnFloodRate
// from 16 sockets for 5 s, without waiting for the answers (it counts them
// on the side): an attacker that, unlike pion's client, does not back off
// when it gets no answer.
func attackTURNFlood(ctx context.Context, e *env) (string, string, error) {
	addr, username, password, err := turnCredentials(ctx, e)
	if err != nil {
		return "", "", err
	}
	var c allocCounts
	var closers []io.Closer
	defer func() {
		for _, c := range slices.Backward(closers) {
			c.Close()
		}
	}()
	for c.quota.Load() == 0 {
		if c.ok.Load()+c.other.Load() > 64 {
			return "", "", fmt.Errorf("no quota refusal after %d allocations (%d failed)", c.ok.Load(), c.other.Load())
		}
		tc, err := turnClient(addr, username, password, func(c io.Closer) { closers = append(closers, c) })
		if err != nil {
			return "", "", err
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		relayConn, err := tc.AllocateWithContext(actx)
		cancel()
		switch {
		case err == nil:
			c.ok.Add(1)
			closers = append(closers, relayConn)
		case strings.Contains(err.Error(), "486"):
			c.quota.Add(1)
		default:
			c.other.Add(1)
		}
	}
	req, err := refusedAllocate(addr, username, password)
	if err != nil {
		return "", "", err
	}
	var sent, refused, otherAnswers atomic.Int64
	actx, cancel := context.WithTimeout(ctx, e.dur(5*time.Second))
	defer cancel()
	const sockets = 16
	var wg sync.WaitGroup
	start := time.Now()
	for range sockets {
		conn, err := net.Dial("udp4", addr)
		if err != nil {
			return "", "", err
		}
		wg.Add(2)
		go func() { // the answers
			defer wg.Done()
			var m stun.Message
			var code stun.ErrorCodeAttribute
			buf := make([]byte, 1500)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				m.Raw = append(m.Raw[:0], buf[:n]...)
				if m.Decode() == nil && code.GetFrom(&m) == nil && code.Code == stun.CodeAllocQuotaReached {
					refused.Add(1)
				} else {
					otherAnswers.Add(1)
				}
			}
		}()
		go func() { // the requests, paced
			defer wg.Done()
			defer conn.Close()
			n := 0
			for actx.Err() == nil {
				for due := int(time.Since(start).Seconds() * turnFloodRate / sockets); n < due; n++ {
					if _, err := conn.Write(req); err == nil {
						sent.Add(1)
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	sec := time.Since(start).Seconds()
	return "n/a", fmt.Sprintf("%d allocations fill the quota; %.0f Allocates/s sent for %.1f s, %d answered 486, %d answered otherwise",
		c.ok.Load(), float64(sent.Load())/sec, sec, refused.Load(), otherAnswers.Load()), nil
}

// attackTURNTCPIdle opens TCP connections to the TURN port that send
// nothing, from several source addresses, and counts those the relay
// closes at once (its limits on connections that have not allocated) and
// those still open when the relay's 30 s for an allocation are up.
func attackTURNTCPIdle(ctx context.Context, e *env) (string, string, error) {
	addr, _, _, err := turnCredentials(ctx, e)
	if err != nil {
		return "", "", err
	}
	const conns, sources = 2000, 32
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	start := time.Now()
	fds0, fdsPeak := e.r.fds(), 0
	for i := range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%sources))}, Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", addr)
		if err != nil {
			return "", "", fmt.Errorf("connection %d: %w", i, err)
		}
		open = append(open, c)
	}
	// closed counts the connections the relay has closed (a read that
	// does not time out).
	closed := func() int {
		n := 0
		buf := make([]byte, 1)
		for _, c := range open {
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				n++
			}
		}
		return n
	}
	time.Sleep(time.Second)
	fdsPeak = max(fdsPeak, e.r.fds())
	atOnce := closed()
	held := time.Now()
	for time.Since(start) < e.dur(35*time.Second) && closed() < conns {
		fdsPeak = max(fdsPeak, e.r.fds())
		time.Sleep(time.Second)
	}
	left := conns - closed()
	return "n/a", fmt.Sprintf("%d connections from %d addresses: %d closed at once, %d held; %d still open %.0f s later; the relay's open files %d → peak %d",
		conns, sources, atOnce, conns-atOnce, left, time.Since(held).Seconds(), fds0, fdsPeak), nil
}

// turnFloodRate is the Allocates a second attackTURNFlood sends.
const turnFloodRate = 10000

// refusedAllocate returns an authenticated Allocate request for username
// (its quota full): the nonce and realm come from the server's 401 answer
// to an unauthenticated one.
func refusedAllocate(addr, username, password string) ([]byte, error) {
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	transport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}} // UDP
	typ := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	probe, err := stun.Build(stun.TransactionID, typ, transport, stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	var m stun.Message
	buf := make([]byte, 1500)
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return nil, errors.New("no answer to an unauthenticated Allocate")
		}
		if _, err := conn.Write(probe.Raw); err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			continue
		}
		m.Raw = append(m.Raw[:0], buf[:n]...)
		if err := m.Decode(); err != nil {
			return nil, err
		}
		break
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(&m); err != nil {
		return nil, fmt.Errorf("the 401 answer: %w", err)
	}
	if err := realm.GetFrom(&m); err != nil {
		return nil, fmt.Errorf("the 401 answer: %w", err)
	}
	req, err := stun.Build(stun.TransactionID, typ, transport, stun.NewUsername(username), realm, nonce,
		stun.NewLongTermIntegrity(username, realm.String(), password), stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	return req.Raw, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
