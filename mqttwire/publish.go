package mqttwire

// Publish is a decoded PUBLISH packet. Byte fields are views into the packet.
type Publish struct {
	Topic      []byte // empty when a v5 client sends only a Topic Alias
	QoS        byte
	Retain     bool
	Dup        bool
	PacketID   uint16
	Properties Properties // v5 only
	TopicAlias uint16     // v5 Topic Alias property, 0 when absent
	Payload    []byte
}

// ParsePublish decodes and validates a PUBLISH packet for protocol version v.
func ParsePublish(p Packet, v Version) (Publish, error) {
	var pub Publish
	if p.Type != PUBLISH {
		return pub, wrap(ErrUnexpectedPacket, "%s, want PUBLISH", p.Type)
	}
	pub.Dup = p.Flags&0x08 != 0
	pub.QoS = (p.Flags >> 1) & 3
	pub.Retain = p.Flags&0x01 != 0
	b := p.Body
	var err error
	if pub.Topic, b, err = readString(b); err != nil {
		return pub, err
	}
	if pub.QoS > 0 {
		if pub.PacketID, b, err = readUint16(b); err != nil {
			return pub, err
		}
		if pub.PacketID == 0 {
			return pub, wrap(ErrProtocol, "packet identifier 0 [MQTT-2.2.1-3]")
		}
	}
	if v == V5 {
		var sum propSummary
		if pub.Properties, b, sum, err = readProps(b, kindOf(PUBLISH)); err != nil {
			return pub, err
		}
		pub.TopicAlias = sum.topicAlias
	}
	if len(pub.Topic) == 0 {
		if pub.TopicAlias == 0 {
			return pub, wrap(ErrBadTopic, "empty topic [MQTT-4.7.3-1]")
		}
	} else {
		for _, c := range pub.Topic {
			if c == '+' || c == '#' {
				return pub, wrap(ErrBadTopic, "wildcard in topic name [MQTT-3.3.2-2]")
			}
		}
	}
	pub.Payload = b
	return pub, nil
}
