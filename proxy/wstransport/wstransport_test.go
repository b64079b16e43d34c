package wstransport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/goleak"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is a loopback TCP connection: the server's end and the client's.
func pair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	_ = s.SetDeadline(deadline)
	_ = c.SetDeadline(deadline)
	t.Cleanup(func() { s.Close(); c.Close() })
	return s, c
}

const goodRequest = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n"

type upgradeResult struct {
	status string // the response's status line
	stream net.Conn
	client netip.AddrPort
	token  string
	err    error
	conn   net.Conn // the client's end, past the response
	br     *bufio.Reader
}

// upgrade sends request (headers, then the blank line) from a client
// whose peer address is peer, and returns what the server decided.
func upgrade(t *testing.T, u *Upgrader, request string, peer netip.AddrPort, admit func(netip.AddrPort) bool) upgradeResult {
	t.Helper()
	s, c := pair(t)
	go func() { _, _ = io.WriteString(c, request+"\r\n") }()
	if admit == nil {
		admit = func(netip.AddrPort) bool { return true }
	}
	var r upgradeResult
	r.stream, r.client, r.token, r.err = u.Upgrade(s, peer, admit)
	r.conn, r.br = c, bufio.NewReader(c)
	line, _ := r.br.ReadString('\n')
	r.status = strings.TrimSpace(line)
	for { // the rest of the head
		l, err := r.br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
		if strings.HasPrefix(strings.ToLower(l), "sec-websocket-protocol:") && !strings.Contains(l, "mqtt") {
			t.Errorf("agreed subprotocol %q", l)
		}
	}
	return r
}

var anyPeer = netip.MustParseAddrPort("127.0.0.1:5555")

