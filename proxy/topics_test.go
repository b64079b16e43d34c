package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/acl"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// denyMarked denies every topic and filter that contains "denied" (and
// deliveries of "hidden"); its options shape the denial as the acl
// package's do.
type denyMarked struct{ dryRun, endOnPublish bool }

// denial is what denyMarked answers for a marked topic.
func (m denyMarked) denial(publish bool) Decision {
	switch {
	case m.dryRun:
		return Decision{Why: "test rule", Mark: mqttwire.DryRun}
	case publish && m.endOnPublish:
		return Decision{Verdict: End, Code: mqttwire.NotAuthorized, Why: "test rule"}
	}
	return Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized, Why: "test rule"}
}

func (m denyMarked) Publish(topic []byte, _ byte, _ bool) Decision {
	if !bytes.Contains(topic, []byte("denied")) {
		return Decision{Why: "test rule"}
	}
	return m.denial(true)
}

func (m denyMarked) Subscribe(filter []byte, _ byte) Decision {
	if !bytes.Contains(filter, []byte("denied")) {
		return Decision{Why: "test rule"}
	}
	return m.denial(false)
}

func (m denyMarked) Receive(topic []byte) Decision {
	if !bytes.Contains(topic, []byte("hidden")) {
		return Decision{Why: "test rule"}
	}
	return m.denial(false)
}

func withRights(cfg Config) Config {
	cfg.Topics = func(*Session) TopicRights { return denyMarked{} }
	return cfg
}

func dialRaw(t *testing.T, addr string, v mqttwire.Version, c *mqttwire.Connect) (*mqtttest.RawClient, mqttwire.Packet) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return mqtttest.NewRawClient(t, conn, v, c)
}

var (
	publishPkt   = mqtttest.PublishPacket
	subscribePkt = mqtttest.SubscribePacket
	subackCodes  = mqtttest.SubackCodes
)

// Three filters, the middle one denied: the client sees one code per
// filter in order, and receives messages on the allowed two only.
func TestSubscribeFiltersJudgedOneByOne(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, withRights(Config{Backend: broker}), nil)
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		deny := byte(0x87)
		if v != mqttwire.V5 {
			deny = 0x80
		}
		sub, _ := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("sub")})
		sub.Send(subscribePkt(v, 7, "a/x", "denied/x", "c/x"))
		if got := subackCodes(t, sub.Next(), v); !bytes.Equal(got, []byte{1, deny, 1}) {
			t.Fatalf("v%d: SUBACK codes %x", v, got)
		}
		// Every filter denied: answered by the proxy alone.
		sub.Send(subscribePkt(v, 8, "denied/1", "denied/2"))
		if got := subackCodes(t, sub.Next(), v); !bytes.Equal(got, []byte{deny, deny}) {
			t.Fatalf("v%d: all-denied SUBACK codes %x", v, got)
		}
		// The broker got the denied filter from nobody: a message on it
		// (sent straight to the broker) does not arrive.
		pub, _ := dialRaw(t, broker, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("pub")})
		for _, topic := range []string{"denied/x", "a/x", "c/x"} {
			pub.Send(publishPkt(mqttwire.V311, topic, 0, 0, nil, "m"))
		}
		for _, want := range []string{"a/x", "c/x"} {
			p := sub.Next()
			m, err := mqttwire.ParsePublish(p, v)
			if err != nil || string(m.Topic) != want {
				t.Fatalf("v%d: got %s %q (%v), want a message on %s", v, p.Type, m.Topic, err, want)
			}
			if m.QoS == 1 {
				sub.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBACK, v, m.PacketID, 0, nil))
			}
		}
		sub.Quiet(200 * time.Millisecond)
	}
}

