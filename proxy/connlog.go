package proxy

import (
	"crypto/tls"
	"time"

	"github.com/rs/zerolog"
)

func (s *Server) logOpen(sess *Session) {
	ev := s.cfg.Logger.Info().Str("event", "open").Str("backend", sess.backend)
	s.connFields(ev, sess).Msg("connection open")
}

// logClose logs the end of a connection: always for an admitted session
// (the audit trail), and at the security events' bounded rate for one
// refused before its CONNECT was forwarded, so a flood of refused
// connections cannot flood the log.
func (s *Server) logClose(sess *Session) {
	sess.mu.Lock()
	admitted := sess.connected
	sess.mu.Unlock()
	var ev *zerolog.Event
	if admitted {
		ev = s.cfg.Logger.Info()
	} else if ev = s.securityEvent(zerolog.InfoLevel, sess); ev == nil {
		return
	}
	ev = ev.Str("event", "close")
	s.connFields(ev, sess).
		Int64("bytes_in", sess.bytesIn.Load()).
		Int64("bytes_out", sess.bytesOut.Load()).
		Dur("duration", time.Since(sess.start)).
		Str("reason", sess.closeReason()).
		Bool("client_disconnect", sess.disconnected.Load()).
		Msg("connection closed")
}

// connFields adds what is known about a connection; never a password.
func (s *Server) connFields(ev *zerolog.Event, sess *Session) *zerolog.Event {
	ev = ev.Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).Str("listener", sess.Listener)
	if st := sess.TLS; st != nil {
		ev = ev.Str("tls_version", tlsVersionName(st.Version)).Str("cipher", tls.CipherSuiteName(st.CipherSuite))
		if st.ServerName != "" {
			ev = ev.Str("sni", st.ServerName)
		}
		if cert := sess.ClientCert(); cert != nil {
			ev = ev.Str("cert_subject", cert.Subject.String())
		}
	}
	if sess.Version != 0 {
		ev = ev.Stringer("mqtt", sess.Version).Str("client_id", sess.ClientID)
		if sess.Username != "" && !s.cfg.UsernameIsSecret {
			ev = ev.Str("username", sess.Username)
		}
	}
	return ev
}
