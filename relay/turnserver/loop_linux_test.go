package turnserver

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopSocketOn is a new UDP socket on loopback adopted by l.
func loopSocketOn(t *testing.T, l *udpLoop) *loopSocket {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := l.adopt(c, 8, 1)
	if s == nil {
		t.Fatal("adopt refused a UDP socket")
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLoopSocket: a socket adopted by a udpLoop hands every datagram, of
// every size, to its consumer first (with room for a ChannelData header
// before it), queues those the consumer leaves for ReadFrom with their
// source, sends with WriteTo, and once closed ends a waiting ReadFrom, fails
// WriteTo with net.ErrClosed and is no longer read by the loop.
func TestLoopSocket(t *testing.T) {
	l, err := newUDPLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.stop()
	s := loopSocketOn(t, l)
	var mu sync.Mutex
	var consumed [][]byte
	// The consumer takes datagrams that start with 'c' (as channels.forward
	// takes ChannelData) and leaves the rest.
	err = l.add(s, func(b []byte, n int, _ net.Addr) bool {
		if b[channelDataHeader] != 'c' {
			return false
		}
		if len(b) < channelDataHeader+n+3 {
			t.Errorf("a %d-byte datagram's slot is %d bytes: no room for a header and padding", n, len(b))
		}
		mu.Lock()
		consumed = append(consumed, append([]byte(nil), b[channelDataHeader:channelDataHeader+n]...))
		mu.Unlock()
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.LocalAddr().(*net.UDPAddr).IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("LocalAddr %v, want 127.0.0.1", s.LocalAddr())
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))

	buf, back := make([]byte, 2000), make([]byte, 2000)
	var want [][]byte
	for size := 1; size <= batchBufSize; size += 37 {
		for _, first := range []byte{'c', 'p'} {
			msg := bytes.Repeat([]byte{byte(size)}, size)
			msg[0] = first
			if _, err := peer.WriteTo(msg, s.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if first == 'c' {
				want = append(want, msg)
				continue
			}
			n, from, err := s.ReadFrom(buf)
			if err != nil || !bytes.Equal(buf[:n], msg) || from.String() != peer.LocalAddr().String() {
				t.Fatalf("ReadFrom: %d bytes from %v, %v; want the %d-byte datagram from %v", n, from, err, size, peer.LocalAddr())
			}
		}
		// WriteTo reaches the peer, from the socket's address.
		if _, err := s.WriteTo(buf[:size], peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		n, from, err := peer.ReadFrom(back)
		if err != nil || n != size || from.(*net.UDPAddr).Port != s.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("peer got %d bytes from %v, %v; want %d from %v", n, from, err, size, s.LocalAddr())
		}
	}
	waitFor(t, "every consumed datagram", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(consumed) == len(want)
	})
	for i := range want {
		if !bytes.Equal(consumed[i], want[i]) {
			t.Fatalf("consumed datagram %d: %d bytes, want %d", i, len(consumed[i]), len(want[i]))
		}
	}
	if _, err := s.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9}); err == nil {
		t.Error("WriteTo an IPv6 address from an IPv4 socket succeeded")
	}

	done := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(buf)
		done <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom on a closed socket: %v, want net.ErrClosed", err)
	}
	if _, err := s.WriteTo([]byte("x"), peer.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo on a closed socket: %v, want net.ErrClosed", err)
	}
	l.mu.Lock()
	left := len(l.socks)
	l.mu.Unlock()
	if left != 0 {
		t.Errorf("the loop still reads %d sockets after Close", left)
	}
}

