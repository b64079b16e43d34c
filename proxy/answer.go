package proxy

import (
	"net"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// source is the stage a decision came from, for counting and the close
// reason.
type source uint8

const (
	byLimits source = iota
	byTopics
	byInspector
)

var sourceNames = [...]string{byLimits: "limits", byTopics: "topics", byInspector: "inspector"}

func (f source) String() string { return sourceNames[f] }

// enforce carries out a stage's decision on a client packet, the same way
// whatever the stage: Forward goes on; Refuse sends the packets read
// before it, then the answer the client's protocol expects (answer, with
// the QoS 2 bookkeeping); End sends them, then DISCONNECT with the code
// (v5), and ends the session. A packet that cannot be refused alone ends
// the session too.
func (s *Server) enforce(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, d Decision, flush func([]byte) bool, from source) (topicVerdict, string) {
	if d.Verdict == Forward {
		return topicForward, ""
	}
	if m := s.cfg.Meter; m != nil {
		m.Decided(from.String(), d)
	}
	closeReason := closeInspector
	switch from {
	case byLimits:
		s.limitHit(sess, d.Why)
		closeReason = closeLimit
	case byTopics:
		closeReason = closeTopicDenied // counted and logged when decided
	}
	if !flush(r.HeldBefore(in.Packet)) {
		return topicEnd, closeBroker
	}
	if d.Verdict == Refuse {
		s.Stats.Refused.Add(1)
		if v, reason := s.answer(sess, client, in, d.Code); v != topicForward {
			return v, reason
		}
	}
	s.disconnect(sess, client, d.Code, closeReason)
	return topicEnd, closeReason
}

// maxRefusedQoS2 bounds the QoS 2 PUBLISHes a client may leave refused
// and unreleased: a client that never sends their PUBREL could otherwise
// make the proxy hold 65,535 packet ids.
const maxRefusedQoS2 = 1024

// answer is the proxy's answer to a refused packet (see refusal), for
// every source of the refusal alike: a QoS 2 PUBLISH refused with PUBREC
// is remembered, so that its PUBREL is answered here too (releaseRefused)
// and never reaches a broker that did not see the PUBLISH. topicForward:
// the packet cannot be refused alone and the session must end.
func (s *Server) answer(sess *Session, client net.Conn, in *Inspected, code mqttwire.ReasonCode) (topicVerdict, string) {
	reply, ok := refusal(sess.Version, in, code)
	if !ok {
		return topicForward, ""
	}
	// A v5 PUBREC with a failure code ends the flow; a 3.1.1 PUBREC
	// cannot say, so its client sends PUBREL.
	if in.Packet.Type == mqttwire.PUBLISH && in.Publish.QoS == 2 && sess.Version != mqttwire.V5 {
		if sess.refusedQoS2 == nil {
			sess.refusedQoS2 = map[uint16]struct{}{}
		}
		if _, held := sess.refusedQoS2[in.Publish.PacketID]; !held && len(sess.refusedQoS2) >= maxRefusedQoS2 {
			s.limitHit(sess, "refused_unreleased")
			s.disconnect(sess, client, mqttwire.ReceiveMaximumExceeded, closeLimit)
			return topicEnd, closeLimit
		}
		sess.refusedQoS2[in.Publish.PacketID] = struct{}{}
	}
	if reply != nil {
		if reason := s.reply(sess, client, reply); reason != "" {
			return topicEnd, reason
		}
	}
	return topicHandled, ""
}

// reply writes the proxy's own answer to a client's packet (a refusal's
// PUBACK, PUBREC or SUBACK, a PUBCOMP). The client must have its CONNACK
// before any other packet [MQTT-3.2.0-1]: a packet that came pipelined
// with the CONNECT waits for it (awaitConnack), and when no CONNACK
// admitting the client comes, nothing is answered and the session ends.
func (s *Server) reply(sess *Session, client net.Conn, b []byte) string {
	if !sess.awaitConnack(s.cfg.ConnectTimeout) { // as long as a CONNECT may take
		return closeBackend
	}
	if err := sess.writeClient(client, b); err != nil {
		return s.clientWriteEnd(sess, err)
	}
	return ""
}

// releaseRefused answers with PUBCOMP the PUBREL of a QoS 2 PUBLISH the
// proxy refused; other PUBRELs go on.
func (s *Server) releaseRefused(sess *Session, client net.Conn, r *mqttwire.Reader, p mqttwire.Packet, flush func([]byte) bool) (topicVerdict, string) {
	a, _ := mqttwire.ParseAck(p, sess.Version)
	if _, ok := sess.refusedQoS2[a.PacketID]; !ok {
		return topicForward, ""
	}
	delete(sess.refusedQoS2, a.PacketID)
	if !flush(r.HeldBefore(p)) {
		return topicEnd, closeBroker
	}
	if reason := s.reply(sess, client, mqttwire.AppendPubAck(nil, mqttwire.PUBCOMP, sess.Version, a.PacketID, mqttwire.Success, nil)); reason != "" {
		return topicEnd, reason
	}
	return topicHandled, ""
}

// refusal is the proxy's own answer to a refused packet, so the client is
// not left waiting: PUBACK/PUBREC for QoS 1/2 PUBLISH (nothing for QoS 0),
// a SUBACK or UNSUBACK failing every filter. ok is false for packet types
// that cannot be refused on their own; the connection is then ended.
func refusal(v mqttwire.Version, in *Inspected, code mqttwire.ReasonCode) (reply []byte, ok bool) {
	if !code.IsError() {
		code = mqttwire.NotAuthorized
	}
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		switch in.Publish.QoS {
		case 1:
			return mqttwire.AppendPubAck(nil, mqttwire.PUBACK, v, in.Publish.PacketID, code, nil), true
		case 2:
			return mqttwire.AppendPubAck(nil, mqttwire.PUBREC, v, in.Publish.PacketID, code, nil), true
		}
		return nil, true
	case mqttwire.SUBSCRIBE, mqttwire.UNSUBSCRIBE:
		codes := make([]byte, in.Subscribe.Count)
		for i := range codes {
			codes[i] = byte(code)
		}
		if in.Subscribe.Unsubscribe {
			return mqttwire.AppendUnsuback(nil, v, in.Subscribe.PacketID, codes, nil), true
		}
		return mqttwire.AppendSuback(nil, v, in.Subscribe.PacketID, codes, nil), true
	}
	return nil, false
}
