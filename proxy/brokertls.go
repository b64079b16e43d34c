package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// brokerTLS finishes a broker dial over TLS (Config.BackendTLS). The
// PROXY header, when on, is written first and in the clear, as HAProxy's
// send-proxy-v2 with ssl does: a broker reads it before its TLS. Then the
// handshake, within ctx (what is left of the dial timeout), and the
// CONNECT through TLS. raw stays the session's broker connection until
// the handshake is done, so a shutdown or a kick meanwhile closes it.
// Any failure is the broker being unavailable: the client is told
// CONNACK 0x88 (3.1.1: 0x03), and why is logged.
func (s *Server) brokerTLS(ctx context.Context, sess *Session, conn net.Conn, v mqttwire.Version, raw net.Conn, hdr, connect []byte) string {
	if len(hdr) > 0 {
		if _, err := raw.Write(hdr); err != nil {
			return s.brokerTLSFailed(sess, conn, v, "proxy header", err)
		}
	}
	cfg := s.cfg.BackendTLS()
	if s.cfg.BackendTLSPerNode { // a pool without one server name: each node by its own host
		if host, _, err := net.SplitHostPort(sess.backend); err == nil && host != cfg.ServerName {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
	}
	// The raw connection (direct) stays underneath: the TLS records are
	// read and written with its system calls.
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return s.brokerTLSFailed(sess, conn, v, "handshake", err)
	}
	if !sess.setBroker(tc) {
		return closeShutdown // closed meanwhile: raw was closed with it
	}
	if e := s.cfg.Logger.Debug(); e.Enabled() {
		st := tc.ConnectionState()
		e.Str("event", "broker_tls").Uint64("conn", sess.ID).Str("tls_version", tlsVersionName(st.Version)).
			Str("cipher", tls.CipherSuiteName(st.CipherSuite)).Bool("resumed", st.DidResume).Msg("TLS to the broker")
	}
	if _, err := tc.Write(connect); err != nil {
		if alert := brokerAlert(tc); alert != nil {
			err = fmt.Errorf("%w (writing the CONNECT: %v)", alert, err)
		}
		return s.brokerTLSFailed(sess, conn, v, "CONNECT", err)
	}
	return ""
}

// brokerAlert reads what a broker sent before it reset the connection
// the CONNECT could not be written to: after a TLS 1.3 handshake that
// was complete on this side, the alert that says why (it wanted a client
// certificate), which arrived before the reset. nil when there is none.
func brokerAlert(tc *tls.Conn) error {
	_ = tc.SetReadDeadline(time.Now().Add(time.Second)) // a reset connection answers at once; the bound is for one that is not
	_, err := tc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// brokerTLSFailed logs why the TLS hop to the broker failed during step
// and refuses the client as the broker being unavailable; a session
// closed meanwhile (shutdown, a kick) is neither logged nor answered.
func (s *Server) brokerTLSFailed(sess *Session, conn net.Conn, v mqttwire.Version, step string, err error) string {
	if sess.isClosed() {
		return closeShutdown
	}
	s.Stats.BackendDown.Add(1)
	s.cfg.Logger.Error().Str("event", "broker_tls_failed").Uint64("conn", sess.ID).Str("backend", sess.backend).Str("step", step).Err(err).
		Msg("TLS to the broker failed: the client is refused as the broker being unavailable")
	s.refuse(sess, conn, v, mqttwire.ServerUnavailable)
	return closeBackend
}

// brokerTLSEnded answers a client whose CONNECT the broker ended over
// TLS with an error before its CONNACK (an alert: it wanted a client
// certificate, say) as the broker being unavailable, and logs why; a
// session closed meanwhile is left alone.
func (s *Server) brokerTLSEnded(sess *Session, client net.Conn, err error) {
	if sess.isClosed() {
		return
	}
	s.Stats.BackendDown.Add(1)
	s.cfg.Logger.Error().Str("event", "broker_tls_failed").Uint64("conn", sess.ID).Str("backend", sess.backend).Str("step", "CONNACK").Err(err).
		Msg("the broker ended the TLS connection before its CONNACK: the client is refused as the broker being unavailable")
	sess.writeClientLast(client, mqttwire.AppendConnack(nil, sess.Version, false, mqttwire.ServerUnavailable, nil), false)
}

// isClosed reports whether the session was closed (closeAll).
func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
