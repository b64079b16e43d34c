package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/rs/zerolog"
)

// limitCounts counts limit hits by kind.
type limitCounts struct {
	m sync.Map // kind -> *atomic.Int64
}

func (c *limitCounts) add(kind string) {
	v, ok := c.m.Load(kind)
	if !ok {
		v, _ = c.m.LoadOrStore(kind, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// LimitCount is how often one kind of limit was hit.
type LimitCount struct {
	Kind string
	N    int64
}

// LimitCounts returns the limit hits by kind, sorted by kind.
func (s *Server) LimitCounts() []LimitCount {
	var out []LimitCount
	s.limits.m.Range(func(k, v any) bool {
		out = append(out, LimitCount{k.(string), v.(*atomic.Int64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// securityEvent starts a log event for something a client did wrong, or
// returns nil (on which zerolog does nothing) when such events come faster
// than the log should take them: Config.SecurityLog's budget, with a
// small share per client address so that one client cannot use it all.
// What is held back is counted in the next event's "suppressed".
func (s *Server) securityEvent(level zerolog.Level, sess *Session) *zerolog.Event {
	ok, suppressed := s.secLog.Allow(sess.ClientAddr.Addr())
	if !ok {
		return nil
	}
	ev := s.cfg.Logger.WithLevel(level)
	if suppressed > 0 {
		ev = ev.Int64("suppressed", suppressed)
	}
	return ev
}

// limitHit counts and logs (at a bounded rate) one limit hit.
func (s *Server) limitHit(sess *Session, kind string) {
	s.Stats.LimitHit.Add(1)
	s.limits.add(kind)
	ev := s.securityEvent(zerolog.WarnLevel, sess)
	if ev == nil {
		return
	}
	ev = ev.Str("event", "limit").Str("limit", kind).Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr)
	if sess.ClientID != "" {
		ev = ev.Str("client_id", sess.ClientID)
	}
	ev.Msg("limit reached")
}

// rewriteConnack adds to a successful v5 CONNACK the Maximum Packet Size
// the proxy enforces and, when the proxy capped the keepalive, the Server
// Keep Alive, unless the broker set them. nil: send the broker's as is.
func (s *Server) rewriteConnack(sess *Session, p mqttwire.Packet, keepAliveCapped bool) []byte {
	if sess.Version != mqttwire.V5 || p.Type != mqttwire.CONNACK {
		return nil
	}
	a, err := mqttwire.ParseAck(p, mqttwire.V5)
	if err != nil || a.Reason != mqttwire.Success {
		return nil
	}
	props := a.Properties
	var added []byte
	if _, _, ok := props.Lookup(mqttwire.PropMaximumPacketSize); !ok {
		added = mqttwire.AppendProperty(added, mqttwire.PropMaximumPacketSize, uint32(s.cfg.MaxPacketSize), nil)
	}
	if _, _, ok := props.Lookup(mqttwire.PropServerKeepAlive); !ok && keepAliveCapped {
		added = mqttwire.AppendProperty(added, mqttwire.PropServerKeepAlive, uint32(sess.keepAlive/time.Second), nil)
	}
	if added == nil {
		return nil
	}
	return mqttwire.AppendConnack(nil, mqttwire.V5, a.SessionPresent, a.Reason, append(append([]byte(nil), props...), added...))
}

// finalAck reports whether a broker packet ends a client PUBLISH's flow,
// and the QoS of that flow: PUBACK (1), PUBCOMP or a PUBREC with a
// failure code (2).
func finalAck(p mqttwire.Packet, v mqttwire.Version) bool {
	if len(p.Body) < 2 {
		return false // no packet id: the client judges the broker's packets
	}
	switch p.Type {
	case mqttwire.PUBACK, mqttwire.PUBCOMP:
		return true
	case mqttwire.PUBREC:
		return v == mqttwire.V5 && len(p.Body) > 2 && p.Body[2] >= 0x80
	}
	return false
}

// limitCheck asks the limits about a client packet before the topic ACL.
func limitCheck(lim Limiter, in *Inspected) Decision {
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		return lim.Publish(in.Publish.Topic, in.Publish.QoS, in.Publish.PacketID)
	case mqttwire.SUBSCRIBE:
		return lim.Subscribe(&in.Subscribe)
	}
	return Decision{}
}

// sessionExpiry tells the limiter a v5 Session Expiry Interval that a
// client's DISCONNECT sets (the broker's CONNACK: connackSeen), so that
// what it remembers of the session lasts as long as the broker keeps it.
func sessionExpiry(lim Limiter, p mqttwire.Packet, v mqttwire.Version) {
	if v != mqttwire.V5 {
		return
	}
	if a, err := mqttwire.ParseAck(p, v); err == nil {
		if n, _, ok := a.Properties.Lookup(mqttwire.PropSessionExpiry); ok {
			lim.Expiry(n)
		}
	}
}
