package certstore

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/youmark/pkcs8"
)

// ClientAuth says whether clients must present a certificate.
type ClientAuth int

// Client certificate modes.
const (
	ClientAuthNone ClientAuth = iota
	ClientAuthOptional
	ClientAuthRequire
)

// ParseClientAuth reads none, optional or require.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch s {
	case "none", "":
		return ClientAuthNone, nil
	case "optional":
		return ClientAuthOptional, nil
	case "require":
		return ClientAuthRequire, nil
	}
	return 0, fmt.Errorf("%q: want none, optional or require", s)
}

// groupNames are the key exchange groups MQTTGATE_TLS_GROUPS may name,
// by Go's names and the ones OpenSSL and the RFCs use.
var groupNames = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768, "secp256r1mlkem768": tls.SecP256r1MLKEM768, "secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
	"x25519": tls.X25519,
	"p-256":  tls.CurveP256, "p256": tls.CurveP256, "curvep256": tls.CurveP256, "secp256r1": tls.CurveP256, "prime256v1": tls.CurveP256,
	"p-384": tls.CurveP384, "p384": tls.CurveP384, "curvep384": tls.CurveP384, "secp384r1": tls.CurveP384,
	"p-521": tls.CurveP521, "p521": tls.CurveP521, "curvep521": tls.CurveP521, "secp521r1": tls.CurveP521,
}

// ParseGroups reads a list of TLS key exchange groups in order of
// preference (X25519MLKEM768, X25519, P-256, ...). Empty: Go's defaults,
// which put the post-quantum hybrid X25519MLKEM768 first.
func ParseGroups(names []string) ([]tls.CurveID, error) {
	var out []tls.CurveID
	for _, n := range names {
		id, ok := groupNames[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return nil, fmt.Errorf("%q: unknown key exchange group (X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521)", n)
		}
		if slices.Contains(out, id) {
			return nil, fmt.Errorf("%q: named twice", n)
		}
		out = append(out, id)
	}
	return out, nil
}

// CertPair names one certificate (with its chain) and key file.
type CertPair struct {
	CertFile, KeyFile string
}

// Options configures a Store.
type Options struct {
	Pairs        []CertPair // the first is the default for clients without a matching SNI
	ClientCAFile string
	ClientAuth   ClientAuth
	VerifyDepth  int // maximum intermediates between a client certificate and the CA; 0 means no limit
	// CRLFile, when set, holds CRLs (PEM or DER) for client certificates;
	// a revoked certificate fails the handshake. Reloaded with the rest.
	CRLFile string
	// KeyPassphrase decrypts keys stored as encrypted PKCS#8
	// ("ENCRYPTED PRIVATE KEY", as openssl pkcs8 -topk8 -v2 writes them).
	KeyPassphrase []byte
	// Groups are the key exchanges offered, in order of preference
	// (ParseGroups); nil: Go's defaults.
	Groups []tls.CurveID
}

