package limits

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// PacketLimits apply to every client session; 0 turns a limit off.
type PacketLimits struct {
	MaxTopicLength         int
	MaxTopicLevels         int
	MaxClientIDLength      int
	MaxSubscriptions       int // distinct filters a session holds, across its connections
	MaxFiltersPerSubscribe int
	MaxInflight            int     // QoS 1/2 PUBLISHes not yet acknowledged by the broker
	PublishRate            float64 // messages per second per identity
	PublishBytesRate       float64 // bytes per second per identity
}

// Violation is a limit a packet broke; the zero value is none.
type Violation struct {
	Kind string              // max_topic_length, max_topic_levels, ...
	Code mqttwire.ReasonCode // the v5 code to answer with
	// End: the session ends (DISCONNECT with Code for v5). Otherwise the
	// packet alone is refused (a SUBACK failing its filters).
	End bool
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

// RateBurst is the share of a second's rate a client may send at once:
// a tenth of a second's worth (at least one message; for bytes, one
// packet of any size may go into debt that the next packet waits off).
const RateBurst = 100 * time.Millisecond

// Sessions are the packet limits together with what they remember beyond
// one connection: the subscriptions of sessions the broker may keep, and
// the rate buckets of identities that just disconnected, so that neither
// a reconnect nor a persistent session resets a limit. Both memories are
// bounded. It is safe for concurrent use.
type Sessions struct {
	l    PacketLimits
	seed maphash.Seed

	mu      sync.Mutex
	subs    map[string]*subState  // by client id: the broker's session key
	offline int                   // subs entries with no connection
	rates   map[string]*rateState // by identity, while its buckets refill
}

// Bounds of the memories: sessions held by no connection, and identities
// whose buckets are still refilling. Past them the oldest are forgotten
// (a forgotten session counts from zero again).
const (
	maxOfflineSessions = maxTracked
	maxRateMemory      = maxTracked
)

// NewSessions returns the limits l with empty memories.
func NewSessions(l PacketLimits) *Sessions {
	return &Sessions{l: l, seed: maphash.MakeSeed(), subs: map[string]*subState{}, rates: map[string]*rateState{}}
}

// Limits returns the limits in force.
func (ss *Sessions) Limits() *PacketLimits { return &ss.l }

// Start is what a session's limits need to know of its CONNECT.
type Start struct {
	ClientID string
	// Who is the identity (IdentityKey): rate buckets are its own.
	Who string
	// CleanStart: the broker discards any session it kept for ClientID.
	CleanStart bool
	// Persists: the broker keeps the session when the connection ends
	// (v5 Session Expiry above 0, 3.1.1 clean session off), for Expiry
	// (0: until a clean start).
	Persists bool
	Expiry   time.Duration
}

// subState is the filters one broker session holds, hashed.
type subState struct {
	mu      sync.Mutex
	filters map[uint64]struct{}
	conns   int       // connections using it; guarded by Sessions.mu
	expires time.Time // with conns 0: when the broker forgets it (zero: never)
}

type rateState struct {
	msgs, bytes bucket
	until       time.Time // both buckets are full again by then
}

// Session is one connection's limits. Publish, Subscribe, Unsubscribe and
// Take are called from the connection's client pump, Acked from its
// broker pump, Close once at its end.
type Session struct {
	ss    *Sessions
	l     *PacketLimits
	start Start
	subs  *subState

	msgs, bytes bucket
	rated       bool

	mu sync.Mutex
	// inflight are the flows (packet id and QoS), sorted, of the QoS 1/2 PUBLISHes the
	// broker has not finished: a few in the common case, at most
	// MaxInflight; a sorted slice costs less per message than a map.
	inflight  []uint32
	inflightN atomic.Int32 // len(inflight), for a check without the lock
	pending   []uint32     // Sent, not yet committed; the client pump's own
}

// Open starts a connection's limits.
func (ss *Sessions) Open(st Start, now time.Time) *Session {
	s := &Session{ss: ss, l: &ss.l, start: st}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.l.MaxSubscriptions > 0 {
		s.subs = ss.sessionLocked(st, now)
	}
	if ss.l.PublishRate > 0 || ss.l.PublishBytesRate > 0 {
		s.rated = true
		if r := ss.rates[st.Who]; r != nil && st.Who != "" && now.Before(r.until) {
			s.msgs, s.bytes = r.msgs, r.bytes // a reconnect does not refill
			delete(ss.rates, st.Who)
		} else {
			s.msgs = newBucket(ss.l.PublishRate, max(1, ss.l.PublishRate*RateBurst.Seconds()), now)
			s.bytes = newBucket(ss.l.PublishBytesRate, max(1, ss.l.PublishBytesRate*RateBurst.Seconds()), now)
		}
	}
	return s
}

// sessionLocked finds or starts the broker session's filter set.
func (ss *Sessions) sessionLocked(st Start, now time.Time) *subState {
	if st.ClientID == "" { // server-assigned: a new session every time
		return &subState{conns: 1}
	}
	cur := ss.subs[st.ClientID]
	if cur != nil && cur.conns == 0 && !cur.expires.IsZero() && !now.Before(cur.expires) {
		cur = nil // the broker has forgotten it
	}
	if cur == nil || st.CleanStart {
		if old := ss.subs[st.ClientID]; old != nil && old.conns == 0 {
			ss.offline--
		}
		cur = &subState{}
		ss.subs[st.ClientID] = cur
	} else if cur.conns == 0 {
		ss.offline--
	}
	cur.conns++
	return cur
}

// Expiry notes a v5 Session Expiry Interval (seconds) set after CONNECT:
// by the client's DISCONNECT, or by the broker's CONNACK, which overrides
// the CONNECT's. The session then persists for as long as the broker
// keeps it.
func (s *Session) Expiry(seconds uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start.Persists, s.start.Expiry = seconds > 0, 0
	if seconds > 0 && seconds != 0xFFFFFFFF { // 0xFFFFFFFF: never expires
		s.start.Expiry = time.Duration(seconds) * time.Second
	}
}

// Close ends the connection's limits: a session the broker keeps is
// remembered for as long as the broker keeps it, and the rate buckets
// for as long as they need to refill.
func (s *Session) Close(now time.Time) {
	s.mu.Lock()
	start := s.start
	s.mu.Unlock()
	ss := s.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := s.subs; st != nil {
		st.conns--
		if st.conns == 0 && ss.subs[start.ClientID] == st {
			if start.Persists {
				st.expires = time.Time{}
				if start.Expiry > 0 {
					st.expires = now.Add(start.Expiry)
				}
				ss.offline++
				ss.pruneSessionsLocked(now)
			} else {
				delete(ss.subs, start.ClientID)
			}
		}
	}
	if s.rated && start.Who != "" {
		until := s.msgs.fullAt()
		if b := s.bytes.fullAt(); b.After(until) {
			until = b
		}
		if now.Before(until) {
			if len(ss.rates) >= maxRateMemory {
				for who, r := range ss.rates {
					if !now.Before(r.until) || len(ss.rates) >= maxRateMemory {
						delete(ss.rates, who)
					}
				}
			}
			ss.rates[start.Who] = &rateState{msgs: s.msgs, bytes: s.bytes, until: until}
		}
	}
}

// pruneSessionsLocked keeps the sessions held by no connection within
// their bound: expired ones first, then any.
func (ss *Sessions) pruneSessionsLocked(now time.Time) {
	if ss.offline <= maxOfflineSessions {
		return
	}
	for id, st := range ss.subs {
		if st.conns == 0 && !st.expires.IsZero() && !now.Before(st.expires) {
			delete(ss.subs, id)
			ss.offline--
		}
	}
	for id, st := range ss.subs {
		if ss.offline <= maxOfflineSessions {
			break
		}
		if st.conns == 0 {
			delete(ss.subs, id)
			ss.offline--
		}
	}
}

// Publish checks a client PUBLISH: its topic as sent (before an alias
// is stored) and, for QoS 1 and 2, room in flight. It records nothing:
// Sent does, once the PUBLISH is forwarded.
func (s *Session) Publish(topic []byte, qos byte, id uint16) Violation {
	if v := s.l.topic(topic, mqttwire.TopicNameInvalid); v.Kind != "" {
		v.End = true // a PUBLISH cannot be refused visibly at QoS 0
		return v
	}
	if qos == 0 || s.l.MaxInflight <= 0 || int(s.inflightN.Load())+len(s.pending) < s.l.MaxInflight {
		return Violation{} // room (only this pump adds)
	}
	s.Commit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := slices.BinarySearch(s.inflight, flight(id, qos)); !held && len(s.inflight) >= s.l.MaxInflight {
		return Violation{"max_inflight", mqttwire.ReceiveMaximumExceeded, true} // [MQTT-3.3.4-9]
	}
	return Violation{}
}

// Sent counts a forwarded QoS 1 or 2 PUBLISH in flight by packet id and
// QoS; the same again (a DUP) is counted once. It takes effect at Commit, which
// the caller makes before the packet is written on (so before the broker
// can acknowledge it): one lock per write, not per message.
func (s *Session) Sent(qos byte, id uint16) {
	if qos != 0 && s.l.MaxInflight > 0 {
		s.pending = append(s.pending, flight(id, qos))
	}
}

// flight is one QoS 1 or 2 flow: a packet id is a flow's only at its QoS.
func flight(id uint16, qos byte) uint32 { return uint32(id)<<2 | uint32(qos) }

// Commit records what Sent counted.
func (s *Session) Commit() {
	if len(s.pending) == 0 {
		return
	}
	s.mu.Lock()
	for _, f := range s.pending {
		if i, held := slices.BinarySearch(s.inflight, f); !held {
			s.inflight = slices.Insert(s.inflight, i, f)
		}
	}
	s.inflightN.Store(int32(len(s.inflight)))
	s.mu.Unlock()
	s.pending = s.pending[:0]
}

// Acked notes the broker's final acknowledgement of packet id at qos
// (PUBACK: 1; PUBCOMP or a failed PUBREC: 2). A flow not in flight changes
// nothing: a PUBREL for an id the client never used, or a QoS 1 PUBLISH
// reusing the id of an unreleased QoS 2 one, cannot make room.
func (s *Session) Acked(id uint16, qos byte) {
	if s.l.MaxInflight <= 0 {
		return
	}
	s.mu.Lock()
	if i, held := slices.BinarySearch(s.inflight, flight(id, qos)); held {
		s.inflight = slices.Delete(s.inflight, i, i+1)
		s.inflightN.Store(int32(len(s.inflight)))
	}
	s.mu.Unlock()
}

func (s *Session) filterKey(f []byte) uint64 { return maphash.Bytes(s.ss.seed, f) }

// Subscribe checks a SUBSCRIBE: filter sizes, filters per packet, and the
// distinct filters the session would hold; then records them.
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
	st := s.subs
	if st == nil {
		return Violation{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.filters == nil {
		st.filters = map[uint64]struct{}{}
	}
	added := 0
	it = sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		if _, held := st.filters[s.filterKey(f.Topic)]; !held {
			added++
		}
	}
	if len(st.filters)+added > s.l.MaxSubscriptions {
		return Violation{Kind: "max_subscriptions", Code: mqttwire.QuotaExceeded}
	}
	it = sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		st.filters[s.filterKey(f.Topic)] = struct{}{}
	}
	return Violation{}
}

