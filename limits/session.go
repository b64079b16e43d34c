package limits

import (
	"bytes"
	"hash/maphash"
	"math"
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
	// RateDisconnect ends a session over its rate (v5 0x96) instead of
	// holding its reads back.
	RateDisconnect bool
	// MaxKeepAlive caps the client's keepalive (0: no cap).
	MaxKeepAlive time.Duration
}

// The limits answer in mqttwire's decision vocabulary: a Decision that
// refuses the packet alone (Refuse: a SUBACK failing its filters) or ends
// the session (End: DISCONNECT with the code for v5); Why names the limit.

func refuse(why string, code mqttwire.ReasonCode) mqttwire.Decision {
	return mqttwire.Decision{Verdict: mqttwire.Refuse, Code: code, Why: why}
}

func end(why string, code mqttwire.ReasonCode) mqttwire.Decision {
	return mqttwire.Decision{Verdict: mqttwire.End, Code: code, Why: why}
}

// ClientID checks a CONNECT's client id.
func (l *PacketLimits) ClientID(id []byte) mqttwire.Decision {
	if l.MaxClientIDLength > 0 && len(id) > l.MaxClientIDLength {
		return end("max_client_id_length", mqttwire.ClientIdentifierNotValid)
	}
	return mqttwire.Decision{}
}

func (l *PacketLimits) topic(t []byte, code mqttwire.ReasonCode) mqttwire.Decision {
	if l.MaxTopicLength > 0 && len(t) > l.MaxTopicLength {
		return refuse("max_topic_length", code)
	}
	if l.MaxTopicLevels > 0 && bytes.Count(t, []byte{'/'})+1 > l.MaxTopicLevels {
		return refuse("max_topic_levels", code)
	}
	return mqttwire.Decision{}
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
	rates   map[string]*rateState // by identity: while connected, and while its buckets refill
}

// flowMemory is how long the unfinished QoS 2 flows of a session that
// was to end with its connection are remembered.
const flowMemory = time.Hour

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

// subState is what the proxy knows of one broker session: the filters
// it holds, hashed, and the client's QoS 2 flows the broker has not
// finished. Both belong to the broker's session, not to a connection: a
// reconnect or a takeover that resumes the session finds them, and a
// PUBCOMP on any of its connections ends a flow.
type subState struct {
	mu      sync.Mutex
	filters map[uint64]struct{}
	// flows are the QoS 2 flows, sorted: packet id << 1, | 1 once the
	// client's PUBREL for it was forwarded (only then does a PUBCOMP end
	// it: a PUBREL sent ahead of its PUBLISH makes no room).
	flows  []uint32
	flowsN atomic.Int32 // len(flows), for a check without the lock

	// Guarded by Sessions.mu:
	conns    int           // connections using it
	persists bool          // the broker keeps it when they end: as the latest confirmed connection, its DISCONNECT or the broker said
	expiry   time.Duration // for how long (0: until a clean start)
	expires  time.Time     // with conns 0: when the broker forgets it (zero: never)
	owner    *Session      // the connection the broker accepted last: only its word on the expiry counts
}

// rateState is one identity's rate buckets, shared by all its
// connections: connecting more often or more at once gains nothing.
type rateState struct {
	mu          sync.Mutex
	msgs, bytes bucket
	conns       int // guarded by Sessions.mu
}

// rateChunk is how much of its identity's rate a connection draws at a
// time, so that it takes the shared buckets' lock once per chunk, not per
// message. What it has drawn and not spent goes back at Close.
const rateChunk = 10 * time.Millisecond

// Session is one connection's limits. Publish, Subscribe, Unsubscribe and
// Take are called from the connection's client pump, Acked from its
// broker pump, Close once at its end.
type Session struct {
	ss    *Sessions
	l     *PacketLimits
	start Start // Persists and Expiry guarded by Sessions.mu
	subs  *subState
	// private: subs is this connection's own (a clean start, or a
	// session the proxy does not know), put in place of what the proxy
	// remembers for the client id only when the broker accepts the
	// CONNECT (Started): a refused clean start leaves the count alone.
	private   bool
	confirmed bool // Started; guarded by Sessions.mu

	rs     *rateState // nil: no rate
	cm, cb float64    // messages and bytes drawn from rs, not yet spent (+Inf: that rate is off)

	mu sync.Mutex
	// inflight are the packet ids, sorted, of the connection's QoS 1
	// PUBLISHes the broker has not acknowledged: a few in the common
	// case, at most MaxInflight; a sorted slice costs less per message
	// than a map. (A QoS 1 flow is the connection's: the client resends
	// it after a reconnect. QoS 2 flows are the session's, in subs.)
	inflight  []uint32
	inflightN atomic.Int32 // len(inflight), for a check without the lock
	pending   []uint32     // Sent, not yet committed (flight: id and QoS); the client pump's own
}

