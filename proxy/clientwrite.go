package proxy

import (
	"errors"
	"net"
	"os"
	"time"
)

// writeClientAnswer is writeClient for the broker's packets; accepted
// says b holds (or follows) the broker's CONNACK admitting the client,
// which is then marked written in the same step, so that a DISCONNECT
// of the proxy's comes after it or not at all [MQTT-3.14.0-1].
func (s *Session) writeClientAnswer(c net.Conn, b []byte, accepted bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := c.Write(b)
	s.bytesOut.Add(int64(n))
	if err == nil && accepted && !s.answered.Load() {
		s.answered.Store(true)
		if s.connacked != nil {
			close(s.connacked)
		}
	}
	return err
}

// awaitConnack waits, for at most d, until the broker's CONNACK
// admitting the client has reached it: a client whose packet came
// pipelined with its CONNECT is answered after its CONNACK, as a broker
// would answer it, and never before [MQTT-3.2.0-1, MQTT-3.14.0-1]. It
// reports whether the CONNACK is out; it stalls only the session's own
// client pump.
func (s *Session) awaitConnack(d time.Duration) bool {
	if s.answered.Load() {
		return true
	}
	s.wmu.Lock()
	if s.answered.Load() {
		s.wmu.Unlock()
		return true
	}
	if s.connacked == nil {
		s.connacked = make(chan struct{})
	}
	connacked := s.connacked
	s.wmu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-connacked:
		return true
	case <-s.done: // closed: the broker refused it, or went
	case <-t.C:
	}
	return s.answered.Load()
}

// writeClient writes whole packets to the client; the two pumps never
// interleave inside a packet. A write that cannot go on within
// Config.ClientWriteTimeout fails (the client transport bounds it: see
// direct).
func (s *Session) writeClient(c net.Conn, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n, err := c.Write(b)
	s.bytesOut.Add(int64(n))
	return err
}

// finalWriteWait bounds the proxy's last words to a client (a refusal,
// a DISCONNECT), so that a client that reads nothing holds up nobody.
const finalWriteWait = time.Second

// writeClientLast writes the last packet the proxy sends a client before
// it closes the connection, within finalWriteWait, once. A DISCONNECT
// (disconnect) goes only to a client that has its CONNACK and sent no
// DISCONNECT itself [MQTT-3.14.0-1].
func (s *Session) writeClientLast(c net.Conn, b []byte, disconnect bool) {
	// The bound goes on the accepted socket first, outside wmu: a write
	// of the other pump's that is waiting there, holding wmu, then fails
	// within it too, rather than holding this one up for the whole
	// client write bound.
	wait := time.Now().Add(finalWriteWait)
	_ = s.client.SetWriteDeadline(wait)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.final || disconnect && (!s.answered.Load() || s.disconnected.Load()) {
		s.final = true
		return
	}
	s.final = true
	_ = c.SetWriteDeadline(wait) // and on the layer written to (a WebSocket keeps its user's deadline)
	n, _ := c.Write(b)
	s.bytesOut.Add(int64(n))
}

// clientWriteEnd is the close reason for a failed write to the client:
// it went away, or it took nothing for Config.ClientWriteTimeout (a
// client that stops reading is cut off, rather than left to pin what it
// will not take while it keeps sending).
func (s *Server) clientWriteEnd(sess *Session, err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) && !sess.ending() {
		s.limitHit(sess, "client_write_timeout")
		return closeSlowReader
	}
	return closeWriteError
}