// Denied PUBLISHes never reach the broker; QoS 1 and 2 are answered by the
// proxy (v5 with 0x87), a v3 QoS 2 flow is completed with PUBCOMP.
func TestPublishDenied(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, withRights(Config{Backend: broker}), nil)
	watch, _ := dialRaw(t, broker, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("watch")})
	watch.Send(subscribePkt(mqttwire.V311, 1, "#"))
	watch.Next()
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		c, _ := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("p")})
		code := func(p mqttwire.Packet) mqttwire.ReasonCode { a, _ := mqttwire.ParseAck(p, v); return a.Reason }
		c.Send(publishPkt(v, "denied/0", 0, 0, nil, "q0"))
		c.Send(publishPkt(v, "denied/1", 1, 11, nil, "q1"))
		if p := c.Next(); p.Type != mqttwire.PUBACK || (v == mqttwire.V5 && code(p) != 0x87) {
			t.Fatalf("v%d QoS 1: %s %x", v, p.Type, p.Raw)
		}
		c.Send(publishPkt(v, "denied/2", 2, 12, nil, "q2"))
		if p := c.Next(); p.Type != mqttwire.PUBREC || (v == mqttwire.V5 && code(p) != 0x87) {
			t.Fatalf("v%d QoS 2: %s %x", v, p.Type, p.Raw)
		}
		c.Send([]byte{0x62, 2, 0, 12}) // PUBREL
		if p := c.Next(); p.Type != mqttwire.PUBCOMP {
			t.Fatalf("v%d PUBREL: %s %x", v, p.Type, p.Raw)
		}
		c.Send(publishPkt(v, "ok/after", 1, 13, nil, "fine"))
		if p := c.Next(); p.Type != mqttwire.PUBACK || code(p).IsError() {
			t.Fatalf("v%d allowed publish: %s %x", v, p.Type, p.Raw)
		}
		m, err := mqttwire.ParsePublish(watch.Next(), mqttwire.V311)
		if err != nil || string(m.Topic) != "ok/after" {
			t.Fatalf("v%d: the broker saw %q first (%v)", v, m.Topic, err)
		}
	}
	if n := px.srv.Stats.TopicDenied.Load(); n != 6 {
		t.Errorf("denials counted %d, want 6", n)
	}
	if !strings.Contains(px.logs.String(), `"event":"acl_deny"`) || !strings.Contains(px.logs.String(), `"rule":"test rule"`) {
		t.Error("denial not logged with its rule")
	}
}

// A v5 Topic Alias is checked against the topic it stands for; an alias
// set by a denied PUBLISH stays denied; an unknown alias is a protocol
// error.
func TestTopicAliasTracked(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, withRights(Config{Backend: broker}), nil)
	v := mqttwire.V5
	c, ack := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("alias")})
	if ack.Type != mqttwire.CONNACK {
		t.Fatal(ack.Type)
	}
	alias := func(n uint16) []byte { return mqttwire.AppendProperty(nil, mqttwire.PropTopicAlias, uint32(n), nil) }
	c.Send(publishPkt(v, "ok/a", 1, 1, alias(1), "set"))
	if p := c.Next(); p.Type != mqttwire.PUBACK {
		t.Fatalf("%s %x", p.Type, p.Raw)
	}
	c.Send(publishPkt(v, "", 1, 2, alias(1), "use"))
	if p := c.Next(); p.Type != mqttwire.PUBACK || len(p.Body) > 2 && p.Body[2] >= 0x80 { // 0x10: no subscribers, fine
		t.Fatalf("alias to an allowed topic: %x", p.Raw)
	}
	c.Send(publishPkt(v, "denied/a", 1, 3, alias(2), "set"))
	if p := c.Next(); p.Body[2] != 0x87 {
		t.Fatalf("denied alias set: %x", p.Raw)
	}
	c.Send(publishPkt(v, "", 1, 4, alias(2), "use"))
	if p := c.Next(); p.Body[2] != 0x87 {
		t.Fatalf("alias to a denied topic: %x", p.Raw)
	}
	c.Send(publishPkt(v, "", 1, 5, alias(3), "unknown"))
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != 0x94 {
		t.Fatalf("unknown alias: %s %x", p.Type, p.Raw)
	}
}

// A will the client may not publish refuses the CONNECT.
func TestWillDenied(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, withRights(Config{Backend: broker}), nil)
	for v, want := range map[mqttwire.Version][]byte{mqttwire.V311: {0x20, 2, 0, 5}, mqttwire.V5: {0x20, 3, 0, 0x87, 0}} {
		_, ack := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("w"), WillFlag: true, WillTopic: []byte("denied/will"), WillPayload: []byte("x")})
		if !bytes.Equal(ack.Raw, want) {
			t.Errorf("v%d: %x, want %x", v, ack.Raw, want)
		}
		_, ack = dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("w"), WillFlag: true, WillTopic: []byte("ok/will"), WillPayload: []byte("x")})
		if ack.Type != mqttwire.CONNACK || ack.Raw[len(ack.Raw)-1-boolInt(v == mqttwire.V5)] != 0 {
			t.Errorf("v%d allowed will: %x", v, ack.Raw)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Dry run: decided, logged and counted, but forwarded.
func TestTopicDryRun(t *testing.T) {
	broker := startMosquitto(t)
	cfg := Config{Backend: broker, Topics: func(*Session) TopicRights { return denyMarked{dryRun: true} }}
	px := startProxy(t, cfg, nil)
	c, _ := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("dry")})
	c.Send(subscribePkt(mqttwire.V5, 1, "denied/x"))
	if got := subackCodes(t, c.Next(), mqttwire.V5); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("dry run SUBACK %x", got)
	}
	c.Send(publishPkt(mqttwire.V5, "denied/x", 1, 2, nil, "through"))
	for range 2 { // PUBACK and the message, in either order
		if p := c.Next(); p.Type != mqttwire.PUBACK && p.Type != mqttwire.PUBLISH {
			t.Fatalf("%s %x", p.Type, p.Raw)
		}
	}
	if n := px.srv.Stats.TopicDenied.Load(); n != 2 {
		t.Errorf("dry-run denials %d, want 2", n)
	}
	if !strings.Contains(px.logs.String(), `"dry_run":true`) {
		t.Error("dry run not in the log")
	}
}

