package proxy

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// refuseMarked is a Limiter that refuses (not ends) every PUBLISH and
// SUBSCRIBE on a "denied" topic, so that its decisions can be compared
// with the other stages'.
type refuseMarked struct{}

var notAuthorized = Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized, Why: "test limit"}

func (refuseMarked) Publish(topic []byte, _ byte, _ uint16) Decision {
	if bytes.Contains(topic, []byte("denied")) {
		return notAuthorized
	}
	return Decision{}
}

func (refuseMarked) Subscribe(sub *mqttwire.Subscribe) Decision {
	it := sub.Filters()
	if f, _ := it.Next(); bytes.Contains(f.Topic, []byte("denied")) {
		return notAuthorized
	}
	return Decision{}
}

func (refuseMarked) KeepAlive(a uint16) (time.Duration, bool) {
	return time.Duration(a) * time.Second, false
}
func (refuseMarked) OverRate() Decision                { return Decision{} }
func (refuseMarked) Sent(byte, uint16)                 {}
func (refuseMarked) Subscribed([]byte)                 {}
func (refuseMarked) Unsubscribe(*mqttwire.Subscribe)   {}
func (refuseMarked) Commit()                           {}
func (refuseMarked) Take(int, time.Time) time.Duration { return 0 }
func (refuseMarked) Acked(uint16, mqttwire.Type)       {}
func (refuseMarked) Released(uint16)                   {}
func (refuseMarked) Started(bool, string)              {}
func (refuseMarked) Expiry(uint32)                     {}
func (refuseMarked) Close(time.Time)                   {}
func (refuseMarked) InFlight() int                     { return 0 }
func (refuseMarked) Subscriptions() int                { return -1 }

// countingMeter counts decisions by stage and why.
type countingMeter struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMeter) Decided(stage string, d Decision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[stage+" "+d.Why]++
}

func (m *countingMeter) count(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[k]
}

