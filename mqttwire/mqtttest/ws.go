package mqtttest

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// WSClient is the client side of a WebSocket carrying MQTT: each Write
// is one masked binary frame; Read returns the payload of the server's
// frames. A close frame from the server ends reads with a *WSClosed.
type WSClient struct {
	net.Conn
	br   *bufio.Reader
	left int64
	wmu  sync.Mutex
}

// WSClosed is the server's close frame.
type WSClosed struct{ Code int }

func (e *WSClosed) Error() string { return fmt.Sprintf("websocket closed %d", e.Code) }

// DialWS opens a WebSocket to url (ws:// or wss://, tlsCfg for the
// latter) asking for subprotocol ("" asks for none) with the extra
// header, within 5 s. A refused upgrade is an error naming the status.
func DialWS(url string, tlsCfg *tls.Config, subprotocol string, header http.Header) (*WSClient, error) {
	return DialWSFrom(nil, url, tlsCfg, subprotocol, header)
}

// DialWSFrom is DialWS from the local address src (nil: any), such as
// another loopback address, to stand for another client.
func DialWSFrom(src net.IP, url string, tlsCfg *tls.Config, subprotocol string, header http.Header) (*WSClient, error) {
	d := ws.Dialer{TLSConfig: tlsCfg, Timeout: 5 * time.Second}
	if src != nil {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		d.NetDial = nd.DialContext
	}
	if subprotocol != "" {
		d.Protocols = []string{subprotocol}
	}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &WSClient{Conn: conn, br: br}, nil
}

// Write sends b as one masked binary frame.
func (c *WSClient) Write(b []byte) (int, error) {
	return len(b), c.WriteFrame(ws.OpBinary, true, b)
}

// WriteFrame sends one masked frame (any opcode, fin or not).
func (c *WSClient) WriteFrame(op ws.OpCode, fin bool, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f := ws.NewFrame(op, fin, append([]byte(nil), b...))
	return ws.WriteFrame(c.Conn, ws.MaskFrameInPlace(f))
}

// WriteRaw sends bytes as they are (malformed frames).
func (c *WSClient) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// Read returns data frames' payload; pings are answered.
func (c *WSClient) Read(p []byte) (int, error) {
	for c.left == 0 {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpClose:
			body := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, body); err != nil {
				return 0, err
			}
			code := 1005
			if len(body) >= 2 {
				code = int(binary.BigEndian.Uint16(body))
			}
			return 0, &WSClosed{Code: code}
		case ws.OpPing, ws.OpPong:
			body := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, body); err != nil {
				return 0, err
			}
			if h.OpCode == ws.OpPing {
				_ = c.WriteFrame(ws.OpPong, true, body)
			}
		default:
			c.left = h.Length
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	return n, err
}

// NextFrame reads one whole frame (for tests of control frames).
func (c *WSClient) NextFrame(t testing.TB) (ws.OpCode, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, body); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return h.OpCode, body
}
