package limits

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestBansPersistAndReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bans.json")
	b, err := OpenBans(file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, ban := range []Ban{
		{Kind: BanClientID, Value: "evil", Until: now.Add(time.Hour), Reason: "test"},
		{Kind: BanUsername, Value: "mallory", Until: now.Add(time.Hour)},
		{Kind: BanIP, Value: "10.9.0.0/16", Until: now.Add(time.Hour)},
		{Kind: BanClientID, Value: "old", Until: now.Add(20 * time.Millisecond)}, // runs out below
	} {
		if err := b.Add(ban); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := b.Client("evil", "", now); !ok {
		t.Error("client id ban not in force")
	}
	if _, ok := b.Client("x", "mallory", now); !ok {
		t.Error("user name ban not in force")
	}
	if _, ok := b.Client("old", "", now.Add(20*time.Millisecond)); ok {
		t.Error("expired ban in force")
	}
	if err := b.Add(Ban{Kind: BanClientID, Value: "evil", Until: now.Add(-time.Hour)}); err == nil {
		t.Error("a ban already run out was accepted (it would lift the one in force)")
	}
	if _, ok := b.Addr(netip.MustParseAddr("10.9.3.4"), now); !ok {
		t.Error("CIDR ban not in force")
	}
	if _, ok := b.Addr(netip.MustParseAddr("::ffff:10.9.3.4"), now); !ok {
		t.Error("CIDR ban missed a mapped address")
	}
	if err := b.Add(Ban{Kind: "host", Value: "x", Until: now.Add(time.Hour)}); err == nil {
		t.Error("unknown kind accepted")
	}

	time.Sleep(time.Until(now.Add(20 * time.Millisecond))) // the clock itself is what "old" waits for
	// Another process (the bans command) reads what this one wrote.
	b2, err := OpenBans(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b2.Client("evil", "", now); !ok || len(b2.List()) != 4 {
		t.Fatalf("reopened: %+v", b2.List())
	}
	if found, err := b2.Remove(BanClientID, "evil", ""); !found || err != nil {
		t.Fatal(found, err)
	}
	if n := len(b2.List()); n != 2 {
		t.Fatalf("%d entries after a removal; the expired one should be dropped on the way", n)
	}
	if changed, err := b.Reload(false); !changed || err != nil {
		t.Fatal(changed, err)
	}
	if _, ok := b.Client("evil", "", now); ok {
		t.Fatal("removed ban still in force after reload")
	}
	// A corrupt file is reported; the bans in force stay, and nothing
	// overwrites the file.
	if err := os.WriteFile(file, []byte(`{"bans": [{"kind": "clientid"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reload(false); err == nil {
		t.Fatal("corrupt file loaded")
	}
	if _, ok := b.Client("x", "mallory", now); !ok {
		t.Fatal("corrupt file took bans out of force")
	}
	if err := b.Add(Ban{Kind: BanClientID, Value: "new", Until: now.Add(time.Hour)}); err == nil {
		t.Fatal("a corrupt file was overwritten")
	}
	if raw, _ := os.ReadFile(file); !bytes.HasPrefix(raw, []byte(`{"bans": [{"kind": "clientid"`)) {
		t.Fatal("corrupt file changed")
	}
}

func TestParseBansErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"bans":[{"kind":"ip","value":"10.0.0.0/33","until":"2030-01-01T00:00:00Z"}]}`, "entry 1: ip ban"},
		{`{"bans":[{"kind":"clientid","value":"x"}]}`, "without until"},
		{`{"bans":[{"kind":"clientid","value":"x","until":"tomorrow"}]}`, "cannot parse"},
		{`{"bans":[], "extra": 1}`, "unknown field"},
	} {
		if _, err := ParseBans([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

func TestFlapping(t *testing.T) {
	f := &Flapping{Max: 3, Window: time.Minute}
	now := time.Now()
	for i := range 3 {
		if f.Disconnected("c", "alice", now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("banned after %d disconnects", i+1)
		}
	}
	if f.Disconnected("other", "alice", now) {
		t.Fatal("another client id counted")
	}
	if f.Disconnected("c", "mallory", now.Add(3*time.Second)) {
		t.Fatal("another identity's disconnects with the same client id counted")
	}
	if !f.Disconnected("c", "alice", now.Add(4*time.Second)) {
		t.Fatal("not banned after the fourth disconnect within the window")
	}
	// Spread out beyond the window: never.
	for i := range 10 {
		if f.Disconnected("slow", "alice", now.Add(time.Duration(i)*time.Minute)) {
			t.Fatal("disconnects a minute apart banned")
		}
	}
}

func TestIdentityBans(t *testing.T) {
	b, err := OpenBans("")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := b.Add(Ban{Kind: BanIdentity, Value: "bob-sensor", User: "alice", Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, banned := b.Identity("bob-sensor", "alice", now); !banned {
		t.Fatal("alice's use of bob-sensor not banned")
	}
	if _, banned := b.Identity("bob-sensor", "bob", now); banned {
		t.Fatal("bob banned by a ban on alice's use of his client id")
	}
	if _, banned := b.Client("bob-sensor", "bob", now); banned {
		t.Fatal("an identity ban works as a client id ban")
	}
	if err := b.Add(Ban{Kind: BanIdentity, Value: "x", Until: now.Add(time.Hour)}); err == nil {
		t.Fatal("identity ban without a user accepted")
	}
	if err := b.Add(Ban{Kind: BanClientID, Value: "x", User: "u", Until: now.Add(time.Hour)}); err == nil {
		t.Fatal("clientid ban with a user accepted")
	}
	if found, err := b.Remove(BanIdentity, "bob-sensor", "alice"); !found || err != nil {
		t.Fatalf("remove: %v %v", found, err)
	}
	if k := IdentityKey(nil, netip.MustParseAddr("::ffff:127.0.0.2")); k != "ip:127.0.0.2" {
		t.Errorf("anonymous key %q", k)
	}
	if a, b := IdentityKey(nil, netip.MustParseAddr("2001:db8::1")), IdentityKey(nil, netip.MustParseAddr("2001:db8::ffff:2")); a != b {
		t.Errorf("two addresses of one IPv6 /64: %q and %q", a, b)
	}
	if k := IdentityKey(&identity.Identity{Username: "ip:127.0.0.2"}, netip.Addr{}); k == "ip:127.0.0.2" {
		t.Errorf("a user named like an address has the address's key")
	}
}

func TestConnLimits(t *testing.T) {
	c := NewConns(ConnLimits{MaxTotal: 4, MaxPerIP: 2}, nil)
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	var rel []func()
	for range 2 {
		r, why := c.Open(a, "tls")
		if why != "" {
			t.Fatal(why)
		}
		rel = append(rel, r)
	}
	if _, why := c.Open(a, "tls"); why != RefusedPerIP {
		t.Fatalf("third from one address: %q", why)
	}
	for range 2 {
		if _, why := c.Open(b, "tls"); why != "" {
			t.Fatalf("another address: %q", why)
		}
	}
	if _, why := c.Open(netip.MustParseAddr("127.0.0.4"), "tls"); why != RefusedTotal {
		t.Fatalf("over the total: %q", why)
	}
	rel[0]()
	rel[0]() // twice is once
	if _, why := c.Open(a, "tls"); why != "" {
		t.Fatalf("after a release: %q", why)
	}
	if _, why := c.Open(a, "tls"); why == "" {
		t.Fatal("double release freed two slots")
	}

	r := NewConns(ConnLimits{RatePerIP: 1, Burst: 2}, nil)
	for i := range 2 {
		if _, why := r.Open(a, "tls"); why != "" {
			t.Fatalf("connection %d within the burst: %q", i, why)
		}
	}
	if _, why := r.Open(a, "tls"); why != RefusedRatePerIP {
		t.Fatalf("over the rate: %q", why)
	}
	if _, why := r.Open(b, "tls"); why != "" {
		t.Fatalf("another address over the first's rate: %q", why)
	}

	l := NewConns(ConnLimits{Rate: 1, Burst: 1}, nil)
	if _, why := l.Open(a, "tls"); why != "" {
		t.Fatal(why)
	}
	if _, why := l.Open(b, "tls"); why != RefusedRate {
		t.Fatalf("over the listener's rate: %q", why)
	}
	if _, why := l.Open(b, "tcp"); why != "" {
		t.Fatalf("another listener over the first's rate: %q", why)
	}
}

func subscribe(t *testing.T, filters ...string) *mqttwire.Subscribe {
	t.Helper()
	pkt := mqtttest.SubscribePacket(mqttwire.V311, 1, filters...)
	p, err := mqttwire.NewReader(bytes.NewReader(pkt), 256, 1<<16).Next()
	if err != nil {
		t.Fatal(err)
	}
	s, err := mqttwire.ParseSubscribe(p, mqttwire.V311)
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// subscribeAll checks a SUBSCRIBE of filters and, when the limits let it
// through, records every filter as forwarded, as the proxy does.
func subscribeAll(t *testing.T, s *Session, filters ...string) mqttwire.Decision {
	t.Helper()
	v := s.Subscribe(subscribe(t, filters...))
	if v.Why == "" {
		for _, f := range filters {
			s.Subscribed([]byte(f))
		}
	}
	return v
}

// open starts a session of l for client id "c" used by "alice".
func open(l PacketLimits) *Session {
	return NewSessions(l).Open(Start{ClientID: "c", Who: "alice", CleanStart: true}, time.Now())
}

func TestSessionLimits(t *testing.T) {
	l := PacketLimits{MaxTopicLength: 10, MaxTopicLevels: 3, MaxClientIDLength: 4, MaxSubscriptions: 3, MaxFiltersPerSubscribe: 2, MaxInflight: 2}
	s := open(l)
	for topic, kind := range map[string]string{"a/b/c": "", "a/b/c/d": "max_topic_levels", "0123456789a": "max_topic_length"} {
		if v := s.Publish([]byte(topic), 0, 0); v.Why != kind || (kind != "" && v.Verdict != mqttwire.End) {
			t.Errorf("publish %q: %+v, want %q", topic, v, kind)
		}
	}
	if v := l.ClientID([]byte("12345")); v.Why != "max_client_id_length" || v.Code != mqttwire.ClientIdentifierNotValid {
		t.Errorf("client id: %+v", v)
	}
	if v := subscribeAll(t, s, "a", "b", "c"); v.Why != "max_filters_per_subscribe" {
		t.Errorf("three filters: %+v", v)
	}
	if v := subscribeAll(t, s, "a", "b"); v.Why != "" {
		t.Errorf("two: %+v", v)
	}
	if v := subscribeAll(t, s, "a", "c"); v.Why != "" {
		t.Errorf("one new, one held: %+v", v)
	}
	if v := subscribeAll(t, s, "d"); v.Why != "max_subscriptions" || v.Code != mqttwire.QuotaExceeded {
		t.Errorf("fourth: %+v", v)
	}
	s.Unsubscribe(subscribe(t, "a"))
	if v := subscribeAll(t, s, "d"); v.Why != "" {
		t.Errorf("after unsubscribe: %+v", v)
	}
}

// In flight is counted per packet id: an acknowledgement of an id that is
// not in flight (a PUBCOMP for a PUBREL of an id the client never used)
// makes no room, the same id again counts once, and a PUBLISH only
// checked (not Sent: denied by a later stage) is never counted.
func TestInflightByPacketID(t *testing.T) {
	s := open(PacketLimits{MaxInflight: 2})
	for id := uint16(1); id <= 2; id++ {
		if v := s.Publish([]byte("q"), 2, id); v.Why != "" {
			t.Fatalf("in flight %d: %+v", id, v)
		}
		s.Sent(2, id)
	}
	if v := s.Publish([]byte("q"), 2, 2); v.Why != "" {
		t.Fatalf("id 2 again (DUP): %+v", v)
	}
	s.Commit() // before the PUBLISHes are written on
	for id := uint16(100); id < 110; id++ {
		s.Released(id)
		s.Acked(id, mqttwire.PUBCOMP)
	}
	if v := s.Publish([]byte("q"), 2, 3); v.Why != "max_inflight" || v.Code != mqttwire.ReceiveMaximumExceeded || v.Verdict != mqttwire.End {
		t.Fatalf("third in flight after acks for ids never used: %+v", v)
	}
	s.Acked(1, mqttwire.PUBCOMP)
	if v := s.Publish([]byte("q"), 2, 3); v.Why != "max_inflight" {
		t.Fatalf("a PUBCOMP for id 1 before its PUBREL made room: %+v", v)
	}
	s.Released(1)
	s.Acked(1, mqttwire.PUBCOMP)
	if v := s.Publish([]byte("q"), 2, 3); v.Why != "" {
		t.Fatalf("after id 1 was acknowledged: %+v", v)
	}
	// A QoS 1 PUBLISH reusing id 3 of a QoS 2 flow in flight: its PUBACK
	// ends its own flow, not the QoS 2 one.
	s.Sent(2, 3)
	s.Commit()
	if v := s.Publish([]byte("q"), 1, 3); v.Why != "max_inflight" {
		t.Fatalf("QoS 1 with the id of a QoS 2 flow, two in flight: %+v", v)
	}
	s.Acked(3, mqttwire.PUBACK)
	if v := s.Publish([]byte("q"), 2, 5); v.Why != "max_inflight" {
		t.Fatalf("a PUBACK for id 3 ended its QoS 2 flow: %+v", v)
	}
	s.Acked(3, mqttwire.PUBREC) // a failed PUBREC ends it, released or not
	for range 5 {               // checked, never sent
		if v := s.Publish([]byte("q"), 1, 4); v.Why != "" {
			t.Fatalf("checked only: %+v", v)
		}
	}
}

// A session the broker keeps carries its subscriptions across
// connections: a reconnect without clean start finds them counted; a
// clean start, a session that expired, or one that does not persist
// starts from none. Two connections with the same client id (a takeover)
// share one count.
func TestSubscriptionsPerSession(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxSubscriptions: 3})
	now := time.Now()
	conn := func(clean, persists bool, expiry time.Duration) *Session {
		s := ss.Open(Start{ClientID: "dev", Who: "alice", CleanStart: clean, Persists: persists, Expiry: expiry}, now)
		s.Started(!clean, "") // the broker's CONNACK
		return s
	}
	s := conn(true, true, time.Hour)
	if v := subscribeAll(t, s, "a", "b"); v.Why != "" {
		t.Fatal(v)
	}
	s.Close(now)
	s = conn(false, true, time.Hour)
	if v := subscribeAll(t, s, "c", "d"); v.Why != "max_subscriptions" {
		t.Fatalf("after a reconnect to the kept session: %+v, want max_subscriptions", v)
	}
	taker := conn(false, true, time.Hour) // the broker hands the session over
	if v := subscribeAll(t, taker, "c"); v.Why != "" {
		t.Fatal(v)
	}
	if v := subscribeAll(t, s, "d"); v.Why != "max_subscriptions" {
		t.Fatalf("two connections of one session counted apart: %+v", v)
	}
	s.Close(now)
	taker.Close(now)
	now = now.Add(2 * time.Hour) // the broker has forgotten it
	s = conn(false, true, time.Hour)
	if v := subscribeAll(t, s, "a", "b", "c"); v.Why != "" {
		t.Fatalf("after the session expired: %+v", v)
	}
	s.Close(now)
	// A DISCONNECT (or the broker's CONNACK) that sets a longer expiry
	// than the CONNECT's: remembered for that long.
	s = conn(false, true, time.Second)
	s.Expiry(3600)
	s.Close(now)
	now = now.Add(time.Minute)
	s = conn(false, true, time.Second)
	if v := subscribeAll(t, s, "d"); v.Why != "max_subscriptions" {
		t.Fatalf("a minute after a DISCONNECT set an hour's expiry: %+v, want the session's count", v)
	}
	s.Expiry(0) // this connection ends the session
	s.Close(now)
	s = conn(false, true, time.Hour)
	if v := subscribeAll(t, s, "a", "b", "c"); v.Why != "" {
		t.Fatalf("after a DISCONNECT with expiry 0: %+v", v)
	}
	s.Close(now)
	s = conn(true, false, 0)
	if v := subscribeAll(t, s, "a", "b", "c"); v.Why != "" {
		t.Fatalf("after a clean start: %+v", v)
	}
	s.Close(now)
	if len(ss.subs) != 0 || ss.offline != 0 {
		t.Fatalf("a session that does not persist is remembered: %d (%d offline)", len(ss.subs), ss.offline)
	}
}

// Found by review: a clean-start CONNECT the proxy refuses (a forbidden
// will, the broker down) never reached the broker, so it must not wipe
// the count of the session the broker still keeps; and on a takeover the
// last word on the session's expiry counts, not the connection that
// happens to close last.
func TestSessionMemoryFollowsTheBroker(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxSubscriptions: 2})
	now := time.Now()
	open := func(clean, persists bool) *Session {
		return ss.Open(Start{ClientID: "x", Who: "alice", CleanStart: clean, Persists: persists}, now)
	}
	s := open(true, true)
	s.Started(false, "")
	subscribeAll(t, s, "a", "b")
	s.Close(now)
	// resume reconnects to the kept session and expects its count.
	resume := func(after string) *Session {
		t.Helper()
		s := open(false, true)
		s.Started(true, "")
		if v := s.Subscribe(subscribe(t, "c")); v.Why != "max_subscriptions" {
			t.Fatalf("after %s: %+v, want the kept session's count", after, v)
		}
		return s
	}
	refused := open(true, false) // refused before the broker saw it: no Started
	refused.Close(now)
	s = resume("a refused clean start")
	// A (no expiry) is taken over by B (persists); A closes last.
	a := s
	a.Expiry(0)
	b := open(false, true)
	b.Started(true, "")
	b.Close(now)
	a.Close(now)
	s = resume("a takeover whose old connection closed last")
	// C takes over from D, then D's DISCONNECT says expiry 0: the broker
	// had already dropped D, so it has no say.
	d := s
	c := open(false, true)
	c.Started(true, "")
	d.Expiry(0)
	d.Close(now)
	c.Close(now)
	s = resume("a taken-over connection's DISCONNECT said expiry 0")
	s.Close(now)
}

// The QoS 2 flows the broker keeps with a persistent session stay in
// flight across reconnects, until the broker finishes them, and pass to
// a connection that takes the session over; a clean start, a session the
// broker forgot, or one that does not persist frees them.
func TestQoS2InFlightAcrossReconnects(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxInflight: 2})
	now := time.Now()
	open := func(clean, persists, present bool) *Session {
		s := ss.Open(Start{ClientID: "x", Who: "alice", CleanStart: clean, Persists: persists}, now)
		s.Started(present, "")
		return s
	}
	send := func(s *Session, qos byte, ids ...uint16) {
		t.Helper()
		for _, id := range ids {
			if v := s.Publish([]byte("q"), qos, id); v.Why != "" {
				t.Fatalf("id %d: %+v", id, v)
			}
			s.Sent(qos, id)
		}
		s.Commit()
	}
	full := func(s *Session, when string, want bool) {
		t.Helper()
		if v := s.Publish([]byte("q"), 2, 99); (v.Why == "max_inflight") != want {
			t.Fatalf("%s: a new flow %+v, want refused %v", when, v, want)
		}
	}
	s := open(true, true, false)
	send(s, 2, 1, 2)
	s.Close(now)
	s = open(false, true, true)
	full(s, "resumed with two unreleased QoS 2 flows", true)
	s.Released(1) // the PUBREL resent after the reconnect
	s.Acked(1, mqttwire.PUBCOMP)
	full(s, "one finished", false)
	send(s, 1, 7) // QoS 1 is not kept: the client resends it
	s.Close(now)
	s = open(false, true, true)
	full(s, "one QoS 2 flow left, QoS 1 not carried", false)
	send(s, 2, 3)
	full(s, "two QoS 2 flows again", true)

	// Taken over: the flows are the session's, seen by the new connection
	// while the old one is still open, and ended by a PUBCOMP on either.
	b := open(false, true, true)
	full(b, "taking over before the old connection closed", true)
	s.Released(3)
	b.Acked(3, mqttwire.PUBCOMP)
	full(b, "after the new connection's PUBCOMP for the old one's flow", false)
	send(b, 2, 4)
	s.Close(now)
	full(b, "after the connection it took over closed", true)
	b.Close(now)

	for _, tc := range []struct {
		name                  string
		clean, present, later bool
	}{
		{"a clean start", true, false, false},
		{"a session the broker forgot", false, false, false},
	} {
		s = open(tc.clean, true, tc.present)
		full(s, tc.name, false)
		send(s, 2, 5, 6)
		s.Close(now)
	}
	s = open(false, true, true)
	full(s, "resumed after a session forgotten and refilled", true)
	s.Expiry(0) // the client says the session ends with the connection...
	s.Close(now)
	s = open(false, true, true) // ...but the broker kept it (it may not have taken that DISCONNECT)
	full(s, "resumed after a DISCONNECT with expiry 0 the broker did not take", true)
	s.Expiry(0)
	s.Close(now)
	s = open(false, true, false)
	full(s, "after a session the broker ended", false)
	s.Close(now)

	// A server-assigned client id: the session is remembered under it.
	a := ss.Open(Start{Persists: true}, now)
	a.Started(false, "auto-1")
	send(a, 2, 1, 2)
	a.Close(now)
	r := ss.Open(Start{ClientID: "auto-1", Persists: true}, now)
	r.Started(true, "")
	if v := r.Publish([]byte("q"), 2, 9); v.Why != "max_inflight" {
		t.Fatalf("resumed under the assigned id: %+v, want the two unreleased flows counted", v)
	}
	r.Close(now)

	// A PUBREL ahead of its PUBLISH (the broker answers it with PUBCOMP at
	// once) makes no room.
	p := ss.Open(Start{ClientID: "y", CleanStart: true}, now)
	p.Started(false, "")
	for id := uint16(1); id <= 2; id++ {
		p.Released(id)
		send(p, 2, id)
		p.Acked(id, mqttwire.PUBCOMP)
	}
	full(p, "two PUBRELs sent ahead of their PUBLISHes", true)
	p.Close(now)

	// A PUBLISH reusing the id of a released flow before its PUBCOMP is a
	// new message the broker keeps: the PUBCOMP of the old one does not
	// end it.
	r2 := ss.Open(Start{ClientID: "z", CleanStart: true}, now)
	r2.Started(false, "")
	for id := uint16(1); id <= 2; id++ {
		send(r2, 2, id)
		r2.Released(id)
		send(r2, 2, id) // again, before the broker's PUBCOMP
		r2.Acked(id, mqttwire.PUBCOMP)
	}
	full(r2, "ids reused after their PUBREL, before their PUBCOMP", true)
	r2.Close(now)
}

// The memory of sessions without a connection is bounded.
func TestOfflineSessionsBounded(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxSubscriptions: 3})
	now := time.Now()
	for i := range maxOfflineSessions + 100 {
		s := ss.Open(Start{ClientID: strconv.Itoa(i), CleanStart: true, Persists: true}, now)
		s.Started(false, "")
		subscribeAll(t, s, "a")
		s.Close(now)
	}
	if ss.offline > maxOfflineSessions || len(ss.subs) > maxOfflineSessions {
		t.Fatalf("%d sessions remembered (%d offline), bound %d", len(ss.subs), ss.offline, maxOfflineSessions)
	}
}

// Rates: tokens are spent per PUBLISH before it is forwarded, the burst
// is a tenth of a second's worth, and an identity's buckets are shared by
// all its connections, at once or one after the other.
func TestTake(t *testing.T) {
	ss := NewSessions(PacketLimits{PublishRate: 10})
	now := time.Now()
	s := ss.Open(Start{Who: "alice"}, now)
	if d := s.Take(100, now); d != 0 {
		t.Fatalf("first message delayed %v", d)
	}
	if d := s.Take(100, now); d < 90*time.Millisecond || d > 110*time.Millisecond {
		t.Fatalf("second at once delayed %v, want 100ms (burst of one at 10/s)", d)
	}
	parallel := ss.Open(Start{Who: "alice"}, now)
	if d := parallel.Take(100, now); d == 0 {
		t.Fatal("a second connection of the same identity got a bucket of its own")
	}
	if d := s.Take(100, now.Add(100*time.Millisecond)); d != 0 {
		t.Fatalf("after its turn delayed %v", d)
	}
	s.Close(now.Add(100 * time.Millisecond))
	parallel.Close(now.Add(100 * time.Millisecond))
	again := ss.Open(Start{Who: "alice"}, now.Add(100*time.Millisecond))
	if d := again.Take(100, now.Add(100*time.Millisecond)); d == 0 {
		t.Fatal("a reconnect refilled the bucket")
	}
	other := ss.Open(Start{Who: "bob"}, now.Add(100*time.Millisecond))
	if d := other.Take(100, now.Add(100*time.Millisecond)); d != 0 {
		t.Fatalf("another identity's first message delayed %v", d)
	}
	b := NewSessions(PacketLimits{PublishBytesRate: 1 << 20}).Open(Start{}, now)
	if d := b.Take(1<<20, now); d != 0 {
		t.Fatalf("a packet above the burst with a full bucket delayed %v", d)
	}
	if d := b.Take(1, now); d < 890*time.Millisecond || d > 910*time.Millisecond {
		t.Fatalf("after a MiB at 1 MiB/s the next byte waits %v, want the debt less the burst: 900ms", d)
	}
}

// Over a second of steady sending by ten connections of one identity at
// 100 messages/s, about 100 go through, not a thousand; what a connection
// drew and did not spend goes back when it closes.
func TestTakeSharedByConnections(t *testing.T) {
	ss := NewSessions(PacketLimits{PublishRate: 100})
	start := time.Now()
	var conns []*Session
	for range 10 {
		conns = append(conns, ss.Open(Start{Who: "alice"}, start))
	}
	sent := 0
	for ms := range 1000 {
		now := start.Add(time.Duration(ms) * time.Millisecond)
		for _, c := range conns {
			if c.Take(10, now) == 0 {
				sent++
			}
		}
	}
	if sent < 95 || sent > 115 {
		t.Fatalf("ten connections sent %d messages in a second at 100/s", sent)
	}
	end := start.Add(time.Second)
	for _, c := range conns {
		c.Close(end)
	}
	rs := ss.rates["alice"]
	if rs.conns != 0 || rs.msgs.tokens < 0 || rs.msgs.tokens > rs.msgs.burst {
		t.Fatalf("after every close: %d connections, %v tokens of %v", rs.conns, rs.msgs.tokens, rs.msgs.burst)
	}
}

// Within its rate a PUBLISH costs the limits nothing allocated.
func TestPublishLimitsAllocateNothing(t *testing.T) {
	s := open(PacketLimits{MaxTopicLength: 100, MaxTopicLevels: 8, MaxInflight: 10, PublishRate: 1e9, PublishBytesRate: 1e12})
	topic := []byte("factory/line-3/press-12/temperature")
	now := time.Now()
	s.Sent(1, 1)
	s.Commit()
	s.Acked(1, mqttwire.PUBACK)
	if n := testing.AllocsPerRun(1000, func() {
		s.Publish(topic, 1, 7)
		s.Sent(1, 7)
		s.Commit()
		s.Take(100, now)
		s.Acked(7, mqttwire.PUBACK)
	}); n != 0 {
		t.Fatalf("%v allocations per PUBLISH", n)
	}
}

func BenchmarkPublishLimits(b *testing.B) {
	s := open(PacketLimits{MaxTopicLength: 100, MaxTopicLevels: 8, MaxInflight: 10, PublishRate: 1e9, PublishBytesRate: 1e12})
	topic := []byte("factory/line-3/press-12/temperature")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Publish(topic, 1, 7)
		s.Sent(1, 7)
		s.Commit()
		s.Take(100, now)
		s.Acked(7, mqttwire.PUBACK)
	}
}

func FuzzBansFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := ParseBans(b)
		if err != nil {
			return
		}
		s := newBanSet(list)
		s.clientID["x"] = Ban{}
		for _, ban := range list {
			if ban.check() != nil {
				t.Fatalf("invalid entry accepted: %+v", ban)
			}
		}
	})
}