// Open starts a connection's limits.
func (ss *Sessions) Open(st Start, now time.Time) *Session {
	s := &Session{ss: ss, l: &ss.l, start: st}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.l.MaxSubscriptions > 0 || ss.l.MaxInflight > 0 {
		s.subs, s.private = ss.sessionLocked(st, now)
	}
	if ss.l.PublishRate > 0 || ss.l.PublishBytesRate > 0 {
		rs := ss.rates[st.Who]
		if rs == nil || st.Who == "" {
			rs = &rateState{msgs: newBucket(ss.l.PublishRate, max(1, ss.l.PublishRate*RateBurst.Seconds()), now),
				bytes: newBucket(ss.l.PublishBytesRate, max(1, ss.l.PublishBytesRate*RateBurst.Seconds()), now)}
			if st.Who != "" {
				ss.pruneRatesLocked(now)
				ss.rates[st.Who] = rs
			}
		}
		rs.conns++
		s.rs = rs
		if ss.l.PublishRate == 0 {
			s.cm = math.Inf(1)
		}
		if ss.l.PublishBytesRate == 0 {
			s.cb = math.Inf(1)
		}
	}
	return s
}

// sessionLocked finds the broker session's filter set the CONNECT asks
// to resume, or starts a private one (a clean start, a server-assigned
// client id, a session the proxy does not know or that has expired).
func (ss *Sessions) sessionLocked(st Start, now time.Time) (*subState, bool) {
	// A remembered session past its expiry is resumed too: the broker
	// may keep it a little longer, and its CONNACK says (Started).
	cur := ss.subs[st.ClientID]
	if st.ClientID == "" || st.CleanStart || cur == nil {
		return &subState{conns: 1}, true
	}
	if cur.conns == 0 {
		ss.offline--
	}
	cur.conns++
	return cur, false
}

// Started is told, from the broker pump, that the broker accepted the
// CONNECT, whether it resumed a session, and the client id it assigned
// (v5, for a CONNECT without one; "" otherwise). Only now does a clean
// start (or a new session) replace what the proxy remembers for the
// client id, and does the connection's Session Expiry become the
// session's. A session under an assigned id is remembered under it: the
// client reconnects with it.
func (s *Session) Started(sessionPresent bool, assignedID string) {
	ss := s.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.confirmed = true
	if s.start.ClientID == "" {
		s.start.ClientID = assignedID
	}
	st, id := s.subs, s.start.ClientID
	if st == nil {
		return
	}
	switch {
	case id == "":
	case s.private:
		if old := ss.subs[id]; old != nil && old.conns == 0 {
			ss.offline--
		}
		ss.subs[id], s.private = st, false // a connection it takes over keeps the old one, and leaves the map alone
	case !sessionPresent:
		// The broker had forgotten the session the proxy remembered
		// (QoS 2 flows this connection sent before the CONNACK went with
		// it: a few at most, counted from zero again).
		st.mu.Lock()
		st.filters, st.flows = nil, nil
		st.flowsN.Store(0)
		st.mu.Unlock()
	}
	st.persists, st.expiry, st.owner = s.start.Persists, s.start.Expiry, s
}

// Expiry notes a v5 Session Expiry Interval (seconds) set after CONNECT:
// by the client's DISCONNECT, or by the broker's CONNACK, which overrides
// the CONNECT's. The session then persists for as long as the broker
// keeps it.
func (s *Session) Expiry(seconds uint32) {
	ss := s.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.start.Persists, s.start.Expiry = seconds > 0, 0
	if seconds > 0 && seconds != 0xFFFFFFFF { // 0xFFFFFFFF: never expires
		s.start.Expiry = time.Duration(seconds) * time.Second
	}
	// A connection taken over has no say: the broker dropped it.
	if s.confirmed && s.subs != nil && s.subs.owner == s {
		s.subs.persists, s.subs.expiry = s.start.Persists, s.start.Expiry
	}
}

