package wstransport

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// memConn reads from a buffer and writes nowhere.
type memConn struct {
	r *bytes.Reader
	net.Conn
}

func (m *memConn) Read(p []byte) (int, error)       { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }
func (m *memConn) Close() error                     { return nil }

// seeds are FuzzWebSocketFrames' seed corpus (testdata/fuzz).
func seeds() map[string][][]byte {
	return map[string][][]byte{
		"FuzzWebSocketFrames": {
			frame(ws.OpBinary, true, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}, false),
			append(frame(ws.OpBinary, false, []byte{0x30, 3}, false), frame(ws.OpContinuation, true, []byte{0, 1, 'a'}, false)...),
			frame(ws.OpPing, true, []byte("p"), false),
			frame(ws.OpText, true, []byte("t"), false),
			frame(ws.OpBinary, true, []byte("u"), true),
			frame(ws.OpClose, true, []byte{3, 232}, false),
			{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
			{0x82, 0xfe, 0xff},
		},
		"FuzzUpgradeRequest": {
			[]byte(goodRequest + "\r\n"),
			[]byte(goodRequest + "Origin: https://a.example.net\r\nX-Forwarded-For: 10.0.0.1, [::1]:80\r\nCookie: t=x.y.z\r\n\r\n"),
			[]byte(goodRequest + "Forwarded: for=\"[2001:db8::1]:1\";by=x, for=unknown\r\nAuthorization: Bearer a.b.c\r\n\r\n"),
			[]byte("GET / HTTP/1.0\r\n\r\n"),
		},
	}
}

// FuzzUpgradeRequest feeds arbitrary upgrade requests from a trusted
// peer: no panic, and a granted upgrade always agreed on the subprotocol
// and names an allowed forwarded address or none.
func FuzzUpgradeRequest(f *testing.F) {
	for _, s := range seeds()["FuzzUpgradeRequest"] {
		f.Add(s)
	}
	u, err := New(Options{Origins: []string{"https://*.example.net"}, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, TokenCookie: "t"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		stream, client, _, err := u.Upgrade(&memConn{r: bytes.NewReader(in)}, anyPeer, func(a netip.AddrPort) bool { return !a.Addr().IsUnspecified() })
		if err != nil {
			return
		}
		if stream == nil || (client.IsValid() && client.Addr().IsUnspecified()) {
			t.Fatalf("granted with stream %v client %v", stream, client)
		}
		if !bytes.Contains(bytes.ToLower(in), []byte("mqtt")) {
			t.Fatal("granted without the mqtt subprotocol")
		}
	})
}

// TestSeedCorpus regenerates testdata/fuzz when WSTRANSPORT_WRITE_CORPUS=1.
func TestSeedCorpus(t *testing.T) { mqtttest.SeedCorpus(t, "WSTRANSPORT_WRITE_CORPUS", seeds()) }

// FuzzWebSocketFrames feeds arbitrary client bytes to a Conn: it never
// panics, never returns more bytes than came in, and once it has failed
// it keeps failing.
func FuzzWebSocketFrames(f *testing.F) {
	for _, s := range seeds()["FuzzWebSocketFrames"] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewConn(&memConn{r: bytes.NewReader(in)}, 4096)
		buf := make([]byte, 37)
		total := 0
		var err error
		for range 1000 {
			var n int
			n, err = c.Read(buf)
			total += n
			if err != nil {
				break
			}
		}
		if total > len(in) {
			t.Fatalf("%d bytes out of %d in", total, len(in))
		}
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			if _, again := c.Read(buf); again == nil {
				t.Fatal("a read succeeded after a failure")
			}
		}
	})
}
