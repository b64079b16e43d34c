package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// The interoperability matrix (issue 13): one client suite of the
// project's own, run against each broker directly and through mqttgate.
// Each case returns what it observed; the two runs must observe the same,
// and what a broker does differently from the others is its own (the
// direct run shows it too), listed in the README's table.

// suiteCase is one scenario against a target; it returns what it saw.
type suiteCase struct {
	name string
	v5   bool // 5.0 only
	run  func(t *testing.T, tg suiteTarget) string
}

type suiteTarget struct {
	v    mqttwire.Version
	dial aclDial
	tag  string // unique per run: client ids and topics do not meet across runs
}

func (tg suiteTarget) client(t *testing.T, id string, c *mqttwire.Connect) (*mqtttest.RawClient, mqttwire.Packet) {
	t.Helper()
	if c == nil {
		c = &mqttwire.Connect{CleanStart: true}
	}
	c.ClientID = []byte(tg.tag + id)
	if c.KeepAlive == 0 {
		c.KeepAlive = 30
	}
	return mqtttest.NewRawSession(t, tg.dial(t), tg.v, c)
}

func (tg suiteTarget) topic(s string) string { return "it/" + tg.tag + "/" + s }

// connected opens a client and returns it, or "" and what went wrong.
func (tg suiteTarget) connected(t *testing.T, id string, c *mqttwire.Connect) (*mqtttest.RawClient, string) {
	t.Helper()
	rc, ack := tg.client(t, id, c)
	if ack.Type != mqttwire.CONNACK || len(ack.Body) < 2 {
		return nil, fmt.Sprintf("no CONNACK (%s)", ack.Type)
	}
	if ack.Body[1] != 0 {
		return nil, fmt.Sprintf("CONNACK %#x", ack.Body[1])
	}
	return rc, ""
}

// sub subscribes to filter at qos with SUBSCRIBE properties props (v5),
// and to the fence topic (see receive).
func (tg suiteTarget) sub(t *testing.T, c *mqtttest.RawClient, filter string, qos byte, props []byte) string {
	t.Helper()
	c.Send(mqttwire.AppendSubscribe(nil, tg.v, 1, props, []mqttwire.Filter{{Topic: []byte(filter), Options: qos}, {Topic: []byte(tg.topic("fence")), Options: 1}}))
	p := c.Next()
	if p.Type != mqttwire.SUBACK {
		return fmt.Sprintf("%s instead of SUBACK", p.Type)
	}
	return fmt.Sprintf("granted %#x", mqtttest.SubackCodes(t, p, tg.v)[0])
}

// publish sends one PUBLISH and completes its flow as a client does.
func (tg suiteTarget) publish(t *testing.T, c *mqtttest.RawClient, topic string, qos byte, retain bool, props []byte, payload string) string {
	t.Helper()
	var id uint16
	if qos > 0 {
		id = 7
	}
	c.Send(mqttwire.AppendPublish(nil, tg.v, []byte(topic), qos, retain, id, props, []byte(payload)))
	switch qos {
	case 1:
		if p := c.Next(); p.Type != mqttwire.PUBACK {
			return fmt.Sprintf("%s instead of PUBACK", p.Type)
		}
	case 2:
		if p := c.Next(); p.Type != mqttwire.PUBREC {
			return fmt.Sprintf("%s instead of PUBREC", p.Type)
		}
		c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBREL, tg.v, id, 0, nil))
		if p := c.Next(); p.Type != mqttwire.PUBCOMP {
			return fmt.Sprintf("%s instead of PUBCOMP", p.Type)
		}
	}
	return ""
}

