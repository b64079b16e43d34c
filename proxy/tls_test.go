package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/mqttgate/mqttgate/proxy/certstore"
)

// writeCounter counts the writes made to a connection.
type writeCounter struct {
	net.Conn
	writes atomic.Int32
}

func (w *writeCounter) Write(b []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(b)
}

// tlsPair completes a handshake over loopback TCP between a client with
// clientCfg and a server with serverCfg whose raw connection is wrapped
// by wrap.
func tlsPair(t *testing.T, clientCfg, serverCfg *tls.Config, wrap func(net.Conn) net.Conn) (client, server *tls.Conn) {
	t.Helper()
	raw, c := tcpLoopback(t)
	client, server = tls.Client(c, clientCfg), tls.Server(wrap(raw), serverCfg)
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return client, server
}

// A packet of a new connection goes out in one record and one write, not
// in records growing from one TCP segment (Go's dynamic record sizing).
func TestFirstPacketsInFullSizeRecords(t *testing.T) {
	p := newPKI(t, certstore.ClientAuthNone)
	var counted *writeCounter
	tc, server := tlsPair(t, p.clientTLS(t, ""), p.store.ServerConfig(), func(c net.Conn) net.Conn {
		counted = &writeCounter{Conn: c}
		return counted
	})
	packet := make([]byte, 12<<10) // one 12 KiB PUBLISH, say
	before := counted.writes.Load()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(tc, make([]byte, len(packet)))
		done <- err
	}()
	if _, err := server.Write(packet); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := counted.writes.Load() - before; n != 1 {
		t.Fatalf("a 12 KiB packet took %d writes, want 1 record in 1 write", n)
	}
}

// The key exchanges offered follow TLSOptions.Groups; without it, Go's
// defaults put the post-quantum hybrid first.
func TestKeyExchangeGroups(t *testing.T) {
	for _, c := range []struct {
		groups []string
		want   tls.CurveID
	}{
		{nil, tls.X25519MLKEM768},
		{[]string{"X25519", "P-256"}, tls.X25519},
		{[]string{"secp256r1"}, tls.CurveP256},
	} {
		groups, err := certstore.ParseGroups(c.groups)
		if err != nil {
			t.Fatal(err)
		}
		p := newPKI(t, certstore.ClientAuthNone)
		store, err := certstore.New(certstore.Options{Pairs: []certstore.CertPair{{CertFile: p.ServerCert, KeyFile: p.ServerKey}}, Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		tc, _ := tlsPair(t, p.clientTLS(t, ""), store.ServerConfig(), func(c net.Conn) net.Conn { return c }) // Go's defaults: X25519MLKEM768, X25519, P-256, ...
		if got := tc.ConnectionState().CurveID; got != c.want {
			t.Errorf("groups %q: negotiated %v, want %v", c.groups, got, c.want)
		}
	}
	for _, bad := range [][]string{{"X448"}, {"X25519", "x25519"}, {""}} {
		if _, err := certstore.ParseGroups(bad); err == nil {
			t.Errorf("certstore.ParseGroups(%q) accepted", bad)
		}
	}
}
