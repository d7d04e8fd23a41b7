//go:build linux

package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcall/duet/wire"
)

// rawClient is a WebSocket client written frame by frame, for what a
// library client does not do: a frame split across writes, several frames
// in one write, a reset instead of a close.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
	key  [4]byte
}

// dialRaw opens an authenticated session of u; usable on any goroutine.
// Its reads and writes have a deadline 20 s on.
func dialRaw(r *testRelay, u user) (*rawClient, error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.ts.URL, "http://"))
	if err != nil {
		return nil, err
	}
	c := &rawClient{conn: conn, br: bufio.NewReader(conn), key: [4]byte{1, 2, 3, 4}}
	if err := c.handshake(u); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *rawClient) handshake(u user) error {
	_ = c.conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c.conn, "GET /api/v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", c.conn.RemoteAddr())
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	var ch map[string]any
	if _, p, err := nextFrame(c.br); err != nil || json.Unmarshal(p, &ch) != nil {
		return fmt.Errorf("challenge %q: %v", p, err)
	}
	f, err := answerChallenge(ch, u.alias, u.id.priv)
	if err != nil {
		return err
	}
	auth, _ := json.Marshal(f)
	if _, err := c.conn.Write(clientFrame(true, opText, auth, c.key)); err != nil {
		return err
	}
	if op, p, err := nextFrame(c.br); err != nil || op != opText || !bytes.Contains(p, []byte(`"ready"`)) {
		return fmt.Errorf("got %q (%v), want ready", p, err)
	}
	return nil
}

// expect reads the next frame and checks its opcode and, for text, that
// it is the envelope id.
func (c *rawClient) expect(op byte, id string) error {
	got, p, err := nextFrame(c.br)
	if err != nil {
		return fmt.Errorf("waiting for %#x %s: %w", op, id, err)
	}
	if got != op {
		return fmt.Errorf("got frame %#x %q, want %#x %s", got, p, op, id)
	}
	if op == opText {
		e, err := wire.DecodeEnvelope(p)
		if err != nil || e.ID != id {
			return fmt.Errorf("got %q (%v), want envelope %s", p, err, id)
		}
	}
	return nil
}

