package proxy

import (
	"crypto/tls"
	"net"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// outboundHeader builds the PROXY v2 header sent to the broker: the real
// client address and the address it connected to, and TLVs for ALPN, the SNI (AUTHORITY) and the TLS
// session (version, cipher, and the CN of a verified client certificate).
func outboundHeader(s *Session) ([]byte, error) {
	src := net.TCPAddrFromAddrPort(s.ClientAddr)
	h := proxyproto.HeaderProxyFromAddrs(2, src, s.localAddr)
	if s.TLS != nil {
		st := s.TLS
		var tlvs []proxyproto.TLV
		if st.NegotiatedProtocol != "" {
			tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(st.NegotiatedProtocol)})
		}
		if st.ServerName != "" {
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
