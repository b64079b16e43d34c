// Package devpki makes throwaway certificate authorities and certificates
// for the demo, `mqttgate certs init` and tests. Nothing it makes is fit
// for production: keys are written unencrypted.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
)

// Authority is a root CA with one intermediate that signs leaf certificates.
type Authority struct {
	Root, Intermediate       *x509.Certificate
	rootKey, intermediateKey crypto.Signer
}

// KeyType selects the leaf key algorithm.
type KeyType int

// Key types.
const (
	ECDSAP256 KeyType = iota
	RSA2048
)

func newKey(t KeyType) (crypto.Signer, error) {
	if t == RSA2048 {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// NewAuthority makes a root CA named name and an intermediate under it.
func NewAuthority(name string) (*Authority, error) {
	now := time.Now().Add(-time.Hour)
	rootKey, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name + " Root CA", Organization: []string{"mqttgate dev"}},
		NotBefore: now, NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root, err := sign(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	intKey, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	intTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{"mqttgate dev"}},
		NotBefore: now, NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	inter, err := sign(intTmpl, root, intKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	return &Authority{Root: root, Intermediate: inter, rootKey: rootKey, intermediateKey: intKey}, nil
}

// Leaf describes a certificate to issue.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Emails     []string
	Client     bool // client authentication instead of server
	Key        KeyType
	// NotAfter, when set, ends the certificate's validity (in the past:
	// an expired certificate); otherwise it runs three months.
	NotAfter time.Time
}

// Issue signs a leaf with the intermediate and writes the certificate
// (leaf then intermediate: the full chain a server sends) and key as PEM.
func (a *Authority) Issue(l Leaf, certFile, keyFile string) (*x509.Certificate, error) {
	key, err := newKey(l.Key)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	usage := x509.ExtKeyUsageServerAuth
	if l.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: l.CommonName, Organization: []string{"mqttgate dev"}},
		NotBefore: now, NotAfter: now.AddDate(0, 3, 0), DNSNames: l.DNSNames, IPAddresses: l.IPs, EmailAddresses: l.Emails,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if !l.NotAfter.IsZero() {
		tmpl.NotAfter = l.NotAfter
		if !tmpl.NotBefore.Before(l.NotAfter) {
			tmpl.NotBefore = l.NotAfter.Add(-24 * time.Hour)
		}
	}
	if l.Key == RSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert, err := sign(tmpl, a.Intermediate, key.Public(), a.intermediateKey)
	if err != nil {
		return nil, err
	}
	if err := writeCerts(certFile, cert, a.Intermediate); err != nil {
		return nil, err
	}
	return cert, writeKey(keyFile, key)
}

// WriteCA writes the root certificate, the trust anchor clients and the
// proxy need.
func (a *Authority) WriteCA(file string) error { return writeCerts(file, a.Root) }

// SelfSigned writes a self-signed certificate that no authority vouches for.
func SelfSigned(cn string, certFile, keyFile string) error {
	key, err := newKey(ECDSAP256)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn}, NotBefore: now, NotAfter: now.AddDate(0, 1, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	if err := writeCerts(certFile, cert); err != nil {
		return err
	}
	return writeKey(keyFile, key)
}

func writeCerts(file string, certs ...*x509.Certificate) error {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return renameio.WriteFile(file, out, 0o644)
}

func writeKey(file string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return renameio.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// Files names what Init writes.
type Files struct {
	Dir                   string
	CA                    string               // root certificate
	ServerCert, ServerKey string               // localhost, 127.0.0.1, ::1; chain included
	Clients               map[string][2]string // CN -> cert, key
	Authority             *Authority           // to issue more
}

// Init writes a complete development PKI to dir: a root and intermediate
// CA, a server certificate for localhost, 127.0.0.1 and ::1, and one client
// certificate per name.
func Init(dir string, clients ...string) (*Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	a, err := NewAuthority("mqttgate dev")
	if err != nil {
		return nil, err
	}
	f := &Files{Dir: dir, CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey: filepath.Join(dir, "server-key.pem"), Clients: map[string][2]string{}, Authority: a}
	if err := a.WriteCA(f.CA); err != nil {
		return nil, err
	}
	if err := writeCerts(filepath.Join(dir, "intermediate.pem"), a.Intermediate); err != nil {
		return nil, err
	}
	if _, err := a.Issue(Leaf{CommonName: "localhost", DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}, f.ServerCert, f.ServerKey); err != nil {
		return nil, err
	}
	for _, cn := range clients {
		cert, key := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
		if _, err := a.Issue(Leaf{CommonName: cn, Client: true}, cert, key); err != nil {
			return nil, fmt.Errorf("client %s: %w", cn, err)
		}
		f.Clients[cn] = [2]string{cert, key}
	}
	return f, nil
}

// WriteCRL writes a PEM CRL, signed by the intermediate, that revokes the
// given leaves.
func (a *Authority) WriteCRL(file string, revoked ...*x509.Certificate) error {
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.RevocationList{Number: serial(), ThisUpdate: now, NextUpdate: now.AddDate(0, 0, 7)}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.Intermediate, a.intermediateKey)
	if err != nil {
		return err
	}
	return renameio.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}
