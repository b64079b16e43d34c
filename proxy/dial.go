package proxy

import (
	"context"
	"net"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// dialBroker connects to the broker within the dial timeout and sends the
// PROXY header, when configured, and the CONNECT: in one write, or with
// TLS to the broker the header in the clear, the handshake (within what
// is left of the dial timeout), then the CONNECT (brokerTLS).
func (s *Server) dialBroker(sess *Session, conn net.Conn, v mqttwire.Version, forward []byte, admitted *mqttwire.Connect) string {
	log := &s.cfg.Logger
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	defer cancel()
	bc, err := s.dialNode(ctx, sess, admitted.ClientID)
	if err != nil {
		s.Stats.BackendDown.Add(1)
		log.Error().Str("event", "broker_unavailable").Str("backend", sess.backend).Err(err).Msg("cannot reach broker")
		s.refuse(sess, conn, v, mqttwire.ServerUnavailable)
		return closeBackend
	}
	bc = direct(bc, 0) // the broker may take its time: no write bound on this side
	if !sess.setBroker(bc) {
		bc.Close()
		return closeShutdown
	}
	// A ban made while the broker was dialled found this session not yet
	// connected (Server.Kick passes it by): the CONNECT checks run once
	// more before the CONNECT leaves; from here on a Kick finds it.
	if reason := s.checkConnect(sess, conn, admitted); reason != "" {
		return reason
	}
	out := forward
	var hdr []byte
	if s.cfg.BackendProxyProtocol {
		if hdr, err = outboundHeader(sess, s.cfg.BackendProxyTLVs); err != nil {
			log.Error().Err(err).Msg("building PROXY header")
			s.refuse(sess, conn, v, mqttwire.ServerUnavailable)
			return closeBackend
		}
		out = append(hdr, forward...)
	}
	if s.cfg.BackendTLS != nil {
		return s.brokerTLS(ctx, sess, conn, v, bc, hdr, forward)
	}
	if _, err := bc.Write(out); err != nil {
		s.refuse(sess, conn, v, mqttwire.ServerUnavailable)
		return closeBackend
	}
	return ""
}

// dialNode dials the client's broker: Config.Backend, or with a pool the
// client's node, and on a failure its next node, until one answers or the
// dial timeout ends, so that a client sees no failure while a healthy
// node is left.
func (s *Server) dialNode(ctx context.Context, sess *Session, clientID []byte) (net.Conn, error) {
	sess.backend = s.cfg.Backend
	pool := s.cfg.Brokers
	var tried [2]uint64
	attempt := s.cfg.DialTimeout
	if pool != nil && pool.Len() > 1 {
		// Each node gets a share of the dial timeout, so that one that
		// drops SYNs leaves the next one time to answer.
		attempt = max(s.cfg.DialTimeout/time.Duration(min(pool.Len(), 3)), 500*time.Millisecond)
	}
	for {
		node := -1
		if pool != nil {
			if node, sess.backend = pool.PickBroker(clientID, tried); node < 0 {
				sess.backend = ""
				return nil, errNoBroker
			}
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		began := time.Now()
		bc, err := s.cfg.Dial(actx, "tcp", sess.backend)
		cancel()
		if o := s.cfg.Observer; o != nil {
			o.Dialed(sess.backend, err, time.Since(began))
		}
		if pool == nil {
			return bc, err
		}
		pool.Dialled(node, err)
		if err == nil {
			sess.node = node
			return bc, nil
		}
		s.cfg.Logger.Warn().Str("event", "broker_node_failed").Uint64("conn", sess.ID).Str("backend", sess.backend).Err(err).
			Msg("broker node did not answer: trying the client's next node")
		if ctx.Err() != nil || node >= 128 {
			return nil, err
		}
		tried[node>>6] |= 1 << uint(node&63)
	}
}
