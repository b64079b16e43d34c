package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn"
	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/limits/cidr"
	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/certstore"
	"github.com/mqttgate/mqttgate/proxy/wstransport"
)

const envPrefix = "MQTTGATE_"

// config is every setting, read from MQTTGATE_* variables.
type config struct {
	Backend string `env:"BACKEND" envDefault:"127.0.0.1:1883"` // host:port, or a comma-separated list: a pool
	// The pool (MQTTGATE_BACKEND listing more than one node).
	Balance              string        `env:"BALANCE" envDefault:"clientid"`
	BackendCheck         string        `env:"BACKEND_CHECK" envDefault:"tcp"`
	BackendCheckInterval time.Duration `env:"BACKEND_CHECK_INTERVAL" envDefault:"2s"`
	BackendRise          int           `env:"BACKEND_RISE" envDefault:"2"`
	BackendFall          int           `env:"BACKEND_FALL" envDefault:"3"`
	BackendCheckUsername string        `env:"BACKEND_CHECK_USERNAME"`
	BackendCheckPassword string        `env:"BACKEND_CHECK_PASSWORD" secret:"true"`
	BackendDownSpread    time.Duration `env:"BACKEND_DOWN_SPREAD" envDefault:"3s"`
	BackendSlowStart     time.Duration `env:"BACKEND_SLOWSTART"` // a node back up ramps its share of new clients over this
	// A pool entry given by name is re-resolved this often, each address a member.
	BackendResolveInterval time.Duration `env:"BACKEND_RESOLVE_INTERVAL" envDefault:"30s"`
	BackendProxyProtocol   bool          `env:"BACKEND_PROXY_PROTOCOL"`
	BackendProxyTLVs       string        `env:"BACKEND_PROXY_TLVS" envDefault:"all"`
	BackendTLS             bool          `env:"BACKEND_TLS"`             // TLS to the broker, verified (see backendtls.go)
	BackendTLSCA           string        `env:"BACKEND_TLS_CA"`          // the broker's CA bundle; empty: the system roots
	BackendTLSCert         string        `env:"BACKEND_TLS_CERT"`        // the proxy's client certificate, for brokers that require one
	BackendTLSKey          string        `env:"BACKEND_TLS_KEY"`         // its key
	BackendTLSServerName   string        `env:"BACKEND_TLS_SERVER_NAME"` // the name the broker's certificate must hold; empty: the backend's host

	ListenTLS string `env:"LISTEN_TLS" envDefault:":8883"`
	ListenTCP string `env:"LISTEN_TCP"` // plaintext, off unless set
	// MQTT over WebSocket: over TLS (the same certificates) and plaintext.
	ListenWSS     string   `env:"LISTEN_WSS"`
	ListenWS      string   `env:"LISTEN_WS"`
	WSPath        string   `env:"WS_PATH" envDefault:"/mqtt"`
	WSOrigins     []string `env:"WS_ORIGINS" envSeparator:","` // browser Origins allowed; none: no browser
	WSTokenCookie string   `env:"WS_TOKEN_COOKIE"`             // a cookie carrying a JWT for browsers
	WSTrusted     string   `env:"WS_TRUSTED_PROXIES"`          // HTTP balancers whose forwarding headers name the client

	TLSCert           []string      `env:"TLS_CERT"` // comma-separated; the first pair is the default
	TLSKey            []string      `env:"TLS_KEY"`
	TLSKeyPassphrase  string        `env:"TLS_KEY_PASSPHRASE" secret:"true"` // for encrypted PKCS#8 keys
	TLSKeyPassFile    string        `env:"TLS_KEY_PASSPHRASE_FILE"`          // the same, read from a file
	TLSClientCA       string        `env:"TLS_CLIENT_CA"`
	TLSClientAuth     string        `env:"TLS_CLIENT_AUTH" envDefault:"none"`
	TLSVerifyDepth    int           `env:"TLS_VERIFY_DEPTH"`
	TLSCRL            string        `env:"TLS_CRL"`    // revoked client certificates, reloaded with the certificates
	TLSGroups         []string      `env:"TLS_GROUPS"` // key exchanges in order of preference; empty: Go's (X25519MLKEM768 first)
	TLSReloadInterval time.Duration `env:"TLS_RELOAD_INTERVAL" envDefault:"2m"`

	AccessRules          string `env:"ACCESS_RULES"`
	ProxyProtocol        bool   `env:"PROXY_PROTOCOL"`
	ProxyProtocolTrusted string `env:"PROXY_PROTOCOL_TRUSTED"`

	Authn                []string `env:"AUTHN"` // the chain, in order: cert, rules, password, jwt, http
	AllowAnonymous       bool     `env:"ALLOW_ANONYMOUS"`
	CertIdentity         string   `env:"CERT_IDENTITY"`          // certificate field that becomes the user name
	CertIdentityClientID string   `env:"CERT_IDENTITY_CLIENTID"` // certificate field that becomes the client id
	AuthnRules           string   `env:"AUTHN_RULES"`
	ClientIDPattern      string   `env:"CLIENTID_PATTERN"` // the client id an admitted identity may use, e.g. ${username}-*

	PasswordFile          string        `env:"PASSWORD_FILE"`
	PasswordCacheTTL      time.Duration `env:"PASSWORD_CACHE_TTL" envDefault:"30s"`
	PasswordMaxConcurrent int           `env:"PASSWORD_MAX_CONCURRENT"` // 0: one less than the CPUs

	JWTKeys           []string      `env:"JWT_KEYS"` // PEM public keys or JWKS files
	JWTJWKSURL        string        `env:"JWT_JWKS_URL" secret:"url"`
	JWTJWKSRefresh    time.Duration `env:"JWT_JWKS_REFRESH" envDefault:"5m"`
	JWTSecret         string        `env:"JWT_SECRET" secret:"true"` // enables HS256 (with JWT_ALGORITHMS)
	JWTSecretFile     string        `env:"JWT_SECRET_FILE"`
	JWTAlgorithms     []string      `env:"JWT_ALGORITHMS"`
	JWTFrom           string        `env:"JWT_FROM" envDefault:"password"`
	JWTIssuer         string        `env:"JWT_ISSUER"`
	JWTAudience       string        `env:"JWT_AUDIENCE"`
	JWTRequireExp     bool          `env:"JWT_REQUIRE_EXP" envDefault:"true"`
	JWTLeeway         time.Duration `env:"JWT_LEEWAY" envDefault:"5s"`
	JWTClaims         string        `env:"JWT_CLAIMS"` // JSON object: claim -> template
	JWTSuperuserClaim string        `env:"JWT_SUPERUSER_CLAIM"`

	HTTPAuthURL         string        `env:"HTTP_AUTH_URL" secret:"url"`
	HTTPAuthTimeout     time.Duration `env:"HTTP_AUTH_TIMEOUT" envDefault:"5s"`
	HTTPAuthCA          string        `env:"HTTP_AUTH_CA"`
	HTTPAuthOnError     string        `env:"HTTP_AUTH_ON_ERROR" envDefault:"deny"`
	HTTPAuthCacheTTL    time.Duration `env:"HTTP_AUTH_CACHE_TTL"`
	HTTPAuthMaxInflight int           `env:"HTTP_AUTH_MAX_INFLIGHT" envDefault:"32"`

	ACLFile          string `env:"ACL_FILE"`                            // Mosquitto or EMQX syntax
	ACLNoMatch       string `env:"ACL_NO_MATCH" envDefault:"deny"`      // what no rule decides
	ACLDenyAction    string `env:"ACL_DENY_ACTION" envDefault:"ignore"` // a denied PUBLISH: ignore (answer, drop) or disconnect
	ACLMode          string `env:"ACL_MODE" envDefault:"enforce"`       // enforce or dry-run
	ACLCheckDelivery bool   `env:"ACL_CHECK_DELIVERY"`                  // also check what the broker sends against subscribe rights

	MaxTopicLength         int           `env:"MAX_TOPIC_LENGTH" envDefault:"65535"`
	MaxTopicLevels         int           `env:"MAX_TOPIC_LEVELS" envDefault:"128"`
	MaxClientIDLength      int           `env:"MAX_CLIENT_ID_LENGTH" envDefault:"256"`
	MaxSubscriptions       int           `env:"MAX_SUBSCRIPTIONS" envDefault:"1000"`
	MaxFiltersPerSubscribe int           `env:"MAX_FILTERS_PER_SUBSCRIBE" envDefault:"100"`
	MaxInflight            int           `env:"MAX_INFLIGHT" envDefault:"1000"`
	PublishRate            float64       `env:"PUBLISH_RATE"`       // messages per second per client; 0: none
	PublishBytesRate       float64       `env:"PUBLISH_BYTES_RATE"` // bytes per second per client; 0: none
	RateAction             string        `env:"RATE_ACTION" envDefault:"throttle"`
	MaxConnections         int           `env:"MAX_CONNECTIONS" envDefault:"100000"`
	MaxConnectionsPerIP    int           `env:"MAX_CONNECTIONS_PER_IP"`
	ConnectRate            float64       `env:"CONNECT_RATE"` // new connections per second, all addresses
	ConnectRatePerIP       float64       `env:"CONNECT_RATE_PER_IP"`
	MaxKeepAlive           time.Duration `env:"MAX_KEEPALIVE"`
	FlappingMax            int           `env:"FLAPPING_MAX_DISCONNECTS" envDefault:"15"`
	FlappingWindow         time.Duration `env:"FLAPPING_WINDOW" envDefault:"1m"`
	FlappingBan            time.Duration `env:"FLAPPING_BAN" envDefault:"5m"`
	BansFile               string        `env:"BANS_FILE"`

	FilePollInterval time.Duration `env:"FILE_POLL_INTERVAL" envDefault:"2s"` // how often password, key and CRL files are checked for changes

	HandshakeTimeout   time.Duration `env:"HANDSHAKE_TIMEOUT" envDefault:"10s"`
	ConnectTimeout     time.Duration `env:"CONNECT_TIMEOUT" envDefault:"10s"`
	DialTimeout        time.Duration `env:"DIAL_TIMEOUT" envDefault:"5s"`
	DrainTimeout       time.Duration `env:"DRAIN_TIMEOUT" envDefault:"10s"`
	ClientWriteTimeout time.Duration `env:"CLIENT_WRITE_TIMEOUT" envDefault:"1m"`
	// DrainDelay: from SIGTERM to the listeners closing, /readyz says 503
	// so that balancers stop sending clients first.
	DrainDelay           time.Duration `env:"DRAIN_DELAY" envDefault:"5s"`
	DrainServerReference string        `env:"DRAIN_SERVER_REFERENCE"` // where v5 clients are told to go (DISCONNECT 0x9C)
	MaxPacketSize        int           `env:"MAX_PACKET_SIZE" envDefault:"1048576"`

	AdminListen        string        `env:"ADMIN_LISTEN"` // health, readiness and metrics over HTTP; off unless set
	AdminTLSCert       string        `env:"ADMIN_TLS_CERT"`
	AdminTLSKey        string        `env:"ADMIN_TLS_KEY"`
	ReadyCheckInterval time.Duration `env:"READY_CHECK_INTERVAL" envDefault:"5s"`
	AdminTLSClientCA   string        `env:"ADMIN_TLS_CLIENT_CA"` // when set, admin clients need a certificate it issued
	AdminKeysFile      string        `env:"ADMIN_KEYS_FILE"`     // API keys (mqttgate apikey); without it every /api/ call is refused
	AdminMetricsAuth   bool          `env:"ADMIN_METRICS_AUTH"`  // /metrics needs a viewer key too
	AuditLog           string        `env:"AUDIT_LOG"`           // the audit trail, one JSON line per fact; reopened on SIGUSR1

	PprofAddr string `env:"PPROF_ADDR"` // net/http/pprof on a loopback address, for profiling under load

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`

	parsed parsed // filled by check: every value that needs parsing, parsed once
}

// parsed holds the settings check parsed, so that nothing is parsed twice
// and the builders cannot drop an error.
type parsed struct {
	clientAuth      certstore.ClientAuth
	groups          []tls.CurveID
	access          *limits.AccessRules
	trusted         []netip.Prefix
	logLevel        zerolog.Level
	usernameFrom    authn.CertField
	clientIDFrom    authn.CertField
	authnRules      *authn.Rules
	clientIDPattern *authn.ClientIDPattern
	jwtClaims       map[string]string
	proxyTLVs       proxy.ProxyTLVs
	upgrader        *wstransport.Upgrader // the WebSocket listeners
}

// configError names the variable at fault; main exits 2 on it.
type configError struct {
	Var string
	Err error
}

func (e *configError) Error() string { return envPrefix + e.Var + ": " + e.Err.Error() }

func bad(v, format string, args ...any) error {
	return &configError{Var: v, Err: fmt.Errorf(format, args...)}
}

// knownSettings are the variables config reads, with the prefix.
func knownSettings() map[string]bool {
	known := map[string]bool{}
	t := reflect.TypeOf(config{})
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("env"); tag != "" {
			known[envPrefix+tag] = true
		}
	}
	return known
}

// kubernetesServiceLink matches the variables the kubelet injects for a
// Service named mqttgate or mqttgate-... (enableServiceLinks, on by
// default): MQTTGATE_PORT, MQTTGATE_SERVICE_HOST,
// MQTTGATE_PORT_8883_TCP_ADDR and the like are not settings.
var kubernetesServiceLink = regexp.MustCompile(`^MQTTGATE_([A-Z0-9_]+_)?(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)

// isServiceLink reports whether name=value is one of those: a bare
// ..._PORT only with Kubernetes' value (tcp://, udp:// or sctp://), so
// that a misspelt setting ending in _PORT is still refused.
func isServiceLink(name, value string) bool {
	if !kubernetesServiceLink.MatchString(name) {
		return false
	}
	if strings.HasSuffix(name, "_PORT") && !strings.Contains(name, "_SERVICE_PORT") && !strings.Contains(name, "_TCP_") && !strings.Contains(name, "_UDP_") && !strings.Contains(name, "_SCTP_") {
		return strings.HasPrefix(value, "tcp://") || strings.HasPrefix(value, "udp://") || strings.HasPrefix(value, "sctp://")
	}
	return true
}

// unknownSettings refuses an MQTTGATE_ variable that mqttgate does not
// read, naming the closest one it does: a misspelt limit or ACL setting
// would otherwise be silently ignored while the operator believes the
// control is on. The first such variable, in name order, is reported.
func unknownSettings(environ map[string]string) error {
	known := knownSettings()
	var unknown []string
	for k := range environ {
		if strings.HasPrefix(k, envPrefix) && !known[k] && !isServiceLink(k, environ[k]) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	best, bestD := "", -1
	for k := range known {
		if d := editDistance(unknown[0], k); bestD < 0 || d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return &configError{Var: strings.TrimPrefix(unknown[0], envPrefix), Err: fmt.Errorf("unknown setting; did you mean %s?", best)}
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// envName maps a config field name to its variable name.
func envName(field string) string {
	if f, ok := reflect.TypeOf(config{}).FieldByName(field); ok {
		return f.Tag.Get("env")
	}
	return field
}

// loadConfig reads the environment and checks every value.
func loadConfig(environ map[string]string) (*config, error) {
	if err := unknownSettings(environ); err != nil {
		return nil, err
	}
	var c config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			for _, e := range agg.Errors {
				var pe env.ParseError
				if errors.As(e, &pe) {
					return nil, &configError{Var: envName(pe.Name), Err: pe.Err}
				}
			}
		}
		return nil, err
	}
	return &c, c.check()
}

func (c *config) check() error {
	if err := c.checkPool(); err != nil {
		return err
	}
	if c.ListenTLS == "" && c.ListenTCP == "" && c.ListenWSS == "" && c.ListenWS == "" {
		return bad("LISTEN_TLS", "no listener: set MQTTGATE_LISTEN_TLS or MQTTGATE_LISTEN_WSS (or MQTTGATE_LISTEN_TCP, MQTTGATE_LISTEN_WS for plaintext)")
	}
	if c.tlsListener() != "" {
		if len(c.TLSCert) == 0 {
			return bad("TLS_CERT", "required for the TLS listener %s", c.tlsListener())
		}
		if len(c.TLSKey) != len(c.TLSCert) {
			return bad("TLS_KEY", "%d key files for %d certificate files", len(c.TLSKey), len(c.TLSCert))
		}
	}
	if c.TLSKeyPassphrase != "" && c.TLSKeyPassFile != "" {
		return bad("TLS_KEY_PASSPHRASE_FILE", "set only one of MQTTGATE_TLS_KEY_PASSPHRASE and MQTTGATE_TLS_KEY_PASSPHRASE_FILE")
	}
	if c.TLSKeyPassFile != "" {
		b, err := os.ReadFile(c.TLSKeyPassFile)
		if err != nil {
			return bad("TLS_KEY_PASSPHRASE_FILE", "%v", err)
		}
		c.TLSKeyPassphrase = strings.TrimRight(string(b), "\r\n")
	}
	auth, err := certstore.ParseClientAuth(c.TLSClientAuth)
	if err != nil {
		return bad("TLS_CLIENT_AUTH", "%v", err)
	}
	c.parsed.clientAuth = auth
	if auth != certstore.ClientAuthNone && c.TLSClientCA == "" {
		return bad("TLS_CLIENT_CA", "required when MQTTGATE_TLS_CLIENT_AUTH=%s", c.TLSClientAuth)
	}
	if c.TLSCRL != "" && auth == certstore.ClientAuthNone {
		return bad("TLS_CRL", "set, but client certificates are off (MQTTGATE_TLS_CLIENT_AUTH=none)")
	}
	if c.TLSVerifyDepth < 0 {
		return bad("TLS_VERIFY_DEPTH", "%d: must not be negative", c.TLSVerifyDepth)
	}
	if c.parsed.groups, err = certstore.ParseGroups(c.TLSGroups); err != nil {
		return bad("TLS_GROUPS", "%v", err)
	}
	if c.TLSReloadInterval < time.Second {
		return bad("TLS_RELOAD_INTERVAL", "%v: at least 1s", c.TLSReloadInterval)
	}
	if c.parsed.access, err = limits.ParseAccessRules(c.AccessRules); err != nil {
		return bad("ACCESS_RULES", "%v", err)
	}
	if c.parsed.proxyTLVs, err = proxy.ParseProxyTLVs(c.BackendProxyTLVs); err != nil {
		return bad("BACKEND_PROXY_TLVS", "%v", err)
	}
	if c.BackendProxyTLVs != "all" && !c.BackendProxyProtocol {
		return bad("BACKEND_PROXY_TLVS", "set, but the outbound PROXY header is off: set MQTTGATE_BACKEND_PROXY_PROTOCOL=true as well, or unset this")
	}
	if err := c.checkBackendTLS(); err != nil {
		return err
	}
	trusted, err := cidr.ParseList(c.ProxyProtocolTrusted)
	if err != nil {
		return bad("PROXY_PROTOCOL_TRUSTED", "%v", err)
	}
	c.parsed.trusted = trusted
	if !c.ProxyProtocol && len(trusted) > 0 {
		return bad("PROXY_PROTOCOL_TRUSTED", "set, but inbound PROXY headers are off: set MQTTGATE_PROXY_PROTOCOL=true as well, or unset this")
	}
	if c.ProxyProtocol && len(trusted) == 0 {
		return bad("PROXY_PROTOCOL_TRUSTED", "empty: inbound PROXY headers need the load balancers' addresses")
	}
	for name, d := range map[string]time.Duration{"HANDSHAKE_TIMEOUT": c.HandshakeTimeout, "CONNECT_TIMEOUT": c.ConnectTimeout,
		"DIAL_TIMEOUT": c.DialTimeout, "DRAIN_TIMEOUT": c.DrainTimeout, "CLIENT_WRITE_TIMEOUT": c.ClientWriteTimeout} {
		if d <= 0 {
			return bad(name, "%v: must be positive", d)
		}
	}
	if c.DrainDelay < 0 {
		return bad("DRAIN_DELAY", "%v: must not be negative", c.DrainDelay)
	}
	if c.MaxPacketSize < 64 || c.MaxPacketSize > 268_435_455 {
		return bad("MAX_PACKET_SIZE", "%d: between 64 and 268435455", c.MaxPacketSize)
	}
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return bad("PPROF_ADDR", "%q: a loopback host:port (profiles reveal memory contents)", c.PprofAddr)
		}
	}
	if c.parsed.logLevel, err = zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		return bad("LOG_LEVEL", "%q: want trace, debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return bad("LOG_FORMAT", "%q: want json or console", c.LogFormat)
	}
	if err := c.checkAdmin(); err != nil {
		return err
	}
	if err := c.checkWebSocket(); err != nil { // after the packet size
		return err
	}
	return c.checkAuthn(auth)
}

