package brokertls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/mqttgate/mqttgate/proxy/certstore"
)

// Options names what the proxy trusts and presents on the broker hop.
type Options struct {
	// CAFile is the bundle the broker's certificate must chain to; empty:
	// the system roots.
	CAFile string
	// CertFile and KeyFile are the proxy's own client certificate (with
	// its chain) and key, for brokers that require one; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the broker's certificate must hold (a DNS
	// name, or an IP address for an IP SAN); required.
	ServerName string
}

// File says which of the Options' files an error is about.
type File int

// The files.
const (
	CA File = iota
	Cert
	Key
)

// A FileError is a file that did not load.
type FileError struct {
	File File
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// sessionCacheSize bounds the sessions kept for resumption. Go keys them
// by server name, and every dial uses the one configured, so one entry
// is in use; the rest is headroom.
const sessionCacheSize = 16

// Source holds the client TLS configuration for the broker hop and
// reloads its files. A failed reload keeps the configuration in
// service. It is safe for concurrent use.
type Source struct {
	opts  Options
	state atomic.Pointer[state]
	mu    sync.Mutex // serialises reloads
}

type state struct {
	config *tls.Config
	digest [32]byte // of every file's contents, to skip reloads of unchanged files
}

// New loads the files once; any error fails.
func New(opts Options) (*Source, error) {
	if opts.ServerName == "" {
		return nil, errors.New("brokertls: no server name")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("brokertls: a client certificate needs both a certificate and a key file")
	}
	s := &Source{opts: opts}
	if _, err := s.Reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration in service, for tls.Client. Every dial
// takes it afresh, so a reload applies to the next handshake and never
// to established connections. The caller must not modify it.
func (s *Source) Config() *tls.Config { return s.state.Load().config }

// Reload reads the files again and reports whether they changed. force
// is accepted for symmetry with the other reloadable files: the content
// decides. On error the configuration in service stays. A changed CA
// bundle or client pair comes with a new session cache: a session made
// under the old trust is never resumed under the new one (Go does not
// verify a resumed session's chain again).
func (s *Source) Reload(force bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	var pool *x509.CertPool // nil: the system roots
	if s.opts.CAFile != "" {
		b, err := os.ReadFile(s.opts.CAFile)
		if err != nil {
			return false, &FileError{CA, s.opts.CAFile, err}
		}
		h.Write(b)
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return false, &FileError{CA, s.opts.CAFile, errors.New("no PEM certificate found")}
		}
	}
	var pair *tls.Certificate
	if s.opts.CertFile != "" {
		certPEM, err := os.ReadFile(s.opts.CertFile)
		if err != nil {
			return false, &FileError{Cert, s.opts.CertFile, err}
		}
		keyPEM, err := os.ReadFile(s.opts.KeyFile)
		if err != nil {
			return false, &FileError{Key, s.opts.KeyFile, err}
		}
		h.Write(certPEM)
		h.Write(keyPEM)
		p, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return false, &FileError{Cert, s.opts.CertFile, fmt.Errorf("with %s: %w", s.opts.KeyFile, err)}
		}
		pair = &p
	}
	var digest [32]byte
	h.Sum(digest[:0])
	if old := s.state.Load(); old != nil && old.digest == digest {
		return false, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       certstore.TLS12Suites(),
		RootCAs:            pool,
		ServerName:         s.opts.ServerName,
		ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
		// Full-size records from the first byte, as on the listeners.
		DynamicRecordSizingDisabled: true,
	}
	if pair != nil {
		// Always the configured pair, whatever CA names the broker lists:
		// Go would otherwise send none when its list names another CA, and
		// the broker would refuse with a less telling alert.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
	}
	s.state.Store(&state{config: cfg, digest: digest})
	return true, nil
}
