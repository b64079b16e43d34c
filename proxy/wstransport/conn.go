package wstransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Close codes (RFC 6455 7.4.1).
const (
	CloseNormal      = ws.StatusNormalClosure        // 1000
	CloseProtocol    = ws.StatusProtocolError        // 1002
	CloseUnsupported = ws.StatusUnsupportedData      // 1003: a text frame
	CloseTooBig      = ws.StatusMessageTooBig        // 1009
	closeNoStatus    = ws.StatusNoStatusRcvd         // 1005: never sent
	closeAbnormal    = ws.StatusAbnormalClosure      // 1006: never sent
	closeTLS         = ws.StatusTLSHandshake         // 1015: never sent
	closeWait        = 100 * time.Millisecond        // for a close frame to go out
	pongWait         = 2 * time.Second               // for a pong to go out: a client that reads none is closed
	controlMax       = ws.MaxControlFramePayloadSize // 125
)

// Error is a WebSocket protocol violation by the client: the connection
// was closed with Code.
type Error struct {
	Code ws.StatusCode
	Why  string
}

func (e *Error) Error() string { return fmt.Sprintf("websocket %d: %s", e.Code, e.Why) }

// Conn carries MQTT bytes in binary WebSocket frames over a server-side
// connection: Read returns the unmasked payload of the client's data
// frames, in place in the caller's buffer (no copy), answering pings and
// a close on the way; each Write is one binary frame. A packet may span
// frames and a frame may hold several packets: the stream is what
// counts. Read is for one goroutine; Write and SendClose may be called
// from any.
type Conn struct {
	net.Conn
	maxFrame int64

	// The reader's own.
	left     int64 // payload bytes left in the current data frame
	mask     [4]byte
	pos      int  // offset into the mask
	fragment bool // a data message is open (its last frame not yet read)
	hdr      [ws.MaxHeaderSize - 2]byte
	err      error

	wmu    sync.Mutex
	closed bool                   // a close frame was sent
	whdr   [ws.MaxHeaderSize]byte // the writer's frame header (a field: a local would escape)
	wdl    time.Time              // the write deadline the user set, which a pong keeps
}

// SetWriteDeadline sets the write deadline; a pong the reader sends
// keeps it (bounded by its own wait), rather than clearing it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, the write one as SetWriteDeadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wdl = t
	return c.Conn.SetDeadline(t)
}

// waitingConn is a Conn over a source that can wait for readability
// without a buffer (mqttwire.ReadWaiter): an idle plaintext WebSocket
// then holds none either.
type waitingConn struct{ *Conn }

type readWaiter interface{ WaitReadable() error }

// WaitReadable waits on the underlying connection when no frame is open.
func (c waitingConn) WaitReadable() error {
	if c.left > 0 {
		return nil
	}
	return c.Conn.Conn.(readWaiter).WaitReadable()
}

// NewConn frames over conn, refusing data frames above maxFrame bytes.
func NewConn(conn net.Conn, maxFrame int64) net.Conn {
	c := &Conn{Conn: conn, maxFrame: maxFrame}
	if _, ok := conn.(readWaiter); ok {
		return waitingConn{c}
	}
	return c
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		h, err := ws.ReadHeaderBuffer(c.Conn, c.hdr[:])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return 0, c.fail(CloseProtocol, err.Error())
			}
			return 0, err
		}
		if err := c.check(h); err != nil {
			return 0, err
		}
		if h.OpCode.IsControl() {
			if err := c.control(h); err != nil {
				return 0, err
			}
			continue
		}
		c.fragment = !h.Fin
		c.left, c.mask, c.pos = h.Length, h.Mask, 0
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	ws.Cipher(p[:n], c.mask, c.pos)
	c.pos += n
	c.left -= int64(n)
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// check applies RFC 6455's rules to a client frame header.
func (c *Conn) check(h ws.Header) error {
	switch {
	case !h.Masked:
		return c.fail(CloseProtocol, "unmasked client frame")
	case h.Rsv != 0:
		return c.fail(CloseProtocol, "reserved bits set (no extension was agreed)")
	case h.OpCode.IsReserved():
		return c.fail(CloseProtocol, fmt.Sprintf("reserved opcode %#x", byte(h.OpCode)))
	case h.OpCode.IsControl() && (!h.Fin || h.Length > controlMax):
		return c.fail(CloseProtocol, "fragmented or oversized control frame")
	case h.OpCode == ws.OpText:
		return c.fail(CloseUnsupported, "text frame: MQTT travels in binary frames")
	case h.OpCode == ws.OpBinary && c.fragment:
		return c.fail(CloseProtocol, "a new message inside a fragmented one")
	case h.OpCode == ws.OpContinuation && !c.fragment:
		return c.fail(CloseProtocol, "continuation without a message")
	case h.OpCode.IsData() && h.Length > c.maxFrame:
		return c.fail(CloseTooBig, fmt.Sprintf("frame of %d bytes, over %d", h.Length, c.maxFrame))
	}
	return nil
}

