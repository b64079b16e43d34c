package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/eclipse/paho.golang/paho"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/limits/cidr"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

func connectV311(id string) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func connectV5(id string) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, byte(len(id))}, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// rawExchange writes b and returns everything read until the proxy closes
// the connection (bounded by 5 s).
func rawExchange(t *testing.T, c net.Conn, b []byte) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed by the proxy; read %x", got)
	}
	return got
}

func TestRoundTripThroughTLSToMosquitto(t *testing.T) {
	broker := startMosquitto(t)
	p := newPKI(t, certstore.ClientAuthNone)
	px := startProxy(t, Config{Backend: broker}, p.store.ServerConfig())

	for _, qos := range []byte{0, 1, 2} {
		sub := dialMQTT(t, px.addr, p.clientTLS(t, ""), "sub")
		if _, err := sub.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: qos}}}); err != nil {
			t.Fatal(err)
		}
		pub := dialMQTT(t, px.addr, p.clientTLS(t, ""), "pub")
		if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "t/x", QoS: qos, Payload: []byte("hello")}); err != nil {
			t.Fatalf("QoS %d publish: %v", qos, err)
		}
		expectMsg(t, sub, "t/x", "hello")
		_ = sub.Disconnect(&paho.Disconnect{})
		_ = pub.Disconnect(&paho.Disconnect{})
	}
	if !strings.Contains(px.logs.String(), `"tls_version":"TLSv1.3"`) {
		t.Errorf("open event lacks TLS details:\n%s", px.logs.String())
	}
}

func TestMutualTLS(t *testing.T) {
	broker := startMosquitto(t)
	p := newPKI(t, certstore.ClientAuthRequire)
	px := startProxy(t, Config{Backend: broker}, p.store.ServerConfig())

	// No certificate: refused in the handshake.
	c, err := tls.Dial("tcp", px.addr, p.clientTLS(t, ""))
	if err == nil {
		_, err = c.Write(connectV311("x"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		c.Close()
	}
	if err == nil {
		t.Fatal("client without certificate was served")
	}
	// Self-signed certificate: refused.
	dir := t.TempDir()
	if err := devpki.SelfSigned("mallory", dir+"/m.pem", dir+"/m-key.pem"); err != nil {
		t.Fatal(err)
	}
	cfg := p.clientTLS(t, "")
	kp, _ := tls.LoadX509KeyPair(dir+"/m.pem", dir+"/m-key.pem")
	cfg.Certificates = []tls.Certificate{kp}
	if c, err := tls.Dial("tcp", px.addr, cfg); err == nil {
		_, _ = c.Write(connectV311("x"))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("self-signed client certificate was served")
		}
		c.Close()
	}
	// CA-signed: works, and the log names the subject.
	mc := dialMQTT(t, px.addr, p.clientTLS(t, "alice"), "alice-1")
	if _, err := mc.Publish(ctx10(t), &paho.Publish{Topic: "a", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if px.srv.Stats.HandshakeFailed.Load() < 2 {
		t.Errorf("handshake failures counted %d, want 2", px.srv.Stats.HandshakeFailed.Load())
	}
	if !strings.Contains(px.logs.String(), "CN=alice") {
		t.Errorf("log lacks client certificate subject")
	}
}

// recordingBroker accepts one connection, reads the PROXY header with
// go-proxyproto, and answers the CONNECT with a CONNACK.
func recordingBroker(t *testing.T) (addr string, headers <-chan *proxyproto.Header) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *proxyproto.Header, 4)
	acceptLoop(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			t.Errorf("broker: reading PROXY header: %v", err)
			c.Close()
			return
		}
		ch <- h
		r := mqttwire.NewReader(br, 256, 1<<16)
		if p, err := r.Next(); err == nil && p.Type == mqttwire.CONNECT {
			cn, _ := mqttwire.ParseConnect(p)
			_, _ = c.Write(mqttwire.AppendConnack(nil, cn.Version, false, mqttwire.Success, nil))
		}
		_, _ = io.Copy(io.Discard, c)
		c.Close()
	})
	return ln.Addr().String(), ch
}

