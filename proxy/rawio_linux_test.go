package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the accepted end
// reading and writing with raw system calls.
func tcpPair(t *testing.T) (raw net.Conn, peer net.Conn) {
	t.Helper()
	c, peer := tcpLoopback(t)
	raw = direct(c, 0)
	if _, ok := raw.(*directConn); !ok {
		t.Fatalf("direct(%T) = %T, want *directConn", c, raw)
	}
	return raw, peer
}

func TestDirectConnReadsWritesAndEOF(t *testing.T) {
	raw, peer := tcpPair(t)
	// Larger than the socket buffers: the write must wait for the reader
	// and resume where the socket stopped taking bytes.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	errc := make(chan error, 1)
	go func() {
		n, err := raw.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ after the round trip")
	}

	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v; want ping", buf[:n], err)
	}
	peer.Close()
	if n, err := raw.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
	}
	// Writing to a peer that is gone is an error, never a signal.
	var werr error
	for range 100 {
		if _, werr = raw.Write([]byte("x")); werr != nil {
			break
		}
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v, want EPIPE or ECONNRESET", werr)
	}
}

func TestDirectConnDeadlineAndClose(t *testing.T) {
	raw, _ := tcpPair(t)
	_ = raw.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := raw.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v, want a timeout", err)
	}
	_ = raw.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := raw.Read(make([]byte, 8))
		errc <- err
	}()
	raw.Close() // what closeAll does to end a pump blocked in a read
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Read did not end when the conn was closed")
	}
}

// WaitReadable returns once bytes or the end of the stream are there,
// leaving them for the read; and ends with the deadline or Close.
func TestDirectConnWaitReadable(t *testing.T) {
	raw, peer := tcpPair(t)
	d := raw.(*directConn)
	waited := make(chan error, 1)
	go func() { waited <- d.WaitReadable() }()
	select {
	case err := <-waited:
		t.Fatalf("WaitReadable returned %v with nothing sent", err)
	case <-time.After(50 * time.Millisecond): // a wait that must not end: nothing to wait on
	}
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitReadable = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReadable did not return when bytes arrived")
	}
	buf := make([]byte, 16)
	if n, err := raw.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read after the wait = %q, %v; want ping (the wait consumed nothing)", buf[:n], err)
	}
	peer.Close()
	if err := d.WaitReadable(); err != nil {
		t.Fatalf("WaitReadable at the end of the stream = %v, want nil", err)
	}
	if n, err := raw.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the wait = %d, %v; want EOF", n, err)
	}

	raw2, _ := tcpPair(t)
	d2 := raw2.(*directConn)
	_ = d2.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := d2.WaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable past the deadline = %v, want a timeout", err)
	}
	_ = d2.SetReadDeadline(time.Time{})
	go func() { waited <- d2.WaitReadable() }()
	d2.Close()
	select {
	case err := <-waited:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WaitReadable on a closed conn = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked WaitReadable did not end when the conn was closed")
	}
}

func TestDirectConnAllocatesNothing(t *testing.T) {
	raw, peer := tcpPair(t)
	msg, buf := []byte("0123456789"), make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := raw.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(raw, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", allocs)
	}
}

// The write bound holds only a write that waits for a full socket: a
// connection idle far past it still writes, a write the peer does not
// take fails at the bound (a timeout), and a user deadline sooner than
// the bound wins; none is left on the connection after a write.
func TestDirectConnWriteBound(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"direct", func(c net.Conn) net.Conn { return direct(c, 300*time.Millisecond) }},
		{"portable", func(c net.Conn) net.Conn { return boundWrites(c, 300*time.Millisecond) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			accepted, peer := tcpLoopback(t)
			_ = accepted.SetDeadline(time.Time{})
			bounded := c.wrap(accepted)
			// A write that waits for a peer that reads a little late, then
			// idling past the bound, then another such write: each wait
			// has the bound from its own start.
			drain := func() {
				go func() {
					time.Sleep(100 * time.Millisecond)
					_, _ = io.CopyN(io.Discard, peer, 8<<20)
				}()
			}
			for i := range 2 {
				drain()
				if _, err := bounded.Write(make([]byte, 8<<20)); err != nil {
					t.Fatalf("write %d, to a peer that reads: %v", i, err)
				}
				time.Sleep(500 * time.Millisecond) // idle past the bound: the scenario itself
			}
			// A peer that reads slowly but steadily (32 KiB every 50 ms)
			// takes a 512 KiB write over a second and more, each wait well within the
			// bound: progress starts the bound again.
			_ = accepted.(*net.TCPConn).SetWriteBuffer(64 << 10)
			_ = peer.(*net.TCPConn).SetReadBuffer(64 << 10)
			slowDone := make(chan struct{})
			go func() {
				defer close(slowDone)
				buf := make([]byte, 32<<10)
				for got := 0; got < 512<<10; { // bounded by the 512 KiB written
					time.Sleep(50 * time.Millisecond) // the reader's pace
					n, err := io.ReadFull(peer, buf[:min(len(buf), 512<<10-got)])
					if err != nil {
						return
					}
					got += n
				}
			}()
			began := time.Now()
			if _, err := bounded.Write(make([]byte, 512<<10)); err != nil {
				t.Fatalf("a slow reader's 512 KiB after %v: %v", time.Since(began), err)
			}
			<-slowDone
			big := make([]byte, 64<<20) // far more than the sockets hold: the peer reads nothing now
			began = time.Now()
			_, err := bounded.Write(big)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a write the peer does not take: %v", err)
			}
			if d := time.Since(began); d < 250*time.Millisecond || d > 5*time.Second {
				t.Fatalf("failed after %v, bound 300ms", d)
			}
			_ = bounded.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			began = time.Now()
			if _, err := bounded.Write(big); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(began) > 250*time.Millisecond {
				t.Fatalf("a user deadline sooner than the bound: %v after %v", err, time.Since(began))
			}
		})
	}
}