// Unsubscribe forgets filters.
func (s *Session) Unsubscribe(sub *mqttwire.Subscribe) {
	st := s.subs
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	it := sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		delete(st.filters, s.filterKey(f.Topic))
	}
}

// Take spends the tokens of one PUBLISH of n bytes before it is
// forwarded, or, when the buckets do not hold them at now, takes nothing
// and returns how long to wait before asking again. now may be stale
// (the time of the read): a stale now only underestimates the refill, so
// a caller asks again with the current time before it waits.
func (s *Session) Take(n int, now time.Time) time.Duration {
	if !s.rated {
		return 0
	}
	d := max(s.msgs.need(1, now), s.bytes.need(float64(n), now))
	if d > 0 {
		return d
	}
	s.msgs.spend(1)
	s.bytes.spend(float64(n))
	return 0
}

// bucket is a token bucket for one client pump (no locking, no
// allocation); perSec 0 is no limit.
type bucket struct {
	perSec, burst, tokens float64
	last                  time.Time
}

func newBucket(perSec, burst float64, now time.Time) bucket {
	return bucket{perSec: perSec, burst: burst, tokens: burst, last: now}
}

// need refills to now and returns 0 when n tokens may be spent (a
// request above the burst may once the bucket is full, going into debt),
// or how long until they may.
func (b *bucket) need(n float64, now time.Time) time.Duration {
	if b.perSec == 0 {
		return 0
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
		b.last = now
	}
	want := min(n, b.burst)
	if b.tokens >= want {
		return 0
	}
	return time.Duration((want-b.tokens)/b.perSec*float64(time.Second)) + 1
}

func (b *bucket) spend(n float64) {
	if b.perSec != 0 {
		b.tokens -= n
	}
}

// fullAt is when the bucket will be full again.
func (b *bucket) fullAt() time.Time {
	if b.perSec == 0 || b.tokens >= b.burst {
		return b.last
	}
	return b.last.Add(time.Duration((b.burst - b.tokens) / b.perSec * float64(time.Second)))
}