func TestBackendProxyHeaderCarriesClientAndTLS(t *testing.T) {
	broker, headers := recordingBroker(t)
	p := newPKI(t, certstore.ClientAuthRequire)
	px := startProxy(t, Config{Backend: broker, BackendProxyProtocol: true}, p.store.ServerConfig())

	cfg := p.clientTLS(t, "bob")
	cfg.NextProtos = []string{"mqtt"}
	conn, err := tls.Dial("tcp", px.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := rawRead(t, conn, connectV311("bob-1"), 4)
	if !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
	h := <-headers
	src, dst, ok := h.TCPAddrs()
	if !ok || src.String() != conn.LocalAddr().String() {
		t.Fatalf("header source %v, want the client's %v", h.SourceAddr, conn.LocalAddr())
	}
	if dst.String() != px.addr {
		t.Errorf("header destination %v, want the address the client connected to, %v", dst, px.addr)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok || !ssl.Verified() || !ssl.ClientCertConn() {
		t.Fatalf("SSL TLV %+v", ssl)
	}
	if cn, _ := ssl.ClientCN(); cn != "bob" {
		t.Errorf("CN %q, want bob", cn)
	}
	if v, _ := ssl.SSLVersion(); v != "TLSv1.3" {
		t.Errorf("version %q", v)
	}
	if c, _ := ssl.SSLCipher(); !strings.HasPrefix(c, "TLS_") {
		t.Errorf("cipher %q", c)
	}
	var alpn, authority string
	for _, tlv := range tlvs {
		switch tlv.Type {
		case proxyproto.PP2_TYPE_ALPN:
			alpn = string(tlv.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			authority = string(tlv.Value)
		}
	}
	if alpn != "mqtt" || authority != "localhost" {
		t.Errorf("ALPN %q authority %q", alpn, authority)
	}
}

// BackendProxyTLVs: ssl sends the SSL TLV alone, none a bare header, for
// brokers whose decoders cannot skip TLVs; the addresses stay.
func TestBackendProxyHeaderTLVChoice(t *testing.T) {
	for _, tc := range []struct {
		which ProxyTLVs
		want  []proxyproto.PP2Type
	}{{TLVsSSL, []proxyproto.PP2Type{proxyproto.PP2_TYPE_SSL}}, {TLVsNone, nil}} {
		broker, headers := recordingBroker(t)
		p := newPKI(t, certstore.ClientAuthRequire)
		px := startProxy(t, Config{Backend: broker, BackendProxyProtocol: true, BackendProxyTLVs: tc.which}, p.store.ServerConfig())
		cfg := p.clientTLS(t, "bob")
		cfg.NextProtos = []string{"mqtt"}
		conn, err := tls.Dial("tcp", px.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rawRead(t, conn, connectV311("bob-1"), 4)
		conn.Close()
		h := <-headers
		if src, _, ok := h.TCPAddrs(); !ok || src.String() != conn.LocalAddr().String() {
			t.Fatalf("%d: header source %v, want %v", tc.which, h.SourceAddr, conn.LocalAddr())
		}
		tlvs, err := h.TLVs()
		if err != nil {
			t.Fatal(err)
		}
		var got []proxyproto.PP2Type
		for _, tlv := range tlvs {
			got = append(got, tlv.Type)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d: TLVs %v, want %v", tc.which, got, tc.want)
		}
	}
	for s, want := range map[string]ProxyTLVs{"": TLVsAll, "all": TLVsAll, "ssl": TLVsSSL, "none": TLVsNone} {
		if got, err := ParseProxyTLVs(s); err != nil || got != want {
			t.Errorf("ParseProxyTLVs(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseProxyTLVs("alpn"); err == nil {
		t.Error("ParseProxyTLVs accepted alpn")
	}
}

// rawRead writes b and reads exactly n bytes.
func rawRead(t *testing.T, c net.Conn, b []byte, n int) []byte {
	t.Helper()
	got := rawExchangeN(t, c, b, n)
	if len(got) != n {
		t.Fatalf("connection closed after %x, want %d bytes", got, n)
	}
	return got
}

func TestInboundProxyHeader(t *testing.T) {
	broker, headers := recordingBroker(t)
	trusted, _ := cidr.ParseList("127.0.0.1/32")
	access, _ := limits.ParseAccessRules("deny 198.51.100.0/24, allow all")
	px := startProxy(t, Config{Backend: broker, BackendProxyProtocol: true, ProxyProtocolTrusted: trusted, Access: access}, nil)

	send := func(src string) []byte {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 4242}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8883})
		hb, _ := h.Format()
		return rawExchangeN(t, c, append(hb, connectV311("lb")...), 4)
	}
	// From a trusted balancer: the header's address is the client's.
	if got := send("203.0.113.7"); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
	if h := <-headers; h.SourceAddr.String() != "203.0.113.7:4242" || h.DestinationAddr.String() != "192.0.2.1:8883" {
		t.Fatalf("forwarded %v -> %v, want the balancer's 203.0.113.7:4242 -> 192.0.2.1:8883", h.SourceAddr, h.DestinationAddr)
	}
	if !strings.Contains(px.logs.String(), `"client":"203.0.113.7:4242"`) {
		t.Errorf("log does not name the real client")
	}
	// Access rules apply to the real address.
	if got := send("198.51.100.5"); len(got) != 0 {
		t.Fatalf("denied client got %x", got)
	}
	if px.srv.Stats.AccessDenied.Load() != 1 {
		t.Errorf("access denials %d", px.srv.Stats.AccessDenied.Load())
	}
}

// rawExchangeN writes b and reads n bytes, or fewer if the proxy closes.
func rawExchangeN(t *testing.T, c net.Conn, b []byte, n int) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out := make([]byte, n)
	k, err := io.ReadFull(c, out)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("timed out after %x", out[:k])
	}
	return out[:k]
}

// A peer that is not a trusted balancer is judged on its socket address at
// once: the proxy does not wait for it to send anything.
func TestUntrustedPeerDeniedBeforeAnyRead(t *testing.T) {
	broker, _ := recordingBroker(t)
	trusted, _ := cidr.ParseList("127.0.0.2")
	access, _ := limits.ParseAccessRules("deny 127.0.0.1, allow all")
	px := startProxy(t, Config{Backend: broker, ProxyProtocolTrusted: trusted, Access: access, HandshakeTimeout: time.Minute}, nil)
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v: want the proxy to close at once", n, err)
	}
	if px.srv.Stats.AccessDenied.Load() != 1 {
		t.Fatalf("access denials %d", px.srv.Stats.AccessDenied.Load())
	}
}

