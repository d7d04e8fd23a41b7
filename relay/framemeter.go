package relay

import (
	"encoding/binary"
	"sync/atomic"
)

// frameMeter counts the WebSocket frames a client sends as they stream
// through the connection: control frames (ping, pong, close) and
// continuation fragments, which coder/websocket handles inside Conn.Read
// without returning a message, cost CPU like any frame and are charged to
// the session here (session.onWireFrame). It parses only frame headers (2 to
// 14 bytes each) and skips payloads in bulk.
type frameMeter struct {
	onFrame func(opcode byte) // set before the first read; called on the reading goroutine
	stop    atomic.Bool       // reading fails from now on (meteredConn)

	hdr  [14]byte
	hn   int    // header bytes collected
	need int    // header length once known (0: not yet)
	skip uint64 // payload bytes of the current frame still to pass
}

func (m *frameMeter) scan(b []byte) {
	for len(b) > 0 {
		if m.skip > 0 {
			k := min(uint64(len(b)), m.skip)
			b = b[k:]
			m.skip -= k
			continue
		}
		m.hdr[m.hn] = b[0]
		m.hn++
		b = b[1:]
		if m.hn == 2 {
			m.need = 2
			switch m.hdr[1] & 0x7f {
			case 126:
				m.need += 2
			case 127:
				m.need += 8
			}
			if m.hdr[1]&0x80 != 0 { // masked, as every client frame must be
				m.need += 4
			}
		}
		if m.hn < 2 || m.hn < m.need {
			continue
		}
		switch l := m.hdr[1] & 0x7f; l {
		case 126:
			m.skip = uint64(binary.BigEndian.Uint16(m.hdr[2:4]))
		case 127:
			m.skip = binary.BigEndian.Uint64(m.hdr[2:10])
		default:
			m.skip = uint64(l)
		}
		op := m.hdr[0] & 0x0f
		m.hn, m.need = 0, 0
		if m.onFrame != nil {
			m.onFrame(op)
		}
	}
}
