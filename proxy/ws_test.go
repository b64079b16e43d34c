package proxy

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/wstransport"
)

type accessFunc func(netip.Addr) bool

func (f accessFunc) Allowed(a netip.Addr) bool { return f(a) }

// startWSProxy serves cfg over plaintext WebSocket on a loopback port.
func startWSProxy(t *testing.T, cfg Config, trusted []netip.Prefix) *running {
	t.Helper()
	up, err := wstransport.New(wstransport.Options{Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	return serveProxy(t, cfg, func(srv *Server, ln net.Listener) error { return srv.ServeWebSocket(ln, nil, up) })
}

const wsRequest = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"

// A PROXY header names the client: the request's forwarding headers
// (the client's own, through an L4 balancer) are ignored, and the named
// client is judged by the access rules before anything else is read.
func TestProxyHeaderBeatsForwardingHeaders(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	// The client the header names, 127.0.0.5, is an HTTP balancer's
	// address too: its forwarding headers are not believed all the same
	// (they would name a client that was never gated).
	forwarders := append(trusted, netip.MustParsePrefix("127.0.0.5/32"))
	px := startWSProxy(t, Config{Backend: startMosquitto(t), ProxyProtocolTrusted: trusted,
		Access: accessFunc(func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.66") })}, forwarders)
	dial := func(named, forwarded string) (string, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "PROXY TCP4 "+named+" 127.0.0.1 5555 1883\r\n"+wsRequest+"X-Forwarded-For: "+forwarded+"\r\n\r\n")
		b := make([]byte, 12)
		n, _ := io.ReadFull(c, b)
		return string(b[:n]), c
	}
	if status, _ := dial("127.0.0.66", "127.0.0.7"); strings.Contains(status, "101") {
		t.Errorf("a client the access rules deny got %q by naming another address", status)
	}
	status, c := dial("127.0.0.5", "127.0.0.7")
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q", status)
	}
	br := make([]byte, 256)
	for { // the rest of the response head
		n, err := c.Read(br)
		if err != nil || bytes.Contains(br[:n], []byte("\r\n\r\n")) || n == 0 {
			break
		}
	}
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte("wsph"), KeepAlive: 30, CleanStart: true})
	f := ws.MaskFrameInPlace(ws.NewBinaryFrame(connect))
	_ = ws.WriteFrame(c, f)
	mqtttest.WaitFor(t, "the session", func() bool { return len(px.srv.Conns()) == 1 })
	if a := px.srv.Conns()[0].Address; !strings.HasPrefix(a, "127.0.0.5:") {
		t.Errorf("the session's address %s, want the PROXY header's 127.0.0.5", a)
	}
}

// A client that upgrades, floods pings and reads no pong is closed all
// the same, once a pong has waited its 2 s (before, it could stay for
// ever: the CONNECT deadline bounds reads only).
func TestPingFloodEndsAtTheConnectDeadline(t *testing.T) {
	px := startWSProxy(t, Config{Backend: startMosquitto(t), ConnectTimeout: 3 * time.Second}, nil)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { // a small window from the SYN on: the pongs fill it soon
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
	}}
	c, err := d.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, wsRequest+"\r\n")
	ping, _ := ws.CompileFrame(ws.MaskFrameInPlace(ws.NewPingFrame(bytes.Repeat([]byte("p"), 125))))
	flood := bytes.Repeat(ping, 2000)
	start := time.Now()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	go func() {
		for range 40 { // up to 10 MB of pings, never reading
			if _, err := c.Write(flood); err != nil {
				return
			}
		}
	}()
	mqtttest.WaitFor(t, "the flooding client closed", func() bool { return px.srv.Stats.Closed.Load() == 1 })
	if d := time.Since(start); d > 9*time.Second { // without the bound it stays until the client gives up
		t.Errorf("closed after %v, with a 3 s CONNECT deadline and 2 s for a pong", d)
	}
}

// A balancer trusted for PROXY headers only must send one on a WebSocket
// listener too: without it, it is no HTTP balancer (none is listed), and
// its request is refused before the upgrade, whatever forwarding headers
// it carries.
func TestL4BalancerMustSendItsHeaderOnWebSocket(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	px := startWSProxy(t, Config{Backend: startMosquitto(t), ProxyProtocolTrusted: trusted}, nil)
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, wsRequest+"X-Forwarded-For: 127.0.0.7\r\n\r\n")
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "101") {
		t.Fatalf("upgraded without the PROXY header: %q", b)
	}
	mqtttest.WaitFor(t, "the refusal", func() bool { return px.srv.Stats.ProxyHeaderRefused.Load() == 1 })
}
