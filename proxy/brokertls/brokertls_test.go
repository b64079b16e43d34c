package brokertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
)

// broker is a TLS server standing in for the broker: it records, per
// connection, whether the session was resumed and the client certificate
// it was shown.
type broker struct {
	addr    string
	results chan result
}

type result struct {
	resumed bool
	cn      string
	err     error
}

func startBroker(t *testing.T, pki *devpki.Files, version uint16) *broker {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.Authority.Root)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven,
		MinVersion: version, MaxVersion: version}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{addr: ln.Addr().String(), results: make(chan result, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			r := result{err: tc.Handshake()}
			if r.err == nil {
				st := tc.ConnectionState()
				r.resumed = st.DidResume
				if len(st.PeerCertificates) > 0 {
					r.cn = st.PeerCertificates[0].Subject.CommonName
				}
				_, r.err = tc.Write([]byte{0}) // the client reads it, and the session tickets before it
			}
			tc.Close()
			b.results <- r
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return b
}

// dial runs one handshake with src's configuration and reads the
// broker's byte; it returns what the broker saw and the client's error.
func (b *broker) dial(t *testing.T, src *Source) (result, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, src.Config())
	err = tc.Handshake()
	if err == nil {
		if n, rerr := tc.Read(make([]byte, 1)); n == 0 { // 1 may come with the close_notify's EOF
			err = rerr
		}
	}
	if err != nil {
		c.Close() // the broker's handshake ends too
	}
	select {
	case r := <-b.results:
		return r, err
	case <-time.After(5 * time.Second):
		t.Fatal("the broker saw no connection")
	}
	return result{}, err
}

func newPKI(t *testing.T) *devpki.Files {
	t.Helper()
	pki, err := devpki.Init(t.TempDir(), "proxy")
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

// The broker is verified against the configured CA and server name, and
// the proxy presents its own certificate; every reconnect after the first
// resumes, in TLS 1.3 and 1.2.
func TestVerifyPresentResume(t *testing.T) {
	pki := newPKI(t)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			b := startBroker(t, pki, v)
			src, err := New(Options{CAFile: pki.CA, CertFile: pki.Clients["proxy"][0], KeyFile: pki.Clients["proxy"][1], ServerName: "localhost"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				r, err := b.dial(t, src)
				if err != nil || r.err != nil {
					t.Fatalf("dial %d: client %v, broker %v", i, err, r.err)
				}
				if r.cn != "proxy" {
					t.Errorf("dial %d: the broker saw client certificate %q, want proxy", i, r.cn)
				}
				if want := i > 0; r.resumed != want {
					t.Errorf("dial %d: resumed %v, want %v", i, r.resumed, want)
				}
			}
		})
	}
}

