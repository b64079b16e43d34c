package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/brokerpool"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

// tlsBroker is a broker behind its own TLS listener: it answers every
// CONNECT with a CONNACK 0 of the CONNECT's version. It counts the
// handshakes that resumed a session, and with proxyHeader it first reads
// a PROXY header in the clear and sends it on headers.
type tlsBroker struct {
	addr              string
	full, resumed     atomic.Int64
	headers           chan *proxyproto.Header
	clientCertSubject chan string
}

func startTLSBroker(t *testing.T, cfg *tls.Config, proxyHeader bool) *tlsBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tlsBroker{addr: ln.Addr().String(), headers: make(chan *proxyproto.Header, 8), clientCertSubject: make(chan string, 8)}
	acceptLoop(t, ln, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if proxyHeader {
			pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE))
			if _, err := pc.Read(nil); err != nil {
				return
			}
			b.headers <- pc.ProxyHeader()
			c = pc
		}
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		st := tc.ConnectionState()
		if st.DidResume {
			b.resumed.Add(1)
		} else {
			b.full.Add(1)
		}
		if len(st.PeerCertificates) > 0 {
			b.clientCertSubject <- st.PeerCertificates[0].Subject.CommonName
		}
		r := mqttwire.NewReader(tc, 256, 1<<20)
		p, err := r.Next()
		if err != nil {
			return // a TLS 1.3 client certificate refused: Go's server sends the alert here
		}
		c2, err := mqttwire.ParseConnect(p)
		if err != nil {
			return
		}
		if _, err := tc.Write(mqttwire.AppendConnack(nil, c2.Version, false, mqttwire.Success, nil)); err != nil {
			return
		}
		for {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	})
	return b
}

// brokerServerTLS is the test broker's side: p's server certificate,
// at version (0: 1.2 and 1.3), optionally requiring a client certificate.
func brokerServerTLS(t *testing.T, p *pki, version uint16, requireClient bool) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, MaxVersion: version}
	if requireClient {
		pool := x509.NewCertPool()
		pool.AddCert(p.Authority.Root)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// proxyBrokerTLS is the proxy's side: trusting p's CA, for localhost,
// presenting client's certificate ("" none), with a session cache.
func proxyBrokerTLS(t *testing.T, p *pki, client string) func() *tls.Config {
	t.Helper()
	cfg := p.clientTLS(t, client)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return func() *tls.Config { return cfg }
}

func dialPlain(t *testing.T, addr string, v mqttwire.Version, id string) mqttwire.Packet {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, ack := mqtttest.NewRawClient(t, conn, v, &mqttwire.Connect{ClientID: []byte(id)})
	return ack
}

func connackCode(t *testing.T, p mqttwire.Packet) byte {
	t.Helper()
	if p.Type != mqttwire.CONNACK || len(p.Body) < 2 {
		t.Fatalf("want a CONNACK, got %s %x", p.Type, p.Raw)
	}
	return p.Body[1]
}

// With TLS to the broker the CONNECT goes through, the proxy presents its
// certificate, and every connection after the first resumes the TLS
// session: a reconnect storm costs no full handshakes.
func TestBrokerTLSResumes(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			b := startTLSBroker(t, brokerServerTLS(t, p, version, true), false)
			px := startProxy(t, Config{Backend: b.addr, BackendTLS: proxyBrokerTLS(t, p, "alice")}, nil)
			for i := range 4 {
				if code := connackCode(t, dialPlain(t, px.addr, mqttwire.V5, "c")); code != 0 {
					t.Fatalf("connection %d: CONNACK %#x", i, code)
				}
				if cn := <-b.clientCertSubject; cn != "alice" {
					t.Fatalf("the broker saw client certificate %q", cn)
				}
			}
			if full, resumed := b.full.Load(), b.resumed.Load(); full != 1 || resumed != 3 {
				t.Errorf("%d full handshakes and %d resumed, want 1 and 3", full, resumed)
			}
		})
	}
}