func TestForgedProxyHeaderFromUntrustedPeerRefused(t *testing.T) {
	broker, _ := recordingBroker(t)
	trusted, _ := cidr.ParseList("127.0.0.2")
	px := startProxy(t, Config{Backend: broker, BackendProxyProtocol: true, ProxyProtocolTrusted: trusted}, nil)
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 2})
	hb, _ := h.Format()
	if got := rawExchange(t, c, append(hb, connectV311("forger")...)); len(got) != 0 {
		t.Fatalf("forged header was served: %x", got)
	}
	if px.srv.Stats.ProxyHeaderRefused.Load() != 1 {
		t.Fatalf("refusals %d", px.srv.Stats.ProxyHeaderRefused.Load())
	}
	// A plain client from the same untrusted address still works.
	c2, _ := net.Dial("tcp", px.addr)
	defer c2.Close()
	if got := rawExchangeN(t, c2, connectV311("plain"), 4); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
}

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, ConnectTimeout: 300 * time.Millisecond}, nil)
	healthy := dialMQTT(t, px.addr, nil, "healthy")
	if _, err := healthy.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "h", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"garbage":             []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"bad varint":          {0x10, 0xff, 0xff, 0xff, 0xff, 0x01},
		"oversized length":    {0x10, 0xff, 0xff, 0xff, 0x7f},
		"PUBLISH first":       {0x30, 0x05, 0, 1, 'a', 'h', 'i'},
		"slowloris":           {0x10},
		"bad CONNECT":         {0x10, 0x04, 0, 2, 'X', 'Y'},
		"second CONNECT":      append(connectV311("twice"), connectV311("twice")...),
		"wildcard in PUBLISH": append(connectV311("wild"), 0x30, 0x05, 0, 3, 'a', '/', '#'),
	}
	for name, b := range cases {
		c, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		got := rawExchange(t, c, b)
		c.Close()
		if name == "second CONNECT" || name == "wildcard in PUBLISH" {
			// The broker's CONNACK may or may not beat the close.
			if len(got) != 0 && !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
				t.Errorf("%s: got %x, want at most a CONNACK, then close", name, got)
			}
		} else if len(got) != 0 {
			t.Errorf("%s: got %x, want close", name, got)
		}
	}
	// v5: a protocol error after CONNECT earns a DISCONNECT with a reason.
	c, _ := net.Dial("tcp", px.addr)
	got := rawExchange(t, c, append(connectV5("v5bad"), 0x30, 0x06, 0, 3, 'a', '/', '+', 0))
	c.Close()
	if i := bytes.Index(got, []byte{0xe0, 0x01, 0x90}); i < 0 {
		t.Errorf("v5 wildcard publish: got %x, want DISCONNECT 0x90", got)
	}
	// v5: a packet over the size limit earns DISCONNECT 0x95 before its body is read.
	c, _ = net.Dial("tcp", px.addr)
	got = rawExchange(t, c, append(connectV5("v5big"), 0x30, 0x80, 0x80, 0x80, 0x01))
	c.Close()
	if i := bytes.Index(got, []byte{0xe0, 0x01, 0x95}); i < 0 {
		t.Errorf("v5 oversized publish: got %x, want DISCONNECT 0x95", got)
	}
	// Unsupported protocol level: CONNACK 0x01 [MQTT-3.1.2-2].
	c, _ = net.Dial("tcp", px.addr)
	got = rawExchange(t, c, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 7, 2, 0, 0, 0, 0})
	c.Close()
	if !bytes.Equal(got, []byte{0x20, 2, 0, 1}) {
		t.Errorf("level 7: got %x, want CONNACK 0x01", got)
	}

	// The healthy client is still served.
	pub := dialMQTT(t, px.addr, nil, "pub")
	if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "h", QoS: 1, Payload: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, healthy, "h", "still here")
}

func TestBrokerDownAnswersServerUnavailable(t *testing.T) {
	px := startProxy(t, Config{Backend: freeAddr(t), DialTimeout: time.Second}, nil)
	for _, c := range []struct {
		connect, want []byte
	}{
		{connectV311("a"), []byte{0x20, 2, 0, 0x03}},
		{connectV5("b"), []byte{0x20, 3, 0, 0x88, 0}},
	} {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		got := rawExchange(t, conn, c.connect)
		conn.Close()
		if !bytes.Equal(got, c.want) {
			t.Errorf("got %x, want %x", got, c.want)
		}
	}
}

func TestCertificateReloadKeepsConnections(t *testing.T) {
	broker := startMosquitto(t)
	p := newPKI(t, certstore.ClientAuthNone)
	px := startProxy(t, Config{Backend: broker}, p.store.ServerConfig())
	sub := dialMQTT(t, px.addr, p.clientTLS(t, ""), "long-lived")
	if _, err := sub.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "r", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	served := func() string {
		c, err := tls.Dial("tcp", px.addr, p.clientTLS(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "localhost" {
		t.Fatalf("served %q", cn)
	}
	// A broken file keeps the old certificate.
	good, _ := os.ReadFile(p.ServerCert)
	if err := os.WriteFile(p.ServerCert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.store.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if cn := served(); cn != "localhost" {
		t.Fatalf("after a failed reload served %q", cn)
	}
	_ = os.WriteFile(p.ServerCert, good, 0o644)
	if _, err := p.Authority.Issue(devpki.Leaf{CommonName: "rotated", DNSNames: []string{"localhost"}}, p.ServerCert, p.ServerKey); err != nil {
		t.Fatal(err)
	}
	if changed, err := p.store.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if cn := served(); cn != "rotated" {
		t.Fatalf("after reload served %q, want rotated", cn)
	}
	pub := dialMQTT(t, px.addr, p.clientTLS(t, ""), "after-reload")
	if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "r", QoS: 1, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, sub, "r", "kept")
}

func TestShutdownTellsV5Clients(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, DrainTimeout: 200 * time.Millisecond}, nil)
	mc := dialMQTT(t, px.addr, nil, "v5")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-mc.Disconnects:
		if d.ReasonCode != 0x8b {
			t.Fatalf("reason %#x, want 0x8B", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT")
	}
	if _, err := net.DialTimeout("tcp", px.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

// With a Server Reference configured, a v5 client is told where to go
// (paho.golang sees DISCONNECT 0x9C and the reference); a 3.1.1 client
// is closed, within the drain timeout, not left until it leaves.
func TestShutdownSendsV5ClientsElsewhere(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, DrainTimeout: 300 * time.Millisecond, DrainServerReference: "next:8883"}, nil)
	mc := dialMQTT(t, px.addr, nil, "v5-moved")
	v3, _ := dialRaw(t, px.addr, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("v3-closed")})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := px.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300 ms drain timeout", took)
	}
	select {
	case d := <-mc.Disconnects:
		if d.ReasonCode != byte(mqttwire.UseAnotherServer) || d.Properties == nil || d.Properties.ServerReference != "next:8883" {
			t.Fatalf("DISCONNECT %#x %+v, want 0x9C next:8883", d.ReasonCode, d.Properties)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT")
	}
	if _, open := v3.NextOrClosed(); open {
		t.Fatal("the 3.1.1 client got a packet instead of the close")
	}
}

// denyInspector refuses publishes, subscriptions and unsubscriptions whose
// topic starts with "denied/", and the PINGREQs of client "no-ping".
type denyInspector struct{}

func (denyInspector) Inspect(s *Session, in *Inspected) Decision {
	refuse := Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized, Why: "test policy"}
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		if bytes.HasPrefix(in.Publish.Topic, []byte("denied/")) {
			return refuse
		}
	case mqttwire.SUBSCRIBE, mqttwire.UNSUBSCRIBE:
		it := in.Subscribe.Filters()
		if f, _ := it.Next(); bytes.HasPrefix(f.Topic, []byte("denied/")) {
			return refuse
		}
	case mqttwire.PINGREQ:
		if s.ClientID == "no-ping" {
			return refuse
		}
	}
	return Decision{}
}