// A broker certificate from another CA, for another name, or expired
// fails the handshake: verification is always on.
func TestRefusesUnverifiedBroker(t *testing.T) {
	pki := newPKI(t)
	b := startBroker(t, pki, tls.VersionTLS13)
	other := newPKI(t)
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	for _, tc := range []struct {
		name string
		opts Options
		want func(error) bool
	}{
		{"wrong CA", Options{CAFile: other.CA, ServerName: "localhost"}, func(err error) bool { return errors.As(err, &unknown) }},
		{"system roots", Options{ServerName: "localhost"}, func(err error) bool { return errors.As(err, &unknown) }},
		{"wrong name", Options{CAFile: pki.CA, ServerName: "broker.example"}, func(err error) bool { return errors.As(err, &hostname) }},
	} {
		src, err := New(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.dial(t, src)
		if !tc.want(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	expired := newPKI(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old-key.pem")
	if _, err := expired.Authority.Issue(devpki.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"},
		NotAfter: time.Now().Add(-time.Minute)}, cert, key); err != nil {
		t.Fatal(err)
	}
	expired.ServerCert, expired.ServerKey = cert, key
	eb := startBroker(t, expired, tls.VersionTLS13)
	src, err := New(Options{CAFile: expired.CA, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	var invalid x509.CertificateInvalidError
	if _, err := eb.dial(t, src); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired: %v", err)
	}
}

// Only TLS 1.2 and up, and for 1.2 only ECDHE AEAD suites, are offered.
func TestVersionsAndSuites(t *testing.T) {
	pki := newPKI(t)
	src, err := New(Options{CAFile: pki.CA, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.Config()
	if cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify || cfg.ClientSessionCache == nil {
		t.Errorf("min version %x, insecure %v, session cache %v", cfg.MinVersion, cfg.InsecureSkipVerify, cfg.ClientSessionCache)
	}
	for _, id := range cfg.CipherSuites {
		s := tls.CipherSuiteName(id)
		if !strings.HasPrefix(s, "TLS_ECDHE_") || !strings.Contains(s, "_GCM_") && !strings.Contains(s, "_CHACHA20_POLY1305_") {
			t.Errorf("suite %s offered", s)
		}
	}
}

// A reload that finds the files unchanged keeps the configuration (and
// its sessions); a broken file keeps the one in service; a new CA comes
// with a new session cache, so nothing verified under the old one is
// resumed.
func TestReload(t *testing.T) {
	pki := newPKI(t)
	b := startBroker(t, pki, tls.VersionTLS13)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, pki.CA, ca)
	src, err := New(Options{CAFile: ca, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.dial(t, src); err != nil {
		t.Fatal(err)
	}
	first := src.Config()
	if changed, err := src.Reload(true); changed || err != nil || src.Config() != first {
		t.Fatalf("unchanged files: changed %v, %v, config replaced %v", changed, err, src.Config() != first)
	}
	if r, err := b.dial(t, src); err != nil || !r.resumed {
		t.Fatalf("after an idle reload: %v, resumed %v", err, r.resumed)
	}

	if err := os.WriteFile(ca, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	var fe *FileError
	if changed, err := src.Reload(false); changed || !errors.As(err, &fe) || fe.File != CA {
		t.Fatalf("broken CA file: changed %v, %v", changed, err)
	}
	if src.Config() != first {
		t.Fatal("a broken file replaced the configuration in service")
	}

	// The same root with another bundled beside it: a changed bundle.
	other := newPKI(t)
	both := append(readFile(t, pki.CA), readFile(t, other.CA)...)
	if err := os.WriteFile(ca, both, 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := src.Reload(false); !changed || err != nil {
		t.Fatalf("new CA bundle: changed %v, %v", changed, err)
	}
	if src.Config().ClientSessionCache == first.ClientSessionCache {
		t.Fatal("a new CA bundle kept the session cache")
	}
	if r, err := b.dial(t, src); err != nil || r.resumed {
		t.Fatalf("after a new CA bundle: %v, resumed %v (want a full handshake)", err, r.resumed)
	}
}

// New refuses half a client pair and names the file that does not load.
func TestNewErrors(t *testing.T) {
	pki := newPKI(t)
	cert, key := pki.Clients["proxy"][0], pki.Clients["proxy"][1]
	if _, err := New(Options{CAFile: pki.CA, CertFile: cert, ServerName: "localhost"}); err == nil {
		t.Error("a certificate without a key accepted")
	}
	if _, err := New(Options{CAFile: pki.CA}); err == nil {
		t.Error("no server name accepted")
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	var fe *FileError
	for _, tc := range []struct {
		opts Options
		want File
	}{
		{Options{CAFile: missing, ServerName: "x"}, CA},
		{Options{CAFile: key, ServerName: "x"}, CA}, // a key, no certificate
		{Options{CertFile: missing, KeyFile: key, ServerName: "x"}, Cert},
		{Options{CertFile: cert, KeyFile: missing, ServerName: "x"}, Key},
		{Options{CertFile: cert, KeyFile: pki.ServerKey, ServerName: "x"}, Cert}, // another certificate's key
	} {
		if _, err := New(tc.opts); !errors.As(err, &fe) || fe.File != tc.want {
			t.Errorf("%+v: %v, want an error about file %d", tc.opts, err, tc.want)
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}