// decryptKey returns keyPEM with an encrypted PKCS#8 key decrypted, and
// unencrypted keys as they are. Legacy OpenSSL PEM encryption
// ("Proc-Type: 4,ENCRYPTED") is refused: its key derivation is weak.
func decryptKey(keyPEM, passphrase []byte) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	switch {
	case block == nil:
		return keyPEM, nil // tls.X509KeyPair reports it
	case block.Headers["Proc-Type"] != "":
		return nil, errors.New("legacy PEM encryption is not supported; convert with: openssl pkcs8 -topk8 -v2 aes-256-cbc")
	case block.Type != "ENCRYPTED PRIVATE KEY":
		return keyPEM, nil
	case len(passphrase) == 0:
		return nil, errors.New("the key is encrypted and no passphrase is configured")
	}
	key, err := pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
	if err != nil {
		return nil, fmt.Errorf("decrypting the key (wrong passphrase?): %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Store holds the server certificates and client CA bundle and
// reloads them from disk. A failed reload keeps the previous state in
// service. It is safe for concurrent use.
type Store struct {
	opts  Options
	state atomic.Pointer[certState]
	mu    sync.Mutex // serialises reloads
}

type certState struct {
	config *tls.Config // for clients that offer the "mqtt" ALPN protocol
	noALPN *tls.Config // for all others
	digest [32]byte    // of every file's contents, to skip reloads of unchanged files
	leaves []*x509.Certificate
	expiry []Expiry
}

// Expiry is when one certificate or CRL in service runs out: Kind is
// "server", "intermediate", "client_ca" or "crl" (its next update).
type Expiry struct {
	Kind  string
	Name  string // the subject's common name (the CRL's issuer's)
	Until time.Time
}

// AEAD cipher suites with ECDHE key exchange, the only ones offered for
// TLS 1.2, on the listeners and to the broker (TLS12Suites). TLS 1.3
// suites are all AEAD and not configurable in Go.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLS12Suites returns the TLS 1.2 cipher suites mqttgate offers and
// accepts: ECDHE with an AEAD, nothing else.
func TLS12Suites() []uint16 { return slices.Clone(tls12Suites) }

// New loads every file once; any error fails.
func New(opts Options) (*Store, error) {
	if len(opts.Pairs) == 0 {
		return nil, errors.New("no certificate configured")
	}
	if opts.ClientAuth != ClientAuthNone && opts.ClientCAFile == "" {
		return nil, errors.New("client certificate verification needs a CA bundle")
	}
	s := &Store{opts: opts}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. It reports whether anything changed; on
// error the certificates in service stay as they were.
func (s *Store) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	var certs []tls.Certificate
	var leaves []*x509.Certificate
	var expiry []Expiry
	for _, p := range s.opts.Pairs {
		certPEM, err := os.ReadFile(p.CertFile)
		if err != nil {
			return false, err
		}
		keyPEM, err := os.ReadFile(p.KeyFile)
		if err != nil {
			return false, err
		}
		h.Write(certPEM)
		h.Write(keyPEM)
		if keyPEM, err = decryptKey(keyPEM, s.opts.KeyPassphrase); err != nil {
			return false, fmt.Errorf("%s: %w", p.KeyFile, err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return false, fmt.Errorf("%s: %w", p.CertFile, err)
		}
		certs = append(certs, c)
		leaves = append(leaves, c.Leaf)
		expiry = append(expiry, Expiry{"server", c.Leaf.Subject.CommonName, c.Leaf.NotAfter})
		for _, der := range c.Certificate[1:] {
			if ic, err := x509.ParseCertificate(der); err == nil {
				expiry = append(expiry, Expiry{"intermediate", ic.Subject.CommonName, ic.NotAfter})
			}
		}
	}
	var pool *x509.CertPool
	var cas []*x509.Certificate
	if s.opts.ClientCAFile != "" {
		caPEM, err := os.ReadFile(s.opts.ClientCAFile)
		if err != nil {
			return false, err
		}
		h.Write(caPEM)
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return false, fmt.Errorf("%s: no certificate found", s.opts.ClientCAFile)
		}
		for rest := caPEM; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				cas = append(cas, c)
				expiry = append(expiry, Expiry{"client_ca", c.Subject.CommonName, c.NotAfter})
			}
		}
	}
	var crl *revocations
	if s.opts.CRLFile != "" {
		b, err := os.ReadFile(s.opts.CRLFile)
		if err != nil {
			return false, err
		}
		h.Write(b)
		if crl, err = parseCRLs(b, cas); err != nil {
			return false, fmt.Errorf("%s: %w", s.opts.CRLFile, err)
		}
		for _, l := range crl.lists {
			if !l.NextUpdate.IsZero() {
				expiry = append(expiry, Expiry{"crl", l.Issuer.CommonName, l.NextUpdate})
			}
		}
	}
	var digest [32]byte
	copy(digest[:], h.Sum(nil))
	if old := s.state.Load(); old != nil && bytes.Equal(old.digest[:], digest[:]) {
		return false, nil
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tls12Suites,
		Certificates: certs,
		ClientCAs:    pool,
		NextProtos:   []string{"mqtt"},
		// Full-size records from the first byte: growing them from one
		// TCP segment over the first 128 KiB (Go's default, for web pages)
		// only splits a client's first MQTT packets into more records,
		// seals and writes; a client acts on whole packets anyway.
		DynamicRecordSizingDisabled: true,
		CurvePreferences:            s.opts.Groups,
	}
	switch s.opts.ClientAuth {
	case ClientAuthOptional:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	// Every client-certificate rule is checked in VerifyConnection, which
	// Go runs on resumed sessions too (VerifyPeerCertificate runs on full
	// handshakes only): a ticket issued before a certificate was revoked
	// or expired must not keep it connecting.
	if s.opts.ClientAuth != ClientAuthNone {
		cfg.VerifyConnection = verifyConnection(s.opts.VerifyDepth, crl, time.Now)
	}
	// Tickets are sealed with this state's own keys (Go rotates them as
	// usual; the no-ALPN config, a clone, shares them), so a reload that
	// changes the client CA, the CRL or a certificate invalidates every
	// ticket issued before it: chains verified against the old bundle are
	// not resumed against the new.
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) { return cfg.EncryptTicket(cs, ss) }
	cfg.UnwrapSession = func(id []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(id, cs)
		if err != nil {
			return nil, nil // not ours (an older state's): a full handshake
		}
		return ss, nil
	}
	// Go refuses a handshake whose ALPN offer has nothing in common with
	// NextProtos; clients that offer other names (AWS IoT's
	// "x-amzn-mqtt-ca", say) or none get a config without ALPN.
	noALPN := cfg.Clone()
	noALPN.NextProtos = nil
	s.state.Store(&certState{config: cfg, noALPN: noALPN, digest: digest, leaves: leaves, expiry: expiry})
	return true, nil
}

// ServerConfig returns the tls.Config for a listener: every handshake uses
// the state in service when it starts, so a reload applies to new
// handshakes and never to established connections.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.state.Load()
			if slices.Contains(hello.SupportedProtos, "mqtt") {
				return st.config, nil
			}
			return st.noALPN, nil
		},
	}
}

// Leaf returns the default certificate in service.
func (s *Store) Leaf() *x509.Certificate { return s.state.Load().leaves[0] }

// Expiries lists when each certificate in service (served chains, client
// CAs) and each CRL's next update runs out.
func (s *Store) Expiries() []Expiry { return slices.Clone(s.state.Load().expiry) }
