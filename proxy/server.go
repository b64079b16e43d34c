package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Stats counts what the server has done; read with Load.
type Stats struct {
	Accepted, Active, AccessDenied, ProxyHeaderRefused, HandshakeFailed,
	NoConnect, BadPacket, AuthRefused, Expired, BackendDown, Refused, TopicDenied, LimitHit, Throttled, ConnRefused, Closed,
	UpgradeRefused atomic.Int64
}

// Server runs listeners and connections.
type Server struct {
	cfg    Config
	Stats  Stats
	secLog *logbudget.Budget
	limits limitCounts
	bufs   *mqttwire.BufferPool // read buffers, held only while bytes are in hand

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*Session]struct{}
	closing   bool
	done      chan struct{} // closed when shutdown begins
	wg        sync.WaitGroup
	nextID    atomic.Uint64
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == "" {
		return nil, errors.New("no backend address")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.ClientWriteTimeout <= 0 {
		cfg.ClientWriteTimeout = DefaultClientWriteTimeout
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = mqttwire.DefaultMaxPacketSize
	}
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	if cfg.SecurityLog == nil {
		cfg.SecurityLog = logbudget.New()
	}
	return &Server{
		cfg:       cfg,
		secLog:    cfg.SecurityLog,
		bufs:      mqttwire.NewBufferPool(initialReadBuffer),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*Session]struct{}{},
		done:      make(chan struct{}),
	}, nil
}

// drainInFlightWait is how long a draining session's QoS 1 and 2
// messages in flight are given to finish before it is disconnected.
const drainInFlightWait = 500 * time.Millisecond

// Upgrader turns a connection, past its TLS handshake, into the stream
// MQTT packets travel in (wstransport.Upgrader: a WebSocket). peer is the
// TCP peer, whose forwarding headers it may believe; admit judges a
// forwarded client address before the upgrade is granted. It returns the
// stream, the client's address when a trusted peer forwarded one (zero
// otherwise) and a bearer token the request carried ("" when none). On
// an error it has answered the client itself (an HTTP error). Forwards
// reports whether peer is an HTTP balancer whose forwarding headers name
// the client: its connections are judged as that client once the
// upgrade has read them.
type Upgrader interface {
	Upgrade(conn net.Conn, peer netip.AddrPort, admit func(netip.AddrPort) bool) (stream net.Conn, client netip.AddrPort, token string, err error)
	Forwards(peer netip.Addr) bool
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts connections on ln until Shutdown. With tlsConfig nil the
// listener is plaintext MQTT.
func (s *Server) Serve(ln net.Listener, tlsConfig *tls.Config) error {
	return s.serve(ln, tlsConfig, nil)
}

// ServeWebSocket is Serve for MQTT over WebSocket: each connection is
// upgraded by up after TLS (none with tlsConfig nil), then runs the same
// pipeline.
func (s *Server) ServeWebSocket(ln net.Listener, tlsConfig *tls.Config, up Upgrader) error {
	return s.serve(ln, tlsConfig, up)
}

func (s *Server) serve(ln net.Listener, tlsConfig *tls.Config, up Upgrader) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors and the like: back off, 5 ms to 1 s.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-s.done:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.Stats.Accepted.Add(1)
		sess := s.track(direct(c, s.cfg.ClientWriteTimeout))
		if sess == nil {
			c.Close()
			return ErrServerClosed
		}
		sess.Listener = listenerName(tlsConfig != nil, up != nil)
		go s.handle(sess, tlsConfig, up)
	}
}

// listenerName is what logs, metrics and the connection gate call a
// listener: tcp, tls, ws or wss.
func listenerName(tls, ws bool) string {
	switch {
	case ws && tls:
		return "wss"
	case ws:
		return "ws"
	case tls:
		return "tls"
	}
	return "tcp"
}

// track registers a new connection, or returns nil once shutdown began.
func (s *Server) track(c net.Conn) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	sess := &Session{ID: s.nextID.Add(1), srv: s, client: c, start: time.Now(), done: make(chan struct{}), node: -1}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.Stats.Active.Add(1)
	return sess
}

func (s *Server) untrack(sess *Session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.Stats.Active.Add(-1)
}

// spread calls end for each session in turn at an even rate over d (the
// first at once, the last before d is up), so that the clients
// reconnect gradually rather than in one burst; it stops when stop is
// closed or end returns false.
func (s *Server) spread(sessions []*Session, d time.Duration, stop <-chan struct{}, end func(*Session) bool) {
	step := d / time.Duration(len(sessions)+1)
	t := time.NewTimer(0)
	defer t.Stop()
	start := time.Now()
	for i, sess := range sessions {
		t.Reset(time.Until(start.Add(time.Duration(i) * step)))
		select {
		case <-t.C:
		case <-stop:
			return
		}
		if !end(sess) {
			return
		}
	}
}

// Shutdown stops accepting and drains: connections not yet through
// CONNECT are closed at once; the others are ended one by one, spread
// evenly over the drain timeout (v5: DISCONNECT 0x9C with the configured
// Server Reference, or 0x8B; 3.1/3.1.1: closed), so that a fleet does not
// reconnect in one burst; what is left after the timeout (or when ctx
// ends) is closed. It returns once every connection goroutine has ended.
// Calls after the first wait too.
func (s *Server) Shutdown(ctx context.Context) error {
	var connected []*Session
	s.mu.Lock()
	first := !s.closing
	if first {
		s.closing = true
		close(s.done)
		for ln := range s.listeners {
			ln.Close()
		}
		for sess := range s.sessions {
			if sess.isConnected() {
				connected = append(connected, sess)
			} else {
				sess.closeAll(closeShutdown) // not yet an MQTT session: nothing to tell it
			}
		}
		if len(connected) > 0 {
			s.wg.Add(1) // the spreader's, under the lock: never an Add at zero while another Shutdown waits
		}
	}
	s.mu.Unlock()

	if first && len(connected) > 0 {
		// The disconnects are spread over the drain timeout at an even
		// rate, so that a fleet does not reconnect (to the next node) in
		// one burst.
		go func() {
			defer s.wg.Done()
			s.spread(connected, s.cfg.DrainTimeout, ctx.Done(), func(sess *Session) bool {
				sess.drain(s.cfg.DrainServerReference, drainInFlightWait)
				return true
			})
		}()
	}
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	timer := time.NewTimer(s.cfg.DrainTimeout + drainInFlightWait + time.Second) // the last disconnect's in-flight wait and write
	defer timer.Stop()
	var err error
	select {
	case <-finished:
		return nil
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	for sess := range s.sessions {
		sess.closeAll(closeShutdown)
	}
	s.mu.Unlock()
	<-finished
	return err
}
