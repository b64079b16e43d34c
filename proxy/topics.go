package proxy

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/rs/zerolog"
)

// TopicRights is one session's topic authorization (the acl package
// provides it). It is asked from the session's client pump only, so it
// may keep unsynchronised per-session state such as a decision cache.
//
// Each answers in the decision vocabulary: Forward, Refuse or End with
// the code the client is told and Why (the rule, for the log); a denial
// in dry run is a Forward with DryRun set, logged and counted as denied.
type TopicRights interface {
	// Publish decides a PUBLISH or a will message.
	Publish(topic []byte, qos byte, retain bool) Decision
	// Subscribe decides one topic filter of a SUBSCRIBE at the maximum
	// QoS its subscription options request.
	Subscribe(filter []byte, qos byte) Decision
	// Receive decides whether a message the broker sends on topic may be
	// delivered (the delivery check).
	Receive(topic []byte) Decision
}

// denied reports whether d keeps a packet from going on, and whether it
// is a denial to log (dry run included).
func denied(d Decision) (refused, logged bool) {
	return d.Verdict != Forward, d.Verdict != Forward || d.Is(mqttwire.DryRun)
}

// topicState is what enforcing topic rights needs per session.
type topicState struct {
	rights TopicRights
	// recv, once the delivery check is on, holds a second TopicRights for
	// the broker pump; brokerAliases and droppedQoS2 are that pump's. The
	// check turns on at the start (Config.TopicCheckDelivery), at a
	// CONNACK with Session Present, or when a filter is granted in part;
	// it stays on.
	recv          atomic.Pointer[receiver]
	noteAliases   bool // the client let the broker send Topic Aliases: noted before the check is on too
	brokerAliases map[uint16][]byte
	droppedQoS2   map[uint16]struct{}
	// aliases are the client's v5 Topic Aliases; tainted ones were set
	// by a PUBLISH the broker never saw.
	aliases    map[uint16]*alias
	aliasBytes int // topic bytes held by aliases

	// pending SUBSCRIBEs forwarded with filters taken out: the SUBACK
	// codes to send, pendingFilter where the broker's code goes. Shared
	// with the broker pump.
	subMu    sync.Mutex
	pending  map[uint16][]byte
	pendingN atomic.Int32
}

// receiver is the broker pump's TopicRights.
type receiver struct{ rights TopicRights }

// judgeDeliveries turns the delivery check on, from either pump: every
// PUBLISH the broker sends from then on is judged against the client's
// read rights before it reaches the client.
func (s *Server) judgeDeliveries(sess *Session) {
	if sess.topics.recv.Load() == nil {
		sess.topics.recv.CompareAndSwap(nil, &receiver{s.cfg.Topics(sess)}) // its own: each pump's rights are its alone
	}
}

// maxAliasBytes bounds the topic bytes a client's Topic Aliases hold:
// the broker may allow 65,535 aliases, each of a topic up to the length
// limit.
const maxAliasBytes = 1 << 20

type alias struct {
	topic   []byte
	tainted bool
}

// pendingFilter marks a SUBACK position the broker's answer fills.
const pendingFilter = 0xff

// topicVerdict is what the client pump does with a packet after the
// topic check.
type topicVerdict uint8

const (
	topicForward topicVerdict = iota // write it on
	topicHandled                     // answered or rewritten here
	topicEnd                         // end the session
)

// checkTopics enforces the session's topic rights on one client packet.
// flush writes the given bytes to the broker and marks every packet read
// so far, this one included, as dealt with.
func (s *Server) checkTopics(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, flush func([]byte) bool) (topicVerdict, string) {
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		return s.checkPublish(sess, client, r, in, flush)
	case mqttwire.SUBSCRIBE:
		return s.checkSubscribe(sess, client, r, in, flush)
	}
	return topicForward, ""
}

