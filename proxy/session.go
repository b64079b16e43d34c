package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Session is one client connection. Fields are set before CONNECT is
// forwarded and are read-only afterwards; hooks may read them.
type Session struct {
	ID         uint64
	ClientAddr netip.AddrPort       // the real client: from the PROXY header when one was accepted
	TLS        *tls.ConnectionState // nil on a plaintext listener
	ClientID   string
	Username   string
	Identity   *identity.Identity // from the Authenticator; nil before authentication
	Listener   string             // "tcp", "tls", "ws" or "wss"

	srv       *Server
	start     time.Time
	localAddr net.Addr  // where the client connected: the PROXY header's destination
	expires   time.Time // when the admission runs out; zero: never
	token     string    // a bearer token the WebSocket upgrade carried
	node      int       // the broker node serving it (Config.Brokers); -1: none
	backend   string    // that node's address

	mu     sync.Mutex
	client net.Conn // the raw accepted connection
	cw     net.Conn // what client packets are written to (the TLS conn), once known
	broker net.Conn
	reader *mqttwire.Reader // client packets, from CONNECT on
	reason string

	Version   mqttwire.Version // the client's, from its CONNECT; set before connected
	connected bool             // CONNECT forwarded; under mu
	closed    bool             // under mu
	// gateAfterUpgrade: a trusted balancer's WebSocket connection, judged
	// by the access rules and the connection gate as the client its
	// headers name, once the upgrade has read them.
	gateAfterUpgrade bool
	// proxyHeader: a trusted balancer's PROXY header named the client.
	proxyHeader bool

	topics topicState
	// refusedQoS2 are packet ids of QoS 2 PUBLISHes the proxy refused
	// itself (whatever refused them); their PUBREL is answered here too.
	// The client pump's own.
	refusedQoS2     map[uint16]struct{}
	limiter         Limiter
	keepAlive       time.Duration // effective keepalive; 0: none
	keepAliveCapped bool
	cleanStart      bool // the CONNECT as forwarded asked for a clean start
	// resumable: the client did not ask for a clean start, so the broker
	// may resume a session it kept (see judgeResumedSession).
	resumable bool
	// brokerShared: the broker pump may write to the broker too (delivery
	// check acknowledgements), so writes there are serialised. Set before
	// the pumps start.
	brokerShared bool
	done         chan struct{} // closed with the session
	release      func()        // from the ConnGate, when it admitted the connection

	// topicAliasMax is the Topic Alias Maximum of the broker's v5
	// CONNACK: the aliases the client may set.
	topicAliasMax atomic.Uint32

	bmu sync.Mutex // serialises writes to the broker, with the delivery check on
	wmu sync.Mutex // serialises writes to the client
	// final, under wmu: the proxy's last words to the client were
	// written (writeClientLast); nothing more is.
	final bool
	// connacked, under wmu: made by a wait for the CONNACK (awaitConnack),
	// closed when it is written; nil on every session nobody waits on.
	connacked chan struct{}
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	// disconnected is set when the client sent DISCONNECT: a clean end.
	disconnected atomic.Bool
	// answered is set once the broker's CONNACK has been written to the
	// client: only then may the proxy send it a DISCONNECT [MQTT-3.14.0-1].
	answered atomic.Bool
}

// Close reasons logged with the close event.
const (
	closeClient      = "client closed"
	closeBroker      = "broker closed"
	closeShutdown    = "server shutdown"
	closeProtocol    = "protocol error"
	closeNoConnect   = "no CONNECT"
	closeAccess      = "access denied"
	closeProxyHdr    = "PROXY header refused"
	closeHandshake   = "TLS handshake failed"
	closeUpgrade     = "WebSocket upgrade refused"
	closeNodeDown    = "broker node down"
	closeAuth        = "authentication refused"
	closeExpired     = "credentials expired"
	closeLimit       = "limit exceeded"
	closeKeepAlive   = "keepalive timeout"
	closeConnLimit   = "connection limit"
	closeBanned      = "banned"
	closeTopicDenied = "denied by ACL"
	closeBackend     = "broker unavailable"
	closeInspector   = "refused by policy"
	closeWriteError  = "write error"
	closeSlowReader  = "client not reading"
)