// The disconnect setting ends the session on a denied PUBLISH.
func TestTopicDenyDisconnect(t *testing.T) {
	broker := startMosquitto(t)
	cfg := Config{Backend: broker, Topics: func(*Session) TopicRights { return denyMarked{endOnPublish: true} }}
	px := startProxy(t, cfg, nil)
	c, _ := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("d")})
	c.Send(publishPkt(mqttwire.V5, "denied/x", 0, 0, nil, "x"))
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != 0x87 {
		t.Fatalf("%s %x", p.Type, p.Raw)
	}
}

// With the delivery check, a message the client may not receive is
// dropped and acknowledged to the broker in the client's place: PUBACK,
// or PUBREC and then PUBCOMP for the broker's PUBREL.
func TestDeliveryCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acks := make(chan string, 8)
	acceptLoop(t, ln, func(c net.Conn) { // a broker that checks what the proxy answers
		defer c.Close()
		r := mqttwire.NewReader(c, 256, 1<<16)
		cp, err := r.Next()
		if err != nil {
			return
		}
		cn, _ := mqttwire.ParseConnect(cp)
		v := cn.Version
		c.Write(mqttwire.AppendConnack(nil, v, false, 0, nil))
		if _, err := r.Next(); err != nil { // SUBSCRIBE
			return
		}
		c.Write(mqttwire.AppendSuback(nil, v, 1, []byte{2}, nil))
		c.Write(publishPkt(v, "x/hidden/1", 1, 1, nil, "h1"))
		c.Write(publishPkt(v, "x/hidden/2", 2, 2, nil, "h2"))
		c.Write(publishPkt(v, "x/ok", 1, 3, nil, "ok"))
		for {
			p, err := r.Next()
			if err != nil {
				return
			}
			a, _ := mqttwire.ParseAck(p, v)
			acks <- fmt.Sprintf("%s %d", p.Type, a.PacketID)
			if p.Type == mqttwire.PUBREC {
				c.Write([]byte{0x62, 2, 0, byte(a.PacketID)})
			}
		}
	})
	cfg := withRights(Config{Backend: ln.Addr().String()})
	cfg.TopicCheckDelivery = true
	px := startProxy(t, cfg, nil)
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		c, _ := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("recv")})
		c.Send(mqtttest.SubscribePacket(v, 1, "x/#"))
		c.Next()
		p := c.Next()
		m, err := mqttwire.ParsePublish(p, v)
		if err != nil || string(m.Topic) != "x/ok" {
			t.Fatalf("v%d: got %s %q (%v), want only x/ok", v, p.Type, m.Topic, err)
		}
		c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBACK, v, m.PacketID, 0, nil))
		var got []string
		for range 4 {
			select {
			case a := <-acks:
				got = append(got, a)
			case <-time.After(5 * time.Second):
				t.Fatalf("v%d: broker got only %q", v, got)
			}
		}
		slices.Sort(got)
		if want := []string{"PUBACK 1", "PUBACK 3", "PUBCOMP 2", "PUBREC 2"}; !slices.Equal(got, want) {
			t.Fatalf("v%d: broker got %q, want %q", v, got, want)
		}
		c.Quiet(100 * time.Millisecond)
	}
	if n := px.srv.Stats.TopicDenied.Load(); n != 4 {
		t.Errorf("delivery denials %d, want 4", n)
	}
}

// A flood of bad clients is counted in full and logged at a bounded rate.
func TestSecurityEventsRateLimited(t *testing.T) {
	px := startProxy(t, Config{Backend: "127.0.0.1:1"}, nil)
	const n = 200
	for range n {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte{0xc0, 0}) // PINGREQ before CONNECT
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Read(make([]byte, 1)) // closed by the proxy
		conn.Close()
	}
	mqtttest.WaitFor(t, "every connection counted", func() bool { return px.srv.Stats.NoConnect.Load() == n })
	mqtttest.WaitFor(t, "every connection closed", func() bool { return px.srv.Stats.Closed.Load() == n })
	for _, event := range []string{`"event":"no_connect"`, `"event":"close"`} {
		if lines := strings.Count(px.logs.String(), event); lines > 60 {
			t.Fatalf("%d %s log lines for %d bad clients", lines, event, n)
		}
	}
}