// TestLoopShared: as the loop moves sockets between its epoll instances
// (sharing when busy) while datagrams flow, and while a third goroutine
// reads the first instance too, a socket is read by one goroutine at a
// time: its datagrams are consumed once each, in order. Sharing puts every
// other socket in the second instance; unsharing puts them all back.
func TestLoopShared(t *testing.T) {
	l, err := newUDPLoop()
	if err != nil {
		t.Fatal(err)
	}
	var helper sync.WaitGroup
	defer helper.Wait()
	defer l.stop()
	var socks []*loopSocket
	for range 4 {
		socks = append(socks, loopSocketOn(t, l))
	}
	var mu sync.Mutex
	var got []int
	var inside atomic.Int32
	err = l.add(socks[0], func(b []byte, n int, _ net.Addr) bool {
		if inside.Add(1) != 1 {
			t.Error("two goroutines consume the same socket's datagrams at once")
		}
		seq, _ := strconv.Atoi(string(b[channelDataHeader : channelDataHeader+n]))
		mu.Lock()
		got = append(got, seq)
		mu.Unlock()
		inside.Add(-1)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks[1:] {
		if err := l.add(s, func([]byte, int, net.Addr) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	inSet := func() (n [2]int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, s := range socks {
			n[s.set]++
		}
		return n
	}
	l.share(true)
	if n := inSet(); n != [2]int{2, 2} {
		t.Fatalf("sharing: %v sockets in each set, want 2 and 2", n)
	}
	l.share(false)
	if n := inSet(); n != [2]int{4, 0} {
		t.Fatalf("unsharing: %v sockets in each set, want 4 and 0", n)
	}

	helper.Add(1)
	go func() {
		defer helper.Done()
		st := newLoopState()
		for {
			if _, ok := l.round(&l.sets[0], st); !ok {
				return
			}
		}
	}()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const bursts, burst = 40, 100
	for b := range bursts {
		for i := range burst {
			if _, err := peer.WriteTo([]byte(strconv.Itoa(b*burst+i)), socks[0].LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if i == burst/2 {
				l.share(b%2 == 0) // mid-burst; socks[0] moves when share picks it (map order: about every other time)
			}
		}
		waitFor(t, "the burst consumed", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == (b+1)*burst
		})
	}
	for i, seq := range got {
		if seq != i {
			t.Fatalf("datagram %d consumed as the %dth: out of order or twice", seq, i)
		}
	}
}

// TestLoopQueueFullCounted: past a socket's queue for pion/turn the loop
// drops datagrams, and counts each drop in duet_turn_dropped_total
// {reason="queue_full"}.
func TestLoopQueueFullCounted(t *testing.T) {
	l, err := newUDPLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.stop()
	s := loopSocketOn(t, l) // a queue of 8
	if err := l.add(s, func([]byte, int, net.Addr) bool { return false }); err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	const sent = 20
	for i := range sent {
		if _, err := peer.WriteTo([]byte{'p', byte(i)}, s.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the datagrams past the queue counted", func() bool { return l.dropped()[0] == uint64(sent-cap(s.in)) })
	if n := len(s.in); n != cap(s.in) {
		t.Fatalf("%d datagrams queued, want %d", n, cap(s.in))
	}
	for i := range cap(s.in) {
		b := make([]byte, 16)
		n, _, err := s.ReadFrom(b)
		if err != nil || n != 2 || b[1] != byte(i) {
			t.Fatalf("queued datagram %d: %q, %v; want the first ones in order", i, b[:n], err)
		}
	}
	if got := l.dropped(); got != [2]uint64{sent - uint64(cap(s.in)), 0} {
		t.Fatalf("dropped %v", got)
	}

	// The server's metric reads its loop's count.
	srv := startServer(t, nil)
	srv.loop.drops.queueFull.Add(3)
	for i, c := range srv.loopDrops {
		desc := c.Desc().String()
		if !strings.Contains(desc, `"duet_turn_dropped_total"`) || !strings.Contains(desc, `"`+dropReasons[i]+`"`) {
			t.Fatalf("metric %d: %s", i, desc)
		}
		if got, want := metricValue(t, c), float64(srv.loop.dropped()[i]); got != want {
			t.Fatalf("%s: %v, want %v", dropReasons[i], got, want)
		}
	}
	if got := metricValue(t, srv.loopDrops[0]); got < 3 {
		t.Fatalf("queue_full %v after 3 drops", got)
	}
}

// TestRelaySocketKeepsOrder: a peer's datagram that arrives once its
// channel is bound does not overtake the ones before it that still wait
// for pion/turn (who reads them; here the test, as pion does: one at a
// time on one goroutine): the client gets them all, in the order sent.
func TestRelaySocketKeepsOrder(t *testing.T) {
	l, err := newUDPLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.stop()
	ch := newChannels()
	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	client, peer := udp(), udp()
	ch.out = udp() // the listening socket the server sends to clients from
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.relaySocket(c, ch)
	if err != nil || rc == nil {
		t.Fatalf("relaySocket: %v, %v", rc, err)
	}
	defer rc.Close()
	s := rc.PacketConn.(*loopSocket)

	// Before the channel: two datagrams wait for pion.
	for _, m := range []string{"1", "2"} {
		if _, err := peer.WriteTo([]byte(m), rc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two datagrams queued", func() bool { return len(s.in) == 2 })
	ch.created(client.LocalAddr(), rc.LocalAddr(), peer.LocalAddr(), 0x4000)
	// Bound: the next ones would be relayed at once, ahead of those two.
	for _, m := range []string{"3", "4"} {
		if _, err := peer.WriteTo([]byte(m), rc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "four datagrams read from the socket", func() bool { return len(s.in) == 4 || ch.relayed.Load() > 0 })
	// "pion" reads: relayConn.ReadFrom relays what is on a channel now.
	go func() {
		b := make([]byte, 2000)
		for {
			if _, _, err := rc.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	var got []string
	b := make([]byte, 2000)
	for range 4 {
		n, _, err := client.ReadFrom(b)
		if err != nil {
			t.Fatalf("the client got %q, then %v", got, err)
		}
		if n < channelDataHeader+1 || b[0] != 0x40 || b[1] != 0 {
			t.Fatalf("not ChannelData on channel 0x4000: % x", b[:n])
		}
		got = append(got, string(b[channelDataHeader:channelDataHeader+1]))
	}
	if strings.Join(got, "") != "1234" {
		t.Fatalf("the client got %q, want 1 2 3 4 in order", got)
	}
	if p := s.pending.Load(); p > 1 {
		t.Fatalf("%d datagrams still pending after all were relayed", p)
	}
}

// TestNextSharing: the loop shares its sockets past half of its time busy,
// and does not take them back while the load stays in between: sharing,
// its main goroutine reads about half of the traffic, so a load just past
// the threshold would otherwise move every socket back and forth.
func TestNextSharing(t *testing.T) {
	for _, c := range []struct {
		sharing bool
		busy    float64
		want    bool
	}{
		{false, 0.3, false},
		{false, 0.5, false},
		{false, 0.55, true},
		{true, 0.55 / 2, true}, // the same load, read by two goroutines
		{true, 0.4 / 2, true},  // a little less: not back to one
		{true, 0.2 / 2, false}, // well below: back
		{true, 0.9, true},
	} {
		if got := nextSharing(c.sharing, c.busy); got != c.want {
			t.Errorf("sharing %v, busy %.3f: %v, want %v", c.sharing, c.busy, got, c.want)
		}
	}
}
