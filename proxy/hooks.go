package proxy

import (
	"context"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Authenticator decides, at CONNECT and before anything reaches the
// broker, whether a client is admitted. The authn package implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, s *Session, c *mqttwire.Connect) Admission
}

// Admission is an Authenticator's answer. Its zero value refuses: only
// Admit: true lets a client in.
type Admission struct {
	Admit bool
	// Reason is the v5 CONNACK reason code a refusal is sent with (mapped
	// to a v3 return code for older clients); NotAuthorized when unset.
	Reason mqttwire.ReasonCode
	// Connect, when not nil, is forwarded instead of the client's CONNECT
	// (identity mapping). The proxy encodes it.
	Connect *mqttwire.Connect
	// Identity is kept on the Session for the Inspector.
	Identity any
	// Expires, when not zero, is when the admission runs out (a token's
	// expiry): the client is then disconnected, a v5 client with
	// DISCONNECT Not authorized.
	Expires time.Time
}

// Inspector sees every packet a client sends after CONNECT, already
// validated, and decides its fate. The acl and limits packages implement
// it. Inspect runs on the connection's hot path and must not allocate.
type Inspector interface {
	Inspect(s *Session, p *Inspected) Decision
}

// Inspected is one client packet with the decoded form of the types the
// proxy decodes (PUBLISH, SUBSCRIBE, UNSUBSCRIBE).
type Inspected struct {
	Packet    mqttwire.Packet
	Publish   mqttwire.Publish   // when Packet.Type is PUBLISH
	Subscribe mqttwire.Subscribe // when Packet.Type is SUBSCRIBE or UNSUBSCRIBE
}

// Verdict is what happens to an inspected packet.
type Verdict uint8

// Verdicts.
const (
	// Forward sends the packet to the broker unchanged.
	Forward Verdict = iota
	// Refuse keeps the packet from the broker and answers the client the
	// way the protocol expects: PUBACK or PUBREC with Decision.Reason (v5)
	// for a QoS 1 or 2 PUBLISH, nothing for QoS 0, a SUBACK or UNSUBACK
	// failing every filter. Other packet types cannot be refused on their
	// own: Refuse ends the connection as Disconnect does.
	Refuse
	// Disconnect ends the connection, with DISCONNECT Decision.Reason for v5.
	Disconnect
)

// Decision is an Inspector's answer.
type Decision struct {
	Verdict Verdict
	Reason  mqttwire.ReasonCode
}

// InspectorChain runs inspectors in order; the first that does not forward
// decides.
type InspectorChain []Inspector

// Inspect implements Inspector.
func (c InspectorChain) Inspect(s *Session, p *Inspected) Decision {
	for _, in := range c {
		if d := in.Inspect(s, p); d.Verdict != Forward {
			return d
		}
	}
	return Decision{}
}