// control reads a control frame's payload and answers it: a ping with a
// pong, a close with a close (then EOF); a pong is dropped.
func (c *Conn) control(h ws.Header) error {
	var buf [controlMax]byte
	p := buf[:h.Length]
	if _, err := io.ReadFull(c.Conn, p); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.closed {
			return nil
		}
		// A client that sends pings and reads nothing would otherwise hold
		// its reader in this write for ever.
		wait := time.Now().Add(pongWait)
		if !c.wdl.IsZero() && c.wdl.Before(wait) {
			wait = c.wdl
		}
		_ = c.Conn.SetWriteDeadline(wait)
		_, err := c.writeFrame(ws.OpPong, p)
		_ = c.Conn.SetWriteDeadline(c.wdl) // the user's, not none: a session's write bound holds
		if err != nil {
			c.err = err
		}
		return err
	case ws.OpClose:
		code := CloseNormal
		switch {
		case len(p) == 1:
			code = CloseProtocol
		case len(p) >= 2:
			if code = ws.StatusCode(binary.BigEndian.Uint16(p)); !sendable(code) {
				code = CloseProtocol
			}
		}
		c.sendClose(code, "")
		c.err = io.EOF
		return io.EOF
	}
	return nil
}

// sendable reports whether an endpoint may send code in a close frame
// (RFC 6455 7.4): the defined codes but 1004-1006 and 1015, and the
// registered and private ranges.
func sendable(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// fail closes with code and makes every later Read fail.
func (c *Conn) fail(code ws.StatusCode, why string) error {
	c.sendClose(code, why)
	c.err = &Error{Code: code, Why: why}
	return c.err
}

// SendClose sends a close frame (1000) once, if the writer is free: the
// connection is being closed anyway.
func (c *Conn) SendClose() {
	if !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	c.sendCloseLocked(CloseNormal, "")
}

func (c *Conn) sendClose(code ws.StatusCode, why string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sendCloseLocked(code, why)
}

func (c *Conn) sendCloseLocked(code ws.StatusCode, why string) {
	if c.closed {
		return
	}
	c.closed = true
	if len(why) > controlMax-2 {
		why = why[:controlMax-2]
	}
	var body [controlMax]byte
	binary.BigEndian.PutUint16(body[:], uint16(code))
	n := 2 + copy(body[2:], why)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(closeWait))
	_, _ = c.writeFrame(ws.OpClose, body[:n])
}

// Write sends b as one binary frame.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.writeFrame(ws.OpBinary, b)
}

// smallFrame is the largest payload written together with its header in
// one write, from a pooled buffer (one TLS record); larger ones go as two.
const smallFrame = 16 << 10

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, smallFrame+ws.MaxHeaderSize); return &b }}

func (c *Conn) writeFrame(op ws.OpCode, b []byte) (int, error) {
	hdr := &c.whdr
	hdr[0] = 0x80 | byte(op) // FIN: one frame per write; server frames are unmasked
	n := 2
	switch l := len(b); {
	case l < 126:
		hdr[1] = byte(l)
	case l <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	if len(b) <= smallFrame {
		bp := framePool.Get().(*[]byte)
		buf := append(append((*bp)[:0], hdr[:n]...), b...)
		_, err := c.Conn.Write(buf)
		*bp = buf[:0]
		framePool.Put(bp)
		if err != nil {
			return 0, err
		}
		return len(b), nil
	}
	if _, err := c.Conn.Write(hdr[:n]); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
