package mqttwire

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseConnectGolden(t *testing.T) {
	// MQTT 3.1.1 CONNECT, clean session, keepalive 60, will, user, password.
	v311 := pkt(0x10, cat(str("MQTT"), []byte{4, 0xee, 0, 60}, str("dev-1"),
		str("will/t"), str("bye"), str("alice"), str("s3cret"))...)
	c, err := ParseConnect(frame(t, v311))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != V311 || !c.CleanStart || c.KeepAlive != 60 || string(c.ClientID) != "dev-1" ||
		!c.WillFlag || c.WillQoS != 1 || !c.WillRetain || string(c.WillTopic) != "will/t" ||
		string(c.WillPayload) != "bye" || string(c.Username) != "alice" || string(c.Password) != "s3cret" {
		t.Fatalf("decoded %+v", c)
	}
	if got := AppendConnect(nil, &c); !bytes.Equal(got, v311) {
		t.Fatalf("re-encoded %x, want %x", got, v311)
	}

	// MQTT 3.1 ("MQIsdp", level 3).
	v31 := pkt(0x10, cat(str("MQIsdp"), []byte{3, 0x02, 0, 10}, str("old"))...)
	if c, err := ParseConnect(frame(t, v31)); err != nil || c.Version != V31 {
		t.Fatalf("3.1: %+v %v", c, err)
	}

	// MQTT 5 with properties (session expiry, receive maximum, max packet size) and will properties.
	props := cat([]byte{0x11, 0, 0, 0, 30, 0x21, 0, 10, 0x27, 0, 0, 0x10, 0})
	willProps := []byte{0x18, 0, 0, 0, 5}
	v5 := pkt(0x10, cat(str("MQTT"), []byte{5, 0xc6, 0, 30}, []byte{byte(len(props))}, props, str("c5"),
		[]byte{byte(len(willProps))}, willProps, str("w"), str("x"), str("u"), str("p"))...)
	c, err = ParseConnect(frame(t, v5))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != V5 || c.MaxPacketSize != 4096 || !bytes.Equal(c.Properties, props) || !bytes.Equal(c.WillProperties, willProps) {
		t.Fatalf("decoded %+v", c)
	}
	if n, _, ok := c.Properties.Lookup(PropReceiveMaximum); !ok || n != 10 {
		t.Fatalf("receive maximum %d %v", n, ok)
	}
	if got := AppendConnect(nil, &c); !bytes.Equal(got, v5) {
		t.Fatalf("re-encoded %x, want %x", got, v5)
	}
}

