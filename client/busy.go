package client

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Reasons of the relay's undeliverable notices (docs/PROTOCOL.md §9.2).
const (
	// ReasonOffline: no session of the recipient is connected.
	ReasonOffline = "offline"
	// ReasonUnavailable: the relay node cannot reach its message bus.
	ReasonUnavailable = "unavailable"
	// ReasonRecipientBusy: the recipient is being sent more than it takes
	// and this sender was among the heaviest. The client sends such an
	// envelope once more after busyRetry; only a second refusal reaches
	// OnUndeliverable.
	ReasonRecipientBusy = "recipient_busy"
)

// busyRetry is the wait before an envelope refused with recipient_busy is
// sent again; busyKeep is how many recently sent envelopes are kept for it.
const (
	busyRetry = time.Second
	busyKeep  = 64
)

// sentLog keeps the most recent envelopes sent with an id, for resending
// one refused with recipient_busy.
type sentLog struct {
	mu    sync.Mutex
	data  map[string][]byte // id -> encoded envelope, nil once resent
	order []string          // ids, oldest first
}

func (l *sentLog) add(id string, data []byte) {
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.data == nil {
		l.data = make(map[string][]byte)
	}
	if _, ok := l.data[id]; !ok {
		l.order = append(l.order, id)
		if len(l.order) > busyKeep {
			delete(l.data, l.order[0])
			l.order = l.order[1:]
		}
	}
	l.data[id] = data
}

// takeForResend returns the envelope id to resend, once.
func (l *sentLog) takeForResend(id string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.data[id]
	if d == nil {
		return nil, false
	}
	l.data[id] = nil
	return d, true
}

// onBusy handles a recipient_busy notice: it resends the envelope once after
// busyRetry and reports whether it will (else the notice goes to the app).
func (c *Client) onBusy(u Undeliverable) bool {
	data, ok := c.sent.takeForResend(u.ID)
	if !ok {
		return false
	}
	c.log.Debug("relay: recipient busy; sending again", "id", u.ID, "to", u.To)
	time.AfterFunc(busyRetry, func() {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		if conn == nil || c.ctx.Err() != nil {
			if c.opts.OnUndeliverable != nil {
				c.opts.OnUndeliverable(u)
			}
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
		defer cancel()
		if err := conn.Write(ctx, websocket.MessageText, data); err != nil && c.opts.OnUndeliverable != nil {
			c.opts.OnUndeliverable(u)
		}
	})
	return true
}
