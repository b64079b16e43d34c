package mqttwire

// ReasonCode is an MQTT 5 reason code (MQTT 5.0 section 2.4).
type ReasonCode byte

// MQTT 5 reason codes used by the proxy.
const (
	Success                     ReasonCode = 0x00
	NormalDisconnection         ReasonCode = 0x00
	GrantedQoS0                 ReasonCode = 0x00
	GrantedQoS1                 ReasonCode = 0x01
	GrantedQoS2                 ReasonCode = 0x02
	DisconnectWithWill          ReasonCode = 0x04
	NoMatchingSubscribers       ReasonCode = 0x10
	NoSubscriptionExisted       ReasonCode = 0x11
	ContinueAuthentication      ReasonCode = 0x18
	ReAuthenticate              ReasonCode = 0x19
	UnspecifiedError            ReasonCode = 0x80
	MalformedPacket             ReasonCode = 0x81
	ProtocolError               ReasonCode = 0x82
	ImplementationSpecific      ReasonCode = 0x83
	UnsupportedProtocolVersion  ReasonCode = 0x84
	ClientIdentifierNotValid    ReasonCode = 0x85
	BadUserNameOrPassword       ReasonCode = 0x86
	NotAuthorized               ReasonCode = 0x87
	ServerUnavailable           ReasonCode = 0x88
	ServerBusy                  ReasonCode = 0x89
	Banned                      ReasonCode = 0x8A
	ServerShuttingDown          ReasonCode = 0x8B
	BadAuthenticationMethod     ReasonCode = 0x8C
	KeepAliveTimeout            ReasonCode = 0x8D
	SessionTakenOver            ReasonCode = 0x8E
	TopicFilterInvalid          ReasonCode = 0x8F
	TopicNameInvalid            ReasonCode = 0x90
	PacketIdentifierInUse       ReasonCode = 0x91
	PacketIdentifierNotFound    ReasonCode = 0x92
	ReceiveMaximumExceeded      ReasonCode = 0x93
	TopicAliasInvalid           ReasonCode = 0x94
	PacketTooLarge              ReasonCode = 0x95
	MessageRateTooHigh          ReasonCode = 0x96
	QuotaExceeded               ReasonCode = 0x97
	AdministrativeAction        ReasonCode = 0x98
	PayloadFormatInvalid        ReasonCode = 0x99
	RetainNotSupported          ReasonCode = 0x9A
	QoSNotSupported             ReasonCode = 0x9B
	UseAnotherServer            ReasonCode = 0x9C
	ServerMoved                 ReasonCode = 0x9D
	SharedSubsNotSupported      ReasonCode = 0x9E
	ConnectionRateExceeded      ReasonCode = 0x9F
	MaximumConnectTime          ReasonCode = 0xA0
	SubscriptionIDsNotSupported ReasonCode = 0xA1
	WildcardSubsNotSupported    ReasonCode = 0xA2
)

// ConnackCodeV3 is an MQTT 3.1/3.1.1 CONNACK return code.
type ConnackCodeV3 byte

// MQTT 3.1.1 CONNACK return codes (section 3.2.2.3).
const (
	ConnAccepted                   ConnackCodeV3 = 0x00
	ConnRefusedProtocolVersion     ConnackCodeV3 = 0x01
	ConnRefusedIdentifierRejected  ConnackCodeV3 = 0x02
	ConnRefusedServerUnavailable   ConnackCodeV3 = 0x03
	ConnRefusedBadUsernamePassword ConnackCodeV3 = 0x04
	ConnRefusedNotAuthorized       ConnackCodeV3 = 0x05
)

// V3 maps a v5 CONNACK reason code to the closest v3 return code.
func (c ReasonCode) V3() ConnackCodeV3 {
	switch c {
	case Success:
		return ConnAccepted
	case UnsupportedProtocolVersion:
		return ConnRefusedProtocolVersion
	case ClientIdentifierNotValid:
		return ConnRefusedIdentifierRejected
	case ServerUnavailable, ServerBusy, ServerShuttingDown, UseAnotherServer, ServerMoved, ConnectionRateExceeded:
		return ConnRefusedServerUnavailable
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return ConnRefusedBadUsernamePassword
	default:
		return ConnRefusedNotAuthorized
	}
}

// IsError reports whether c signals failure (0x80 and above).
func (c ReasonCode) IsError() bool { return c >= 0x80 }