// Refused subscriptions get a failure code per filter, for each protocol
// version, and never reach the broker; a refused PINGREQ ends the session.
func TestInspectorRefusalAnswers(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, Inspector: InspectorChain{denyInspector{}}}, nil)

	mc := dialMQTT(t, px.addr, nil, "v5-sub")
	sa, err := mc.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "denied/a", QoS: 1}, {Topic: "denied/b", QoS: 0}}})
	if sa == nil || !bytes.Equal(sa.Reasons, []byte{0x87, 0x87}) {
		t.Fatalf("v5 SUBACK %+v %v, want 0x87 twice", sa, err)
	}
	ua, err := mc.Unsubscribe(ctx10(t), &paho.Unsubscribe{Topics: []string{"denied/a"}})
	if ua == nil || !bytes.Equal(ua.Reasons, []byte{0x87}) {
		t.Fatalf("v5 UNSUBACK %+v %v", ua, err)
	}

	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := rawRead(t, c, connectV311("no-ping"), 4); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
	subscribe := []byte{0x82, 13, 0, 7, 0, 8, 'd', 'e', 'n', 'i', 'e', 'd', '/', 'x', 1}
	if got := rawRead(t, c, subscribe, 5); !bytes.Equal(got, []byte{0x90, 3, 0, 7, 0x80}) {
		t.Fatalf("v3 SUBACK %x, want failure 0x80", got)
	}
	if got := rawExchange(t, c, []byte{0xc0, 0}); len(got) != 0 {
		t.Fatalf("refused PINGREQ answered %x, want close", got)
	}
	if n := px.srv.Stats.Refused.Load(); n != 4 {
		t.Errorf("refusals counted %d, want 4", n)
	}
}

func TestInspectorRefusesPublish(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, Inspector: InspectorChain{denyInspector{}}}, nil)
	sub := dialMQTT(t, px.addr, nil, "watcher")
	if _, err := sub.Subscribe(ctx10(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := dialMQTT(t, px.addr, nil, "pub")
	resp, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "denied/x", QoS: 1, Payload: []byte("no")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("refused publish: %+v %v, want PUBACK 0x87", resp, err)
	}
	if _, err := pub.Publish(ctx10(t), &paho.Publish{Topic: "ok/x", QoS: 1, Payload: []byte("yes")}); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, sub, "ok/x", "yes") // the refused one never arrived first
}

// testAuth refuses user mallory as a bad password, answers the zero
// Admission for user nobody, and maps everyone else to user "mapped".
type testAuth struct{}

func (testAuth) Authenticate(_ context.Context, c *mqttwire.Connect, _ identity.Peer) Admission {
	switch string(c.Username) {
	case "mallory":
		return Admission{Reason: mqttwire.BadUserNameOrPassword}
	case "nobody":
		return Admission{}
	}
	mapped := *c
	mapped.UsernameFlag, mapped.Username = true, []byte("mapped")
	return Admission{Admit: true, Connect: &mapped}
}

func connectWithUser(v mqttwire.Version, user string) []byte {
	return mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: v, CleanStart: true, ClientID: []byte("c"),
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte("pw")})
}