// A broker may allow 65,535 Topic Aliases: what the client's aliases
// hold is bounded in bytes too (v5 DISCONNECT 0x97 beyond), so denied
// PUBLISHes with long topics cannot pin memory.
func TestTopicAliasBytesBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acceptLoop(t, ln, func(c net.Conn) {
		r := mqttwire.NewReader(c, 256, 1<<20)
		if p, err := r.Next(); err != nil || p.Type != mqttwire.CONNECT {
			return
		}
		props := mqttwire.AppendProperty(nil, mqttwire.PropTopicAliasMaximum, 65535, nil)
		_, _ = c.Write(mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.Success, props))
		_, _ = io.Copy(io.Discard, c)
	})
	px := startProxy(t, withRights(Config{Backend: ln.Addr().String()}), nil)
	c, ack := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("aliases")})
	if ack.Type != mqttwire.CONNACK {
		t.Fatalf("CONNACK %x", ack.Raw)
	}
	topic := "denied/" + strings.Repeat("t", 60_000)
	for n := uint16(1); n <= 20; n++ {
		c.Send(publishPkt(mqttwire.V5, topic, 0, 0, mqttwire.AppendProperty(nil, mqttwire.PropTopicAlias, uint32(n), nil), "m"))
	}
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.QuotaExceeded) {
		t.Fatalf("20 aliases of 60 kB: %s %x, want DISCONNECT 0x97", p.Type, p.Raw)
	}
}

// The broker's Topic Aliases are noted from the first delivery: when a
// filter granted in part turns the delivery check on, a PUBLISH that
// carries only an alias set before is judged by its topic (and one the
// broker never set is dropped), found by an attacker's review.
func TestDeliveryCheckKnowsAliasesSetBeforeItTurnedOn(t *testing.T) {
	file := filepath.Join(t.TempDir(), "acl.conf")
	if err := os.WriteFile(file, []byte(`{deny, all, subscribe, ["a/1"]}.`+"\n"+`{allow, all}.`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := acl.NewEngine(acl.Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	v := mqttwire.V5
	alias := func(n uint32) []byte { return mqttwire.AppendProperty(nil, mqttwire.PropTopicAlias, n, nil) }
	broker := scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
		switch p.Type {
		case mqttwire.CONNECT:
			_, _ = c.Write(mqttwire.AppendConnack(nil, v, false, mqttwire.Success, nil))
		case mqttwire.SUBSCRIBE:
			id := uint16(p.Body[0])<<8 | uint16(p.Body[1])
			out := mqttwire.AppendSuback(nil, v, id, []byte{0}, nil)
			if id == 1 { // before the check: the broker sets alias 1 for a/1, 2 for a/2
				out = mqttwire.AppendPublish(out, v, []byte("a/1"), 0, false, 0, alias(1), []byte("before"))
				out = mqttwire.AppendPublish(out, v, []byte("a/2"), 0, false, 0, alias(2), []byte("before"))
			} else {
				out = mqttwire.AppendPublish(out, v, nil, 0, false, 0, alias(1), []byte("a/1 by alias"))
				out = mqttwire.AppendPublish(out, v, nil, 0, false, 0, alias(9), []byte("never set"))
				out = mqttwire.AppendPublish(out, v, nil, 0, false, 0, alias(2), []byte("a/2 by alias"))
			}
			_, _ = c.Write(out)
		}
		return true
	})
	px := startProxy(t, Config{Backend: broker, Topics: func(*Session) TopicRights { return rules.View(acl.Client{ClientID: "c"}) }}, nil)
	c, ack := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("c"), Properties: mqttwire.AppendProperty(nil, mqttwire.PropTopicAliasMaximum, 10, nil)})
	if ack.Type != mqttwire.CONNACK {
		t.Fatalf("CONNACK %x", ack.Raw)
	}
	c.Send(subscribePkt(v, 1, "b/x")) // granted whole: no check yet
	if p := c.Next(); p.Type != mqttwire.SUBACK {
		t.Fatalf("%s", p.Type)
	}
	for range 2 {
		if p := c.Next(); p.Type != mqttwire.PUBLISH {
			t.Fatalf("%s, want the PUBLISHes that set aliases 1 and 2", p.Type)
		}
	}
	c.Send(subscribePkt(v, 2, "a/+")) // in part: a/1 is denied; the check turns on
	if codes := subackCodes(t, c.Next(), v); codes[0] >= 0x80 {
		t.Fatalf("a/+ refused: %x", codes)
	}
	m, err := mqttwire.ParsePublish(c.Next(), v)
	if err != nil || string(m.Payload) != "a/2 by alias" {
		t.Fatalf("first delivery after the check turned on: %q (%v), want a/2's by its alias: alias 1 is the denied a/1, alias 9 unknown", m.Payload, err)
	}
}
