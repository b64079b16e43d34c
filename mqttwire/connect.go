package mqttwire

import "encoding/binary"

// Connect is a decoded CONNECT packet. Byte fields are views into the
// packet; see the package documentation for how long they live.
type Connect struct {
	ProtocolName   []byte
	Version        Version
	CleanStart     bool
	KeepAlive      uint16
	Properties     Properties // v5 only
	ClientID       []byte
	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillProperties Properties // v5 only
	WillTopic      []byte
	WillPayload    []byte
	UsernameFlag   bool
	Username       []byte
	PasswordFlag   bool
	Password       []byte
	// MaxPacketSize is the client's Maximum Packet Size property (v5), 0 when absent.
	MaxPacketSize uint32
}

// ParseConnect decodes and validates a CONNECT packet body.
func ParseConnect(p Packet) (Connect, error) {
	var c Connect
	if p.Type != CONNECT {
		return c, wrap(ErrUnexpectedPacket, "%s, want CONNECT", p.Type)
	}
	b := p.Body
	var err error
	if c.ProtocolName, b, err = readBinary(b); err != nil {
		return c, err
	}
	if len(b) < 4 {
		return c, wrap(ErrMalformed, "truncated CONNECT header")
	}
	c.Version = Version(b[0])
	switch {
	case string(c.ProtocolName) == "MQTT" && (c.Version == V311 || c.Version == V5):
	case string(c.ProtocolName) == "MQIsdp" && c.Version == V31:
	case string(c.ProtocolName) == "MQTT" || string(c.ProtocolName) == "MQIsdp":
		return c, wrap(ErrUnsupportedProto, "level %d [MQTT-3.1.2-2]", c.Version)
	default:
		return c, wrap(ErrBadProtocolName, "%q [MQTT-3.1.2-1]", c.ProtocolName)
	}
	flags := b[1]
	c.KeepAlive = binary.BigEndian.Uint16(b[2:])
	b = b[4:]
	if flags&0x01 != 0 {
		return c, wrap(ErrMalformed, "reserved connect flag set [MQTT-3.1.2-3]")
	}
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQoS = (flags >> 3) & 3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if c.WillQoS == 3 {
		return c, wrap(ErrBadQoS, "will QoS 3 [MQTT-3.1.2-14]")
	}
	if !c.WillFlag && (c.WillQoS != 0 || c.WillRetain) {
		return c, wrap(ErrMalformed, "will QoS or retain without will flag [MQTT-3.1.2-11]")
	}
	if c.Version != V5 && c.PasswordFlag && !c.UsernameFlag {
		return c, wrap(ErrMalformed, "password without user name [MQTT-3.1.2-22]")
	}
	if c.Version == V5 {
		var sum propSummary
		if c.Properties, b, sum, err = readProps(b, kindOf(CONNECT)); err != nil {
			return c, err
		}
		c.MaxPacketSize = sum.maxPacketSize
	}
	if c.ClientID, b, err = readString(b); err != nil {
		return c, err
	}
	if c.WillFlag {
		if c.Version == V5 {
			if c.WillProperties, b, _, err = readProps(b, kindWill); err != nil {
				return c, err
			}
		}
		if c.WillTopic, b, err = readString(b); err != nil {
			return c, err
		}
		if !ValidTopicName(c.WillTopic) {
			return c, wrap(ErrBadTopic, "will topic")
		}
		if c.WillPayload, b, err = readBinary(b); err != nil {
			return c, err
		}
	}
	if c.UsernameFlag {
		if c.Username, b, err = readString(b); err != nil {
			return c, err
		}
	}
	if c.PasswordFlag {
		if c.Password, b, err = readBinary(b); err != nil {
			return c, err
		}
	}
	if len(b) != 0 {
		return c, wrap(ErrMalformed, "%d trailing bytes in CONNECT", len(b))
	}
	return c, nil
}

// AppendConnect encodes c as a CONNECT packet. The proxy uses it only when
// it must change the CONNECT it forwards (identity mapping).
func AppendConnect(dst []byte, c *Connect) []byte {
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.WillFlag {
		flags |= 0x04 | c.WillQoS<<3
		if c.WillRetain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	name := c.ProtocolName
	if len(name) == 0 {
		name = []byte("MQTT")
		if c.Version == V31 {
			name = []byte("MQIsdp")
		}
	}
	n := 2 + len(name) + 4 + 2 + len(c.ClientID)
	if c.Version == V5 {
		n += varintLen(len(c.Properties)) + len(c.Properties)
	}
	if c.WillFlag {
		if c.Version == V5 {
			n += varintLen(len(c.WillProperties)) + len(c.WillProperties)
		}
		n += 4 + len(c.WillTopic) + len(c.WillPayload)
	}
	if c.UsernameFlag {
		n += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		n += 2 + len(c.Password)
	}
	dst = append(dst, byte(CONNECT)<<4)
	dst = appendVarint(dst, n)
	dst = appendBinary(dst, name)
	dst = append(dst, byte(c.Version), flags)
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if c.Version == V5 {
		dst = appendVarint(dst, len(c.Properties))
		dst = append(dst, c.Properties...)
	}
	dst = appendBinary(dst, c.ClientID)
	if c.WillFlag {
		if c.Version == V5 {
			dst = appendVarint(dst, len(c.WillProperties))
			dst = append(dst, c.WillProperties...)
		}
		dst = appendBinary(dst, c.WillTopic)
		dst = appendBinary(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendBinary(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}