// Close ends the connection's limits: a session the broker keeps is
// remembered for as long as the broker keeps it (as the last word on its
// expiry said, whichever connection spoke it), and the rate buckets for
// as long as they need to refill. A connection the broker never accepted
// changes nothing the proxy remembers.
func (s *Session) Close(now time.Time) {
	ss := s.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := s.subs; st != nil && !s.private {
		st.conns--
		if st.owner == s {
			st.owner = nil
		}
		if id := s.start.ClientID; st.conns == 0 && ss.subs[id] == st {
			switch {
			case st.persists || !s.confirmed || st.flowsN.Load() > 0:
				// Unconfirmed: it was remembered before, and stays so.
				// Unfinished QoS 2 flows are kept even when the session
				// should end with the connection: the broker may not have
				// taken the DISCONNECT that said so; a CONNACK without
				// Session Present, or a clean start, clears them.
				if s.confirmed {
					st.expires = time.Time{}
					switch {
					case !st.persists:
						st.expires = now.Add(flowMemory)
					case st.expiry > 0:
						st.expires = now.Add(st.expiry)
					}
				}
				ss.offline++
				ss.pruneSessionsLocked(now)
			default:
				delete(ss.subs, id)
			}
		}
	}
	if rs := s.rs; rs != nil {
		rs.conns--
		rs.mu.Lock()
		rs.msgs.refund(s.cm)
		rs.bytes.refund(s.cb)
		rs.mu.Unlock()
	}
}

// pruneRatesLocked keeps the identities remembered within their bound:
// those with no connection whose buckets are full again go first, then
// any with no connection.
func (ss *Sessions) pruneRatesLocked(now time.Time) {
	if len(ss.rates) < maxRateMemory {
		return
	}
	for who, rs := range ss.rates {
		if rs.conns == 0 && (len(ss.rates) >= maxRateMemory || !now.Before(rs.fullAt())) {
			delete(ss.rates, who)
		}
	}
}