// proxyConfig turns checked settings into the proxy's configuration.
func (c *config) proxyConfig(log zerolog.Logger) proxy.Config {
	pc := proxy.Config{
		Backend: c.Backend, BackendProxyProtocol: c.BackendProxyProtocol, BackendProxyTLVs: c.parsed.proxyTLVs,
		DialTimeout: c.DialTimeout, HandshakeTimeout: c.HandshakeTimeout, ConnectTimeout: c.ConnectTimeout,
		DrainTimeout: c.DrainTimeout, ClientWriteTimeout: c.ClientWriteTimeout, DrainServerReference: c.DrainServerReference, MaxPacketSize: c.MaxPacketSize, Access: c.parsed.access, Logger: log,
	}
	if c.ProxyProtocol {
		pc.ProxyProtocolTrusted = c.parsed.trusted
	}
	return pc
}

func (c *config) tlsOptions() certstore.Options {
	o := certstore.Options{ClientCAFile: c.TLSClientCA, ClientAuth: c.parsed.clientAuth, VerifyDepth: c.TLSVerifyDepth, CRLFile: c.TLSCRL,
		KeyPassphrase: []byte(c.TLSKeyPassphrase), Groups: c.parsed.groups}
	for i := range c.TLSCert {
		o.Pairs = append(o.Pairs, certstore.CertPair{CertFile: c.TLSCert[i], KeyFile: c.TLSKey[i]})
	}
	return o
}

func newLogger(c *config) zerolog.Logger {
	lvl := c.parsed.logLevel
	var log zerolog.Logger
	if c.LogFormat == "console" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	} else {
		log = zerolog.New(os.Stderr)
	}
	return log.Level(lvl).With().Timestamp().Logger()
}

// effective lists every setting as it is in force ("MQTTGATE_X=value", in
// the order config declares them), secrets redacted: a passphrase or a
// shared key shows only whether it is set, a URL its user information
// and query values.
func (c *config) effective() []string {
	var out []string
	v, t := reflect.ValueOf(c).Elem(), reflect.TypeOf(*c)
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		var val string
		switch x := v.Field(i).Interface().(type) {
		case []string:
			val = strings.Join(x, ",")
		case fmt.Stringer:
			val = x.String()
		default:
			val = fmt.Sprint(x)
		}
		switch f.Tag.Get("secret") {
		case "true":
			if val != "" {
				val = "<redacted>"
			}
		case "url":
			val = authn.RedactURL(val)
		}
		out = append(out, envPrefix+name+"="+val)
	}
	return out
}