// The same decision gets the same bytes whatever stage made it: the
// limits, the topic rights or an inspector, for 3.1.1 and 5.0, for a
// PUBLISH at each QoS (QoS 2 finished by the proxy with PUBCOMP) and a
// SUBSCRIBE; what an inspector alone judges (UNSUBSCRIBE, PINGREQ) as
// well. Nothing refused reaches the broker.
func TestEnforceSameBytesWhateverTheSource(t *testing.T) {
	sources := map[string]func(cfg Config) Config{
		"limits": func(cfg Config) Config {
			cfg.Limits = func(*Session, *mqttwire.Connect) Limiter { return refuseMarked{} }
			return cfg
		},
		"topics":    withRights,
		"inspector": func(cfg Config) Config { cfg.Inspector = InspectorChain{denyInspector{}}; return cfg },
	}
	type exchange struct {
		name string
		send []byte
		want []byte // nil: nothing (a PINGRESP follows first)
	}
	script := func(v mqttwire.Version) []exchange {
		code := byte(mqttwire.NotAuthorized)
		failure := code
		if v != mqttwire.V5 {
			failure = 0x80
		}
		ack := func(t mqttwire.Type, id uint16) []byte {
			return mqttwire.AppendPubAck(nil, t, v, id, mqttwire.ReasonCode(code), nil)
		}
		ex := []exchange{
			{"PUBLISH QoS 0", publishPkt(v, "denied/x", 0, 0, nil, "m"), nil},
			{"PUBLISH QoS 1", publishPkt(v, "denied/x", 1, 1, nil, "m"), ack(mqttwire.PUBACK, 1)},
			{"PUBLISH QoS 2", publishPkt(v, "denied/x", 2, 2, nil, "m"), ack(mqttwire.PUBREC, 2)},
			{"SUBSCRIBE", subscribePkt(v, 3, "denied/x"), mqttwire.AppendSuback(nil, v, 3, []byte{failure}, nil)},
		}
		if v != mqttwire.V5 { // the 3.1.1 QoS 2 flow goes on: the proxy finishes it
			ex = append(ex, exchange{"PUBREL", mqttwire.AppendPubAck(nil, mqttwire.PUBREL, v, 2, 0, nil),
				mqttwire.AppendPubAck(nil, mqttwire.PUBCOMP, v, 2, mqttwire.Success, nil)})
		}
		return ex
	}
	got := map[string]string{}
	for _, name := range []string{"limits", "topics", "inspector"} {
		for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
			broker, seen := packetBroker(t)
			meter := &countingMeter{}
			px := startProxy(t, sources[name](Config{Backend: broker, Meter: meter}), nil)
			c, ack := dialRaw(t, px.addr, v, &mqttwire.Connect{ClientID: []byte("enforce")})
			if ack.Type != mqttwire.CONNACK {
				t.Fatalf("%s %s: CONNACK %x", name, v, ack.Raw)
			}
			for _, e := range script(v) {
				c.Send(e.send)
				if e.want == nil {
					c.Send([]byte{0xc0, 0})
					if p := c.Next(); p.Type != mqttwire.PINGRESP {
						t.Fatalf("%s %s %s: %s %x before the PINGRESP", name, v, e.name, p.Type, p.Raw)
					}
					continue
				}
				p := c.Next()
				if !bytes.Equal(p.Raw, e.want) {
					t.Errorf("%s %s %s: %x, want %x", name, v, e.name, p.Raw, e.want)
				}
				key := fmt.Sprintf("%s %s", v, e.name)
				if prev, ok := got[key]; ok && prev != string(p.Raw) {
					t.Errorf("%s: %s answers %x, another source %x", key, name, p.Raw, prev)
				}
				got[key] = string(p.Raw)
			}
			select {
			case typ := <-seen:
				t.Errorf("%s %s: the broker received a %s", name, v, typ)
			default:
			}
			why := map[string]string{"limits": "test limit", "topics": "test rule", "inspector": "test policy"}[name]
			if n := meter.count(name + " " + why); n != 4 { // three PUBLISHes and a SUBSCRIBE
				t.Errorf("%s %s: the meter counted %d refusals, want 4", name, v, n)
			}
		}
	}

	// What only an inspector judges: a refused UNSUBSCRIBE is answered
	// UNSUBACK; a refused PINGREQ cannot be refused alone and ends the
	// session (v5 DISCONNECT 0x87).
	broker, _ := packetBroker(t)
	px := startProxy(t, sources["inspector"](Config{Backend: broker}), nil)
	c, _ := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("no-ping")})
	c.Send([]byte{0xa2, 13, 0, 4, 0, 0, 8, 'd', 'e', 'n', 'i', 'e', 'd', '/', 'x'}) // UNSUBSCRIBE id 4
	if p := c.Next(); !bytes.Equal(p.Raw, mqttwire.AppendUnsuback(nil, mqttwire.V5, 4, []byte{byte(mqttwire.NotAuthorized)}, nil)) {
		t.Errorf("refused UNSUBSCRIBE: %x", p.Raw)
	}
	c.Send([]byte{0xc0, 0})
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.NotAuthorized) {
		t.Errorf("refused PINGREQ: %s %x, want DISCONNECT 0x87", p.Type, p.Raw)
	}
}

// Packets read before a session-ending packet in the same read reach
// the broker, in order: here a PUBLISH, then one with a Topic Alias the
// client was never given (v5 DISCONNECT 0x94).
func TestPacketsBeforeASessionEndReachTheBroker(t *testing.T) {
	broker, seen := packetBroker(t)
	px := startProxy(t, withRights(Config{Backend: broker}), nil)
	c, _ := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("batch")})
	alias := mqttwire.AppendProperty(nil, mqttwire.PropTopicAlias, 5, nil)
	c.Send(append(publishPkt(mqttwire.V5, "ok/1", 0, 0, nil, "first"), publishPkt(mqttwire.V5, "ok/2", 0, 0, alias, "bad")...))
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.TopicAliasInvalid) {
		t.Fatalf("%s %x, want DISCONNECT 0x94", p.Type, p.Raw)
	}
	select {
	case typ := <-seen:
		if typ != mqttwire.PUBLISH {
			t.Fatalf("the broker received a %s first", typ)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the PUBLISH read before the session-ending one never reached the broker")
	}
}
