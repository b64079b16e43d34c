package mqttwire

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// paho.golang's packets package is an independent MQTT 5 encoder and
// decoder: our decoders must read what it writes, and it must read what our
// encoders write.

func pahoBytes(t *testing.T, cp *packets.ControlPacket) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pahoRead(t *testing.T, raw []byte) *packets.ControlPacket {
	t.Helper()
	cp, err := packets.ReadPacket(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("paho cannot read %x: %v", raw, err)
	}
	return cp
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

func TestOracleConnect(t *testing.T) {
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion = "MQTT", 5
	c.ClientID, c.KeepAlive, c.CleanStart = "sensor-7", 45, true
	c.UsernameFlag, c.Username = true, "bob"
	c.PasswordFlag, c.Password = true, []byte("pw")
	c.WillFlag, c.WillTopic, c.WillMessage, c.WillQOS, c.WillRetain = true, "last/will", []byte("gone"), 2, true
	c.Properties = &packets.Properties{SessionExpiryInterval: u32(120), ReceiveMaximum: u16(20), MaximumPacketSize: u32(65536),
		User: []packets.User{{Key: "k", Value: "v"}}}
	// paho packs will properties as CONNECT ones, so only Will Delay survives.
	c.WillProperties = &packets.Properties{WillDelayInterval: u32(3)}
	raw := pahoBytes(t, cp)

	got, err := ParseConnect(frame(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != V5 || string(got.ClientID) != c.ClientID || got.KeepAlive != 45 || !got.CleanStart ||
		string(got.Username) != "bob" || string(got.Password) != "pw" || string(got.WillTopic) != c.WillTopic ||
		string(got.WillPayload) != "gone" || got.WillQoS != 2 || !got.WillRetain || got.MaxPacketSize != 65536 {
		t.Fatalf("decoded %+v", got)
	}
	if d, _, ok := got.WillProperties.Lookup(PropWillDelay); !ok || d != 3 {
		t.Fatalf("will delay %d %v", d, ok)
	}
	// Our encoder writes what paho reads back as the same CONNECT.
	back := pahoRead(t, AppendConnect(nil, &got)).Content.(*packets.Connect)
	if back.ClientID != c.ClientID || back.Username != c.Username || back.WillTopic != c.WillTopic ||
		*back.Properties.SessionExpiryInterval != 120 || *back.WillProperties.WillDelayInterval != 3 {
		t.Fatalf("paho read back %+v", back)
	}
}

func TestOraclePublishAndSubscribe(t *testing.T) {
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Retain, p.Payload = "home/kitchen/temp", 1, 99, true, []byte("21.5")
	p.Properties = &packets.Properties{TopicAlias: u16(4), MessageExpiry: u32(60), ResponseTopic: "r/t"}
	pub, err := ParsePublish(frame(t, pahoBytes(t, cp)), V5)
	if err != nil || string(pub.Topic) != p.Topic || pub.QoS != 1 || pub.PacketID != 99 || !pub.Retain ||
		string(pub.Payload) != "21.5" || pub.TopicAlias != 4 {
		t.Fatalf("publish %+v %v", pub, err)
	}

	cp = packets.NewControlPacket(packets.SUBSCRIBE)
	s := cp.Content.(*packets.Subscribe)
	s.PacketID = 12
	s.Properties = &packets.Properties{SubscriptionIdentifier: new(int)}
	*s.Properties.SubscriptionIdentifier = 300
	s.Subscriptions = []packets.SubOptions{{Topic: "a/+", QoS: 1, NoLocal: true}, {Topic: "b/#", QoS: 2, RetainHandling: 2, RetainAsPublished: true}}
	sub, err := ParseSubscribe(frame(t, pahoBytes(t, cp)), V5)
	if err != nil || sub.PacketID != 12 || sub.Count != 2 {
		t.Fatalf("subscribe %+v %v", sub, err)
	}
	if id, _, ok := sub.Properties.Lookup(PropSubscriptionID); !ok || id != 300 {
		t.Fatalf("subscription identifier %d", id)
	}
	it := sub.Filters()
	for _, want := range s.Subscriptions {
		f, ok := it.Next()
		if !ok || string(f.Topic) != want.Topic || f.Options != want.Pack() {
			t.Fatalf("filter %q %#x, want %q %#x", f.Topic, f.Options, want.Topic, want.Pack())
		}
	}
}

func TestOracleEncoders(t *testing.T) {
	props := AppendProperty(nil, PropMaximumPacketSize, 1<<20, nil)
	props = AppendProperty(props, PropReasonString, 0, []byte("nope"))
	ca := pahoRead(t, AppendConnack(nil, V5, false, NotAuthorized, props)).Content.(*packets.Connack)
	if ca.ReasonCode != 0x87 || *ca.Properties.MaximumPacketSize != 1<<20 || ca.Properties.ReasonString != "nope" {
		t.Fatalf("connack %+v", ca)
	}
	sa := pahoRead(t, AppendSuback(nil, V5, 7, []byte{1, 0x87, 2}, nil)).Content.(*packets.Suback)
	if sa.PacketID != 7 || !bytes.Equal(sa.Reasons, []byte{1, 0x87, 2}) {
		t.Fatalf("suback %+v", sa)
	}
	ua := pahoRead(t, AppendUnsuback(nil, V5, 8, []byte{0, 0x87}, nil)).Content.(*packets.Unsuback)
	if ua.PacketID != 8 || !bytes.Equal(ua.Reasons, []byte{0, 0x87}) {
		t.Fatalf("unsuback %+v", ua)
	}
	pa := pahoRead(t, AppendPubAck(nil, PUBACK, V5, 9, NotAuthorized, nil)).Content.(*packets.Puback)
	if pa.PacketID != 9 || pa.ReasonCode != 0x87 {
		t.Fatalf("puback %+v", pa)
	}
	pr := pahoRead(t, AppendPubAck(nil, PUBREC, V5, 10, NotAuthorized, nil)).Content.(*packets.Pubrec)
	if pr.PacketID != 10 || pr.ReasonCode != 0x87 {
		t.Fatalf("pubrec %+v", pr)
	}
	d := pahoRead(t, AppendDisconnect(nil, V5, UseAnotherServer, "other:8883")).Content.(*packets.Disconnect)
	if d.ReasonCode != 0x9c || d.Properties.ServerReference != "other:8883" {
		t.Fatalf("disconnect %+v", d)
	}
	d = pahoRead(t, AppendDisconnect(nil, V5, ServerShuttingDown, "")).Content.(*packets.Disconnect)
	if d.ReasonCode != 0x8b {
		t.Fatalf("disconnect %+v", d)
	}
}

// v3 encodings from the 3.1.1 specification's packet layouts.
func TestEncodersV3(t *testing.T) {
	cases := []struct {
		name      string
		got, want []byte
	}{
		{"CONNACK accepted [MQTT-3.2.2-4]", AppendConnack(nil, V311, true, Success, nil), []byte{0x20, 2, 1, 0}},
		{"CONNACK refused drops session present", AppendConnack(nil, V311, true, NotAuthorized, nil), []byte{0x20, 2, 0, 5}},
		{"CONNACK server unavailable", AppendConnack(nil, V311, false, ServerUnavailable, nil), []byte{0x20, 2, 0, 3}},
		{"SUBACK failure is 0x80", AppendSuback(nil, V311, 1, []byte{1, 0x87}, nil), []byte{0x90, 4, 0, 1, 1, 0x80}},
		{"UNSUBACK", AppendUnsuback(nil, V311, 2, []byte{0x87}, nil), []byte{0xb0, 2, 0, 2}},
		{"PUBACK", AppendPubAck(nil, PUBACK, V311, 3, NotAuthorized, nil), []byte{0x40, 2, 0, 3}},
		{"PUBREL flags", AppendPubAck(nil, PUBREL, V311, 3, Success, nil), []byte{0x62, 2, 0, 3}},
		{"DISCONNECT", AppendDisconnect(nil, V311, ServerShuttingDown, ""), []byte{0xe0, 0}},
		{"PINGRESP", AppendPingresp(nil), []byte{0xd0, 0}},
	}
	for _, c := range cases {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: %x, want %x", c.name, c.got, c.want)
		}
	}
}