func mustNew(t *testing.T, o Options) *Upgrader {
	t.Helper()
	u, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUpgradeRefusals(t *testing.T) {
	u := mustNew(t, Options{Origins: []string{"https://app.example.com", "https://*.example.net"}, MaxRequest: 1024})
	for name, c := range map[string]struct {
		request, status string
	}{
		"no subprotocol":      {strings.Replace(goodRequest, "Sec-WebSocket-Protocol: mqtt\r\n", "", 1), "400"},
		"another subprotocol": {strings.Replace(goodRequest, "Protocol: mqtt", "Protocol: chat", 1), "400"},
		"another path":        {strings.Replace(goodRequest, "/mqtt", "/other", 1), "404"},
		"origin not listed":   {goodRequest + "Origin: https://evil.example\r\n", "403"},
		"origin lookalike":    {goodRequest + "Origin: https://app.example.com.evil.example\r\n", "403"},
		"origin plain http":   {goodRequest + "Origin: http://app.example.com\r\n", "403"},
		"wildcard base host":  {goodRequest + "Origin: https://example.net\r\n", "403"},
		"endless header":      {goodRequest + "X-Long: " + strings.Repeat("a", 2000) + "\r\n", "431"},
		"not GET":             {strings.Replace(goodRequest, "GET", "POST", 1), "405"},
		"no key":              {strings.Replace(goodRequest, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), "400"},
	} {
		r := upgrade(t, u, c.request, anyPeer, nil)
		if r.err == nil || !errors.Is(r.err, ErrRefused) || !strings.Contains(r.status, " "+c.status+" ") && !strings.HasSuffix(r.status, " "+c.status) {
			t.Errorf("%s: %q %v, want HTTP %s and no upgrade", name, r.status, r.err, c.status)
		}
	}
	for _, origin := range []string{"https://app.example.com", "https://APP.example.com:443", "https://a.example.net", "https://b.c.example.net"} {
		if r := upgrade(t, u, goodRequest+"Origin: "+origin+"\r\n", anyPeer, nil); r.err != nil || !strings.Contains(r.status, "101") {
			t.Errorf("origin %s: %q %v, want 101", origin, r.status, r.err)
		}
	}
	if r := upgrade(t, u, goodRequest, anyPeer, nil); r.err != nil || !strings.Contains(r.status, "101") {
		t.Errorf("no Origin (not a browser): %q %v, want 101", r.status, r.err)
	}
	if r := upgrade(t, mustNew(t, Options{}), goodRequest+"Origin: https://app.example.com\r\n", anyPeer, nil); r.err == nil {
		t.Error("no Origins listed: a browser request was upgraded")
	}
	for _, bad := range []string{"app.example.com", "ftp://x", "https://*", "https://a.*.example.com", "https://x.example/path"} {
		if _, err := New(Options{Origins: []string{bad}}); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

// Forwarding headers count only from trusted peers, and the forwarded
// address is judged before the 101; tokens come from Authorization or the
// configured cookie.
func TestUpgradeForwardedAndToken(t *testing.T) {
	u := mustNew(t, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, TokenCookie: "mqtt_token"})
	balancer := netip.MustParseAddrPort("10.1.1.1:4000")
	r := upgrade(t, u, goodRequest+"X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n", balancer, nil)
	if r.err != nil || r.client != netip.MustParseAddrPort("198.51.100.7:0") {
		t.Errorf("X-Forwarded-For from a trusted peer: %v %v", r.client, r.err)
	}
	r = upgrade(t, u, goodRequest+"Forwarded: for=192.0.2.1, for=\"[2001:db8::1]:4711\";proto=https\r\n", balancer, nil)
	if r.err != nil || r.client != netip.MustParseAddrPort("[2001:db8::1]:4711") {
		t.Errorf("Forwarded from a trusted peer: %v %v", r.client, r.err)
	}
	if r = upgrade(t, u, goodRequest+"X-Forwarded-For: 198.51.100.7\r\n", anyPeer, nil); r.err != nil || r.client.IsValid() {
		t.Errorf("X-Forwarded-For from a stranger: %v %v, want ignored", r.client, r.err)
	}
	deny := func(netip.AddrPort) bool { return false }
	if r = upgrade(t, u, goodRequest+"X-Forwarded-For: 198.51.100.7\r\n", balancer, deny); r.err == nil || !strings.Contains(r.status, "403") {
		t.Errorf("a forwarded address the access rules deny: %q %v", r.status, r.err)
	}
	if r = upgrade(t, u, goodRequest+"Authorization: Bearer tok.en.1\r\n", anyPeer, nil); r.token != "tok.en.1" {
		t.Errorf("bearer token %q", r.token)
	}
	if r = upgrade(t, u, goodRequest+"Cookie: a=b; mqtt_token=tok.en.2\r\n", anyPeer, nil); r.token != "tok.en.2" {
		t.Errorf("cookie token %q", r.token)
	}
	if r = upgrade(t, mustNew(t, Options{}), goodRequest+"Cookie: mqtt_token=tok.en.2\r\n", anyPeer, nil); r.token != "" {
		t.Errorf("a cookie taken without a cookie name configured: %q", r.token)
	}
}

// frame builds a client frame: masked unless unmasked.
func frame(op ws.OpCode, fin bool, payload []byte, unmasked bool) []byte {
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	if !unmasked {
		f = ws.MaskFrameInPlace(f)
	}
	b, _ := ws.CompileFrame(f)
	return b
}

// serverFrame reads one frame the server sent.
func serverFrame(t *testing.T, br *bufio.Reader) (ws.OpCode, []byte) {
	t.Helper()
	h, err := ws.ReadHeader(br)
	if err != nil {
		t.Fatalf("reading the server's frame: %v", err)
	}
	if h.Masked {
		t.Error("a server frame was masked")
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	return h.OpCode, body
}

// A packet split over frames and frames holding several packets read as
// one stream; each Write is one binary frame; a ping is answered.
func TestStream(t *testing.T) {
	s, c := pair(t)
	conn := NewConn(s, 1<<20)
	br := bufio.NewReader(c)
	go func() {
		_, _ = c.Write(frame(ws.OpBinary, false, []byte("hel"), false))
		_, _ = c.Write(frame(ws.OpPing, true, []byte("are you there"), false))
		_, _ = c.Write(frame(ws.OpContinuation, false, []byte("lo, "), false))
		_, _ = c.Write(frame(ws.OpContinuation, true, []byte("world"), false))
		_, _ = c.Write(frame(ws.OpBinary, true, []byte("!"), false))
	}()
	got := make([]byte, 0, 16)
	buf := make([]byte, 4)
	for len(got) < len("hello, world!") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "hello, world!" {
		t.Fatalf("stream %q", got)
	}
	if op, body := serverFrame(t, br); op != ws.OpPong || string(body) != "are you there" {
		t.Errorf("ping answered with %v %q", op, body)
	}
	big := bytes.Repeat([]byte("x"), 70000)
	for _, p := range [][]byte{[]byte("pkt"), bytes.Repeat([]byte("y"), 300), big} {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
		if op, body := serverFrame(t, br); op != ws.OpBinary || !bytes.Equal(body, p) {
			t.Errorf("write of %d bytes came as %v of %d", len(p), op, len(body))
		}
	}
}

// Each violation closes with its code, and reads fail from then on.
func TestViolationsClose(t *testing.T) {
	long := make([]byte, 200)
	for name, c := range map[string]struct {
		send []byte
		code ws.StatusCode
	}{
		"text frame":             {frame(ws.OpText, true, []byte("hi"), false), CloseUnsupported},
		"unmasked":               {frame(ws.OpBinary, true, []byte("hi"), true), CloseProtocol},
		"oversized":              {frame(ws.OpBinary, true, make([]byte, 2000), false), CloseTooBig},
		"reserved opcode":        {frame(ws.OpCode(3), true, nil, false), CloseProtocol},
		"reserved bits":          {func() []byte { b := frame(ws.OpBinary, true, []byte("x"), false); b[0] |= 0x40; return b }(), CloseProtocol},
		"long control frame":     {frame(ws.OpPing, true, long, false), CloseProtocol},
		"fragmented control":     {frame(ws.OpPing, false, nil, false), CloseProtocol},
		"stray continuation":     {frame(ws.OpContinuation, true, []byte("x"), false), CloseProtocol},
		"message inside message": {append(frame(ws.OpBinary, false, []byte("a"), false), frame(ws.OpBinary, true, []byte("b"), false)...), CloseProtocol},
		"close":                  {frame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"), false), ws.StatusGoingAway},
		"close with a bad code":  {frame(ws.OpClose, true, []byte{0x03, 0xed}, false), CloseProtocol}, // 1005 may not be sent
	} {
		s, cl := pair(t)
		conn := NewConn(s, 1024)
		go func() { _, _ = cl.Write(c.send) }()
		var err error
		buf := make([]byte, 64)
		for range 10 {
			if _, err = conn.Read(buf); err != nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		op, body := serverFrame(t, bufio.NewReader(cl))
		if op != ws.OpClose || len(body) < 2 || ws.StatusCode(binary.BigEndian.Uint16(body)) != c.code {
			t.Errorf("%s: answered %v %x, want close %d", name, op, body, c.code)
		}
		if _, again := conn.Read(buf); again == nil {
			t.Errorf("%s: a read after the close succeeded", name)
		}
	}
}

// The client-side helper of the other packages' tests speaks to this one.
func TestWithTheTestClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	u := mustNew(t, Options{})
	done := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		stream, _, _, err := u.Upgrade(s, anyPeer, func(netip.AddrPort) bool { return true })
		if err != nil {
			done <- err
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(stream, buf); err != nil {
			done <- err
			return
		}
		_, err = stream.Write(buf)
		done <- err
	}()
	c, err := mqtttest.DialWS("ws://"+ln.Addr().String()+"/mqtt", nil, "mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// One PUBLISH per frame, read and written: no allocation per frame.
func TestFramesAllocateNothing(t *testing.T) {
	publish := []byte{0x30, 0x0e, 0, 6, 's', 'e', 'n', 's', 'o', 'r', 'v', 'a', 'l', 'u', 'e', '!'}
	in := bytes.Repeat(frame(ws.OpBinary, true, publish, false), 2000)
	c := NewConn(&memConn{r: bytes.NewReader(in)}, 4096)
	buf := make([]byte, 4096)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := io.ReadFull(c, buf[:len(publish)]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(buf[:len(publish)]); err != nil {
			t.Fatal(err)
		}
	}); n > 0 {
		t.Fatalf("%v allocations per frame read and written", n)
	}
}

func BenchmarkFrameRead(b *testing.B) {
	publish := append([]byte{0x30, 0x7e, 0, 6, 's', 'e', 'n', 's', 'o', 'r'}, make([]byte, 120)...)
	one := frame(ws.OpBinary, true, publish, false)
	in := bytes.Repeat(one, b.N)
	c := NewConn(&memConn{r: bytes.NewReader(in)}, 4096)
	buf := make([]byte, len(publish))
	b.SetBytes(int64(len(publish)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Frames sent in the same write as the request reach the stream; two
// forwarding headers, or a zoned address, are refused.
func TestPipelinedFramesAndForwardingAmbiguity(t *testing.T) {
	u := mustNew(t, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	s, c := pair(t)
	go func() {
		_, _ = c.Write(append([]byte(goodRequest+"\r\n"), frame(ws.OpBinary, true, []byte("early"), false)...))
	}()
	stream, _, _, err := u.Upgrade(s, anyPeer, func(netip.AddrPort) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(stream, buf); err != nil || string(buf) != "early" {
		t.Fatalf("pipelined frame: %q %v", buf, err)
	}
	balancer := netip.MustParseAddrPort("10.1.1.1:4000")
	for name, h := range map[string]string{
		"two kinds":       "X-Forwarded-For: 198.51.100.7\r\nForwarded: for=192.0.2.1\r\n",
		"twice":           "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 192.0.2.1\r\n",
		"a zone":          "X-Forwarded-For: [fe80::1%eth0]:1\r\n",
		"a zone, no port": "Forwarded: for=\"[fe80::1%eth0]\"\r\n",
	} {
		if r := upgrade(t, u, goodRequest+h, balancer, nil); r.err == nil || !strings.Contains(r.status, "400") {
			t.Errorf("%s: %q %v, want 400", name, r.status, r.err)
		}
	}
}

// oneByte reads at most one byte per call: a client dribbling its head.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

// A head sent a byte at a time costs its bytes, not a buffer per read
// (a slow client would otherwise make the proxy allocate 4 KiB per byte).
func TestDribbledHeadAllocatesItsSizeOnly(t *testing.T) {
	head := goodRequest + "X-Pad: " + strings.Repeat("a", 2000) + "\r\n\r\n"
	var h *headReader
	allocs := testing.AllocsPerRun(3, func() {
		h = &headReader{r: oneByte{strings.NewReader(head)}, max: 16 << 10}
		buf := make([]byte, 4096)
		for {
			if _, err := h.Read(buf); err != nil {
				break
			}
		}
	})
	if !h.done || allocs > 20 {
		t.Fatalf("done %v, %v allocations for a %d-byte head read a byte at a time", h.done, allocs, len(head))
	}
}

// deadlineConn records the write deadlines set on it.
type deadlineConn struct {
	memConn
	set []time.Time
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error { d.set = append(d.set, t); return nil }

// A pong the reader sends keeps the write deadline its user set (the
// proxy's bound on a client that stops reading), rather than clearing
// it; with none set it leaves none.
func TestPongKeepsTheWriteDeadline(t *testing.T) {
	ping := frame(ws.OpPing, true, []byte("p"), false)
	data := frame(ws.OpBinary, true, []byte{0xC0, 0}, false)
	for _, user := range []time.Time{time.Now().Add(time.Minute), {}} {
		dc := &deadlineConn{memConn: memConn{r: bytes.NewReader(append(append([]byte{}, ping...), data...))}}
		c := NewConn(dc, 1024)
		if !user.IsZero() {
			_ = c.SetWriteDeadline(user)
		}
		buf := make([]byte, 16)
		if n, err := c.Read(buf); err != nil || n != 2 {
			t.Fatalf("read %d, %v", n, err)
		}
		if len(dc.set) == 0 || !dc.set[len(dc.set)-1].Equal(user) {
			t.Fatalf("deadlines set %v, want the last to be %v", dc.set, user)
		}
	}
}