func (rs *rateState) fullAt() time.Time {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.msgs.fullAt()
	if b := rs.bytes.fullAt(); b.After(t) {
		t = b
	}
	return t
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
func (s *Session) Publish(topic []byte, qos byte, id uint16) mqttwire.Decision {
	if d := s.l.topic(topic, mqttwire.TopicNameInvalid); d.Verdict != mqttwire.Forward {
		d.Verdict = mqttwire.End // a PUBLISH cannot be refused visibly at QoS 0
		return d
	}
	if qos == 0 || s.l.MaxInflight <= 0 || int(s.inflightN.Load()+s.subs.flowsN.Load())+len(s.pending) < s.l.MaxInflight {
		return mqttwire.Decision{} // room (this pump adds; the session's other connections may too, and are counted at the lock)
	}
	s.Commit()
	st := s.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	held := false
	if qos == 1 {
		_, held = slices.BinarySearch(s.inflight, uint32(id))
	} else {
		held = st.flowIndex(id) >= 0
	}
	if !held && len(s.inflight)+len(st.flows) >= s.l.MaxInflight {
		return end("max_inflight", mqttwire.ReceiveMaximumExceeded) // [MQTT-3.3.4-9]
	}
	return mqttwire.Decision{}
}

// flowIndex returns where the QoS 2 flow id is in flows, released or
// not, or -1. Guarded by st.mu.
func (st *subState) flowIndex(id uint16) int {
	i, held := slices.BinarySearch(st.flows, uint32(id)<<1)
	if held || i < len(st.flows) && st.flows[i] == uint32(id)<<1|1 {
		return i
	}
	return -1
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

// Commit records what Sent counted: QoS 1 flows as the connection's,
// QoS 2 flows as the session's.
func (s *Session) Commit() {
	if len(s.pending) == 0 {
		return
	}
	st := s.subs
	s.mu.Lock()
	st.mu.Lock()
	for _, f := range s.pending {
		id := f >> 2
		if f&3 == 1 {
			if i, held := slices.BinarySearch(s.inflight, id); !held {
				s.inflight = slices.Insert(s.inflight, i, id)
			}
			continue
		}
		switch i := st.flowIndex(uint16(id)); {
		case i < 0:
			i, _ = slices.BinarySearch(st.flows, id<<1)
			st.flows = slices.Insert(st.flows, i, id<<1)
		case st.flows[i]&1 == 1:
			// The id of a released flow, before its PUBCOMP: a new message
			// the broker keeps unreleased, which that PUBCOMP must not end.
			st.flows[i] &^= 1
		}
		// (Unreleased and in flight already: a DUP, the same flow.)
	}
	s.inflightN.Store(int32(len(s.inflight)))
	st.flowsN.Store(int32(len(st.flows)))
	st.mu.Unlock()
	s.mu.Unlock()
	s.pending = s.pending[:0]
}

// Released notes the client's PUBREL for packet id, forwarded to the
// broker: from now on the broker's PUBCOMP ends that QoS 2 flow.
func (s *Session) Released(id uint16) {
	if s.l.MaxInflight <= 0 {
		return
	}
	s.Commit() // a PUBLISH in the same read goes first
	st := s.subs
	st.mu.Lock()
	if i := st.flowIndex(id); i >= 0 {
		st.flows[i] |= 1
	}
	st.mu.Unlock()
}

// Acked notes the broker's acknowledgement t of packet id that ends a
// flow: PUBACK a QoS 1 flow of this connection, a failed PUBREC the
// session's QoS 2 flow, PUBCOMP the session's QoS 2 flow once its PUBREL
// was forwarded (Released). Anything else changes nothing: a PUBREL for
// an id the client never used (or sent ahead of its PUBLISH), or a QoS 1
// PUBLISH reusing the id of an unreleased QoS 2 one, cannot make room.
func (s *Session) Acked(id uint16, t mqttwire.Type) {
	if s.l.MaxInflight <= 0 {
		return
	}
	if t == mqttwire.PUBACK {
		s.mu.Lock()
		if i, held := slices.BinarySearch(s.inflight, uint32(id)); held {
			s.inflight = slices.Delete(s.inflight, i, i+1)
			s.inflightN.Store(int32(len(s.inflight)))
		}
		s.mu.Unlock()
		return
	}
	st := s.subs
	st.mu.Lock()
	if i := st.flowIndex(id); i >= 0 && (t == mqttwire.PUBREC || st.flows[i]&1 == 1) {
		st.flows = slices.Delete(st.flows, i, i+1)
		st.flowsN.Store(int32(len(st.flows)))
	}
	st.mu.Unlock()
}

func (s *Session) filterKey(f []byte) uint64 { return maphash.Bytes(s.ss.seed, f) }

// Subscribe checks a SUBSCRIBE: filter sizes, filters per packet, and the
// distinct filters the session would hold with all of them. It records
// nothing: Subscribed does, for each filter that is forwarded.
func (s *Session) Subscribe(sub *mqttwire.Subscribe) mqttwire.Decision {
	if s.l.MaxFiltersPerSubscribe > 0 && sub.Count > s.l.MaxFiltersPerSubscribe {
		return refuse("max_filters_per_subscribe", mqttwire.QuotaExceeded)
	}
	it := sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		if d := s.l.topic(f.Topic, mqttwire.TopicFilterInvalid); d.Verdict != mqttwire.Forward {
			return d
		}
	}
	st := s.subs
	if st == nil || s.l.MaxSubscriptions <= 0 {
		return mqttwire.Decision{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	added := 0
	it = sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		if _, held := st.filters[s.filterKey(f.Topic)]; !held {
			added++
		}
	}
	if len(st.filters)+added > s.l.MaxSubscriptions {
		return refuse("max_subscriptions", mqttwire.QuotaExceeded)
	}
	return mqttwire.Decision{}
}

// Subscribed records a filter the session now holds (forwarded to the
// broker in a SUBSCRIBE).
func (s *Session) Subscribed(filter []byte) {
	st := s.subs
	if st == nil || s.l.MaxSubscriptions <= 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.filters == nil {
		st.filters = map[uint64]struct{}{}
	}
	st.filters[s.filterKey(filter)] = struct{}{}
}

// Unsubscribe forgets the filters of an UNSUBSCRIBE forwarded to the broker.
func (s *Session) Unsubscribe(sub *mqttwire.Subscribe) {
	st := s.subs
	if st == nil || s.l.MaxSubscriptions <= 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	it := sub.Filters()
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		delete(st.filters, s.filterKey(f.Topic))
	}
}

// KeepAlive is the keepalive a session gets for the one its CONNECT
// asks: at most MaxKeepAlive, which a client asking for none (0) gets
// too. capped reports that the client must be told (v5 Server Keep
// Alive).
func (s *Session) KeepAlive(asked uint16) (d time.Duration, capped bool) {
	d = time.Duration(asked) * time.Second
	if m := s.l.MaxKeepAlive; m > 0 && (d == 0 || d > m) {
		return m, true
	}
	return d, false
}

// OverRate decides a PUBLISH whose tokens are not there yet: hold the
// reads until they are (Forward: backpressure), or end the session (v5
// 0x96) with RateDisconnect.
func (s *Session) OverRate() mqttwire.Decision {
	if s.l.RateDisconnect {
		return end("publish_rate", mqttwire.MessageRateTooHigh)
	}
	return mqttwire.Decision{}
}

// Take spends the tokens of one PUBLISH of n bytes before it is
// forwarded, or, when its identity's buckets do not hold them at now,
// takes nothing and returns how long to wait before asking again. now may
// be stale (the time of the read): a stale now only underestimates the
// refill, so a caller asks again with the current time before it waits.
// Within what the connection has drawn it costs two comparisons.
func (s *Session) Take(n int, now time.Time) time.Duration {
	if s.rs == nil {
		return 0
	}
	nb := float64(n)
	if s.cm < 1 || s.cb < nb {
		if d := s.draw(nb, now); d > 0 {
			return d
		}
	}
	s.cm--
	s.cb -= nb
	return 0
}

// draw takes from the shared buckets what the next message needs, and up
// to a chunk more.
func (s *Session) draw(nb float64, now time.Time) time.Duration {
	rs := s.rs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if d := rs.msgs.draw(&s.cm, 1, now); d > 0 {
		return d
	}
	return rs.bytes.draw(&s.cb, nb, now)
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

// draw adds to credit what it lacks of need, and up to a chunk more,
// from the bucket refilled to now; or, when the bucket does not hold it,
// draws nothing and returns how long until it does. A need above the
// burst is drawn once the bucket is full, going into debt.
func (b *bucket) draw(credit *float64, need float64, now time.Time) time.Duration {
	short := need - *credit
	if b.perSec == 0 || short <= 0 {
		return 0
	}
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
		b.last = now
	}
	want := min(short, b.burst)
	if b.tokens < want {
		return time.Duration((want-b.tokens)/b.perSec*float64(time.Second)) + 1
	}
	amount := max(short, min(b.tokens, b.perSec*rateChunk.Seconds()))
	b.tokens -= amount
	*credit += amount
	return 0
}

// refund gives back tokens drawn and not spent.
func (b *bucket) refund(credit float64) {
	if b.perSec != 0 && credit > 0 && !math.IsInf(credit, 1) {
		b.tokens = min(b.burst, b.tokens+credit)
	}
}

// fullAt is when the bucket will be full again.
func (b *bucket) fullAt() time.Time {
	if b.perSec == 0 || b.tokens >= b.burst {
		return b.last
	}
	return b.last.Add(time.Duration((b.burst - b.tokens) / b.perSec * float64(time.Second)))
}

// InFlight is how many of the connection's QoS 1 and 2 PUBLISHes the
// broker has not finished (the session's QoS 2 flows included); 0 when
// in-flight messages are not counted (MaxInflight 0). Safe to call from
// any goroutine.
func (s *Session) InFlight() int {
	if s.subs == nil {
		return 0
	}
	return int(s.inflightN.Load() + s.subs.flowsN.Load())
}

// Subscriptions is how many distinct filters the session holds, or -1
// when they are not counted (MaxSubscriptions 0). Safe to call from any
// goroutine.
func (s *Session) Subscriptions() int {
	st := s.subs
	if st == nil || s.l.MaxSubscriptions <= 0 {
		return -1
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.filters)
}
