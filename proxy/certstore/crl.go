package certstore

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"
)

// revocations are the client certificate serial numbers that CRLs revoke.
// A CRL counts against a certificate only when its signature verifies
// with the key of the certificate's issuer in the verified chain, so a
// CRL can sit beside a bundle that holds only the root while
// intermediates issue (and revoke) the client certificates.
type revocations struct {
	lists   []*x509.RevocationList
	serials []map[string]struct{}
	signed  sync.Map // crlIssuer{list, issuer digest} -> bool
}

type crlIssuer struct {
	list   int
	issuer [32]byte
}

// parseCRLs reads PEM "X509 CRL" blocks (or one DER CRL). A CRL whose
// issuer is in the CA bundle must be signed by it.
func parseCRLs(b []byte, cas []*x509.Certificate) (*revocations, error) {
	var ders [][]byte
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("PEM block %q, want X509 CRL", blk.Type)
		}
		ders = append(ders, blk.Bytes)
	}
	if len(ders) == 0 {
		ders = [][]byte{b} // DER
	}
	r := &revocations{}
	for i, der := range ders {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i+1, err)
		}
		for _, ca := range cas {
			if bytes.Equal(ca.RawSubject, l.RawIssuer) {
				if err := l.CheckSignatureFrom(ca); err != nil {
					return nil, fmt.Errorf("CRL %d (%s): %w", i+1, l.Issuer, err)
				}
			}
		}
		set := make(map[string]struct{}, len(l.RevokedCertificateEntries))
		for _, e := range l.RevokedCertificateEntries {
			set[string(e.SerialNumber.Bytes())] = struct{}{}
		}
		r.lists = append(r.lists, l)
		r.serials = append(r.serials, set)
	}
	return r, nil
}

// revoked reports whether cert, issued by issuer, is on a CRL that
// issuer signed.
func (r *revocations) revoked(cert, issuer *x509.Certificate) bool {
	for i, l := range r.lists {
		if !bytes.Equal(l.RawIssuer, issuer.RawSubject) {
			continue
		}
		if _, ok := r.serials[i][string(cert.SerialNumber.Bytes())]; !ok {
			continue
		}
		k := crlIssuer{i, sha256.Sum256(issuer.Raw)}
		ok, seen := r.signed.Load(k)
		if !seen {
			ok = l.CheckSignatureFrom(issuer) == nil
			r.signed.Store(k, ok)
		}
		if ok.(bool) {
			return true
		}
	}
	return false
}

var errRevoked = errors.New("client certificate revoked")

// verifyConnection accepts a client certificate when one verified chain
// is within depth intermediates (0: any), holds no revoked certificate
// and no certificate outside its validity period now. No chains means no
// certificate was given (optional mode). It runs on full handshakes and
// on resumed sessions alike, with the chains the ticket kept.
func verifyConnection(depth int, crl *revocations, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 {
			if len(cs.PeerCertificates) > 0 {
				return errors.New("client certificate not verified") // never happens with Verify*ClientCert*
			}
			return nil
		}
		t := now()
		var err error
		for _, c := range cs.VerifiedChains {
			switch {
			case depth > 0 && len(c)-2 > depth:
				err = fmt.Errorf("client certificate chain deeper than %d intermediates", depth)
			case !chainValidAt(c, t):
				err = errExpired
			case crl != nil && chainRevoked(crl, c):
				err = errRevoked
			default:
				return nil
			}
		}
		return err
	}
}

var errExpired = errors.New("client certificate chain expired or not yet valid")

func chainValidAt(chain []*x509.Certificate, t time.Time) bool {
	for _, c := range chain {
		if t.Before(c.NotBefore) || t.After(c.NotAfter) {
			return false
		}
	}
	return true
}

func chainRevoked(r *revocations, chain []*x509.Certificate) bool {
	for i := 0; i+1 < len(chain); i++ {
		if r.revoked(chain[i], chain[i+1]) {
			return true
		}
	}
	return false
}