func (s *Server) checkPublish(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, flush func([]byte) bool) (topicVerdict, string) {
	ts := &sess.topics
	pub := &in.Publish
	topic := pub.Topic
	tainted := false
	if pub.TopicAlias != 0 {
		// An alias above the Topic Alias Maximum the broker gave the
		// client (none before its CONNACK) is a protocol error
		// [MQTT-3.3.2-9]: the table never holds more than it allows.
		if uint32(pub.TopicAlias) > sess.topicAliasMax.Load() {
			return s.badAlias(sess, client, r, in, flush)
		}
		if ts.aliases == nil {
			ts.aliases = map[uint16]*alias{}
		}
		a := ts.aliases[pub.TopicAlias]
		switch {
		case len(topic) > 0:
			if a == nil {
				a = new(alias)
				ts.aliases[pub.TopicAlias] = a
			}
			if ts.aliasBytes += len(topic) - len(a.topic); ts.aliasBytes > maxAliasBytes {
				s.limitHit(sess, "topic_alias_bytes")
				if !flush(r.HeldBefore(in.Packet)) {
					return topicEnd, closeBroker
				}
				s.disconnect(sess, client, mqttwire.QuotaExceeded, closeLimit)
				return topicEnd, closeLimit
			}
			a.topic = append(a.topic[:0], topic...)
			a.tainted = false
		case a == nil:
			return s.badAlias(sess, client, r, in, flush) // [MQTT-3.3.4-7]
		default:
			topic, tainted = a.topic, a.tainted
		}
	}
	d := Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized, Why: "topic alias set by a denied PUBLISH"}
	if !tainted {
		d = ts.rights.Publish(topic, pub.QoS, pub.Retain)
	}
	refused, logged := denied(d)
	if logged {
		s.topicDenied(sess, "publish", topic, d)
	}
	if !refused {
		return topicForward, ""
	}
	if pub.TopicAlias != 0 && len(pub.Topic) > 0 {
		ts.aliases[pub.TopicAlias].tainted = true // the broker will not learn this alias
	}
	return s.enforce(sess, client, r, in, d, flush, byTopics)
}

// badAlias ends the session over an invalid Topic Alias (v5 DISCONNECT
// 0x94), once the packets read before it have gone on.
func (s *Server) badAlias(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, flush func([]byte) bool) (topicVerdict, string) {
	s.Stats.BadPacket.Add(1)
	if !flush(r.HeldBefore(in.Packet)) {
		return topicEnd, closeBroker
	}
	s.disconnect(sess, client, mqttwire.TopicAliasInvalid, closeProtocol)
	return topicEnd, closeProtocol
}

// checkWill refuses a CONNECT whose will the client may not publish.
func (s *Server) checkWill(sess *Session, c *mqttwire.Connect) bool {
	if !c.WillFlag || sess.topics.rights == nil {
		return true
	}
	d := sess.topics.rights.Publish(c.WillTopic, c.WillQoS, c.WillRetain)
	refused, logged := denied(d)
	if logged {
		s.topicDenied(sess, "will", c.WillTopic, d)
	}
	return !refused
}

// topicDenied counts and logs (at a bounded rate) one denial.
func (s *Server) topicDenied(sess *Session, action string, topic []byte, d Decision) {
	s.Stats.TopicDenied.Add(1)
	if d.Is(mqttwire.DryRun) {
		if m := s.cfg.Meter; m != nil {
			m.Decided(byTopics.String(), d) // forwarded: enforce never sees it
		}
	}
	if ev := s.cfg.Audit.Sampled("acl_deny"); ev != nil {
		ev = ev.Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).Str("client_id", sess.ClientID).Str("action", action).
			Bytes("topic", topic).Str("rule", d.Why).Bool("dry_run", d.Is(mqttwire.DryRun))
		if sess.Username != "" && !s.cfg.UsernameIsSecret {
			ev = ev.Str("username", sess.Username)
		}
		ev.Send()
	}
	ev := s.securityEvent(zerolog.WarnLevel, sess)
	if ev == nil {
		return // over the log budget: nothing to build (the address would be boxed for nothing)
	}
	ev = ev.Str("event", "acl_deny").Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).
		Str("client_id", sess.ClientID).Str("action", action).Bytes("topic", topic).Str("rule", d.Why)
	if sess.Username != "" && !s.cfg.UsernameIsSecret {
		ev = ev.Str("username", sess.Username)
	}
	if d.Is(mqttwire.DryRun) {
		ev = ev.Bool("dry_run", true)
	}
	ev.Msg("denied by ACL")
}
