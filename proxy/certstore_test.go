package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
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

// A packet of a new connection goes out in one record and one write, not
// in records growing from one TCP segment (Go's dynamic record sizing).
func TestFirstPacketsInFullSizeRecords(t *testing.T) {
	p := newPKI(t, ClientAuthNone)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	counted := &writeCounter{Conn: raw}
	server := tls.Server(counted, p.store.ServerConfig())
	defer server.Close()
	tc := tls.Client(client, p.clientTLS(t, ""))
	deadline := time.Now().Add(10 * time.Second)
	_ = tc.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	go func() { _ = tc.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
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
