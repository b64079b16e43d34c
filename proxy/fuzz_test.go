package proxy

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// bytesConn is a connection whose peer sent data and then went quiet.
type bytesConn struct {
	net.Conn
	r    *bytes.Reader
	peer net.Addr
}

func (c *bytesConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c *bytesConn) RemoteAddr() net.Addr               { return c.peer }
func (c *bytesConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8883} }
func (c *bytesConn) SetReadDeadline(time.Time) error    { return nil }
func (c *bytesConn) SetDeadline(time.Time) error        { return nil }
func (c *bytesConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c *bytesConn) Close() error                       { return nil }
func (c *bytesConn) SetWriteDeadline(t time.Time) error { return nil }

var (
	fuzzTrustedIP = netip.MustParseAddrPort("127.0.0.1:40000")
	fuzzStranger  = netip.MustParseAddrPort("127.0.0.2:40000")
)

// FuzzInboundProxyHeader feeds arbitrary bytes as the start of a
// connection. From an untrusted peer nothing that parses as a PROXY header
// may be accepted; from a trusted one, an accepted header yields a valid
// address, and whatever follows the header is left for the MQTT reader.
func FuzzInboundProxyHeader(f *testing.F) {
	v2 := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 4242}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 8883})
	b2, _ := v2.Format()
	v1 := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 4242}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 8883})
	b1, _ := v1.Format()
	f.Add(append(b2, 0x10, 0x00))
	f.Add(append(b1, 0x10, 0x00))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Untrusted peer: a header is never honoured.
		c := &bytesConn{r: bytes.NewReader(data), peer: net.TCPAddrFromAddrPort(fuzzStranger)}
		if pc, addr, err := inboundHeader(c, fuzzStranger, false, false, time.Second); err == nil {
			if addr != fuzzStranger {
				t.Fatalf("untrusted peer got address %v from a header", addr)
			}
			if h := pc.(*proxyproto.Conn).ProxyHeader(); h != nil {
				t.Fatal("untrusted peer's header accepted")
			}
		}
		// Trusted peer.
		c = &bytesConn{r: bytes.NewReader(data), peer: net.TCPAddrFromAddrPort(fuzzTrustedIP)}
		pc, addr, err := inboundHeader(c, fuzzTrustedIP, true, false, time.Second)
		if err != nil {
			return
		}
		if !addr.IsValid() {
			t.Fatalf("accepted header gave invalid address")
		}
		rest, _ := io.ReadAll(pc)
		if !bytes.HasSuffix(data, rest) {
			t.Fatalf("bytes after the header changed")
		}
	})
}