// receive reads what arrives until the fence: a message that pub
// publishes now on the fence topic, which every subscriber of the suite
// holds. Brokers route one publisher's messages to a subscriber in order,
// so everything pub sent before has arrived by then (a PINGRESP is no
// fence: mochi-mqtt and Aedes deliver from other goroutines or ticks). It
// acknowledges as a client does, and describes each PUBLISH: topic, QoS,
// retain, payload, and with describe any more it wants of it.
func (tg suiteTarget) receive(t *testing.T, c, pub *mqtttest.RawClient, describe func(mqttwire.Publish) string) []string {
	t.Helper()
	if bad := tg.publish(t, pub, tg.topic("fence"), 1, false, nil, "fence"); bad != "" {
		return []string{"fence: " + bad}
	}
	var got []string
	fenced, releasing := false, 0 // QoS 2 deliveries whose PUBREL is still to come
	for range 100 {
		if fenced && releasing == 0 {
			return got
		}
		p := c.Next()
		switch p.Type {
		case mqttwire.PUBREL:
			a, _ := mqttwire.ParseAck(p, tg.v)
			c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBCOMP, tg.v, a.PacketID, 0, nil))
			releasing--
		case mqttwire.PUBLISH:
			m, err := mqttwire.ParsePublish(p, tg.v)
			if err != nil {
				return append(got, "bad PUBLISH")
			}
			topic := strings.TrimPrefix(string(m.Topic), tg.topic(""))
			if topic == "fence" {
				fenced = true
			} else {
				d := fmt.Sprintf("%s q%d r%v %q", topic, m.QoS, m.Retain, m.Payload)
				if describe != nil {
					d += describe(m)
				}
				got = append(got, d)
			}
			switch m.QoS {
			case 1:
				c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBACK, tg.v, m.PacketID, 0, nil))
			case 2:
				c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBREC, tg.v, m.PacketID, 0, nil))
				releasing++
			}
		case mqttwire.DISCONNECT:
			return append(got, fmt.Sprintf("DISCONNECT %x", p.Body))
		default:
			got = append(got, p.Type.String())
		}
	}
	return append(got, "no fence")
}

// queued waits (at most 5 s) for one PUBLISH and describes it, acked.
func (tg suiteTarget) queued(c *mqtttest.RawClient) []string {
	for range 10 {
		p, open := c.NextOrClosedWithin(5 * time.Second)
		if !open {
			return nil
		}
		if p.Type != mqttwire.PUBLISH {
			continue
		}
		m, err := mqttwire.ParsePublish(p, tg.v)
		if err != nil {
			return []string{"bad PUBLISH"}
		}
		if m.QoS > 0 {
			_, _ = c.Conn().Write(mqttwire.AppendPubAck(nil, mqttwire.PUBACK, tg.v, m.PacketID, 0, nil))
		}
		return []string{fmt.Sprintf("%s q%d r%v %q", strings.TrimPrefix(string(m.Topic), tg.topic("")), m.QoS, m.Retain, m.Payload)}
	}
	return nil
}

// next waits (at most 5 s) for the next PUBLISH and describes it, acked.
func (tg suiteTarget) next(t *testing.T, c *mqtttest.RawClient) string {
	t.Helper()
	for range 10 {
		p := c.Next()
		if p.Type != mqttwire.PUBLISH {
			continue
		}
		m, err := mqttwire.ParsePublish(p, tg.v)
		if err != nil {
			return "bad PUBLISH"
		}
		if m.QoS == 1 {
			c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBACK, tg.v, m.PacketID, 0, nil))
		}
		return fmt.Sprintf("%s q%d r%v %q", strings.TrimPrefix(string(m.Topic), tg.topic("")), m.QoS, m.Retain, m.Payload)
	}
	return "no PUBLISH"
}

func join(parts ...any) string {
	var s []string
	for _, p := range parts {
		if str := fmt.Sprint(p); str != "" && str != "[]" {
			s = append(s, str)
		}
	}
	return strings.Join(s, "; ")
}

