package proxy

import (
	"crypto/tls"
	"sort"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// The registry: what the operations plane may see of the connections and
// do to them (list, kick, drain), without reaching into a session.

// ConnInfo is what the registry shows of one MQTT session.
type ConnInfo struct {
	ID       uint64 `json:"id"`
	ClientID string `json:"client_id"`
	// Username is empty when user names are kept out of logs (tokens).
	Username string `json:"username,omitempty"`
	// Authenticator and CertCN say who admitted the client and as what.
	Authenticator string    `json:"authenticator,omitempty"`
	CertCN        string    `json:"cert_cn,omitempty"`
	Address       string    `json:"address"`
	Listener      string    `json:"listener"`
	Protocol      string    `json:"protocol"`
	TLSVersion    string    `json:"tls_version,omitempty"`
	Cipher        string    `json:"cipher,omitempty"`
	SNI           string    `json:"sni,omitempty"`
	BytesIn       int64     `json:"bytes_in"`
	BytesOut      int64     `json:"bytes_out"`
	Backend       string    `json:"backend"`       // the broker node serving it
	Subscriptions int       `json:"subscriptions"` // -1: not counted (MQTTGATE_MAX_SUBSCRIPTIONS 0)
	InFlight      int       `json:"in_flight"`     // the client's QoS 1/2 messages the broker has not finished
	Since         time.Time `json:"since"`
}

// Conns lists the sessions past CONNECT, oldest first.
func (s *Server) Conns() []ConnInfo {
	sessions := s.connected()
	out := make([]ConnInfo, 0, len(sessions))
	for _, sess := range sessions {
		out = append(out, sess.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Conn is one session past CONNECT, by its connection id.
func (s *Server) Conn(id uint64) (ConnInfo, bool) {
	for _, sess := range s.connected() {
		if sess.ID == id {
			return sess.info(), true
		}
	}
	return ConnInfo{}, false
}

// Kick ends every session past CONNECT that match selects, for an
// administrative reason (a kick, a ban): a v5 client is told DISCONNECT
// 0x98 Administrative action, a 3.1/3.1.1 client is closed. It returns
// how many were ended. match sees the session's fixed fields only
// (ClientID, Username, Identity, ClientAddr, Listener).
func (s *Server) Kick(match func(*Session) bool, reason string) int {
	n := 0
	for _, sess := range s.connected() {
		if match(sess) {
			sess.end(mqttwire.AdministrativeAction, "", reason, 0)
			n++
		}
	}
	return n
}

// connected returns the sessions past CONNECT.
func (s *Server) connected() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		if sess.isConnected() {
			out = append(out, sess)
		}
	}
	return out
}

func (s *Session) info() ConnInfo {
	ci := ConnInfo{ID: s.ID, ClientID: s.ClientID, Address: s.ClientAddr.String(), Listener: s.Listener,
		Protocol: s.Version.String(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), Subscriptions: -1, Since: s.start.UTC(),
		Backend: s.backend}
	if !s.srv.cfg.UsernameIsSecret {
		ci.Username = s.Username
	}
	if id := s.Identity; id != nil {
		ci.Authenticator, ci.CertCN = id.Source, id.CertCN
	}
	if st := s.TLS; st != nil {
		ci.TLSVersion, ci.Cipher, ci.SNI = tlsVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.ServerName
	}
	if s.limiter != nil {
		ci.Subscriptions, ci.InFlight = s.limiter.Subscriptions(), s.limiter.InFlight()
	}
	return ci
}

// OpenCount is how many sessions past CONNECT one listener holds in one
// protocol version.
type OpenCount struct {
	Listener string
	Protocol mqttwire.Version
	N        int
}

// OpenCounts counts the sessions past CONNECT by listener and protocol
// version (for metrics: no per-session data is read).
func (s *Server) OpenCounts() []OpenCount {
	n := map[OpenCount]int{}
	for _, sess := range s.connected() {
		n[OpenCount{Listener: sess.Listener, Protocol: sess.Version}]++
	}
	out := make([]OpenCount, 0, len(n))
	for k, v := range n {
		k.N = v
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Listener < out[j].Listener || out[i].Listener == out[j].Listener && out[i].Protocol < out[j].Protocol
	})
	return out
}

// EndNode ends the sessions broker node serves (Config.Brokers: it went
// down or is drained), one by one at an even rate over spread so that
// they reconnect to the other nodes gradually rather than in one burst:
// a v5 client is told DISCONNECT 0x9C with the drain Server Reference when
// one is set, 0x8B otherwise; a 3.1/3.1.1 client is closed. It returns how
// many it ends; the ends go on in the background, each only while still
// reports true (the node is still down or draining).
func (s *Server) EndNode(node int, spread time.Duration, still func() bool) int {
	var on []*Session
	for _, sess := range s.connected() {
		if sess.node == node {
			on = append(on, sess)
		}
	}
	if len(on) == 0 {
		return 0
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return 0 // the drain ends them
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		code := mqttwire.ServerShuttingDown
		if s.cfg.DrainServerReference != "" {
			code = mqttwire.UseAnotherServer
		}
		s.spread(on, spread, s.done, func(sess *Session) bool {
			if !still() {
				return false // the node is back: its clients stay
			}
			sess.end(code, s.cfg.DrainServerReference, closeNodeDown, 0)
			return true
		})
	}()
	return len(on)
}
