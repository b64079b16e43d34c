package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// An aclScenarioRun is one set of clients run against one target: retained
// messages first, then subscribers, then live messages. Comparing what the
// subscribers received against Mosquitto enforcing an acl_file itself and
// through mqttgate enforcing it in front of a Mosquitto without ACLs shows
// that both grant, refuse and filter alike.
type aclScenarioRun struct {
	v        mqttwire.Version
	retained []aclMessage // published before anyone subscribes
	subs     []aclSubscriber
	live     []aclMessage
}

type aclMessage struct {
	user, id, topic string
}

type aclSubscriber struct {
	user, id string
	filters  []string
}

// aclDial connects to one side of the comparison.
type aclDial func(t *testing.T) net.Conn

func dialPlain(addr string) aclDial {
	return func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func dialGateTLS(g *gate) aclDial {
	return func(t *testing.T) net.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", g.addr, g.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// received maps each subscriber to what it got, sorted: "topic payload",
// with the payload naming the message (r3: the fourth retained one). The
// broker's own $SYS messages change between runs: only the one that does
// not ($SYS/broker/version, retained) is kept, as "$SYS/broker/version".
type received map[string][]string

// run performs the scenario against dial and returns what each subscriber
// received. Every client authenticates as its user with the password
// user+"-pw". Delivery is waited on, not slept on: each publish is
// acknowledged (QoS 1) before the next, subscriptions are at QoS 0 so the
// broker sends in order, and a subscriber's PINGRESP comes after every
// message the broker queued for it before that.
// The SUBACK codes each subscriber got are returned too.
func (sc *aclScenarioRun) run(t *testing.T, dial aclDial) (received, map[string][]byte) {
	t.Helper()
	connect := func(user, id string) *mqtttest.RawClient {
		t.Helper()
		c := &mqttwire.Connect{ClientID: []byte(id)}
		if user != "" { // "": anonymous
			c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, []byte(user), true, []byte(user+"-pw")
		}
		c2, ack := mqtttest.NewRawClient(t, dial(t), sc.v, c)
		if ack.Type != mqttwire.CONNACK || len(ack.Body) < 2 || ack.Body[1] != 0 {
			t.Fatalf("%s (%s) not admitted: %x", user, id, ack.Raw)
		}
		return c2
	}
	pubs := map[string]*mqtttest.RawClient{}
	var pid uint16
	publish := func(m aclMessage, retain bool, tag string) {
		t.Helper()
		c := pubs[m.id]
		if c == nil {
			c = connect(m.user, m.id)
			pubs[m.id] = c
		}
		pid++
		c.Send(mqttwire.AppendPublish(nil, sc.v, []byte(m.topic), 1, retain, pid, nil, []byte(tag)))
		if p := c.Next(); p.Type != mqttwire.PUBACK {
			t.Fatalf("%s publishing %s: %s %x, want PUBACK", m.user, m.topic, p.Type, p.Raw)
		}
	}
	for i, m := range sc.retained {
		publish(m, true, fmt.Sprintf("r%d", i))
	}
	got, codes := received{}, map[string][]byte{}
	subs := make([]*mqtttest.RawClient, len(sc.subs))
	drain := func(i int) {
		t.Helper()
		c, s := subs[i], sc.subs[i]
		c.Send([]byte{0xc0, 0}) // PINGREQ
		for range 1000 {
			p := c.Next()
			switch p.Type {
			case mqttwire.PINGRESP:
				return
			case mqttwire.PUBLISH:
				pub, err := mqttwire.ParsePublish(p, sc.v)
				if err != nil {
					t.Fatalf("%s: bad PUBLISH %x: %v", s.id, p.Raw, err)
				}
				topic := string(pub.Topic)
				switch {
				case topic == "$SYS/broker/version":
					got[s.id] = append(got[s.id], topic)
				case strings.HasPrefix(topic, "$SYS/"):
				default:
					got[s.id] = append(got[s.id], topic+" "+string(pub.Payload))
				}
			default:
				t.Fatalf("%s: unexpected %s %x", s.id, p.Type, p.Raw)
			}
		}
		t.Fatalf("%s: no PINGRESP after 1,000 packets", s.id)
	}
	for i, s := range sc.subs {
		subs[i] = connect(s.user, s.id)
		filters := make([]mqttwire.Filter, len(s.filters))
		for j, f := range s.filters {
			filters[j] = mqttwire.Filter{Topic: []byte(f)}
		}
		subs[i].Send(mqttwire.AppendSubscribe(nil, sc.v, 1, nil, filters))
		codes[s.id] = mqtttest.SubackCodes(t, subs[i].Next(), sc.v)
		drain(i) // the retained messages
	}
	for i, m := range sc.live {
		publish(m, false, fmt.Sprintf("m%d", i))
	}
	for i := range subs {
		drain(i)
		slices.Sort(got[sc.subs[i].id])
	}
	return got, codes
}

// diff describes how two runs differ, or returns "".
func (a received) diff(b received, subs []aclSubscriber) string {
	var sb strings.Builder
	for _, s := range subs {
		x, y := a[s.id], b[s.id]
		if !slices.Equal(x, y) {
			fmt.Fprintf(&sb, "%s (%s, filters %q):\n  Mosquitto: %q\n  mqttgate:  %q\n", s.id, s.user, s.filters, x, y)
		}
	}
	return sb.String()
}

// aclSides starts Mosquitto enforcing the acl file itself, and mqttgate
// enforcing it in front of a Mosquitto without ACLs, for users.
// Anonymous clients are admitted as well.
func aclSides(t *testing.T, aclFile string, users ...string) (direct aclDial, through aclDial, g *gate) {
	t.Helper()
	pw := passwordFile(t, users...)
	d := mqtttest.Mosquitto(t, "user root\npassword_file "+pw+"\nacl_file "+aclFile+"\n") // root: the files are in the test's private directory
	backend := mqtttest.Mosquitto(t, "")
	g = startGate(t, backend, "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw,
		"MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny")
	return dialPlain(d), dialGateTLS(g), g
}

// Issue 13: "topic deny test/nosubscribe" before "topic readwrite #" (the
// anonymous clients' lines). As in Mosquitto, # and +/+ are granted and
// test/nosubscribe is never delivered (published by another client, the
// feeder, who may write it; or retained), in 3.1.1 and 5.0.
func TestOverlappingDenyFiltersDeliveriesAsMosquitto(t *testing.T) {
	direct, through, g := aclSides(t, writeFile(t, "acl", "topic deny test/nosubscribe\ntopic readwrite #\nuser feeder\ntopic write #\n"), "feeder")
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		tag := v.String()
		feeder := "feed-" + tag
		sc := &aclScenarioRun{v: v,
			retained: []aclMessage{{"feeder", feeder, "test/nosubscribe"}, {"feeder", feeder, "test/other"}},
			subs:     []aclSubscriber{{"", "all-" + tag, []string{"#"}}, {"", "two-" + tag, []string{"+/+"}}},
			live:     []aclMessage{{"feeder", feeder, "test/nosubscribe"}, {"feeder", feeder, "test/other"}, {"feeder", feeder, "a/b/c"}},
		}
		want, _ := sc.run(t, direct)
		got, codes := sc.run(t, through)
		if d := want.diff(got, sc.subs); d != "" {
			t.Errorf("%s: deliveries differ:\n%s", tag, d)
		}
		if w := []string{"a/b/c m2", "test/other m1", "test/other r1"}; !slices.Equal(got["all-"+tag], w) {
			t.Errorf("%s: # got %q, want %q", tag, got["all-"+tag], w)
		}
		for id, c := range codes {
			if c[0] >= 0x80 {
				t.Errorf("%s: %s refused: SUBACK %x", tag, id, c)
			}
		}
	}
	g.waitLog(t, `"action":"deliver"`) // the dropped deliveries are logged as ACL denials
}

// Issue 13: $SYS is granted by the rules that name it. Mosquitto's
// "topic read $SYS/#" for admin gives it the broker's $SYS messages
// through mqttgate as in Mosquitto; "topic read #" gives reader none.
func TestSysGrantedByExplicitRulesAsMosquitto(t *testing.T) {
	direct, through, _ := aclSides(t, writeFile(t, "acl", "user admin\ntopic read $SYS/#\nuser reader\ntopic read #\n"), "admin", "reader")
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		tag := v.String()
		sc := &aclScenarioRun{v: v, subs: []aclSubscriber{{"admin", "admin-" + tag, []string{"$SYS/#"}}, {"reader", "reader-" + tag, []string{"#", "$SYS/#"}}}}
		want, _ := sc.run(t, direct)
		got, _ := sc.run(t, through)
		if d := want.diff(got, sc.subs); d != "" {
			t.Errorf("%s: deliveries differ:\n%s", tag, d)
		}
		if !slices.Contains(got["admin-"+tag], "$SYS/broker/version") || len(got["reader-"+tag]) != 0 {
			t.Errorf("%s: admin got %q (want $SYS/broker/version), reader %q (want nothing)", tag, got["admin-"+tag], got["reader-"+tag])
		}
	}
}

