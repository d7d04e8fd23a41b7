package turnserver

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/duetcall/duet/internal/testca"
	"github.com/duetcall/duet/internal/tlsmux"
)

// echoThrough allocates over conn (a stream to the server, already
// TLS-wrapped) and checks a relayed echo with a UDP peer.
func echoThrough(t *testing.T, conn net.Conn, server string) {
	t.Helper()
	user, pass := Credentials(testSecret, "u12345678", time.Now().Add(time.Hour))
	c := newClientOn(t, turn.NewSTUNConn(conn), server, user, pass)
	relayConn := allocate(t, c)
	peer := newPeer(t, relayConn)
	if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	// The peer answers until the client has it: pion's client drops data
	// that arrives while it is still binding a channel for the peer.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < 50; i++ {
			if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	if n, _, err = relayConn.ReadFrom(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client got %q, %v", buf[:n], err)
	}
}

func TestAllocateOverTLS(t *testing.T) {
	ca, err := testca.New("turn.duet.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) {
		c.TLS = ca.ServerConfig()
		c.TLSListenAddrs = []string{"127.0.0.1:0"}
	})
	addrs := s.TLSAddrs()
	if len(addrs) != 1 {
		t.Fatalf("TLS addresses %v", addrs)
	}
	conn, err := tls.Dial("tcp4", addrs[0].String(), ca.ClientConfig("turn.duet.test"))
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, conn, addrs[0].String())

	// A client that does not trust the certificate gets no further.
	if c, err := tls.Dial("tcp4", addrs[0].String(), &tls.Config{ServerName: "turn.duet.test"}); err == nil {
		c.Close()
		t.Fatal("handshake succeeded without trusting the test CA")
	}
}

// TestSharedHTTPSPort: HTTPS and TURN over TLS on one port (tlsmux), as
// when the relay owns 443.
func TestSharedHTTPSPort(t *testing.T) {
	ca, err := testca.New("relay.duet.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ca.ServerConfig()
	cfg.NextProtos = []string{"http/1.1"}
	httpL, turnL := tlsmux.Split(ln, cfg)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })}
	go hs.Serve(httpL)
	t.Cleanup(func() { hs.Close() })
	startServer(t, func(c *Config) { c.Listeners = []net.Listener{turnL} })

	addr := ln.Addr().String()
	conn, err := tls.Dial("tcp4", addr, ca.ClientConfig("relay.duet.test"))
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, conn, addr)

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("relay.duet.test")}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 5)
	if n, _ := resp.Body.Read(b); string(b[:n]) != "hello" {
		t.Fatalf("HTTPS on the shared port answered %q", b[:n])
	}
}

func TestEchoOverTCP(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TCP = true })
	conn, err := net.Dial("tcp4", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, conn, s.TCPAddr().String())
}