// ClientCert returns the client's certificate when it was verified against
// the client CA bundle, and nil otherwise.
func (s *Session) ClientCert() *x509.Certificate {
	if s.TLS == nil || len(s.TLS.VerifiedChains) == 0 {
		return nil
	}
	return s.TLS.PeerCertificates[0]
}

// closeAll ends both sides once, remembering the first reason.
func (s *Session) closeAll(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.reason == "" { // else name gave it before the pumps were interrupted
		s.reason = reason
	}
	if s.done != nil {
		close(s.done)
	}
	if wc, ok := s.cw.(interface{ SendClose() }); ok {
		wc.SendClose() // a WebSocket client is told the connection ends (1000), if its writer is free
	}
	s.client.Close()
	if s.broker != nil {
		s.broker.Close()
	}
}

// name gives the session the reason it is about to end for, unless it
// has one: the proxy's own ends name theirs before they interrupt the
// pumps (writeClientLast), and closeAll keeps it.
func (s *Session) name(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason == "" {
		s.reason = reason
	}
}

// ending reports whether the session was closed or is being ended by
// the proxy (end, disconnect): then a write it cut short is not the
// client's doing.
func (s *Session) ending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason != ""
}

func (s *Session) closeReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// setBroker records the broker connection; it fails when the session was
// closed meanwhile (shutdown).
func (s *Session) setBroker(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.broker, s.connected = c, true
	return true
}

func (s *Session) setClientWriter(c net.Conn) {
	s.mu.Lock()
	s.cw = c
	s.mu.Unlock()
}

// writeBroker writes whole packets to the broker. Only the client pump
// writes there, unless the delivery check may also acknowledge from the
// broker pump (brokerShared): then writes are serialised.
func (s *Session) writeBroker(b []byte) error {
	if s.brokerShared {
		s.bmu.Lock()
		defer s.bmu.Unlock()
	}
	n, err := s.broker.Write(b)
	s.bytesIn.Add(int64(n))
	return err
}

// isConnected reports whether the client's CONNECT went to the broker.
func (s *Session) isConnected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// drain ends the session for a shutdown: a v5 client is told where to go
// (DISCONNECT 0x9C with the Server Reference) or that the server is going
// (0x8B); 3.1 and 3.1.1 have no way to say it, so the connection is
// closed. A QoS 1 or 2 message of the client's still in flight is given
// up to inFlightWait to finish first.
func (s *Session) drain(serverReference string, inFlightWait time.Duration) {
	code := mqttwire.ServerShuttingDown
	if serverReference != "" {
		code = mqttwire.UseAnotherServer
	}
	s.end(code, serverReference, closeShutdown, inFlightWait)
}

// inFlightPoll is how often a draining session looks whether its
// messages in flight have finished.
const inFlightPoll = 10 * time.Millisecond

// end ends the session from outside its pumps (a drain, a kick): a v5
// client that has its CONNACK is told code (and serverReference) in a
// DISCONNECT, any other is closed. It returns at once: the wait for
// messages in flight (up to wait) and the write (a second at most, so a
// blocked client holds up nobody) run on a goroutine the server waits
// for.
func (s *Session) end(code mqttwire.ReasonCode, serverReference, reason string, wait time.Duration) {
	s.mu.Lock()
	cw := s.cw
	s.mu.Unlock()
	s.srv.wg.Add(1)
	go func() {
		defer s.srv.wg.Done()
		if lim := s.limiter; lim != nil && wait > 0 && lim.InFlight() > 0 {
			t := time.NewTicker(inFlightPoll)
			deadline := time.Now().Add(wait)
		waiting:
			for lim.InFlight() > 0 && time.Now().Before(deadline) {
				select {
				case <-t.C:
				case <-s.done:
					break waiting
				}
			}
			t.Stop()
		}
		s.name(reason)                             // this end's, whatever the pumps it interrupts say
		if s.Version == mqttwire.V5 && cw != nil { // Version is set before connected, under mu
			s.writeClientLast(cw, mqttwire.AppendDisconnect(nil, mqttwire.V5, code, serverReference), true)
		}
		s.closeAll(reason) // a write waiting for the client, if any, fails with the close
	}()
}
