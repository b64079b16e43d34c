package proxy

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ProxyTLVs chooses the TLVs of the outbound PROXY v2 header.
type ProxyTLVs uint8

const (
	// TLVsAll: ALPN, AUTHORITY (the SNI) and SSL (version, cipher, the CN
	// of a verified client certificate), as HAProxy sends them.
	TLVsAll ProxyTLVs = iota
	// TLVsSSL: the SSL TLV alone.
	TLVsSSL
	// TLVsNone: a bare header, addresses only, for decoders that read
	// TLVs as payload (aedes-protocol-decoder 2.2).
	TLVsNone
)

// ParseProxyTLVs reads "all", "ssl" or "none".
func ParseProxyTLVs(s string) (ProxyTLVs, error) {
	switch s {
	case "", "all":
		return TLVsAll, nil
	case "ssl":
		return TLVsSSL, nil
	case "none":
		return TLVsNone, nil
	}
	return 0, fmt.Errorf("%q: want all, ssl or none", s)
}

// outboundHeader builds the PROXY v2 header sent to the broker: the real
// client address and the address it connected to, and (as which says)
// TLVs for ALPN, the SNI (AUTHORITY) and the TLS session (version,
// cipher, and the CN of a verified client certificate).
func outboundHeader(s *Session, which ProxyTLVs) ([]byte, error) {
	src := net.TCPAddrFromAddrPort(s.ClientAddr)
	h := proxyproto.HeaderProxyFromAddrs(2, src, s.localAddr)
	if s.TLS != nil && which != TLVsNone {
		st := s.TLS
		var tlvs []proxyproto.TLV
		if st.NegotiatedProtocol != "" && which == TLVsAll {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(st.NegotiatedProtocol)})
		}
		if st.ServerName != "" && which == TLVsAll {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(st.ServerName)})
		}
		ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
		ssl.TLV = append(ssl.TLV,
			proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersionName(st.Version))},
			proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))})
		if len(st.PeerCertificates) > 0 {
			ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		}
		if len(st.VerifiedChains) > 0 {
			ssl.Verify = 0
			if cn := st.PeerCertificates[0].Subject.CommonName; cn != "" {
				ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cn)})
			}
		}
		t, err := ssl.Marshal()
		if err != nil {
			return nil, err
		}
		if err := h.SetTLVs(append(tlvs, t)); err != nil {
			return nil, err
		}
	}
	return h.Format()
}

// tlsVersionName uses the names HAProxy and OpenSSL put in PROXY headers.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return tls.VersionName(v)
}
