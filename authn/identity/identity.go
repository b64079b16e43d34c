// Package identity is who a client is once authentication admitted it:
// the one type the authn package produces and the acl package consumes.
package identity

import "time"

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
