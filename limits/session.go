package limits

import (
	"bytes"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// PacketLimits apply to every client session; 0 turns a limit off.
type PacketLimits struct {
	MaxTopicLength         int
	MaxTopicLevels         int
	MaxClientIDLength      int
	MaxSubscriptions       int // distinct filters a connection holds
	MaxFiltersPerSubscribe int
	MaxInflight            int     // QoS 1/2 PUBLISHes not yet acknowledged by the broker
	PublishRate            float64 // messages per second per client
	PublishBytesRate       float64 // bytes per second per client
}

// Violation is a limit a packet broke; the zero value is none.
type Violation struct {
	Kind string              // max_topic_length, max_topic_levels, ...
	Code mqttwire.ReasonCode // the v5 code to answer with
	// End: the session ends (DISCONNECT with Code for v5). Otherwise the
	// packet alone is refused (a SUBACK failing its filters).
	End bool
}

// Session is one connection's counters. Check and Delay are called from
// the connection's client pump, Acked from its broker pump.
type Session struct {
	l        *PacketLimits
	subs     map[string]struct{}
	inflight atomic.Int32
	msgs     *rate.Limiter
	bytes    *rate.Limiter
}

// NewSession starts a connection's counters.
func (l *PacketLimits) NewSession() *Session {
	s := &Session{l: l}
	if l.PublishRate > 0 {
		s.msgs = rate.NewLimiter(rate.Limit(l.PublishRate), burst(0, l.PublishRate))
	}
	if l.PublishBytesRate > 0 {
		// The bucket holds a second's worth, and at least one large packet.
		s.bytes = rate.NewLimiter(rate.Limit(l.PublishBytesRate), max(int(l.PublishBytesRate), mqttwire.DefaultMaxPacketSize))
	}
	return s
}

// ClientID checks a CONNECT's client id.
func (l *PacketLimits) ClientID(id []byte) Violation {
	if l.MaxClientIDLength > 0 && len(id) > l.MaxClientIDLength {
		return Violation{"max_client_id_length", mqttwire.ClientIdentifierNotValid, true}
	}
	return Violation{}
}

func (l *PacketLimits) topic(t []byte, code mqttwire.ReasonCode) Violation {
	if l.MaxTopicLength > 0 && len(t) > l.MaxTopicLength {
		return Violation{Kind: "max_topic_length", Code: code}
	}
	if l.MaxTopicLevels > 0 && bytes.Count(t, []byte{'/'})+1 > l.MaxTopicLevels {
		return Violation{Kind: "max_topic_levels", Code: code}
	}
	return Violation{}
}

// Publish checks a client PUBLISH (topic as resolved from an alias) and
// counts it in flight when it has QoS 1 or 2.
func (s *Session) Publish(topic []byte, qos byte) Violation {
	if v := s.l.topic(topic, mqttwire.TopicNameInvalid); v.Kind != "" {
		v.End = true // a PUBLISH cannot be refused visibly at QoS 0
		return v
	}
	if qos > 0 && s.l.MaxInflight > 0 {
		if int(s.inflight.Add(1)) > s.l.MaxInflight {
			s.inflight.Add(-1)
			return Violation{"max_inflight", mqttwire.ReceiveMaximumExceeded, true} // [MQTT-3.3.4-9]
		}
	}
	return Violation{}
}

// Subscribe checks a SUBSCRIBE: filter sizes, filters per packet, and the
// distinct filters the connection would hold; then records them.
func (s *Session) Subscribe(sub *mqttwire.Subscribe) Violation {
	if s.l.MaxFiltersPerSubscribe > 0 && sub.Count > s.l.MaxFiltersPerSubscribe {
		return Violation{Kind: "max_filters_per_subscribe", Code: mqttwire.QuotaExceeded}
	}
	it := sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		if v := s.l.topic(f.Topic, mqttwire.TopicFilterInvalid); v.Kind != "" {
			return v
		}
	}
	if s.l.MaxSubscriptions <= 0 {
		return Violation{}
	}
	if s.subs == nil {
		s.subs = map[string]struct{}{}
	}
	added := 0
	it = sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		if _, held := s.subs[string(f.Topic)]; !held {
			added++
		}
	}
	if len(s.subs)+added > s.l.MaxSubscriptions {
		return Violation{Kind: "max_subscriptions", Code: mqttwire.QuotaExceeded}
	}
	it = sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		s.subs[string(f.Topic)] = struct{}{}
	}
	return Violation{}
}

// Unsubscribe forgets filters.
func (s *Session) Unsubscribe(sub *mqttwire.Subscribe) {
	it := sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		delete(s.subs, string(f.Topic))
	}
}

// Acked notes the broker's final acknowledgement of one in-flight PUBLISH.
func (s *Session) Acked() {
	if s.l.MaxInflight > 0 && s.inflight.Add(-1) < 0 {
		s.inflight.Store(0)
	}
}

// Delay is how long the client must wait before it may send more after
// msgs PUBLISHes of n bytes in all: the rates are applied as
// backpressure. Nothing is allocated unless the client is over its rate.
func (s *Session) Delay(msgs, n int, now time.Time) time.Duration {
	var d time.Duration
	if s.msgs != nil {
		d = take(s.msgs, msgs, now)
	}
	if s.bytes != nil {
		d = max(d, take(s.bytes, n, now))
	}
	return d
}

// take draws n tokens, in bucket-sized parts, and returns how long the
// caller must wait for the ones not yet there.
func take(l *rate.Limiter, n int, now time.Time) time.Duration {
	b := l.Burst()
	for n > 0 {
		k := min(n, b)
		if !l.AllowN(now, k) {
			break
		}
		n -= k
	}
	var d time.Duration
	for n > 0 {
		k := min(n, b)
		d = l.ReserveN(now, k).DelayFrom(now) // reservations queue up: the last one waits longest
		n -= k
	}
	return d
}
