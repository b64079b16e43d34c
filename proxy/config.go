package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/proxy/audit"
	"github.com/rs/zerolog"
)

// Config is everything a Server needs; cmd/mqttgate fills it from the
// environment. Zero durations take the defaults below.
type Config struct {
	Backend string // broker address, host:port (with Brokers: only for logs)
	// Brokers, when set, chooses each client's broker node among
	// several; a failed dial is retried on the client's next node within
	// the dial timeout.
	Brokers BrokerPicker
	// BackendTLSPerNode: with TLS to the broker, each node's certificate
	// must hold that node's own host (no one server name for all).
	BackendTLSPerNode    bool
	BackendProxyProtocol bool // send a PROXY v2 header to the broker
	// BackendProxyTLVs is what the header carries beyond the addresses:
	// some brokers' decoders cannot skip TLVs.
	BackendProxyTLVs ProxyTLVs
	// BackendTLS, when set, gives the TLS configuration for a broker
	// dial, asked afresh for each (a reload applies to the next dial); it
	// must not return nil. nil: plaintext to the broker.
	BackendTLS       func() *tls.Config
	DialTimeout      time.Duration
	HandshakeTimeout time.Duration
	ConnectTimeout   time.Duration // first packet must be a CONNECT within this time
	// ClientWriteTimeout bounds how long a write to a client may wait
	// with the client taking nothing: one that stops reading while the
	// proxy has packets for it is cut off, so that it cannot pin them for
	// ever (see direct). Idle connections hold no deadline.
	ClientWriteTimeout time.Duration
	DrainTimeout       time.Duration // the time over which Shutdown spreads the disconnects
	// DrainServerReference, when set, is the Server Reference a v5
	// client is told to use instead (DISCONNECT 0x9C Use another server);
	// otherwise it is told 0x8B (Server shutting down).
	DrainServerReference string
	MaxPacketSize        int

	Access AccessPolicy // nil allows everyone
	// Meter, when set, counts every refusing decision (see Meter).
	Meter Meter
	// Traffic, when set, counts packets and bytes by type both ways;
	// Observer, when set, hears handshake and dial durations.
	Traffic  *Traffic
	Observer Observer
	// ProxyProtocolTrusted enables inbound PROXY headers (v1 and v2) from
	// these peers only; a header from any other peer is refused.
	ProxyProtocolTrusted []netip.Prefix

	Authenticator Authenticator // nil refuses every client: fail closed
	// Topics, when set, gives each admitted session its topic rights
	// (ACLs): checked for every PUBLISH, SUBSCRIBE filter and will. What
	// a denial does (refuse, end the session, dry run) is theirs to say.
	Topics func(*Session) TopicRights
	// TopicCheckDelivery also checks every PUBLISH the broker sends
	// against the client's subscribe rights and drops what it may not
	// receive (acknowledging it to the broker).
	TopicCheckDelivery bool
	// Limits, when set, gives each admitted session its packet limits.
	Limits func(*Session, *mqttwire.Connect) Limiter
	// Conns, when set, admits connections before the TLS handshake.
	Conns ConnGate
	// Connects, when set, may refuse a CONNECT (bans, client id length)
	// and hears when an admitted session ends (flapping).
	Connects ConnectChecker
	// SecurityLog bounds the security events logged (bad packets, limit
	// hits, ACL denials, refused connections); share it with the
	// authentication chain's. Default: logbudget.New().
	SecurityLog *logbudget.Budget
	// UsernameIsSecret keeps user names out of the logs (when clients send
	// a token in the user name field).
	UsernameIsSecret bool
	Inspector        Inspector // nil forwards every valid packet
	// Audit, when set, takes authentication refusals and ACL denials (the
	// latter sampled under floods, with exact counts).
	Audit *audit.Log

	Logger zerolog.Logger
	// Dial connects to the broker; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Defaults.
const (
	DefaultDialTimeout        = 5 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultConnectTimeout     = 10 * time.Second
	DefaultDrainTimeout       = 10 * time.Second
	DefaultClientWriteTimeout = time.Minute
)