// TestPollerChurn: many sessions parked on the poller at once, woken by
// every shape of client write while others come and go: whole frames,
// frames split across writes (the rest comes later), several frames in
// one write, fragmented messages, pings, and sessions that end by reset,
// by FIN without a close frame and by close frame, each user connecting
// again at once. Lanes of users run concurrently; within a lane each step
// waits for its result. Every envelope must reach its recipient once and
// in order, every ping its pong, and at the end every session must be
// gone and nothing parked: a lost wake-up, a session served twice or a
// reader that never ends fails it (and -race watches the poller's state).
func TestPollerChurn(t *testing.T) {
	var handOffs atomic.Int32
	r := startRelay(t, Options{}, func(tu *tunables) {
		tu.pingInterval = -1
		tu.rateLimit, tu.rateBurst = 1e6, 1e6
		tu.byteRate, tu.byteBurst = 1e9, 1<<30
		tu.recipientRate, tu.recipientBurst = 1e9, 1<<30
		tu.onHandOff = func() { handOffs.Add(1) }
	})
	const lanes, perLane, steps = 6, 3, 150
	users := make([][]user, lanes)
	for l := range users {
		for range perLane {
			users[l] = append(users[l], r.newUser(t))
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		errs      []error
		kills     atomic.Int32
		delivered atomic.Int32
	)
	for l := range lanes {
		wg.Go(func() {
			err := churnLane(r, users[l], rand.New(rand.NewPCG(uint64(l), 7)), steps, &kills, &delivered)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("lane %d: %w", l, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d envelopes delivered, %d sessions ended abruptly, %d wake-ups handed to a session's goroutine",
		delivered.Load(), kills.Load(), handOffs.Load())
	if handOffs.Load() == 0 || kills.Load() == 0 {
		t.Fatal("the churn took neither a hand-off nor an abrupt end: it tests nothing")
	}
	eventually(t, 20*time.Second, "every session gone and none parked", func() bool {
		return r.metric(t, "duet_relay_sessions") == 0 && r.srv.pollers.count() == 0
	})
}

// churnLane runs steps random steps among a lane's users, then closes
// their sessions.
func churnLane(r *testRelay, us []user, rng *rand.Rand, steps int, kills, delivered *atomic.Int32) error {
	cl := make([]*rawClient, len(us))
	defer func() {
		for _, c := range cl {
			if c != nil {
				c.conn.Close()
			}
		}
	}()
	connect := func(i int) error {
		// The previous session may still count against the alias
		// (MaxSessionsPerAlias) until the relay has read its end.
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := dialRaw(r, us[i])
			if err == nil {
				cl[i] = c
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("reconnecting %d: %w", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := range us {
		if err := connect(i); err != nil {
			return err
		}
	}
	seq := 0
	envelope := func(from, to int) (string, []byte) {
		seq++
		id := fmt.Sprintf("%s-%d", us[from].alias[:6], seq)
		e := &wire.Envelope{Type: wire.TypeCallOffer, To: us[to].alias, From: us[from].alias, CallID: "churn-" + id,
			CryptoV: 2, Payload: b64.EncodeToString([]byte("sealed " + id)), ID: id}
		b, _ := json.Marshal(e)
		return id, b
	}
	for step := range steps {
		a := rng.IntN(len(us))
		b := (a + 1 + rng.IntN(len(us)-1)) % len(us)
		ca, cb := cl[a], cl[b]
		id, msg := envelope(a, b)
		frame := clientFrame(true, opText, msg, ca.key)
		ping := clientFrame(true, opPing, []byte{byte(step)}, ca.key)
		var err error
		n := int32(1) // envelopes delivered
		switch rng.IntN(8) {
		case 0, 1: // a whole envelope
			_, err = ca.conn.Write(frame)
			err = errors.Join(err, cb.expect(opText, id))
		case 2: // split: the relay reads a partial frame, the rest later
			k := 1 + rng.IntN(len(frame)-1)
			if _, err = ca.conn.Write(frame[:k]); err == nil {
				time.Sleep(time.Millisecond) // so that the halves come apart
				_, err = ca.conn.Write(frame[k:])
			}
			err = errors.Join(err, cb.expect(opText, id))
		case 3: // an envelope and a ping in one write
			_, err = ca.conn.Write(append(frame, ping...))
			err = errors.Join(err, cb.expect(opText, id), ca.expect(opPong, ""))
		case 4: // two envelopes in one write, in order
			id2, msg2 := envelope(a, b)
			_, err = ca.conn.Write(append(frame, clientFrame(true, opText, msg2, ca.key)...))
			err = errors.Join(err, cb.expect(opText, id), cb.expect(opText, id2))
			n = 2
		case 5: // a fragmented message
			k := 1 + rng.IntN(len(msg)-1)
			_, err = ca.conn.Write(append(clientFrame(false, opText, msg[:k], ca.key),
				clientFrame(true, opContinuation, msg[k:], ca.key)...))
			err = errors.Join(err, cb.expect(opText, id))
		case 6: // a ping, split
			if _, err = ca.conn.Write(ping[:3]); err == nil {
				time.Sleep(time.Millisecond)
				_, err = ca.conn.Write(ping[3:])
			}
			err = errors.Join(err, ca.expect(opPong, ""))
			n = 0
		case 7: // a session ends abruptly; its user connects again
			switch rng.IntN(3) {
			case 0: // reset
				_ = ca.conn.(*net.TCPConn).SetLinger(0)
			case 1: // FIN without a close frame
			case 2: // a close frame first
				_, _ = ca.conn.Write(clientFrame(true, opClose, []byte{0x03, 0xe8}, ca.key))
			}
			ca.conn.Close()
			cl[a] = nil
			kills.Add(1)
			err = connect(a)
			n = 0
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		delivered.Add(n)
	}
	// Every user still reachable by every other.
	for a := range us {
		b := (a + 1) % len(us)
		id, msg := envelope(a, b)
		if _, err := cl[a].conn.Write(clientFrame(true, opText, msg, cl[a].key)); err != nil {
			return err
		}
		if err := cl[b].expect(opText, id); err != nil {
			return fmt.Errorf("at the end: %w", err)
		}
		delivered.Add(1)
	}
	return nil
}
