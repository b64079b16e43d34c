package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

func TestSNISelectsCertificate(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	dir := t.TempDir()
	if _, err := p.Authority.Issue(devpki.Leaf{CommonName: "other", DNSNames: []string{"other.example"}}, dir+"/o.pem", dir+"/o-key.pem"); err != nil {
		t.Fatal(err)
	}
	store, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: p.ServerCert, KeyFile: p.ServerKey}, {CertFile: dir + "/o.pem", KeyFile: dir + "/o-key.pem"}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := handshakeServer(t, store.ServerConfig())
	for sni, want := range map[string]string{"other.example": "other", "localhost": "localhost", "unknown.example": "localhost"} {
		cfg := p.clientTLS(t, "")
		cfg.ServerName, cfg.InsecureSkipVerify = sni, true
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != want {
			t.Errorf("SNI %s: served %s, want %s", sni, cn, want)
		}
		c.Close()
	}
}

// ALPN "mqtt" is negotiated when offered; a client offering other names is
// still served (Go would refuse the handshake otherwise).
func TestALPN(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	addr := handshakeServer(t, p.store.ServerConfig())
	for _, c := range []struct {
		offer []string
		want  string
	}{{[]string{"mqtt"}, "mqtt"}, {[]string{"x-amzn-mqtt-ca"}, ""}, {nil, ""}, {[]string{"h2", "mqtt"}, "mqtt"}} {
		cfg := p.clientTLS(t, "")
		cfg.NextProtos = c.offer
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("offer %v: %v", c.offer, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != c.want {
			t.Errorf("offer %v: negotiated %q, want %q", c.offer, got, c.want)
		}
		conn.Close()
	}
}

// handshakeServer completes TLS handshakes with cfg on a loopback port
// until the test ends.
func handshakeServer(t *testing.T, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	acceptLoop(t, ln, func(c net.Conn) {
		_ = c.(*tls.Conn).Handshake()
		c.Close()
	})
	return ln.Addr().String()
}

// Keys encrypted by openssl (PKCS#8, PBES2) load with the passphrase and
// fail, naming the problem, without it or with a wrong one.
func TestEncryptedKey(t *testing.T) {
	openssl := mqtttest.Need(t, "openssl")
	p := newPKI(t, certstore.ClientAuthNone)
	enc := filepath.Join(t.TempDir(), "enc-key.pem")
	out, err := exec.Command(openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", p.ServerKey, "-out", enc, "-passout", "pass:s3cret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v %s", err, out)
	}
	pair := []certstore.CertPair{{CertFile: p.ServerCert, KeyFile: enc}}
	for pass, want := range map[string]string{"": "no passphrase", "wrong": "wrong passphrase"} {
		_, err := certstore.New(certstore.Options{Pairs: pair, KeyPassphrase: []byte(pass)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("passphrase %q: %v, want an error saying %q", pass, err, want)
		}
	}
	store, err := certstore.New(certstore.Options{Pairs: pair, KeyPassphrase: []byte("s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.clientTLS(t, "")
	c, err := tls.Dial("tcp", handshakeServer(t, store.ServerConfig()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	legacy := filepath.Join(t.TempDir(), "legacy-key.pem")
	if out, err := exec.Command(openssl, "ec", "-in", p.ServerKey, "-out", legacy, "-aes256", "-passout", "pass:s3cret").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v %s", err, out)
	}
	if _, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: p.ServerCert, KeyFile: legacy}}, KeyPassphrase: []byte("s3cret")}); err == nil || !strings.Contains(err.Error(), "legacy") {
		t.Errorf("legacy encrypted key: %v", err)
	}
}

// In a real handshake the dev PKI's chain (one intermediate) passes a
// verify depth of 1 (certstore's tests cover the rule itself).
func TestVerifyDepthInAHandshake(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthRequire)
	store, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: p.ServerCert, KeyFile: p.ServerKey}}, ClientCAFile: p.CA, ClientAuth: certstore.ClientAuthRequire, VerifyDepth: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", handshakeServer(t, store.ServerConfig()), p.clientTLS(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// TLS 1.3 reports the server's verdict on the client certificate at the
	// first read: a clean close, not an alert.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server refused the chain: %v", err)
	}
}