var suite = []suiteCase{
	{name: "connect, ping, disconnect", run: func(t *testing.T, tg suiteTarget) string {
		c, bad := tg.connected(t, "c", nil)
		if bad != "" {
			return bad
		}
		c.Send([]byte{0xc0, 0})
		ping := c.Next().Type.String()
		c.Send(mqttwire.AppendDisconnect(nil, tg.v, mqttwire.Success, ""))
		return "accepted; " + ping
	}},
	{name: "QoS 0/1/2 both ways", run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		granted := tg.sub(t, s, tg.topic("q/#"), 2, nil)
		p, bad := tg.connected(t, "p", nil)
		if bad != "" {
			return bad
		}
		var acks []string
		for q := byte(0); q <= 2; q++ {
			acks = append(acks, tg.publish(t, p, tg.topic(fmt.Sprintf("q/%d", q)), q, false, nil, "m"))
		}
		got := tg.receive(t, s, p, nil)
		sort.Strings(got)
		return join(granted, strings.Join(acks, ""), got)
	}},
	{name: "retained set and clear", run: func(t *testing.T, tg suiteTarget) string {
		p, bad := tg.connected(t, "p", nil)
		if bad != "" {
			return bad
		}
		set := tg.publish(t, p, tg.topic("ret"), 1, true, nil, "kept")
		s1, _ := tg.connected(t, "s1", nil)
		tg.sub(t, s1, tg.topic("ret"), 1, nil)
		// Awaited, not fenced by a PINGRESP: Aedes sends retained
		// messages after answering later packets.
		first := tg.next(t, s1)
		clear := tg.publish(t, p, tg.topic("ret"), 1, true, nil, "")
		s2, _ := tg.connected(t, "s2", nil)
		tg.sub(t, s2, tg.topic("ret"), 1, nil)
		return join(set, first, clear, "after clear:", tg.receive(t, s2, p, nil))
	}},
	{name: "will on abnormal close", run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		tg.sub(t, s, tg.topic("will"), 1, nil)
		conn := tg.dial(t)
		w, ack := mqtttest.NewRawSession(t, conn, tg.v, &mqttwire.Connect{ClientID: []byte(tg.tag + "w"), CleanStart: true, KeepAlive: 30,
			WillFlag: true, WillTopic: []byte(tg.topic("will")), WillPayload: []byte("gone"), WillQoS: 1})
		if len(ack.Body) < 2 || ack.Body[1] != 0 {
			return fmt.Sprintf("will client: CONNACK %x", ack.Raw)
		}
		_ = w
		conn.Close()  // no DISCONNECT
		p := s.Next() // the will comes when the broker notices, not before the PINGRESP of a PINGREQ sent now
		m, err := mqttwire.ParsePublish(p, tg.v)
		if err != nil {
			return p.Type.String()
		}
		return fmt.Sprintf("will %q", m.Payload)
	}},
	{name: "persistent session queues", run: func(t *testing.T, tg suiteTarget) string {
		var props []byte
		if tg.v == mqttwire.V5 {
			props = mqttwire.AppendProperty(nil, mqttwire.PropSessionExpiry, 300, nil)
		}
		// A new session either way: 5.0 starts clean and sets an expiry,
		// 3.1.1 keeps the session with clean session off (a fresh id).
		s, bad := tg.connected(t, "s", &mqttwire.Connect{CleanStart: tg.v == mqttwire.V5, Properties: props})
		if bad != "" {
			return bad
		}
		tg.sub(t, s, tg.topic("queue"), 1, nil)
		s.Send(mqttwire.AppendDisconnect(nil, tg.v, mqttwire.Success, ""))
		// The broker closes once it has taken the DISCONNECT (through
		// the proxy, the close follows the broker's): publishing before
		// that races the session going offline.
		if pk, open := s.NextOrClosed(); open {
			return "after DISCONNECT: " + pk.Type.String()
		}
		p, _ := tg.connected(t, "p", nil)
		sent := tg.publish(t, p, tg.topic("queue"), 1, false, nil, "while away")
		back, ack := tg.client(t, "s", &mqttwire.Connect{Properties: props})
		present := len(ack.Body) > 0 && ack.Body[0]&1 == 1
		// No fence here: a broker may resend what it queued after it
		// routes a new message (mochi does), so the queued one is waited
		// for itself.
		return join(sent, fmt.Sprintf("present %v", present), tg.queued(back))
	}},
	{name: "unsubscribe", run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		tg.sub(t, s, tg.topic("un"), 1, nil)
		body := []byte{0, 2} // packet id
		if tg.v == mqttwire.V5 {
			body = append(body, 0) // no properties
		}
		f := tg.topic("un")
		body = append(append(body, 0, byte(len(f))), f...)
		s.Send(append([]byte{0xa2, byte(len(body))}, body...))
		unsuback := s.Next().Type.String()
		p, _ := tg.connected(t, "p", nil)
		tg.publish(t, p, tg.topic("un"), 1, false, nil, "late")
		return join(unsuback, "then:", tg.receive(t, s, p, nil))
	}},
	{name: "user properties", v5: true, run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		tg.sub(t, s, tg.topic("up"), 0, nil)
		p, _ := tg.connected(t, "p", nil)
		tg.publish(t, p, tg.topic("up"), 1, false, []byte{0x26, 0, 1, 'k', 0, 2, 'v', '1'}, "m") // QoS 1: routed once acknowledged
		return join(tg.receive(t, s, p, func(m mqttwire.Publish) string {
			return fmt.Sprintf(" user property %v", bytes.Contains(m.Properties, []byte{0x26, 0, 1, 'k', 0, 2, 'v', '1'}))
		}))
	}},
	{name: "subscription identifier", v5: true, run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		granted := tg.sub(t, s, tg.topic("sid"), 0, mqttwire.AppendProperty(nil, mqttwire.PropSubscriptionID, 7, nil))
		p, _ := tg.connected(t, "p", nil)
		tg.publish(t, p, tg.topic("sid"), 1, false, nil, "m")
		return join(granted, tg.receive(t, s, p, func(m mqttwire.Publish) string {
			n, _, ok := m.Properties.Lookup(mqttwire.PropSubscriptionID)
			return fmt.Sprintf(" id %d %v", n, ok)
		}))
	}},
	{name: "topic alias from the client", v5: true, run: func(t *testing.T, tg suiteTarget) string {
		s, bad := tg.connected(t, "s", nil)
		if bad != "" {
			return bad
		}
		tg.sub(t, s, tg.topic("alias"), 0, nil)
		p, ack := tg.client(t, "p", nil)
		a, err := mqttwire.ParseAck(ack, tg.v)
		if err != nil {
			return "bad CONNACK"
		}
		if max, _, _ := a.Properties.Lookup(mqttwire.PropTopicAliasMaximum); max == 0 {
			return "Topic Alias Maximum 0: the client may set none [MQTT-3.3.2-9]"
		}
		alias := mqttwire.AppendProperty(nil, mqttwire.PropTopicAlias, 1, nil)
		set := tg.publish(t, p, tg.topic("alias"), 1, false, alias, "set")
		used := tg.publish(t, p, "", 1, false, alias, "used")
		return join(set, used, tg.receive(t, s, p, nil))
	}},
}

