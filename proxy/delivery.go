package proxy

import (
	"github.com/mqttgate/mqttgate/mqttwire"
)

// judgeResumedSession turns the delivery check on when the broker's
// CONNACK reports Session Present: the proxy does not know what that
// session subscribed to, so every PUBLISH it delivers is judged against
// the client's own read rights, whatever Config.TopicCheckDelivery says.
// It reports false when the broker resumed a session the client asked
// to start clean [MQTT-3.2.2-1]: then nothing can be trusted.
func (s *Server) judgeResumedSession(sess *Session, present bool) bool {
	if !present || sess.topics.rights == nil {
		return true
	}
	if !sess.resumable {
		s.cfg.Logger.Error().Str("event", "broker_protocol_error").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).
			Msg("broker resumed a session the client asked to start clean")
		return false
	}
	if sess.topics.recv.Load() == nil {
		s.judgeDeliveries(sess)
		s.cfg.Logger.Debug().Str("event", "session_resumed").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).
			Msg("broker resumed a session: deliveries judged against the client's read rights")
	}
	return true
}

// brokerTopic is the topic of a PUBLISH from the broker, through the
// Topic Aliases it set; an alias it never set gives nil.
func (sess *Session) brokerTopic(pub *mqttwire.Publish) []byte {
	ts := &sess.topics
	if pub.TopicAlias == 0 {
		return pub.Topic
	}
	if len(pub.Topic) == 0 {
		return ts.brokerAliases[pub.TopicAlias]
	}
	if ts.brokerAliases == nil {
		ts.brokerAliases = map[uint16][]byte{}
	}
	ts.brokerAliases[pub.TopicAlias] = append(ts.brokerAliases[pub.TopicAlias][:0], pub.Topic...)
	return pub.Topic
}

// noteBrokerAlias records the alias a broker PUBLISH sets, before the
// delivery check is on.
func (sess *Session) noteBrokerAlias(p mqttwire.Packet) {
	if pub, err := mqttwire.ParsePublish(p, sess.Version); err == nil && pub.TopicAlias != 0 {
		sess.brokerTopic(&pub)
	}
}

type deliveryVerdict uint8

const (
	deliveryForward deliveryVerdict = iota
	deliveryDrop
	deliveryBrokerGone
)

// checkDelivery is the defence in depth behind SUBSCRIBE checks: a
// PUBLISH from the broker on a topic the client may not receive (say,
// through a subscription made before the rules changed) is dropped, and
// the proxy acknowledges it to the broker in the client's place (PUBACK,
// or PUBREC and later PUBCOMP).
func (s *Server) checkDelivery(sess *Session, recv TopicRights, p mqttwire.Packet) deliveryVerdict {
	ts := &sess.topics
	switch p.Type {
	case mqttwire.PUBLISH:
	case mqttwire.PUBREL:
		if len(ts.droppedQoS2) == 0 {
			return deliveryForward
		}
		a, _ := mqttwire.ParseAck(p, sess.Version)
		if _, ok := ts.droppedQoS2[a.PacketID]; !ok {
			return deliveryForward
		}
		delete(ts.droppedQoS2, a.PacketID)
		if sess.writeBroker(mqttwire.AppendPubAck(nil, mqttwire.PUBCOMP, sess.Version, a.PacketID, mqttwire.Success, nil)) != nil {
			return deliveryBrokerGone
		}
		return deliveryDrop
	default:
		return deliveryForward
	}
	pub, err := mqttwire.ParsePublish(p, sess.Version)
	if err != nil {
		// What cannot be read cannot be judged: the session ends rather
		// than pass it on unjudged.
		s.cfg.Logger.Error().Str("event", "broker_protocol_error").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).Err(err).
			Msg("the broker sent a PUBLISH the delivery check cannot read: session closed")
		return deliveryBrokerGone
	}
	topic := sess.brokerTopic(&pub)
	var d Decision
	if len(topic) == 0 { // an alias the broker never set: nothing to judge it by
		d = Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized, Why: "unknown alias"}
	} else {
		d = recv.Receive(topic)
	}
	refused, logged := denied(d)
	if logged {
		s.topicDenied(sess, "deliver", topic, d)
	}
	if !refused {
		return deliveryForward
	}
	var ack []byte
	switch pub.QoS {
	case 1:
		ack = mqttwire.AppendPubAck(nil, mqttwire.PUBACK, sess.Version, pub.PacketID, mqttwire.Success, nil)
	case 2:
		ack = mqttwire.AppendPubAck(nil, mqttwire.PUBREC, sess.Version, pub.PacketID, mqttwire.Success, nil)
		if ts.droppedQoS2 == nil {
			ts.droppedQoS2 = map[uint16]struct{}{}
		}
		ts.droppedQoS2[pub.PacketID] = struct{}{}
	}
	if ack != nil && sess.writeBroker(ack) != nil {
		return deliveryBrokerGone
	}
	return deliveryDrop
}