// The authenticator decides before anything reaches the broker, with the
// CONNACK code of the client's version, and can rewrite the CONNECT.
func TestAuthenticatorSeam(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	users := make(chan string, 8)
	acceptLoop(t, ln, func(c net.Conn) {
		defer c.Close()
		p, err := mqttwire.NewReader(c, 256, 1<<16).Next()
		if err != nil {
			return
		}
		cn, _ := mqttwire.ParseConnect(p)
		users <- string(cn.Username)
		_, _ = c.Write(mqttwire.AppendConnack(nil, cn.Version, false, mqttwire.Success, nil))
		_, _ = io.Copy(io.Discard, c)
	})
	px := startProxy(t, Config{Backend: ln.Addr().String(), Authenticator: testAuth{}}, nil)
	for _, c := range []struct {
		v    mqttwire.Version
		user string
		want []byte
	}{
		{mqttwire.V311, "mallory", []byte{0x20, 2, 0, 0x04}},
		{mqttwire.V5, "mallory", []byte{0x20, 3, 0, 0x86, 0}},
		{mqttwire.V311, "nobody", []byte{0x20, 2, 0, 0x05}},
		{mqttwire.V5, "nobody", []byte{0x20, 3, 0, 0x87, 0}},
	} {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := rawExchange(t, conn, connectWithUser(c.v, c.user)); !bytes.Equal(got, c.want) {
			t.Errorf("%s v%d: got %x, want %x then close", c.user, c.v, got, c.want)
		}
		conn.Close()
	}
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := rawRead(t, conn, connectWithUser(mqttwire.V311, "alice"), 4); !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK %x", got)
	}
	select {
	case u := <-users:
		if u != "mapped" {
			t.Fatalf("broker saw user %q, want the rewritten \"mapped\" (and nothing from refused clients)", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broker saw no CONNECT")
	}
	if n := px.srv.Stats.AuthRefused.Load(); n != 4 {
		t.Errorf("refusals %d, want 4", n)
	}
}

// Without an authenticator nobody gets in, and the broker is never dialled.
func TestNoAuthenticatorRefusesEveryone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialled := make(chan struct{}, 1)
	acceptLoop(t, ln, func(c net.Conn) { dialled <- struct{}{}; c.Close() })
	srv, err := New(Config{Backend: ln.Addr().String(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(pln, nil) }()
	defer func() { _ = srv.Shutdown(context.Background()); <-served }()
	for v, want := range map[mqttwire.Version][]byte{
		mqttwire.V311: {0x20, 2, 0, 0x05},
		mqttwire.V5:   {0x20, 3, 0, 0x87, 0},
	} {
		conn, err := net.Dial("tcp", pln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if got := rawExchange(t, conn, connectWithUser(v, "alice")); !bytes.Equal(got, want) {
			t.Errorf("v%d: got %x, want %x then close", v, got, want)
		}
		conn.Close()
	}
	select {
	case <-dialled:
		t.Fatal("the broker was dialled for a refused client")
	default:
	}
}

// expiringAuth admits every client until a moment shortly after CONNECT.
type expiringAuth struct{ after time.Duration }

func (a expiringAuth) Authenticate(context.Context, *mqttwire.Connect, identity.Peer) Admission {
	return Admission{Admit: true, Identity: &identity.Identity{Expires: time.Now().Add(a.after)}}
}

// A client whose credentials run out is disconnected: v5 with DISCONNECT
// Not authorized, v3 by closing.
func TestExpiredCredentialsDisconnect(t *testing.T) {
	broker := startMosquitto(t)
	px := startProxy(t, Config{Backend: broker, Authenticator: expiringAuth{after: 500 * time.Millisecond}}, nil)
	c := dialMQTT(t, px.addr, nil, "expiring")
	select {
	case d := <-c.Disconnects:
		if d.ReasonCode != byte(mqttwire.NotAuthorized) {
			t.Fatalf("DISCONNECT reason %#x, want 0x87", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("v5 client not disconnected at expiry")
	}
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := rawExchange(t, conn, connectWithUser(mqttwire.V311, "v3"))
	if !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("v3: got %x, want CONNACK accepted then close", got)
	}
	if n := px.srv.Stats.Expired.Load(); n != 2 {
		t.Errorf("expired %d, want 2", n)
	}

	// Already expired at CONNECT: refused.
	px2 := startProxy(t, Config{Backend: broker, Authenticator: expiringAuth{after: -time.Second}}, nil)
	conn2, err := net.Dial("tcp", px2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if got := rawExchange(t, conn2, connectWithUser(mqttwire.V5, "late")); !bytes.Equal(got, []byte{0x20, 3, 0, 0x87, 0}) {
		t.Fatalf("expired at CONNECT: got %x", got)
	}
}

// served reports whether who's certificate gets a CONNACK through px.
func served(t *testing.T, p *pki, addr, who string) bool {
	t.Helper()
	c, err := tls.Dial("tcp", addr, p.clientTLS(t, who))
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connectV311(who)); err != nil {
		return false
	}
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	return err == nil && b[0] == 0x20
}

// A certificate on the CRL fails the handshake; a new CRL is picked up by
// Reload; a broken one keeps the old; a CRL that its issuer did not sign
// revokes nothing.
func TestRevokedClientCertificateRefused(t *testing.T) {
	broker := startMosquitto(t)
	f, err := devpki.Init(t.TempDir(), "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(f.Dir, "crl.pem")
	bob := mqtttest.CertOf(t, f.Clients["bob"][0])
	if err := f.Authority.WriteCRL(crl, bob); err != nil {
		t.Fatal(err)
	}
	store, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: f.ServerCert, KeyFile: f.ServerKey}}, ClientCAFile: f.CA, ClientAuth: certstore.ClientAuthRequire, CRLFile: crl})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{Files: f, store: store}
	kinds := map[string]bool{}
	for _, e := range store.Expiries() { // what mqttgate_certificate_expiry_seconds shows
		kinds[e.Kind] = !e.Until.IsZero() && time.Until(e.Until) > 0
	}
	if !kinds["server"] || !kinds["intermediate"] || !kinds["client_ca"] || !kinds["crl"] {
		t.Errorf("expiries: %v, want server, intermediate, client_ca and crl, each in the future", kinds)
	}
	px := startProxy(t, Config{Backend: broker}, store.ServerConfig())
	if !served(t, p, px.addr, "alice") {
		t.Fatal("alice refused")
	}
	if served(t, p, px.addr, "bob") {
		t.Fatal("revoked bob served")
	}
	if err := os.WriteFile(crl, []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err == nil {
		t.Fatal("broken CRL loaded")
	}
	if served(t, p, px.addr, "bob") {
		t.Fatal("broken CRL unrevoked bob")
	}
	if err := f.Authority.WriteCRL(crl); err != nil {
		t.Fatal(err)
	}
	if changed, err := store.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if !served(t, p, px.addr, "bob") {
		t.Fatal("bob refused after the CRL no longer lists him")
	}
	// Another authority's CRL naming the same issuer and serial does not count.
	other, err := devpki.NewAuthority("mqttgate dev")
	if err != nil {
		t.Fatal(err)
	}
	other.Intermediate = f.Authority.Intermediate // same issuer name, wrong key
	if err := other.WriteCRL(crl, bob); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if !served(t, p, px.addr, "bob") {
		t.Fatal("a CRL its issuer did not sign revoked bob")
	}
}

// packetBroker accepts MQTT connections, answers CONNACK and PINGRESP,
// and sends the type of every other packet it receives on the channel.
func packetBroker(t *testing.T) (string, <-chan mqttwire.Type) {
	seen := make(chan mqttwire.Type, 64)
	addr := scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
		switch p.Type {
		case mqttwire.CONNECT:
			cn, _ := mqttwire.ParseConnect(p)
			_, _ = c.Write(mqttwire.AppendConnack(nil, cn.Version, false, mqttwire.Success, nil))
		case mqttwire.PINGREQ:
			_, _ = c.Write([]byte{0xd0, 0})
		default:
			seen <- p.Type
		}
		return true
	})
	return addr, seen
}