func seeds() map[string][][]byte {
	return map[string][][]byte{"FuzzBansFile": {
		[]byte(`{"bans":[{"kind":"clientid","value":"evil","until":"2030-01-01T00:00:00Z","reason":"x"},{"kind":"ip","value":"10.0.0.0/8","until":"2030-01-01T00:00:00Z"}]}`),
		[]byte(`{"bans":[]}`), []byte(""),
	}}
}

// TestSeedCorpus regenerates testdata/fuzz when LIMITS_WRITE_CORPUS=1.
func TestSeedCorpus(t *testing.T) { mqtttest.SeedCorpus(t, "LIMITS_WRITE_CORPUS", seeds()) }

// Connects: bans by client id and user name before authentication, by
// the identity's user name and identity ban after it, the client id's
// length; and flapping turned into an identity ban.
func TestConnects(t *testing.T) {
	bans, err := OpenBans("")
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	for _, b := range []Ban{{Kind: BanClientID, Value: "stolen", Until: until}, {Kind: BanUsername, Value: "mallory", Until: until}} {
		if err := bans.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	c := &Connects{Bans: bans, Limits: &PacketLimits{MaxClientIDLength: 8}, Flapping: &Flapping{Max: 2, Window: time.Minute, Ban: time.Hour}, Log: zerolog.Nop()}
	addr := netip.MustParseAddr("127.0.0.2")
	cn := func(id, user string) *mqttwire.Connect {
		return &mqttwire.Connect{ClientID: []byte(id), Username: []byte(user)}
	}
	alice := &identity.Identity{Username: "alice"}
	for _, tc := range []struct {
		id   *identity.Identity
		c    *mqttwire.Connect
		code mqttwire.ReasonCode
	}{
		{nil, cn("stolen", ""), mqttwire.Banned},
		{nil, cn("ok", "mallory"), mqttwire.Banned},
		{&identity.Identity{Username: "mallory"}, cn("ok", "a-token"), mqttwire.Banned}, // the token's subject
		{nil, cn("123456789", ""), mqttwire.ClientIdentifierNotValid},
		{alice, cn("dev", "alice"), 0},
	} {
		if code, kind := c.Check(tc.id, addr, tc.c); code != tc.code {
			t.Errorf("%+v %s: %#x %s, want %#x", tc.id, tc.c.ClientID, code, kind, tc.code)
		}
	}
	for range 3 {
		c.Closed("dev", alice, addr)
	}
	if code, _ := c.Check(alice, addr, cn("dev", "alice")); code != mqttwire.Banned {
		t.Fatalf("after flapping: %#x, want banned", code)
	}
	if code, _ := c.Check(&identity.Identity{Username: "bob"}, addr, cn("dev", "bob")); code != 0 {
		t.Fatalf("bob with the client id alice flapped with: %#x", code)
	}
}

// The keepalive cap and the over-rate action are the limits' to decide.
func TestKeepAliveAndOverRate(t *testing.T) {
	s := open(PacketLimits{MaxKeepAlive: time.Minute, RateDisconnect: true})
	for _, c := range []struct {
		asked  uint16
		want   time.Duration
		capped bool
	}{{30, 30 * time.Second, false}, {120, time.Minute, true}, {0, time.Minute, true}} {
		if d, capped := s.KeepAlive(c.asked); d != c.want || capped != c.capped {
			t.Errorf("asked %ds: %v %v, want %v %v", c.asked, d, capped, c.want, c.capped)
		}
	}
	if d := s.OverRate(); d.Verdict != mqttwire.End || d.Code != mqttwire.MessageRateTooHigh {
		t.Errorf("over rate with RateDisconnect: %+v", d)
	}
	if d, capped := open(PacketLimits{}).KeepAlive(0); d != 0 || capped {
		t.Errorf("no cap, none asked: %v %v", d, capped)
	}
	if d := open(PacketLimits{}).OverRate(); d.Verdict != mqttwire.Forward {
		t.Errorf("over rate, throttling: %+v", d)
	}
}

func TestDiffBans(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Ban{Kind: BanClientID, Value: "a", Until: t0.Add(time.Hour)}
	b := Ban{Kind: BanUsername, Value: "b", Until: t0.Add(2 * time.Second)}
	c := Ban{Kind: BanIP, Value: "10.0.0.0/8", Until: t0.Add(time.Hour)}
	d := Ban{Kind: BanIdentity, Value: "x", User: "user:u", Until: t0.Add(time.Hour)}
	longer := a
	longer.Until = a.Until.Add(time.Hour)
	got := DiffBans([]Ban{a, b, c}, []Ban{longer, b, d}, t0, t0.Add(5*time.Second))
	if len(got.Added) != 2 || got.Added[0] != longer || got.Added[1] != d {
		t.Errorf("added %v", got.Added)
	}
	if len(got.Removed) != 1 || got.Removed[0] != c {
		t.Errorf("removed %v", got.Removed)
	}
	if len(got.Expired) != 1 || got.Expired[0] != b {
		t.Errorf("expired %v", got.Expired)
	}
	if again := DiffBans([]Ban{longer, b, d}, []Ban{longer, b, d}, t0.Add(5*time.Second), t0.Add(6*time.Second)); len(again.Added)+len(again.Removed)+len(again.Expired) != 0 {
		t.Errorf("no change reported as %v", again)
	}
}
