package turnserver

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestChannelFastPath: once pion's client has bound a channel, its data
// goes both ways intact (every length, so every padding) through the
// server's own ChannelData relaying, and closing the allocation forgets
// its channels.
func TestChannelFastPath(t *testing.T) {
	s := startServer(t, nil)
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	relayConn := allocate(t, newClient(t, s, user, pass))
	peer := newPeer(t, relayConn)
	routes := func() (ports, clients int) {
		s.channels.mu.RLock()
		defer s.channels.mu.RUnlock()
		return len(s.channels.byPort), len(s.channels.byClient)
	}

	// pion's client sends Send indications until its ChannelBind is
	// answered, then ChannelData.
	buf := make([]byte, 1600)
	var relayed net.Addr
	waitFor(t, "the client's channel in the mirror", func() bool {
		if _, err := relayConn.WriteTo([]byte("bind"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		n, from, err := peer.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "bind" {
			t.Fatalf("peer got %q, %v; want bind", buf[:n], err)
		}
		relayed = from
		_, clients := routes()
		return clients == 1
	})

	for size := 1; size <= 1200; size += 37 {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := relayConn.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		n, from, err := peer.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) || from.String() != relayed.String() {
			t.Fatalf("%d bytes to the peer: got %d bytes from %v, %v; want them from %v", size, n, from, err, relayed)
		}
		if _, err := peer.WriteTo(msg, relayed); err != nil {
			t.Fatal(err)
		}
		n, from, err = relayConn.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) || from.String() != peer.LocalAddr().String() {
			t.Fatalf("%d bytes to the client: got %d bytes from %v, %v", size, n, from, err)
		}
	}

	relayConn.Close()
	waitFor(t, "the closed allocation's channels forgotten", func() bool {
		ports, clients := routes()
		return ports == 0 && clients == 0
	})
}