// A 3.1.1 QoS 2 PUBLISH refused by an inspector (as by the ACL) is
// answered PUBREC by the proxy, and so is its PUBREL (PUBCOMP): neither
// reaches the broker, which never saw the PUBLISH.
func TestRefusedQoS2ReleasedByTheProxyForEverySource(t *testing.T) {
	for name, cfg := range map[string]Config{
		"inspector": {Inspector: InspectorChain{denyInspector{}}},
		"acl":       withRights(Config{}),
	} {
		t.Run(name, func(t *testing.T) {
			broker, seen := packetBroker(t)
			cfg.Backend = broker
			px := startProxy(t, cfg, nil)
			c, ack := dialRaw(t, px.addr, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("q2")})
			if ack.Type != mqttwire.CONNACK {
				t.Fatalf("CONNACK %x", ack.Raw)
			}
			c.Send(publishPkt(mqttwire.V311, "denied/x", 2, 5, nil, "m"))
			if p := c.Next(); p.Type != mqttwire.PUBREC {
				t.Fatalf("refused QoS 2: %s %x, want PUBREC", p.Type, p.Raw)
			}
			c.Send(mqttwire.AppendPubAck(nil, mqttwire.PUBREL, mqttwire.V311, 5, 0, nil))
			if p := c.Next(); p.Type != mqttwire.PUBCOMP || !bytes.Equal(p.Body, []byte{0, 5}) {
				t.Fatalf("PUBREL of the refused PUBLISH: %s %x, want PUBCOMP 5 from the proxy", p.Type, p.Raw)
			}
			c.Send([]byte{0xc0, 0}) // PINGREQ: the broker answers; whatever it saw before is in the channel
			if p := c.Next(); p.Type != mqttwire.PINGRESP {
				t.Fatalf("PINGREQ: %s %x", p.Type, p.Raw)
			}
			select {
			case typ := <-seen:
				t.Fatalf("the broker received a %s", typ)
			default:
			}
		})
	}
}

// refuseUnsubscribe refuses every UNSUBSCRIBE.
type refuseUnsubscribe struct{}

func (refuseUnsubscribe) Inspect(_ *Session, in *Inspected) Decision {
	if in.Packet.Type == mqttwire.UNSUBSCRIBE {
		return Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized}
	}
	return Decision{}
}

// An UNSUBSCRIBE a later stage refuses never reached the broker, so it
// does not lower the subscriptions the session holds.
func TestRefusedUnsubscribeKeepsTheCount(t *testing.T) {
	broker := startMosquitto(t)
	sessions := limits.NewSessions(limits.PacketLimits{MaxSubscriptions: 1})
	px := startProxy(t, Config{Backend: broker, Inspector: InspectorChain{refuseUnsubscribe{}},
		Limits: func(s *Session, c *mqttwire.Connect) Limiter {
			return sessions.Open(limits.Start{ClientID: string(c.ClientID), Who: "t", CleanStart: true}, time.Now())
		}}, nil)
	c, _ := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("unsub")})
	c.Send(subscribePkt(mqttwire.V5, 1, "a"))
	if codes := subackCodes(t, c.Next(), mqttwire.V5); !bytes.Equal(codes, []byte{1}) {
		t.Fatalf("first filter: %x", codes)
	}
	c.Send([]byte{0xa2, 6, 0, 2, 0, 0, 1, 'a'}) // v5 UNSUBSCRIBE id 2, no properties, "a"
	if p := c.Next(); p.Type != mqttwire.UNSUBACK || p.Body[len(p.Body)-1] != byte(mqttwire.NotAuthorized) {
		t.Fatalf("refused UNSUBSCRIBE: %s %x", p.Type, p.Raw)
	}
	c.Send(subscribePkt(mqttwire.V5, 3, "b"))
	if codes := subackCodes(t, c.Next(), mqttwire.V5); !bytes.Equal(codes, []byte{byte(mqttwire.QuotaExceeded)}) {
		t.Fatalf("a second filter with a cap of 1 after a refused UNSUBSCRIBE: %x, want 0x97", codes)
	}
}

// A broker that speaks only 3.1.1 either closes on a v5 CONNECT
// (RabbitMQ 3.10) or answers it with a 3.1.1 CONNACK: the v5 client gets
// a v5 CONNACK saying why (0x84, or the 3.1.1 code in 5.0's terms), not a
// bare close or a packet it cannot parse.
func TestV5ClientOfA311OnlyBroker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer []byte // nil: close
		want   mqttwire.ReasonCode
	}{{"closes", nil, mqttwire.UnsupportedProtocolVersion}, {"3.1.1 CONNACK 0x01", []byte{0x20, 2, 0, 1}, mqttwire.UnsupportedProtocolVersion},
		{"3.1.1 CONNACK 0x05", []byte{0x20, 2, 0, 5}, mqttwire.NotAuthorized}} {
		broker := scriptedBroker(t, func(c net.Conn, _ mqttwire.Packet) bool { // the CONNECT: answered, or not; then closed
			if tc.answer != nil {
				_, _ = c.Write(tc.answer)
			}
			return false
		})
		px := startProxy(t, Config{Backend: broker}, nil)
		_, ack := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("v5")})
		if want := mqttwire.AppendConnack(nil, mqttwire.V5, false, tc.want, nil); !bytes.Equal(ack.Raw, want) {
			t.Errorf("%s: %x, want %x", tc.name, ack.Raw, want)
		}
	}
}

