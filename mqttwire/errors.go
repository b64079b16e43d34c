package mqttwire

import (
	"errors"
	"fmt"
)

// Error is a protocol error that carries the MQTT 5 reason code the proxy
// answers with. The same code maps to a v3 CONNACK return code where one
// exists (see ConnackCodeV3).
type Error struct {
	Code ReasonCode
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Sentinel errors. Callers classify with errors.Is; detail is added by
// wrapping with %w.
var (
	ErrMalformedVarint  = &Error{MalformedPacket, "mqttwire: malformed remaining length"}
	ErrPacketTooLarge   = &Error{PacketTooLarge, "mqttwire: packet exceeds maximum size"}
	ErrMalformed        = &Error{MalformedPacket, "mqttwire: malformed packet"}
	ErrProtocol         = &Error{ProtocolError, "mqttwire: protocol error"}
	ErrBadFlags         = &Error{MalformedPacket, "mqttwire: invalid fixed header flags"}
	ErrBadUTF8          = &Error{MalformedPacket, "mqttwire: invalid UTF-8 string"}
	ErrBadTopic         = &Error{TopicNameInvalid, "mqttwire: invalid topic name"}
	ErrBadFilter        = &Error{TopicFilterInvalid, "mqttwire: invalid topic filter"}
	ErrBadQoS           = &Error{MalformedPacket, "mqttwire: invalid QoS"}
	ErrBadProperty      = &Error{MalformedPacket, "mqttwire: invalid property"}
	ErrUnsupportedProto = &Error{UnsupportedProtocolVersion, "mqttwire: unsupported protocol version"}
	ErrBadProtocolName  = &Error{UnsupportedProtocolVersion, "mqttwire: unsupported protocol name"}
	ErrUnexpectedPacket = &Error{ProtocolError, "mqttwire: unexpected packet type"}
)

// ReasonOf returns the reason code carried by err, or UnspecifiedError when
// err is not a protocol error.
func ReasonOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}

func wrap(sentinel *Error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
