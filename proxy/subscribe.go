package proxy

import (
	"net"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// checkSubscribe judges each filter. Denied filters are taken out of the
// SUBSCRIBE the broker sees and get a failure code in the SUBACK the
// client sees, in their original positions; if every filter is denied the
// proxy answers alone.
func (s *Server) checkSubscribe(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, flush func([]byte) bool) (topicVerdict, string) {
	ts := &sess.topics
	sub := &in.Subscribe
	var codes []byte // allocated at the first denial
	partial := false
	it := sub.Filters()
	for i := 0; ; i++ {
		f, ok := it.Next()
		if !ok {
			break
		}
		d := ts.rights.Subscribe(f.Topic, f.QoS())
		partial = partial || d.Verdict == Forward && d.Is(mqttwire.Partial)
		refused, logged := denied(d)
		if logged {
			s.topicDenied(sess, "subscribe", f.Topic, d)
		}
		if refused {
			if m := s.cfg.Meter; m != nil {
				m.Decided(byTopics.String(), d) // per filter: the SUBACK is built here, not by enforce
			}
			if codes == nil {
				codes = make([]byte, sub.Count)
				for j := range codes {
					codes[j] = pendingFilter
				}
			}
			codes[i] = byte(d.Code)
		}
	}
	if partial {
		// Granted though only some of its topics may be read: from now
		// on what the broker delivers (the retained messages it sends
		// for this SUBSCRIBE first) is judged, before the broker sees it.
		s.judgeDeliveries(sess)
	}
	if codes == nil {
		return topicForward, ""
	}
	if !flush(r.HeldBefore(in.Packet)) {
		return topicEnd, closeBroker
	}
	var keep []mqttwire.Filter
	it = sub.Filters()
	for i := 0; ; i++ {
		f, ok := it.Next()
		if !ok {
			break
		}
		if codes[i] == pendingFilter {
			keep = append(keep, f)
		}
	}
	if len(keep) == 0 {
		if reason := s.reply(sess, client, mqttwire.AppendSuback(nil, sess.Version, sub.PacketID, codes, nil)); reason != "" {
			return topicEnd, reason
		}
		return topicHandled, ""
	}
	if lim := sess.limiter; lim != nil {
		for _, f := range keep {
			lim.Subscribed(f.Topic)
		}
	}
	ts.subMu.Lock()
	if ts.pending == nil {
		ts.pending = map[uint16][]byte{}
	}
	ts.pending[sub.PacketID] = codes
	ts.pendingN.Store(int32(len(ts.pending)))
	ts.subMu.Unlock()
	if sess.writeBroker(mqttwire.AppendSubscribe(nil, sess.Version, sub.PacketID, sub.Properties, keep)) != nil {
		return topicEnd, closeBroker
	}
	return topicHandled, ""
}

// mergeSuback returns the SUBACK to send the client in place of the
// broker's p, when p answers a SUBSCRIBE that was forwarded with filters
// taken out; nil otherwise.
func (sess *Session) mergeSuback(p mqttwire.Packet) []byte {
	ts := &sess.topics
	if p.Type != mqttwire.SUBACK || ts.pendingN.Load() == 0 {
		return nil
	}
	a, err := mqttwire.ParseAck(p, sess.Version)
	if err != nil {
		return nil
	}
	ts.subMu.Lock()
	codes := ts.pending[a.PacketID]
	delete(ts.pending, a.PacketID)
	ts.pendingN.Store(int32(len(ts.pending)))
	ts.subMu.Unlock()
	if codes == nil {
		return nil
	}
	j := 0
	for i, c := range codes {
		if c != pendingFilter {
			continue
		}
		codes[i] = byte(mqttwire.UnspecifiedError) // the broker answered too few
		if j < len(a.Codes) {
			codes[i] = a.Codes[j]
		}
		j++
	}
	return mqttwire.AppendSuback(nil, sess.Version, a.PacketID, codes, a.Properties)
}
