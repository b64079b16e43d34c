// Package identity is who a client is once authentication admitted it,
// and the seam between authentication and the proxy: the types the authn
// package produces and the proxy, the acl and the limits packages consume.
package identity

import (
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Identity is an admitted client. It is built once at CONNECT and read-only
// afterwards.
type Identity struct {
	ClientID string
	Username string
	// CertCN and CertDN are the verified client certificate's subject
	// common name and distinguished name; empty without one.
	CertCN string
	CertDN string
	// Superuser skips topic ACLs.
	Superuser bool
	// Expires, when not zero, is when the client must be disconnected
	// (a token's exp, a webhook's expire_at).
	Expires time.Time
	// Rules are per-client ACL rules (from a JWT claim or the webhook);
	// they are checked before the ACL file's.
	Rules []Rule
	// Source names the authenticator that admitted the client.
	Source string
}

// Peer is what is known of a connecting client besides its CONNECT.
type Peer struct {
	Addr     netip.AddrPort
	Listener string            // "tls" or "tcp"
	Cert     *x509.Certificate // the client certificate when it was verified, or nil
	// Token is a bearer token the transport carried (a WebSocket
	// upgrade's Authorization header or configured cookie), for clients
	// that cannot put one in the CONNECT; "" when none.
	Token string
}

// Admission is authentication's answer for one CONNECT, as the
// authentication chain gives it and the proxy enforces it. Its zero
// value refuses: only Admit lets a client in.
type Admission struct {
	Admit bool
	// Reason is the v5 CONNACK code a refusal is sent with (mapped to a
	// 3.1.1 return code for older clients); NotAuthorized when unset.
	Reason mqttwire.ReasonCode
	// Identity is who the admitted client is; its Expires, when not
	// zero, is when the admission runs out (a token's exp): the client is
	// then disconnected (v5 DISCONNECT Not authorized).
	Identity *Identity
	// Connect, when not nil, is forwarded instead of the client's CONNECT
	// (the certificate identity replaced what the client sent).
	Connect *mqttwire.Connect
}

// Action is what a rule is about.
type Action uint8

// Actions.
const (
	Publish Action = 1 << iota
	Subscribe
	All = Publish | Subscribe
)

func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	case All:
		return "all"
	}
	return "none"
}

// Rule is one per-client ACL rule, as received: topics are filters that
// may hold placeholders such as ${clientid}; the acl package compiles them.
type Rule struct {
	Allow  bool
	Action Action
	Topics []string
	// QoS, when not empty, limits a publish rule to these QoS levels.
	QoS []byte
	// Retain, when not nil, limits a publish rule to retained (true) or
	// non-retained (false) messages.
	Retain *bool
}