// connectOutcomeCode sends a v5 CONNECT and describes the answer.
func connectOutcomeCode(conn net.Conn, id string) string {
	defer conn.Close()
	if _, err := conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte(id), CleanStart: true, KeepAlive: 30})); err != nil {
		return "write failed"
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	p, err := mqttwire.NewReader(conn, 256, 1<<20).Next()
	switch {
	case err != nil:
		return "closed, no CONNACK"
	case p.Type != mqttwire.CONNACK || len(p.Body) < 2:
		return fmt.Sprintf("%s %x", p.Type, p.Raw)
	case len(p.Body) == 2:
		return fmt.Sprintf("3.1.1 CONNACK %#x", p.Body[1])
	}
	return fmt.Sprintf("CONNACK %#x", p.Body[1])
}

// A client stack other than the suite's own.
type stack struct {
	name      string
	v5only    bool
	roundTrip func(t *testing.T, st stackTarget) string // "ok", or what went wrong
}

// stackTarget is a broker (gate nil) or mqttgate (TLS with its CA).
type stackTarget struct {
	v         mqttwire.Version
	addr      string
	gate      *gate
	topic, id string
}

var stacks = []stack{
	{name: "paho.golang", v5only: true, roundTrip: func(t *testing.T, st stackTarget) string {
		var conn net.Conn
		var err error
		if st.gate != nil {
			conn, err = tls.Dial("tcp", st.addr, st.gate.clientTLS())
		} else {
			conn, err = net.Dial("tcp", st.addr)
		}
		if err != nil {
			return err.Error()
		}
		msgs := make(chan *paho.Publish, 1)
		c := paho.NewClient(paho.ClientConfig{ClientID: st.id, Conn: packets.NewThreadSafeConn(conn),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				msgs <- pr.Packet
				return true, nil
			}}, OnClientError: func(error) {}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: st.id, KeepAlive: 30, CleanStart: true}); err != nil {
			return "connect: " + err.Error()
		}
		defer c.Disconnect(&paho.Disconnect{})
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: st.topic, QoS: 1}}}); err != nil {
			return "subscribe: " + err.Error()
		}
		if _, err := c.Publish(ctx, &paho.Publish{Topic: st.topic, QoS: 1, Payload: []byte("paho")}); err != nil {
			return "publish: " + err.Error()
		}
		select {
		case m := <-msgs:
			if string(m.Payload) != "paho" {
				return fmt.Sprintf("got %q", m.Payload)
			}
			return "ok"
		case <-ctx.Done():
			return "no message"
		}
	}},
	{name: "mosquitto_pub/sub", roundTrip: func(t *testing.T, st stackTarget) string {
		host, port, _ := net.SplitHostPort(st.addr)
		conn := []string{"-h", host, "-p", port}
		if st.gate != nil {
			conn = st.gate.tlsArgs("")
		}
		ver := "mqttv311"
		if st.v == mqttwire.V5 {
			ver = "mqttv5"
		}
		lines, _ := sub(t, append(append([]string{}, conn...), "-V", ver, "-i", st.id+"s", "-t", st.topic, "-q", "1")...)
		if err := pub(t, append(append([]string{}, conn...), "-V", ver, "-i", st.id+"p", "-t", st.topic, "-q", "1", "-m", "cli")...); err != nil {
			return "publish: " + err.Error()
		}
		select {
		case l := <-lines:
			if l != st.topic+" cli" {
				return fmt.Sprintf("got %q", l)
			}
			return "ok"
		case <-time.After(10 * time.Second):
			return "no message"
		}
	}},
	{name: "MQTT.js", roundTrip: func(t *testing.T, st stackTarget) string {
		url, ca := "mqtt://"+st.addr, "-"
		if st.gate != nil {
			url, ca = "mqtts://"+st.addr, st.gate.pki.CA
		}
		ver := "4"
		if st.v == mqttwire.V5 {
			ver = "5"
		}
		cmd := exec.Command(mqtttest.Need(t, "node"), "roundtrip.mjs", url, ver, ca, st.topic, st.id)
		cmd.Dir = npmPackages(t, filepath.Join("..", "..", "testdata", "clients", "mqttjs"), "mqtt")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "got "+st.topic+" mqttjs" {
			return fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return "ok"
	}},
}

