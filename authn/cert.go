package authn

import (
	"context"
	"crypto/x509"
	"fmt"
)

// CertField selects what of a verified client certificate becomes the
// MQTT user name or client id.
type CertField uint8

// Certificate fields.
const (
	CertNone     CertField = iota
	CertCN                 // subject common name
	CertSANDNS             // first DNS subject alternative name
	CertSANURI             // first URI subject alternative name
	CertSANEmail           // first e-mail subject alternative name
	CertDN                 // the whole subject, RFC 2253 style
)

var certFieldNames = [...]string{"", "cn", "san_dns", "san_uri", "san_email", "dn"}

func (f CertField) String() string { return certFieldNames[f] }

// ParseCertField reads cn, san_dns, san_uri, san_email or dn; "" is CertNone.
func ParseCertField(s string) (CertField, error) {
	for i, n := range certFieldNames {
		if s == n {
			return CertField(i), nil
		}
	}
	return CertNone, fmt.Errorf("%q: want cn, san_dns, san_uri, san_email or dn", s)
}

// Value is the field's value in c, "" when c has none.
func (f CertField) Value(c *x509.Certificate) string {
	switch f {
	case CertCN:
		return c.Subject.CommonName
	case CertSANDNS:
		if len(c.DNSNames) > 0 {
			return c.DNSNames[0]
		}
	case CertSANURI:
		if len(c.URIs) > 0 {
			return c.URIs[0].String()
		}
	case CertSANEmail:
		if len(c.EmailAddresses) > 0 {
			return c.EmailAddresses[0]
		}
	case CertDN:
		return c.Subject.String()
	}
	return ""
}

// Cert admits a client whose certificate the TLS handshake verified
// against the client CA bundle: with mTLS the certificate is the
// credential, and the identity is the certificate's. Without a verified
// certificate it passes.
//
// The certificate proves one name: Field's value (the common name when
// Field is CertNone). A CONNECT without a user name, or with exactly that
// name, is admitted; a CONNECT that claims another user name is not the
// certificate's to vouch for, so Cert passes it to the next authenticator,
// which must verify that name itself (and the chain refuses when none
// does). A certificate never lends its trust to a user name it does not
// carry.
type Cert struct {
	// Field is the certificate field the user name must equal: the
	// chain's UsernameFrom when the CONNECT is rewritten with it.
	Field CertField
}

var _ Authenticator = Cert{}

// Name implements Authenticator.
func (Cert) Name() string { return "cert" }

// Authenticate implements Authenticator.
func (c Cert) Authenticate(_ context.Context, r *Request) Result {
	if r.Cert == nil {
		return ignore("no_certificate")
	}
	f := c.Field
	if f == CertNone {
		f = CertCN
	}
	if r.Username != "" && r.Username != f.Value(r.Cert) {
		return ignore("username_not_certificate")
	}
	return allow("certificate")
}