func TestParseConnectInvalid(t *testing.T) {
	cases := []struct {
		name string
		body []byte
		want *Error
	}{
		{"reserved flag [MQTT-3.1.2-3]", cat(str("MQTT"), []byte{4, 0x03, 0, 0}, str("c")), ErrMalformed},
		{"protocol name [MQTT-3.1.2-1]", cat(str("MQTX"), []byte{4, 0x02, 0, 0}, str("c")), ErrBadProtocolName},
		{"level 6 [MQTT-3.1.2-2]", cat(str("MQTT"), []byte{6, 0x02, 0, 0}, str("c")), ErrUnsupportedProto},
		{"will QoS 3 [MQTT-3.1.2-14]", cat(str("MQTT"), []byte{4, 0x1c, 0, 0}, str("c"), str("w"), str("p")), ErrBadQoS},
		{"will retain without will [MQTT-3.1.2-11]", cat(str("MQTT"), []byte{4, 0x20, 0, 0}, str("c")), ErrMalformed},
		{"password without user [MQTT-3.1.2-22]", cat(str("MQTT"), []byte{4, 0x40, 0, 0}, str("c"), str("p")), ErrMalformed},
		{"NUL in client id [MQTT-1.5.4-2]", cat(str("MQTT"), []byte{4, 0x02, 0, 0}, str("a\x00b")), ErrBadUTF8},
		{"bad UTF-8 [MQTT-1.5.4-1]", cat(str("MQTT"), []byte{4, 0x02, 0, 0}, str("\xff\xfe")), ErrBadUTF8},
		{"surrogate [MQTT-1.5.4-1]", cat(str("MQTT"), []byte{4, 0x02, 0, 0}, str("\xed\xa0\x80")), ErrBadUTF8},
		{"wildcard will topic", cat(str("MQTT"), []byte{4, 0x06, 0, 0}, str("c"), str("a/#"), str("p")), ErrBadTopic},
		{"trailing bytes", cat(str("MQTT"), []byte{4, 0x02, 0, 0}, str("c"), []byte{1}), ErrMalformed},
		{"truncated", cat(str("MQTT"), []byte{4, 0x02}), ErrMalformed},
		{"v5 duplicate property", cat(str("MQTT"), []byte{5, 0x02, 0, 0, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1}, str("c")), ErrProtocol},
		{"v5 property not for CONNECT", cat(str("MQTT"), []byte{5, 0x02, 0, 0, 3, 0x23, 0, 1}, str("c")), ErrBadProperty},
		{"v5 unknown property", cat(str("MQTT"), []byte{5, 0x02, 0, 0, 2, 0x7f, 0}, str("c")), ErrBadProperty},
		{"v5 receive maximum 0", cat(str("MQTT"), []byte{5, 0x02, 0, 0, 3, 0x21, 0, 0}, str("c")), ErrProtocol},
	}
	for _, c := range cases {
		_, err := ParseConnect(frame(t, pkt(0x10, c.body...)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// invalidCase is a packet that parse must refuse with the want sentinel.
type invalidCase struct {
	name  string
	first byte
	body  []byte
	v     Version
	want  *Error
}

func checkInvalid(t *testing.T, cases []invalidCase, parse func(Packet, Version) error) {
	t.Helper()
	for _, c := range cases {
		if err := parse(frame(t, pkt(c.first, c.body...)), c.v); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestParsePublish(t *testing.T) {
	// QoS 1, retain, packet id 10 (3.1.1 section 3.3).
	p := frame(t, pkt(0x33, cat(str("a/b"), []byte{0, 10}, []byte("payload"))...))
	pub, err := ParsePublish(p, V311)
	if err != nil || string(pub.Topic) != "a/b" || pub.QoS != 1 || !pub.Retain || pub.PacketID != 10 || string(pub.Payload) != "payload" {
		t.Fatalf("%+v %v", pub, err)
	}
	// v5 with only a Topic Alias.
	p = frame(t, pkt(0x30, cat(str(""), []byte{3, 0x23, 0, 7}, []byte("x"))...))
	pub, err = ParsePublish(p, V5)
	if err != nil || pub.TopicAlias != 7 || len(pub.Topic) != 0 {
		t.Fatalf("alias: %+v %v", pub, err)
	}
	bad := []invalidCase{
		{"wildcard + [MQTT-3.3.2-2]", 0x30, str("a/+"), V311, ErrBadTopic},
		{"wildcard # [MQTT-3.3.2-2]", 0x30, str("#"), V311, ErrBadTopic},
		{"empty topic without alias", 0x30, str(""), V311, ErrBadTopic},
		{"packet id 0 [MQTT-2.2.1-3]", 0x32, cat(str("a"), []byte{0, 0}), V311, ErrProtocol},
		{"NUL in topic", 0x30, str("a\x00"), V311, ErrBadUTF8},
		{"v5 topic alias 0", 0x30, cat(str("a"), []byte{3, 0x23, 0, 0}), V5, ErrProtocol},
		{"v5 duplicate alias", 0x30, cat(str("a"), []byte{6, 0x23, 0, 1, 0x23, 0, 2}), V5, ErrProtocol},
		{"v5 property for CONNECT only", 0x30, cat(str("a"), []byte{2, 0x17, 1}), V5, ErrBadProperty},
		{"v5 payload format 2", 0x30, cat(str("a"), []byte{2, 0x01, 2}), V5, ErrProtocol},
		{"v5 truncated properties", 0x30, cat(str("a"), []byte{9, 0x02}), V5, ErrMalformed},
	}
	checkInvalid(t, bad, func(p Packet, v Version) error { _, err := ParsePublish(p, v); return err })
	// Several user properties and subscription identifiers are allowed.
	ok := cat(str("a"), []byte{16, 0x26, 0, 1, 'k', 0, 1, 'v', 0x26, 0, 1, 'k', 0, 1, 'w', 0x0b, 1})
	if _, err := ParsePublish(frame(t, pkt(0x30, ok...)), V5); err != nil {
		t.Errorf("repeated user properties: %v", err)
	}
}

func TestParseSubscribe(t *testing.T) {
	body := cat([]byte{0, 5}, str("a/+/c"), []byte{1}, str("d/#"), []byte{2}, str("$share/g/e"), []byte{0})
	s, err := ParseSubscribe(frame(t, pkt(0x82, body...)), V311)
	if err != nil || s.PacketID != 5 || s.Count != 3 {
		t.Fatalf("%+v %v", s, err)
	}
	it := s.Filters()
	var got []string
	for f, ok := it.Next(); ok; f, ok = it.Next() {
		got = append(got, string(f.Topic)+":"+string('0'+f.QoS()))
	}
	if want := []string{"a/+/c:1", "d/#:2", "$share/g/e:0"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("filters %v, want %v", got, want)
	}

	bad := []invalidCase{
		{"no filters [MQTT-3.8.3-3]", 0x82, []byte{0, 1}, V311, ErrProtocol},
		{"# not last [MQTT-4.7.1-2]", 0x82, cat([]byte{0, 1}, str("a/#/b"), []byte{0}), V311, ErrBadFilter},
		{"# inside level [MQTT-4.7.1-2]", 0x82, cat([]byte{0, 1}, str("a#"), []byte{0}), V311, ErrBadFilter},
		{"+ inside level [MQTT-4.7.1-3]", 0x82, cat([]byte{0, 1}, str("a/b+"), []byte{0}), V311, ErrBadFilter},
		{"empty filter", 0x82, cat([]byte{0, 1}, str(""), []byte{0}), V311, ErrBadFilter},
		{"share without filter", 0x82, cat([]byte{0, 1}, str("$share/g/"), []byte{0}), V311, ErrBadFilter},
		{"QoS 3 [MQTT-3.8.3-4]", 0x82, cat([]byte{0, 1}, str("a"), []byte{3}), V311, ErrBadQoS},
		{"v3 reserved options", 0x82, cat([]byte{0, 1}, str("a"), []byte{0x04}), V311, ErrMalformed},
		{"v5 reserved options [MQTT-3.8.3-5]", 0x82, cat([]byte{0, 1, 0}, str("a"), []byte{0x40}), V5, ErrMalformed},
		{"v5 retain handling 3", 0x82, cat([]byte{0, 1, 0}, str("a"), []byte{0x30}), V5, ErrMalformed},
		{"v5 no local on shared", 0x82, cat([]byte{0, 1, 0}, str("$share/g/a"), []byte{0x04}), V5, ErrProtocol},
		{"missing options", 0x82, cat([]byte{0, 1}, str("a")), V311, ErrMalformed},
		{"packet id 0", 0x82, cat([]byte{0, 0}, str("a"), []byte{0}), V311, ErrProtocol},
		{"unsubscribe no filters", 0xa2, []byte{0, 1}, V311, ErrProtocol},
	}
	checkInvalid(t, bad, func(p Packet, v Version) error { _, err := ParseSubscribe(p, v); return err })
	u, err := ParseSubscribe(frame(t, pkt(0xa2, cat([]byte{0, 9}, str("a/#"), str("b"))...)), V311)
	if err != nil || !u.Unsubscribe || u.Count != 2 {
		t.Fatalf("unsubscribe %+v %v", u, err)
	}
}

func TestParseAck(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		v    Version
		want Ack
		err  *Error
	}{
		{"PUBACK v3", pkt(0x40, 0, 7), V311, Ack{Type: PUBACK, PacketID: 7}, nil},
		{"PUBACK v5 short", pkt(0x40, 0, 7, 0x10), V5, Ack{Type: PUBACK, PacketID: 7, Reason: 0x10}, nil},
		{"PUBREL v5 props", pkt(0x62, 0, 7, 0x92, 4, 0x1f, 0, 1, 'x'), V5, Ack{Type: PUBREL, PacketID: 7, Reason: 0x92, Properties: Properties{0x1f, 0, 1, 'x'}}, nil},
		{"PUBACK v3 trailing", pkt(0x40, 0, 7, 0), V311, Ack{}, ErrMalformed},
		{"DISCONNECT v5", pkt(0xe0, 0x04), V5, Ack{Type: DISCONNECT, Reason: 0x04}, nil},
		{"DISCONNECT v3 with body", pkt(0xe0, 0x04), V311, Ack{}, ErrMalformed},
		{"AUTH v3", pkt(0xf0), V311, Ack{}, ErrProtocol},
		{"PINGREQ", pkt(0xc0), V311, Ack{Type: PINGREQ}, nil},
		{"SUBACK v3", pkt(0x90, 0, 3, 0, 0x80), V311, Ack{Type: SUBACK, PacketID: 3, Codes: []byte{0, 0x80}}, nil},
		{"SUBACK v5", pkt(0x90, 0, 3, 0, 0x87), V5, Ack{Type: SUBACK, PacketID: 3, Properties: Properties{}, Codes: []byte{0x87}}, nil},
		{"UNSUBACK v3", pkt(0xb0, 0, 3), V311, Ack{Type: UNSUBACK, PacketID: 3}, nil},
		{"CONNACK v5 max packet", pkt(0x20, 0, 0, 5, 0x27, 0, 0, 1, 0), V5, Ack{Type: CONNACK, Properties: Properties{0x27, 0, 0, 1, 0}, MaxPacketSize: 256}, nil},
		{"CONNACK bad flags", pkt(0x20, 2, 0), V311, Ack{}, ErrMalformed},
	}
	for _, c := range cases {
		a, err := ParseAck(frame(t, c.raw), c.v)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: got %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || a.Type != c.want.Type || a.PacketID != c.want.PacketID || a.Reason != c.want.Reason ||
			!bytes.Equal(a.Properties, c.want.Properties) || !bytes.Equal(a.Codes, c.want.Codes) || a.MaxPacketSize != c.want.MaxPacketSize {
			t.Errorf("%s: got %+v %v, want %+v", c.name, a, err, c.want)
		}
	}
}

func TestValidateSecondConnect(t *testing.T) {
	raw := pkt(0x10, cat(str("MQTT"), []byte{4, 0x02, 0, 0}, str("c"))...)
	if err := Validate(frame(t, raw), V311); !errors.Is(err, ErrProtocol) {
		t.Fatalf("second CONNECT: %v", err)
	}
	if err := Validate(frame(t, pkt(0x20, 0, 0)), V311); !errors.Is(err, ErrProtocol) {
		t.Fatalf("CONNACK from a client: %v", err)
	}
}

func TestReasonCodes(t *testing.T) {
	for code, want := range map[ReasonCode]ConnackCodeV3{
		Success: 0, UnsupportedProtocolVersion: 1, ClientIdentifierNotValid: 2, ServerUnavailable: 3,
		BadUserNameOrPassword: 4, NotAuthorized: 5, Banned: 5, ServerBusy: 3,
	} {
		if code.V3() != want {
			t.Errorf("%#x.V3() = %d, want %d", code, code.V3(), want)
		}
	}
	if ReasonOf(errors.New("x")) != UnspecifiedError {
		t.Error("plain error should map to 0x80")
	}
}

// AppendSubscribe writes what ParseSubscribe reads back [MQTT-3.8.1-1].
func TestAppendSubscribeRoundTrip(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		var props []byte
		if v == V5 {
			props = AppendProperty(nil, PropSubscriptionID, 7, nil)
		}
		in := []Filter{{Topic: []byte("a/+"), Options: 1}, {Topic: []byte("$share/g/b/#"), Options: 2}}
		b := AppendSubscribe(nil, v, 42, props, in)
		if b[0] != 0x82 {
			t.Fatalf("v%d: header %#x", v, b[0])
		}
		p, err := NewReader(bytes.NewReader(b), 64, 1024).Next()
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSubscribe(p, v)
		if err != nil || s.PacketID != 42 || s.Count != 2 || !bytes.Equal(s.Properties, props) {
			t.Fatalf("v%d: %+v %v", v, s, err)
		}
		it := s.Filters()
		for i := range in {
			f, ok := it.Next()
			if !ok || !bytes.Equal(f.Topic, in[i].Topic) || f.Options != in[i].Options {
				t.Fatalf("v%d filter %d: %+v", v, i, f)
			}
		}
	}
}

// AppendPublish writes what ParsePublish reads back.
func TestAppendPublishRoundTrip(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		for _, c := range []struct {
			qos    byte
			retain bool
			size   int
		}{{0, false, 0}, {1, true, 64}, {2, false, 200_000}} {
			var props []byte
			if v == V5 {
				props = AppendProperty(nil, PropTopicAlias, 3, nil)
			}
			payload := bytes.Repeat([]byte{9}, c.size)
			b := AppendPublish(nil, v, []byte("a/b"), c.qos, c.retain, 7, props, payload)
			p, err := NewReader(bytes.NewReader(b), 64, 1<<20).Next()
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParsePublish(p, v)
			if err != nil || string(m.Topic) != "a/b" || m.QoS != c.qos || m.Retain != c.retain || !bytes.Equal(m.Payload, payload) ||
				(c.qos > 0 && m.PacketID != 7) || (v == V5 && m.TopicAlias != 3) {
				t.Fatalf("v%d %+v: %+v %v", v, c, m, err)
			}
		}
	}
}
