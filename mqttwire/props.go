package mqttwire

import (
	"encoding/binary"
)

// Property identifiers (MQTT 5.0 section 2.2.2.2).
const (
	PropPayloadFormat        byte = 0x01
	PropMessageExpiry        byte = 0x02
	PropContentType          byte = 0x03
	PropResponseTopic        byte = 0x08
	PropCorrelationData      byte = 0x09
	PropSubscriptionID       byte = 0x0B
	PropSessionExpiry        byte = 0x11
	PropAssignedClientID     byte = 0x12
	PropServerKeepAlive      byte = 0x13
	PropAuthMethod           byte = 0x15
	PropAuthData             byte = 0x16
	PropRequestProblemInfo   byte = 0x17
	PropWillDelay            byte = 0x18
	PropRequestResponseInfo  byte = 0x19
	PropResponseInfo         byte = 0x1A
	PropServerReference      byte = 0x1C
	PropReasonString         byte = 0x1F
	PropReceiveMaximum       byte = 0x21
	PropTopicAliasMaximum    byte = 0x22
	PropTopicAlias           byte = 0x23
	PropMaximumQoS           byte = 0x24
	PropRetainAvailable      byte = 0x25
	PropUserProperty         byte = 0x26
	PropMaximumPacketSize    byte = 0x27
	PropWildcardSubAvailable byte = 0x28
	PropSubIDAvailable       byte = 0x29
	PropSharedSubAvailable   byte = 0x2A
)

type propType byte

const (
	ptByte propType = iota + 1
	ptUint16
	ptUint32
	ptVarint
	ptString
	ptBinary
	ptPair
)

// propKind says where a property block sits: a packet type, or the will.
type propKind uint16

const kindWill propKind = 1 << 0 // bit 0: packet type 0 is reserved, so it marks the will

func kindOf(t Type) propKind { return 1 << t }

type propSpec struct {
	typ      propType
	where    propKind
	multiple propKind // where the property may appear more than once
	boolean  bool     // value must be 0 or 1
	nonZero  bool
}

var propSpecs = [0x2B]propSpec{
	PropPayloadFormat:        {typ: ptByte, where: kindOf(PUBLISH) | kindWill, boolean: true},
	PropMessageExpiry:        {typ: ptUint32, where: kindOf(PUBLISH) | kindWill},
	PropContentType:          {typ: ptString, where: kindOf(PUBLISH) | kindWill},
	PropResponseTopic:        {typ: ptString, where: kindOf(PUBLISH) | kindWill},
	PropCorrelationData:      {typ: ptBinary, where: kindOf(PUBLISH) | kindWill},
	PropSubscriptionID:       {typ: ptVarint, where: kindOf(PUBLISH) | kindOf(SUBSCRIBE), multiple: kindOf(PUBLISH), nonZero: true},
	PropSessionExpiry:        {typ: ptUint32, where: kindOf(CONNECT) | kindOf(CONNACK) | kindOf(DISCONNECT)},
	PropAssignedClientID:     {typ: ptString, where: kindOf(CONNACK)},
	PropServerKeepAlive:      {typ: ptUint16, where: kindOf(CONNACK)},
	PropAuthMethod:           {typ: ptString, where: kindOf(CONNECT) | kindOf(CONNACK) | kindOf(AUTH)},
	PropAuthData:             {typ: ptBinary, where: kindOf(CONNECT) | kindOf(CONNACK) | kindOf(AUTH)},
	PropRequestProblemInfo:   {typ: ptByte, where: kindOf(CONNECT), boolean: true},
	PropWillDelay:            {typ: ptUint32, where: kindWill},
	PropRequestResponseInfo:  {typ: ptByte, where: kindOf(CONNECT), boolean: true},
	PropResponseInfo:         {typ: ptString, where: kindOf(CONNACK)},
	PropServerReference:      {typ: ptString, where: kindOf(CONNACK) | kindOf(DISCONNECT)},
	PropReasonString:         {typ: ptString, where: kindOf(CONNACK) | kindOf(PUBACK) | kindOf(PUBREC) | kindOf(PUBREL) | kindOf(PUBCOMP) | kindOf(SUBACK) | kindOf(UNSUBACK) | kindOf(DISCONNECT) | kindOf(AUTH)},
	PropReceiveMaximum:       {typ: ptUint16, where: kindOf(CONNECT) | kindOf(CONNACK), nonZero: true},
	PropTopicAliasMaximum:    {typ: ptUint16, where: kindOf(CONNECT) | kindOf(CONNACK)},
	PropTopicAlias:           {typ: ptUint16, where: kindOf(PUBLISH), nonZero: true},
	PropMaximumQoS:           {typ: ptByte, where: kindOf(CONNACK), boolean: true},
	PropRetainAvailable:      {typ: ptByte, where: kindOf(CONNACK), boolean: true},
	PropUserProperty:         {typ: ptPair, where: 0xffff, multiple: 0xffff},
	PropMaximumPacketSize:    {typ: ptUint32, where: kindOf(CONNECT) | kindOf(CONNACK), nonZero: true},
	PropWildcardSubAvailable: {typ: ptByte, where: kindOf(CONNACK), boolean: true},
	PropSubIDAvailable:       {typ: ptByte, where: kindOf(CONNACK), boolean: true},
	PropSharedSubAvailable:   {typ: ptByte, where: kindOf(CONNACK), boolean: true},
}