// A v5 client still waiting for its CONNACK when the drain reaches it is
// closed, not sent a DISCONNECT before the CONNACK [MQTT-3.14.0-1].
func TestDrainBeforeConnackCloses(t *testing.T) {
	broker := scriptedBroker(t, func(net.Conn, mqttwire.Packet) bool { return true }) // a broker that never answers
	px := startProxy(t, Config{Backend: broker, DrainTimeout: 200 * time.Millisecond}, nil)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte("waiting"), CleanStart: true, KeepAlive: 30})); err != nil {
		t.Fatal(err)
	}
	// Logged once the broker has the CONNECT: the session counts as
	// connected, and the drain, not the early close, ends it.
	mqtttest.WaitFor(t, "the CONNECT forwarded", func() bool { return strings.Contains(px.logs.String(), `"event":"open"`) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := px.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := mqttwire.NewReader(conn, 256, 1<<16).Next(); err == nil {
		t.Fatalf("got %s %x before any CONNACK, want the connection closed", p.Type, p.Raw)
	}
}

// A v5 client whose broker connection ends without the broker's own
// DISCONNECT (the broker died) is told so, as when the checks take its
// node down: DISCONNECT 0x8B, or 0x9C with the Server Reference when one
// is set. A broker's own DISCONNECT passes alone; a 3.1.1 client is
// closed, with nothing added.
func TestBrokerLostTellsTheV5Client(t *testing.T) {
	closes := func(before []byte) string { // a broker that accepts, sends before, then closes on the next packet
		return scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
			if p.Type == mqttwire.CONNECT {
				v := mqttwire.V5
				if p.Body[6] == 4 { // the protocol level
					v = mqttwire.V311
				}
				_, _ = c.Write(mqttwire.AppendConnack(nil, v, false, mqttwire.Success, nil))
				return true
			}
			_, _ = c.Write(before)
			return false
		})
	}
	takenOver := mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.SessionTakenOver, "")
	for _, tc := range []struct {
		name   string
		v      mqttwire.Version
		broker []byte // what the broker sends before it closes
		ref    string
		want   []byte // nil: closed with nothing
	}{
		{"v5, broker gone", mqttwire.V5, nil, "", mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.ServerShuttingDown, "")},
		{"v5, broker gone, a reference", mqttwire.V5, nil, "other.example:8883", mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.UseAnotherServer, "other.example:8883")},
		{"v5, the broker's own DISCONNECT", mqttwire.V5, takenOver, "", takenOver},
		{"3.1.1", mqttwire.V311, nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px := startProxy(t, Config{Backend: closes(tc.broker), DrainServerReference: tc.ref}, nil)
			c, ack := dialRaw(t, px.addr, tc.v, &mqttwire.Connect{ClientID: []byte("lost")})
			if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
				t.Fatalf("CONNACK %x", ack.Raw)
			}
			c.Send([]byte{0xC0, 0}) // PINGREQ: the broker closes on it
			if tc.want != nil {
				if p := c.Next(); !bytes.Equal(p.Raw, tc.want) {
					t.Fatalf("got %s %x, want %x", p.Type, p.Raw, tc.want)
				}
			}
			if p, ok := c.NextOrClosed(); ok {
				t.Fatalf("then %s %x, want the connection closed", p.Type, p.Raw)
			}
		})
	}
}

// floodingBroker accepts every CONNECT and, for a client id holding
// "flood", sends 32 KiB QoS 0 deliveries until the proxy closes its side;
// stalled says once a write of its waited 300 ms (every buffer on the
// way is full: the proxy's write to the client waits), gone once the
// proxy closed.
func floodingBroker(t *testing.T) (addr string, stalled, gone chan struct{}) {
	stalled, gone = make(chan struct{}, 4), make(chan struct{}, 4)
	payload := make([]byte, 32<<10)
	addr = scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
		switch p.Type {
		case mqttwire.CONNECT:
			_, _ = c.Write(mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.Success, nil))
			if !bytes.Contains(p.Raw, []byte("flood")) {
				return true
			}
			go func() {
				pkt := mqtttest.PublishPacket(mqttwire.V5, "t", 0, 0, nil, string(payload))
				said := false
				for range 100_000 { // bounded: ~3 GB, far past any buffer
					_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
					n, err := c.Write(pkt)
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						if !said {
							said = true
							stalled <- struct{}{}
						}
						_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
						_, err = c.Write(pkt[n:]) // the rest of the packet, whenever it can go
					}
					if err != nil {
						gone <- struct{}{}
						return
					}
				}
			}()
		case mqttwire.PINGREQ:
			_, _ = c.Write([]byte{0xD0, 0})
		}
		return true
	})
	return addr, stalled, gone
}

// slowClient connects a v5 client with a small receive window that
// never reads.
func slowClient(t *testing.T, addr, id string) *mqtttest.RawClient {
	t.Helper()
	conn, err := net.DialTCP("tcp", nil, mustResolve(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadBuffer(4096)
	c, ack := mqtttest.NewRawClient(t, conn, mqttwire.V5, &mqttwire.Connect{ClientID: []byte(id)})
	if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("CONNACK %x", ack.Raw)
	}
	return c
}

// A client that stops reading while the broker has messages for it is
// cut off after ClientWriteTimeout, though it keeps sending PINGREQs,
// and its broker connection ends with it; another client is served all
// the while.
func TestClientThatStopsReadingIsCutOff(t *testing.T) {
	broker, _, brokerGone := floodingBroker(t)
	px := startProxy(t, Config{Backend: broker, ClientWriteTimeout: time.Second}, nil)
	slow := slowClient(t, px.addr, "flood-stops-reading")
	began := time.Now()
	cutOff := false
	for range 100 { // PINGREQs every 100 ms for at most 10 s; nothing read
		if _, err := slow.Write([]byte{0xC0, 0}); err != nil {
			cutOff = true
			break
		}
		if strings.Contains(px.logs.String(), `"reason":"client not reading"`) {
			cutOff = true
			break
		}
		time.Sleep(100 * time.Millisecond) // the client's pace, not a wait for the proxy
	}
	if !cutOff {
		t.Fatalf("a client that read nothing for 10 s is still served:\n%s", px.logs.String())
	}
	if d := time.Since(began); d < 750*time.Millisecond {
		t.Fatalf("cut off after %v, before its timeout", d)
	}
	select {
	case <-brokerGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the broker connection outlived the client's")
	}
	mqtttest.WaitFor(t, "the limit event", func() bool { return strings.Contains(px.logs.String(), `"limit":"client_write_timeout"`) })
	other, ack := dialRaw(t, px.addr, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("bystander")})
	if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("bystander CONNACK %x", ack.Raw)
	}
	other.Send([]byte{0xC0, 0})
	if p := other.Next(); p.Type != mqttwire.PINGRESP {
		t.Fatalf("bystander got %s", p.Type)
	}
}

