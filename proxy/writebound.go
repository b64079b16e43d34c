package proxy

import (
	"net"
	"sync"
	"time"
)

// earlier is the earlier of two deadlines, zero being none.
func earlier(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// boundConn holds writes to the bound (see direct) where the raw socket
// is not at hand: it cannot tell a full socket from a free one, so it
// sets the deadline around each piece of boundChunk bytes: the peer must
// take a piece within the bound (direct's: anything at all).
type boundConn struct {
	net.Conn
	bound time.Duration
	wmu   sync.Mutex // one writer at a time
	dmu   sync.Mutex // wdl, armed
	wdl   time.Time  // the write deadline the user set
	armed time.Time  // the deadline of the write in progress; zero: none
}

// boundWrites returns c with its writes bounded (c itself for no bound).
func boundWrites(c net.Conn, bound time.Duration) net.Conn {
	if bound <= 0 {
		return c
	}
	return &boundConn{Conn: c, bound: bound}
}

// boundChunk is the piece of a large write each bound covers.
const boundChunk = 64 << 10

func (c *boundConn) Write(b []byte) (n int, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for n < len(b) && err == nil {
		piece := b[n:min(len(b), n+boundChunk)]
		c.dmu.Lock()
		c.armed = time.Now().Add(c.bound)
		_ = c.Conn.SetWriteDeadline(earlier(c.wdl, c.armed))
		c.dmu.Unlock()
		var k int
		k, err = c.Conn.Write(piece)
		n += k
	}
	c.dmu.Lock()
	c.armed = time.Time{}
	_ = c.Conn.SetWriteDeadline(c.wdl)
	c.dmu.Unlock()
	return n, err
}

// SetWriteDeadline sets the user's write deadline (see directConn's).
func (c *boundConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl = t
	return c.Conn.SetWriteDeadline(earlier(t, c.armed))
}

// SetDeadline sets both deadlines, the write one as SetWriteDeadline.
func (c *boundConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