// Properties is a view of an MQTT 5 property block, without its length
// prefix. A Properties returned by a Parse function has been validated.
type Properties []byte

// propValue is one decoded property: Int for numeric types, Data for
// strings and binary data, Data and Data2 for a string pair.
type propValue struct {
	ID    byte
	Int   uint32
	Data  []byte
	Data2 []byte
}

// nextProp decodes the property at the start of b.
func nextProp(b []byte) (p propValue, rest []byte, err error) {
	if len(b) == 0 {
		return p, nil, wrap(ErrBadProperty, "empty")
	}
	p.ID = b[0]
	if int(p.ID) >= len(propSpecs) || propSpecs[p.ID].typ == 0 {
		return p, nil, wrap(ErrBadProperty, "unknown identifier %#x", p.ID)
	}
	b = b[1:]
	switch propSpecs[p.ID].typ {
	case ptByte:
		if len(b) < 1 {
			return p, nil, wrap(ErrBadProperty, "truncated %#x", p.ID)
		}
		p.Int, b = uint32(b[0]), b[1:]
	case ptUint16:
		if len(b) < 2 {
			return p, nil, wrap(ErrBadProperty, "truncated %#x", p.ID)
		}
		p.Int, b = uint32(binary.BigEndian.Uint16(b)), b[2:]
	case ptUint32:
		if len(b) < 4 {
			return p, nil, wrap(ErrBadProperty, "truncated %#x", p.ID)
		}
		p.Int, b = binary.BigEndian.Uint32(b), b[4:]
	case ptVarint:
		v, n, err := decodeVarint(b)
		if err != nil || n == 0 {
			return p, nil, wrap(ErrBadProperty, "bad varint in %#x", p.ID)
		}
		p.Int, b = uint32(v), b[n:]
	case ptString, ptBinary:
		p.Data, b, err = readBinary(b)
		if err != nil {
			return p, nil, err
		}
		if propSpecs[p.ID].typ == ptString && !ValidUTF8(p.Data) {
			return p, nil, wrap(ErrBadUTF8, "property %#x", p.ID)
		}
	case ptPair:
		if p.Data, b, err = readString(b); err != nil {
			return p, nil, err
		}
		if p.Data2, b, err = readString(b); err != nil {
			return p, nil, err
		}
	}
	return p, b, nil
}

// propSummary holds the property values the proxy acts on.
type propSummary struct {
	topicAlias    uint16
	maxPacketSize uint32
}

// readProps reads a length-prefixed property block from the start of b and
// validates every property for kind.
func readProps(b []byte, kind propKind) (Properties, []byte, propSummary, error) {
	var sum propSummary
	l, n, err := decodeVarint(b)
	if err != nil || n == 0 {
		return nil, nil, sum, wrap(ErrMalformed, "bad property length")
	}
	b = b[n:]
	if l > len(b) {
		return nil, nil, sum, wrap(ErrMalformed, "property length %d exceeds packet", l)
	}
	props, rest := Properties(b[:l:l]), b[l:]
	var seen uint64
	for p := []byte(props); len(p) > 0; {
		var v propValue
		if v, p, err = nextProp(p); err != nil {
			return nil, nil, sum, err
		}
		spec := propSpecs[v.ID]
		if spec.where&kind == 0 {
			return nil, nil, sum, wrap(ErrBadProperty, "property %#x not allowed here", v.ID)
		}
		if seen&(1<<v.ID) != 0 && spec.multiple&kind == 0 {
			return nil, nil, sum, wrap(ErrProtocol, "property %#x repeated", v.ID)
		}
		seen |= 1 << v.ID
		if spec.boolean && v.Int > 1 || spec.nonZero && v.Int == 0 {
			return nil, nil, sum, wrap(ErrProtocol, "property %#x has invalid value %d", v.ID, v.Int)
		}
		switch v.ID {
		case PropTopicAlias:
			sum.topicAlias = uint16(v.Int)
		case PropMaximumPacketSize:
			sum.maxPacketSize = v.Int
		}
	}
	return props, rest, sum, nil
}

// Lookup returns the first property with the given identifier: its numeric
// value, or its data for strings and binary data.
func (p Properties) Lookup(id byte) (n uint32, data []byte, ok bool) {
	for b := []byte(p); len(b) > 0; {
		v, rest, err := nextProp(b)
		if err != nil {
			return 0, nil, false
		}
		if v.ID == id {
			return v.Int, v.Data, true
		}
		b = rest
	}
	return 0, nil, false
}

// AppendProperty appends one property to a property block under
// construction. Numeric values go in n, strings and binary data in data.
func AppendProperty(dst []byte, id byte, n uint32, data []byte) []byte {
	dst = append(dst, id)
	switch propSpecs[id].typ {
	case ptByte:
		dst = append(dst, byte(n))
	case ptUint16:
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	case ptUint32:
		dst = binary.BigEndian.AppendUint32(dst, n)
	case ptVarint:
		dst = appendVarint(dst, int(n))
	default:
		dst = appendBinary(dst, data)
	}
	return dst
}