// A kick of a client that reads nothing, while a write to it waits,
// ends it within the second the proxy's last words get, for the kick's
// reason, not after the whole client write bound.
func TestKickOfAClientThatReadsNothingIsPrompt(t *testing.T) {
	broker, stalled, _ := floodingBroker(t)
	px := startProxy(t, Config{Backend: broker, ClientWriteTimeout: 20 * time.Second}, nil)
	slowClient(t, px.addr, "flood-kicked")
	select {
	case <-stalled: // the proxy's write to the client waits
	case <-time.After(10 * time.Second):
		t.Fatal("the flood never stalled")
	}
	began := time.Now()
	if n := px.srv.Kick(func(s *Session) bool { return s.ClientID == "flood-kicked" }, "kicked"); n != 1 {
		t.Fatalf("kicked %d", n)
	}
	mqtttest.WaitFor(t, "the session closed", func() bool { return px.srv.Stats.Closed.Load() == 1 })
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("closed %v after the kick", d)
	}
	if !strings.Contains(px.logs.String(), `"reason":"kicked"`) {
		t.Errorf("close reason not the kick's:\n%s", px.logs.String())
	}
}

// An idle client is not cut off: the bound holds a write waiting for a
// full socket, not the time since the last write. A WebSocket ping from
// a client idle past the bound is answered, and the session goes on.
func TestIdleClientIsNotCutOff(t *testing.T) {
	px := startWSProxy(t, Config{Backend: startMosquitto(t), ClientWriteTimeout: 300 * time.Millisecond}, nil)
	conn, err := mqtttest.DialWS("ws://"+px.addr+"/mqtt", nil, "mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, ack := mqtttest.NewRawClient(t, conn, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("idle"), KeepAlive: 300})
	if ack.Type != mqttwire.CONNACK {
		t.Fatalf("CONNACK %x", ack.Raw)
	}
	c.Send([]byte{0xC0, 0})
	if p := c.Next(); p.Type != mqttwire.PINGRESP {
		t.Fatalf("got %s", p.Type)
	}
	time.Sleep(time.Second) // idle, three times the bound: the scenario itself
	if err := conn.WriteFrame(ws.OpPing, true, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	c.Send([]byte{0xC0, 0})
	if p := c.Next(); p.Type != mqttwire.PINGRESP {
		t.Fatalf("after idling: got %s", p.Type)
	}
}

// The proxy's own answers and DISCONNECTs wait for the CONNACK that
// admits the client [MQTT-3.2.0-1, MQTT-3.14.0-1]: a refused SUBSCRIBE
// pipelined with the CONNECT gets its SUBACK after the CONNACK, and a
// protocol error pipelined with a CONNECT the broker refuses gets no
// DISCONNECT after that refusal.
func TestNothingBeforeTheConnack(t *testing.T) {
	slowAck := func(code mqttwire.ReasonCode) string {
		return scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
			if p.Type != mqttwire.CONNECT {
				return true
			}
			time.Sleep(200 * time.Millisecond) // a broker slow to answer: the pipelined packet is judged first
			_, _ = c.Write(mqttwire.AppendConnack(nil, mqttwire.V5, false, code, nil))
			return code == mqttwire.Success
		})
	}
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte("pipelined"), CleanStart: true, KeepAlive: 30})
	read := func(addr string, b []byte) []mqttwire.Packet {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		r := mqttwire.NewReader(c, 256, 1<<16)
		var got []mqttwire.Packet
		for range 4 {
			p, err := r.Next()
			if err != nil {
				break
			}
			got = append(got, mqttwire.Packet{Type: p.Type, Raw: append([]byte(nil), p.Raw...)})
			if p.Type == mqttwire.SUBACK {
				break
			}
		}
		return got
	}
	px := startProxy(t, withRights(Config{Backend: slowAck(mqttwire.Success)}), nil)
	got := read(px.addr, append(append([]byte{}, connect...), subscribePkt(mqttwire.V5, 1, "denied/x")...))
	if len(got) != 2 || got[0].Type != mqttwire.CONNACK || got[1].Type != mqttwire.SUBACK {
		t.Errorf("pipelined SUBSCRIBE: got %v, want CONNACK then SUBACK", got)
	}
	px = startProxy(t, Config{Backend: slowAck(mqttwire.NotAuthorized)}, nil)
	got = read(px.addr, append(append([]byte{}, connect...), 0x36, 0x03, 0, 1, 't')) // a PUBLISH of QoS 3
	if len(got) != 1 || got[0].Type != mqttwire.CONNACK {
		t.Errorf("an error pipelined with a refused CONNECT: got %v, want the CONNACK alone", got)
	}
	// A broker that sends a PUBLISH before its CONNACK, or after one
	// refusing the client: nothing of it reaches the client but the
	// refusal.
	publish := mqtttest.PublishPacket(mqttwire.V5, "early", 0, 0, nil, "x")
	for _, tc := range []struct {
		name   string
		answer []byte
		want   []mqttwire.Type
	}{
		{"PUBLISH first", append(append([]byte{}, publish...), mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.Success, nil)...), nil},
		{"PUBLISH after a refusal", append(mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.NotAuthorized, nil), publish...), []mqttwire.Type{mqttwire.CONNACK}},
		// AUTH may come first (enhanced authentication, where an
		// authenticator admits it): it and the CONNACK after it go on.
		{"AUTH, then CONNACK", append([]byte{0xF0, 0x02, 0x18, 0x00}, mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.Success, nil)...), []mqttwire.Type{mqttwire.AUTH, mqttwire.CONNACK}},
	} {
		broker := scriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
			if p.Type == mqttwire.CONNECT {
				_, _ = c.Write(tc.answer)
			}
			return true // the broker keeps the connection: the proxy must end it
		})
		px := startProxy(t, Config{Backend: broker}, nil)
		got := read(px.addr, connect)
		var types []mqttwire.Type
		for _, p := range got {
			types = append(types, p.Type)
		}
		if !slices.Equal(types, tc.want) {
			t.Errorf("%s: the client got %v, want %v", tc.name, types, tc.want)
		}
	}
}

func mustResolve(t *testing.T, addr string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
