package proxy

import (
	"context"
	"net/netip"
	"time"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Authenticator decides, at CONNECT and before anything reaches the
// broker, whether a client is admitted (*authn.Chain is one).
type Authenticator interface {
	Authenticate(ctx context.Context, c *mqttwire.Connect, p identity.Peer) Admission
}

// Admission is an Authenticator's answer (identity's, the seam both
// sides speak). Its zero value refuses: only Admit lets a client in.
type Admission = identity.Admission

// Inspector sees every packet a client sends after CONNECT, already
// validated and past the limits and the topic rights, and decides its
// fate: the extension point for policies beyond those. Inspect runs on
// the connection's hot path and must not allocate.
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

// Verdict and Decision are the decision vocabulary every stage speaks
// (mqttwire's, so the deciders can return it without importing proxy).
type (
	Verdict  = mqttwire.Verdict
	Decision = mqttwire.Decision
)

// Verdicts.
const (
	Forward = mqttwire.Forward
	Refuse  = mqttwire.Refuse
	End     = mqttwire.End
)

// Limiter is one session's limits (limits.Session provides it). Its
// methods are called from the client pump, except Acked and Started
// (the broker pump) and Close.
type Limiter interface {
	// Publish decides a PUBLISH before the topic ACL (its topic as sent,
	// before an alias is stored; room in flight), recording nothing.
	Publish(topic []byte, qos byte, id uint16) Decision
	// Subscribe decides a SUBSCRIBE before the topic ACL (filter sizes,
	// filters per packet, the subscriptions the session would hold),
	// recording nothing.
	Subscribe(sub *mqttwire.Subscribe) Decision
	// Sent records a QoS 1 or 2 PUBLISH every stage forwards, in flight
	// from Commit on.
	Sent(qos byte, id uint16)
	// Subscribed records a filter forwarded to the broker.
	Subscribed(filter []byte)
	// Unsubscribe forgets the filters of an UNSUBSCRIBE forwarded to the
	// broker.
	Unsubscribe(sub *mqttwire.Subscribe)
	// Commit is called before forwarded packets are written to the
	// broker (so before it can acknowledge them).
	Commit()
	// KeepAlive is the keepalive the session gets for the one its
	// CONNECT asks, and whether the client must be told (v5 Server Keep
	// Alive).
	KeepAlive(asked uint16) (d time.Duration, capped bool)
	// OverRate decides a PUBLISH whose rate tokens are not there yet:
	// Forward holds the reads until they are, End ends the session.
	OverRate() Decision
	// Take spends the rate tokens of one forwarded PUBLISH of n bytes
	// before it is written on, or returns how long to wait for them
	// (nothing taken). now may be the time of the read; the proxy asks
	// again with the current time before it waits.
	Take(n int, now time.Time) time.Duration
	// Acked is called for each broker acknowledgement that may end a
	// client PUBLISH's flow, with its packet id and type: PUBACK,
	// PUBCOMP, or a PUBREC with a failure code.
	Acked(id uint16, t mqttwire.Type)
	// Released is called for each client PUBREL forwarded to the broker.
	Released(id uint16)
	// Started is called when the broker's CONNACK accepts the client,
	// with its Session Present flag and the v5 Assigned Client
	// Identifier ("" when none).
	Started(sessionPresent bool, assignedID string)
	// Expiry is called with a v5 Session Expiry Interval set after the
	// CONNECT: by the client's DISCONNECT (once forwarded) or the
	// broker's CONNACK.
	Expiry(seconds uint32)
	// Close is called once when the session ends.
	Close(now time.Time)
	// InFlight is how many of the client's QoS 1 and 2 PUBLISHes the
	// broker has not finished; Subscriptions how many filters the
	// session holds (-1: not counted). Both are asked from other
	// goroutines (the operations plane, a drain).
	InFlight() int
	Subscriptions() int
}

// ConnectChecker decides at CONNECT whether a client may go on, and
// hears when an admitted session ends (the limits package provides it).
type ConnectChecker interface {
	// Check is asked twice: before authentication (id nil: a banned
	// client costs no hashing) and after it, with the identity and the
	// CONNECT as forwarded. A code that is an error refuses the client
	// with that CONNACK; kind names why.
	Check(id *identity.Identity, addr netip.Addr, c *mqttwire.Connect) (code mqttwire.ReasonCode, kind string)
	// Closed is called once when an admitted session ends.
	Closed(clientID string, id *identity.Identity, addr netip.Addr)
}

// Meter counts what the stages decide: every decision that refuses a
// packet or ends a session passes through enforce and is counted there;
// so are each filter the ACL takes out of a SUBSCRIBE and each dry-run
// denial, where they are decided. The operations plane turns it
// into metrics; nil (the default) counts nothing and costs nothing.
type Meter interface {
	// Decided is called once per such decision; stage is "limits",
	// "topics" or "inspector", and d.Why names the rule or limit.
	Decided(stage string, d Decision)
}

// BrokerPicker chooses the broker node a client goes to
// (brokerpool.Pool). With none, every client goes to Config.Backend.
type BrokerPicker interface {
	// PickBroker returns a node and its address for a client id, skipping
	// the nodes in tried (bit i of word i/64: node i); node -1 when none
	// is left.
	PickBroker(clientID []byte, tried [2]uint64) (node int, addr string)
	// Len is how many nodes there are (a failover's share of the dial
	// timeout is the timeout over this).
	Len() int
	// Dialled is told how a dial to a node went (a failure: passive
	// health; a success: one more client on it).
	Dialled(node int, err error)
	// Done is told once when a session a node served ends.
	Done(node int)
}

// AccessPolicy says who may connect from where (limits.AccessRules).
type AccessPolicy interface {
	Allowed(a netip.Addr) bool
}

// ConnGate admits connections before any TLS work (caps, rates, IP bans).
type ConnGate interface {
	// Open admits a connection from a on a listener ("tls" or "tcp");
	// release is called once when an admitted connection ends. refused
	// names why not.
	Open(a netip.Addr, listener string) (release func(), refused string)
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
