package mqttwire

import "encoding/binary"

func appendHeader(dst []byte, t Type, flags byte, length int) []byte {
	dst = append(dst, byte(t)<<4|flags)
	return appendVarint(dst, length)
}

func appendProps(dst []byte, props []byte) []byte {
	dst = appendVarint(dst, len(props))
	return append(dst, props...)
}

// AppendConnack appends a CONNACK. For v3 clients code is mapped to the
// nearest return code and props are ignored; session present is only sent
// with a success code [MQTT-3.2.2-4].
func AppendConnack(dst []byte, v Version, sessionPresent bool, code ReasonCode, props []byte) []byte {
	var flags byte
	if sessionPresent && code == Success {
		flags = 1
	}
	if v != V5 {
		return append(appendHeader(dst, CONNACK, 0, 2), flags, byte(code.V3()))
	}
	dst = appendHeader(dst, CONNACK, 0, 2+varintLen(len(props))+len(props))
	dst = append(dst, flags, byte(code))
	return appendProps(dst, props)
}

// AppendSuback appends a SUBACK with one code per filter. v3 codes are
// 0x00-0x02 for granted QoS and 0x80 for failure; a v5 failure code passed
// to a v3 client is turned into 0x80.
func AppendSuback(dst []byte, v Version, id uint16, codes []byte, props []byte) []byte {
	n := 2 + len(codes)
	if v == V5 {
		n += varintLen(len(props)) + len(props)
	}
	dst = appendHeader(dst, SUBACK, 0, n)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if v == V5 {
		dst = appendProps(dst, props)
		return append(dst, codes...)
	}
	for _, c := range codes {
		if c >= 0x80 {
			c = 0x80
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendUnsuback appends an UNSUBACK. v3 carries no codes.
func AppendUnsuback(dst []byte, v Version, id uint16, codes []byte, props []byte) []byte {
	if v != V5 {
		return binary.BigEndian.AppendUint16(appendHeader(dst, UNSUBACK, 0, 2), id)
	}
	dst = appendHeader(dst, UNSUBACK, 0, 2+varintLen(len(props))+len(props)+len(codes))
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = appendProps(dst, props)
	return append(dst, codes...)
}

// AppendPubAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP (t). v3 carries
// only the packet identifier; v5 uses the short form when code is Success
// and props is empty.
func AppendPubAck(dst []byte, t Type, v Version, id uint16, code ReasonCode, props []byte) []byte {
	var flags byte
	if t == PUBREL {
		flags = 2
	}
	switch {
	case v != V5 || code == Success && len(props) == 0:
		dst = appendHeader(dst, t, flags, 2)
		return binary.BigEndian.AppendUint16(dst, id)
	case len(props) == 0:
		dst = appendHeader(dst, t, flags, 3)
		return append(binary.BigEndian.AppendUint16(dst, id), byte(code))
	}
	dst = appendHeader(dst, t, flags, 3+varintLen(len(props))+len(props))
	dst = append(binary.BigEndian.AppendUint16(dst, id), byte(code))
	return appendProps(dst, props)
}

// AppendDisconnect appends a DISCONNECT. Only v5 has a reason code and
// properties; serverReference, when non-empty, is sent as the Server
// Reference property (for codes 0x9C and 0x9D).
func AppendDisconnect(dst []byte, v Version, code ReasonCode, serverReference string) []byte {
	if v != V5 {
		return appendHeader(dst, DISCONNECT, 0, 0)
	}
	if serverReference == "" {
		if code == NormalDisconnection {
			return appendHeader(dst, DISCONNECT, 0, 0)
		}
		return append(appendHeader(dst, DISCONNECT, 0, 1), byte(code))
	}
	plen := 3 + len(serverReference)
	dst = appendHeader(dst, DISCONNECT, 0, 1+varintLen(plen)+plen)
	dst = append(dst, byte(code))
	dst = appendVarint(dst, plen)
	return AppendProperty(dst, PropServerReference, 0, []byte(serverReference))
}

// AppendPingresp appends a PINGRESP.
func AppendPingresp(dst []byte) []byte { return appendHeader(dst, PINGRESP, 0, 0) }

// AppendSubscribe appends a SUBSCRIBE with the given filters (and, for
// v5, properties): how the proxy forwards a subscription with some filters
// taken out.
func AppendSubscribe(dst []byte, v Version, id uint16, props []byte, filters []Filter) []byte {
	n := 2
	if v == V5 {
		n += varintLen(len(props)) + len(props)
	}
	for _, f := range filters {
		n += 2 + len(f.Topic) + 1
	}
	dst = appendHeader(dst, SUBSCRIBE, 0x02, n) // [MQTT-3.8.1-1]
	dst = binary.BigEndian.AppendUint16(dst, id)
	if v == V5 {
		dst = appendProps(dst, props)
	}
	for _, f := range filters {
		dst = appendBinary(dst, f.Topic)
		dst = append(dst, f.Options)
	}
	return dst
}

// AppendPublish appends a PUBLISH (props: v5 only; id: QoS 1 and 2 only).
func AppendPublish(dst []byte, v Version, topic []byte, qos byte, retain bool, id uint16, props, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if v == V5 {
		n += varintLen(len(props)) + len(props)
	}
	flags := qos << 1
	if retain {
		flags |= 1
	}
	dst = appendHeader(dst, PUBLISH, flags, n)
	dst = appendBinary(dst, topic)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	if v == V5 {
		dst = appendProps(dst, props)
	}
	return append(dst, payload...)
}
