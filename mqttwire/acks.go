package mqttwire

// Ack is a decoded PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
// DISCONNECT, AUTH or CONNACK. Fields that a type lacks are zero.
type Ack struct {
	Type       Type
	PacketID   uint16
	Reason     ReasonCode // v5 reason code, or the v3 CONNACK return code
	Properties Properties
	Codes      []byte // SUBACK and v5 UNSUBACK: one code per filter
	// SessionPresent is the CONNACK flag.
	SessionPresent bool
	// MaxPacketSize is the Maximum Packet Size property of a v5 CONNACK.
	MaxPacketSize uint32
}

// ParseAck decodes and validates the packets that carry at most a packet
// identifier, reason codes and properties.
func ParseAck(p Packet, v Version) (Ack, error) {
	a := Ack{Type: p.Type}
	b := p.Body
	var err error
	var sum propSummary
	switch p.Type {
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		if a.PacketID, b, err = readUint16(b); err != nil {
			return a, err
		}
		if v == V5 && len(b) > 0 {
			a.Reason, b = ReasonCode(b[0]), b[1:]
			if len(b) > 0 {
				if a.Properties, b, _, err = readProps(b, kindOf(p.Type)); err != nil {
					return a, err
				}
			}
		}
	case SUBACK, UNSUBACK:
		if a.PacketID, b, err = readUint16(b); err != nil {
			return a, err
		}
		if v == V5 {
			if a.Properties, b, _, err = readProps(b, kindOf(p.Type)); err != nil {
				return a, err
			}
		}
		if p.Type == SUBACK || v == V5 {
			if len(b) == 0 {
				return a, wrap(ErrProtocol, "%s without reason codes", p.Type)
			}
			a.Codes, b = b, nil
		}
	case DISCONNECT, AUTH:
		if p.Type == AUTH && v != V5 {
			return a, wrap(ErrProtocol, "AUTH before MQTT 5")
		}
		if v == V5 && len(b) > 0 {
			a.Reason, b = ReasonCode(b[0]), b[1:]
			if len(b) > 0 {
				if a.Properties, b, _, err = readProps(b, kindOf(p.Type)); err != nil {
					return a, err
				}
			}
		}
	case CONNACK:
		if len(b) < 2 {
			return a, wrap(ErrMalformed, "truncated CONNACK")
		}
		if b[0]&0xfe != 0 {
			return a, wrap(ErrMalformed, "reserved CONNACK flags [MQTT-3.2.2-1]")
		}
		a.SessionPresent = b[0] == 1
		a.Reason, b = ReasonCode(b[1]), b[2:]
		if v == V5 {
			if a.Properties, b, sum, err = readProps(b, kindOf(CONNACK)); err != nil {
				return a, err
			}
			a.MaxPacketSize = sum.maxPacketSize
		}
	case PINGREQ, PINGRESP:
	default:
		return a, wrap(ErrUnexpectedPacket, "%s is not an acknowledgement", p.Type)
	}
	if len(b) != 0 {
		return a, wrap(ErrMalformed, "%d trailing bytes in %s", len(b), p.Type)
	}
	return a, nil
}

// Validate checks a packet a client sent after CONNECT, whatever its type,
// for protocol version v.
func Validate(p Packet, v Version) error {
	switch p.Type {
	case PUBLISH:
		_, err := ParsePublish(p, v)
		return err
	case SUBSCRIBE, UNSUBSCRIBE:
		_, err := ParseSubscribe(p, v)
		return err
	case PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, DISCONNECT, AUTH:
		_, err := ParseAck(p, v)
		return err
	case CONNECT:
		return wrap(ErrProtocol, "second CONNECT [MQTT-3.1.0-2]")
	default:
		return wrap(ErrProtocol, "%s may not be sent by a client", p.Type)
	}
}
