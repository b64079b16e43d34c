package main

import (
	"io"
	"net"
	"net/url"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsClient is the client end of MQTT over WebSocket for the bench: each
// Write is one masked binary frame, Read returns the server's frames'
// payload (control frames answered). Its own cost is the client's, not
// the target's.
type wsClient struct {
	net.Conn
	r       *wsutil.Reader
	control wsutil.FrameHandlerFunc
}

// upgradeWS asks for the "mqtt" subprotocol on conn (past TLS for wss)
// at path.
func upgradeWS(conn net.Conn, host, path string) (net.Conn, error) {
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	u, err := url.Parse("ws://" + host + path)
	if err != nil {
		return nil, err
	}
	br, _, err := d.Upgrade(conn, u)
	if err != nil {
		return nil, err
	}
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
	}
	return &wsClient{Conn: conn, r: &wsutil.Reader{Source: src, State: ws.StateClientSide},
		control: wsutil.ControlFrameHandler(conn, ws.StateClientSide)}, nil
}

func (c *wsClient) Write(b []byte) (int, error) { return len(b), wsutil.WriteClientBinary(c.Conn, b) }

func (c *wsClient) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		if n > 0 || (err != nil && err != io.EOF && err != wsutil.ErrNoFrameAdvance) {
			return n, err
		}
		h, err := c.r.NextFrame()
		if err != nil {
			return 0, err
		}
		if h.OpCode.IsControl() {
			if err := c.control(h, c.r); err != nil {
				return 0, err
			}
		}
	}
}