// Every failure on the TLS hop before the broker's CONNACK is answered
// CONNACK 0x88 to a v5 client and 0x03 to a 3.1.1 one, with the cause
// logged: a broker certificate that does not verify, one for another
// name, and a broker that wants a client certificate (TLS 1.2: the
// handshake fails; 1.3: the alert comes after it, on the first read).
func TestBrokerTLSFailureAnswered(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	other := newPKI(t, certstore.ClientAuthNone)
	wrongName := func() *tls.Config {
		cfg := p.clientTLS(t, "")
		cfg.ServerName = "broker.example"
		return cfg
	}
	for _, tc := range []struct {
		name   string
		broker *tls.Config
		proxy  func() *tls.Config
		step   string
		cause  string
	}{
		{"unknown CA", brokerServerTLS(t, p, 0, false), proxyBrokerTLS(t, other, ""), "handshake", "certificate signed by unknown authority"},
		{"wrong name", brokerServerTLS(t, p, 0, false), wrongName, "handshake", "not broker.example"},
		{"no client certificate 1.3", brokerServerTLS(t, p, tls.VersionTLS13, true), proxyBrokerTLS(t, p, ""), "CONNACK", "tls: certificate required"},
		{"no client certificate 1.2", brokerServerTLS(t, p, tls.VersionTLS12, true), proxyBrokerTLS(t, p, ""), "handshake", "tls: handshake failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startTLSBroker(t, tc.broker, false)
			px := startProxy(t, Config{Backend: b.addr, BackendTLS: tc.proxy}, nil)
			for _, c := range []struct {
				v    mqttwire.Version
				want byte
			}{{mqttwire.V5, 0x88}, {mqttwire.V311, 0x03}} {
				if code := connackCode(t, dialPlain(t, px.addr, c.v, "c")); code != c.want {
					t.Errorf("v%d: CONNACK %#x, want %#x", c.v, code, c.want)
				}
			}
			mqtttest.WaitFor(t, "the cause logged", func() bool {
				l := px.logs.String()
				return strings.Count(l, `"event":"broker_tls_failed"`) == 2 && strings.Count(l, `"step":"`+tc.step+`"`) == 2 && strings.Contains(l, tc.cause)
			})
			if n := px.srv.Stats.BackendDown.Load(); n != 2 {
				t.Errorf("BackendDown %d, want 2", n)
			}
		})
	}
}

// The outbound PROXY header goes first and in the clear, then the TLS
// handshake, as HAProxy's send-proxy-v2 with ssl.
func TestBrokerTLSProxyHeaderFirst(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	b := startTLSBroker(t, brokerServerTLS(t, p, 0, false), true)
	px := startProxy(t, Config{Backend: b.addr, BackendProxyProtocol: true, BackendTLS: proxyBrokerTLS(t, p, "")}, nil)
	conn, err := net.DialTimeout("tcp", px.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ack := mqtttest.NewRawClient(t, conn, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("h")}); connackCode(t, ack) != 0 {
		t.Fatalf("CONNACK %x", ack.Raw)
	}
	h := <-b.headers
	if src, _, ok := h.TCPAddrs(); !ok || src.String() != conn.LocalAddr().String() {
		t.Fatalf("header source %v, want the client's %v", h.SourceAddr, conn.LocalAddr())
	}
}

// A reload between dials applies to the next one: the function is asked
// for every dial.
func TestBrokerTLSConfigPerDial(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	other := newPKI(t, certstore.ClientAuthNone)
	b := startTLSBroker(t, brokerServerTLS(t, p, 0, false), false)
	var cur atomic.Pointer[tls.Config]
	cur.Store(proxyBrokerTLS(t, other, "")())
	px := startProxy(t, Config{Backend: b.addr, BackendTLS: cur.Load}, nil)
	if code := connackCode(t, dialPlain(t, px.addr, mqttwire.V5, "a")); code != 0x88 {
		t.Fatalf("before: CONNACK %#x, want 0x88", code)
	}
	cur.Store(proxyBrokerTLS(t, p, "")())
	if code := connackCode(t, dialPlain(t, px.addr, mqttwire.V5, "b")); code != 0 {
		t.Fatalf("after: CONNACK %#x, want 0", code)
	}
}

// With a pool and no one server name, each node's certificate must hold
// that node's own host: a certificate for another name is refused.
func TestBrokerTLSNamePerNode(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "dns.pem"), filepath.Join(dir, "dns-key.pem")
	if _, err := p.Authority.Issue(devpki.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}}, cert, key); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	byIP := startTLSBroker(t, brokerServerTLS(t, p, 0, false), false)                                                    // SANs localhost, 127.0.0.1, ::1
	byName := startTLSBroker(t, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, false) // localhost only
	for _, c := range []struct {
		broker  string
		perNode bool
		want    byte
	}{
		{byIP.addr, true, 0}, {byName.addr, true, byte(mqttwire.ServerUnavailable)}, {byName.addr, false, 0},
	} {
		pool, err := brokerpool.New([]string{c.broker}, brokerpool.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		px := startProxy(t, Config{Backend: c.broker, Brokers: pool, BackendTLS: proxyBrokerTLS(t, p, ""), BackendTLSPerNode: c.perNode}, nil)
		if got := connackCode(t, dialPlain(t, px.addr, mqttwire.V5, "pn")); got != c.want {
			t.Errorf("broker %s, per node %v: CONNACK %#x, want %#x", c.broker, c.perNode, got, c.want)
		}
	}
}