// The same in EMQX's format (the rule of its stock acl.conf), through
// mqttgate: dashboard receives $SYS, a user allowed # receives none.
func TestSysGrantedByExplicitEMQXRule(t *testing.T) {
	acl := writeFile(t, "acl.conf", `{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.`+"\n"+
		`{allow, {username, "reader"}, subscribe, ["#"]}.`+"\n"+`{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.`+"\n")
	pw := passwordFile(t, "dashboard", "reader")
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password",
		"MQTTGATE_PASSWORD_FILE="+pw, "MQTTGATE_ACL_FILE="+acl, "MQTTGATE_ACL_NO_MATCH=deny")
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		tag := v.String()
		sc := &aclScenarioRun{v: v, subs: []aclSubscriber{{"dashboard", "dash-" + tag, []string{"$SYS/#"}}, {"reader", "reader-" + tag, []string{"#", "$SYS/#", "a/b"}}}}
		got, codes := sc.run(t, dialGateTLS(g))
		if !slices.Contains(got["dash-"+tag], "$SYS/broker/version") || len(got["reader-"+tag]) != 0 {
			t.Errorf("%s: dashboard got %q (want $SYS/broker/version), reader %q (want nothing)", tag, got["dash-"+tag], got["reader-"+tag])
		}
		if c := codes["reader-"+tag]; c[0] >= 0x80 || c[1] < 0x80 || c[2] >= 0x80 {
			t.Errorf("%s: reader's SUBACK %x: want # granted (its rule comes first), $SYS/# refused, a/b granted", tag, c)
		}
	}
}
