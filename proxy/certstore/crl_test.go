package certstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// Every client-certificate rule is judged on the chains of the
// connection, as VerifyConnection sees them on full handshakes and on
// resumed sessions alike.
func TestVerifyConnection(t *testing.T) {
	now := time.Now()
	chain := func(n int) []*x509.Certificate {
		c := make([]*x509.Certificate, n)
		for i := range c {
			c[i] = &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		}
		return c
	}
	check := func(chains [][]*x509.Certificate) error {
		return verifyConnection(1, nil, func() time.Time { return now })(tls.ConnectionState{VerifiedChains: chains})
	}
	if err := check([][]*x509.Certificate{chain(3)}); err != nil { // leaf, intermediate, root
		t.Errorf("one intermediate refused: %v", err)
	}
	if err := check([][]*x509.Certificate{chain(4)}); err == nil {
		t.Error("two intermediates accepted with depth 1")
	}
	if err := check([][]*x509.Certificate{chain(4), chain(3)}); err != nil {
		t.Errorf("a short enough chain among several refused: %v", err)
	}
	if err := check(nil); err != nil {
		t.Errorf("no certificate (optional mode) refused: %v", err)
	}
	// A resumed session brings the chain verified back then: it is judged
	// again now, so an intermediate that has since expired refuses it.
	expired := chain(3)
	expired[1].NotAfter = now.Add(-time.Minute)
	if err := check([][]*x509.Certificate{expired}); !errors.Is(err, errExpired) {
		t.Errorf("expired intermediate: %v", err)
	}
}
