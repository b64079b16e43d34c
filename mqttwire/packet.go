package mqttwire

// Type is an MQTT control packet type (the high nibble of the first byte).
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string { return typeNames[t&0x0f] }

// Version is the protocol level from CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1 ("MQIsdp")
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "unknown"
}

// MaxRemainingLength is the largest length the 4-byte varint can express.
const MaxRemainingLength = 268_435_455

// Packet is one framed control packet. Raw holds the whole packet (fixed
// header and body), Body the bytes after the fixed header. Both are views into
// the Reader's buffer, valid until the next call to Next.
type Packet struct {
	Type  Type
	Flags byte
	Raw   []byte
	Body  []byte
}

// requiredFlags lists the fixed header flags each type must carry
// [MQTT-2.2.2-1]; PUBLISH (0xff) is checked separately.
var requiredFlags = [16]byte{0xff, 0, 0, 0xff, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0}

// checkFlags validates the reserved flag bits of the fixed header.
func checkFlags(t Type, flags byte) error {
	if t == 0 {
		return wrap(ErrMalformed, "reserved packet type 0")
	}
	if t == PUBLISH {
		if (flags>>1)&3 == 3 {
			return wrap(ErrBadQoS, "PUBLISH with QoS 3 [MQTT-3.3.1-4]")
		}
		if flags&0x08 != 0 && (flags>>1)&3 == 0 {
			return wrap(ErrBadFlags, "DUP set on QoS 0 PUBLISH [MQTT-3.3.1-2]")
		}
		return nil
	}
	if flags != requiredFlags[t] {
		return wrap(ErrBadFlags, "%s flags %#x", t, flags)
	}
	return nil
}

// decodeVarint reads a variable byte integer from b. It returns the value and
// the number of bytes used; n == 0 means b ended before the integer did.
func decodeVarint(b []byte) (v, n int, err error) {
	mult := 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		c := b[i]
		v += int(c&0x7f) * mult
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, ErrMalformedVarint
}

// appendVarint appends v as a variable byte integer.
func appendVarint(dst []byte, v int) []byte {
	for {
		c := byte(v % 128)
		v /= 128
		if v > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if v == 0 {
			return dst
		}
	}
}

func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

// FrameLen inspects the start of b. It returns the total length of the
// first packet (fixed header included) once enough bytes are present to know
// it, or 0 when more bytes are needed. The declared length is checked against
// max before any body byte is needed.
func FrameLen(b []byte, max int) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	rl, n, err := decodeVarint(b[1:])
	if err != nil || n == 0 {
		return 0, err
	}
	if rl > max {
		return 0, wrap(ErrPacketTooLarge, "declared %d bytes, maximum %d", rl, max)
	}
	return 1 + n + rl, nil
}
