package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// directConn reads and writes a TCP socket with raw system calls.
//
// The sockets are non-blocking, so a read or write never waits in the
// kernel; waiting for readiness still goes through the runtime's network
// poller (syscall.RawConn), with deadlines and Close as usual. What the raw
// calls avoid is the scheduler's bookkeeping for a blocking system call:
// with one processor (the proxy pinned to one CPU) the runtime's monitor
// thread hands the processor to another thread whenever it finds a call
// in progress on two of its ticks, so a proxy that spends most of its time
// in read and write switched threads tens of thousands of times a second.
// This is the I/O an event loop such as HAProxy's does: one call per read
// or write, no thread handoffs.
type directConn struct {
	tc *net.TCPConn // a field, not embedded: its ReadFrom and writev would bypass the write bound
	rc syscall.RawConn

	rmu       sync.Mutex // one reader at a time: rbuf, rn, rerr
	rbuf      []byte
	rn        int
	rerr      syscall.Errno
	readFunc  func(uintptr) bool
	peekFunc  func(uintptr) bool
	peek      [1]byte
	wstop     bool       // under wmu: a full socket ends the try, to (re)arm the bound (first try, and after progress)
	wmu       sync.Mutex // one writer at a time: wbuf, wn, werr, wstop, wb.warmed
	wbuf      []byte
	wn        int
	werr      syscall.Errno
	writeFunc func(uintptr) bool
	wb        *writeBound // nil: writes wait for ever (the broker side)
}

// writeBound bounds how long a write that finds the socket full may
// wait without the peer taking anything; the deadline is armed only
// while a write waits, so no stale deadline is left on the connection
// (see Write). Out of line: only the clients' connections have one.
type writeBound struct {
	bound  time.Duration
	warmed int        // under wmu: wn when the bound was armed
	dmu    sync.Mutex // wdl, armed, and setting the socket's write deadline
	wdl    time.Time  // the write deadline the user set
	armed  time.Time  // the deadline of a write waiting now; zero: none waits
}

// direct returns c reading and writing with raw system calls when it is a
// TCP connection, and c itself otherwise. A write that finds the socket
// full fails once the peer has taken nothing for bound (0: no bound),
// or at the write deadline the user set when that is sooner.
func direct(c net.Conn, bound time.Duration) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return boundWrites(c, bound)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return boundWrites(c, bound)
	}
	d := &directConn{tc: tc, rc: rc}
	if bound > 0 {
		d.wb = &writeBound{bound: bound}
	}
	// Method values made once: a closure per call would allocate.
	d.readFunc, d.peekFunc, d.writeFunc = d.readFD, d.peekFD, d.writeFD
	return d
}

func (c *directConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = b, 0, 0
	err := c.rc.Read(c.readFunc)
	c.rbuf = nil
	switch {
	case err != nil: // closed, or the read deadline passed
		return 0, c.opError("read", err)
	case c.rerr != 0:
		return 0, c.opError("read", os.NewSyscallError("read", c.rerr))
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// readFD makes one read; false asks the poller to wait for readiness.
func (c *directConn) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
		}
		return true
	}
}

// WaitReadable waits until a read will not block (bytes, end of stream or
// an error are there), holding no buffer: the idle wait of a pooled
// mqttwire.Reader.
func (c *directConn) WaitReadable() error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rerr = 0
	if err := c.rc.Read(c.peekFunc); err != nil { // closed, or the read deadline passed
		return c.opError("read", err)
	}
	return nil // the read that follows reports what is there, errors included
}

// peekFD looks whether a byte (or the end of the stream, or an error) is
// there, leaving it in the socket; false asks the poller to wait.
func (c *directConn) peekFD(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peek[0])), 1, syscall.MSG_PEEK, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

func (c *directConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr, c.wstop = b, 0, 0, c.wb != nil
	err := c.rc.Write(c.writeFunc)
	if c.wstop && err == nil && c.werr == 0 && c.wn < len(b) {
		// The socket is full: the peer is not reading as fast as this
		// writes. It must take something within the bound; each wakeup
		// that moved bytes arms the bound again (a timer change per
		// wait of a slow write, none on a write that never waits).
		for err == nil && c.werr == 0 && c.wn < len(b) { // bounded: each turn moved bytes, or failed
			c.wb.warmed = c.wn
			c.wb.arm(c.tc)
			err = c.rc.Write(c.writeFunc)
		}
		c.wb.disarm(c.tc)
	}
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil: // closed, or the write deadline passed
		return n, c.opError("write", err)
	case c.werr != 0:
		return n, c.opError("write", os.NewSyscallError("write", c.werr))
	}
	return n, nil
}

// writeFD writes until everything is written or the socket is full; false
// asks the poller to wait until it can take more. MSG_NOSIGNAL: a peer
// that went away is an EPIPE error, not a signal.
func (c *directConn) writeFD(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			// Stop to (re)arm the bound: on the first try, and once the
			// peer took bytes since it was armed; else wait.
			return c.wstop && (c.wb.armed.IsZero() || c.wn > c.wb.warmed)
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// arm sets the socket's write deadline for a write that waits: the
// bound from now, or the user's deadline when that comes first.
func (w *writeBound) arm(tc *net.TCPConn) {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	w.armed = time.Now().Add(w.bound)
	_ = tc.SetWriteDeadline(earlier(w.wdl, w.armed))
}

// disarm puts the user's write deadline back (none, usually).
func (w *writeBound) disarm(tc *net.TCPConn) {
	w.dmu.Lock()
	defer w.dmu.Unlock()
	w.armed = time.Time{}
	_ = tc.SetWriteDeadline(w.wdl)
}

// SetWriteDeadline sets the user's write deadline. A write waiting for
// the socket at that moment is held to it too, and never released from
// its bound by it.
func (c *directConn) SetWriteDeadline(t time.Time) error {
	w := c.wb
	if w == nil {
		return c.tc.SetWriteDeadline(t)
	}
	w.dmu.Lock()
	defer w.dmu.Unlock()
	w.wdl = t
	return c.tc.SetWriteDeadline(earlier(t, w.armed))
}

// SetDeadline sets both deadlines, the write one as SetWriteDeadline.
func (c *directConn) SetDeadline(t time.Time) error {
	if err := c.tc.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *directConn) Close() error                      { return c.tc.Close() }
func (c *directConn) LocalAddr() net.Addr               { return c.tc.LocalAddr() }
func (c *directConn) RemoteAddr() net.Addr              { return c.tc.RemoteAddr() }
func (c *directConn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

func (c *directConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