// mochiBroker runs mochi-mqtt (the demo's broker) on a loopback port.
func mochiBroker(t *testing.T) string {
	t.Helper()
	b := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := b.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	addr := mqtttest.FreeAddr(t)
	if err := b.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.Serve() }()
	t.Cleanup(func() { _ = b.Close() })
	mqtttest.WaitListening(t, addr)
	return addr
}

// TestInteropMatrix runs the suite against Mosquitto, mochi-mqtt, Aedes
// and RabbitMQ, directly and through mqttgate (TLS, no ACL, the PROXY
// header each broker reads), in 3.1.1 and 5.0 where the broker speaks
// it; the two runs must see the same. The table it logs is the README's.
func TestInteropMatrix(t *testing.T) {
	type broker struct {
		name string
		addr string
		env  []string // the gate's, for this broker
		noV5 bool
	}
	aedesAddr, _ := aedes(t)
	rabbitAddr, _ := rabbitmq(t, false)
	brokers := []broker{
		{name: "Mosquitto 2.0", addr: mqtttest.Mosquitto(t, "")},
		{name: "mochi-mqtt 2.7", addr: mochiBroker(t)},
		{name: "Aedes 1.2", addr: aedesAddr, noV5: true},
		{name: "RabbitMQ 3.10", addr: rabbitAddr, noV5: true},
	}
	var table []string
	for _, b := range brokers {
		g := startGate(t, b.addr, append([]string{"MQTTGATE_FLAPPING_MAX_DISCONNECTS=0"}, b.env...)...)
		for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
			if v == mqttwire.V5 && b.noV5 {
				// A 3.1.1-only broker and a v5 client: what the broker
				// answers, and what mqttgate tells the client instead.
				tag := strings.Fields(b.name)[0] + "v5"
				direct := connectOutcomeCode(dialPlain(b.addr)(t), tag+"d")
				through := connectOutcomeCode(dialGateTLS(g)(t), tag+"g")
				table = append(table, fmt.Sprintf("| %s | %s | connect | direct: %s; through: %s |", b.name, v, direct, through))
				if through != "CONNACK 0x84" {
					t.Errorf("%s: a v5 client through mqttgate got %s, want CONNACK 0x84", b.name, through)
				}
				continue
			}
			for i, sc := range suite {
				if sc.v5 && v != mqttwire.V5 {
					continue
				}
				tag := fmt.Sprintf("%s%d%d", strings.Fields(b.name)[0], v, i)
				var direct, through string
				t.Run(fmt.Sprintf("%s/%s/%s", b.name, v, sc.name), func(t *testing.T) {
					direct = sc.run(t, suiteTarget{v: v, dial: dialPlain(b.addr), tag: "d" + tag})
					through = sc.run(t, suiteTarget{v: v, dial: dialGateTLS(g), tag: "g" + tag})
					if direct != through {
						t.Errorf("direct:  %s\nthrough: %s", direct, through)
					}
				})
				table = append(table, fmt.Sprintf("| %s | %s | %s | %s |", b.name, v, sc.name, direct))
			}
			// The other client stacks: one QoS 1 round trip each.
			for _, st := range stacks {
				if st.v5only && v != mqttwire.V5 {
					continue
				}
				// No dot in the topic: RabbitMQ turns every "." of a topic
				// into "/" (its AMQP routing keys), direct and through alike.
				tag := strings.NewReplacer(".", "", "/", "").Replace(fmt.Sprintf("%s-%s-%s", strings.Fields(b.name)[0], st.name, v))
				var direct, through string
				t.Run(fmt.Sprintf("%s/%s/%s", b.name, v, st.name), func(t *testing.T) {
					direct = st.roundTrip(t, stackTarget{v: v, addr: b.addr, topic: "st/d" + tag, id: "d" + tag})
					through = st.roundTrip(t, stackTarget{v: v, addr: g.addr, gate: g, topic: "st/g" + tag, id: "g" + tag})
					if direct != "ok" || through != "ok" {
						t.Errorf("direct: %s; through: %s", direct, through)
					}
				})
				table = append(table, fmt.Sprintf("| %s | %s | %s round trip | direct %s, through %s |", b.name, v, st.name, direct, through))
			}
		}
	}
	t.Logf("broker | MQTT | case | observed, direct and through alike\n%s", strings.Join(table, "\n"))
}
