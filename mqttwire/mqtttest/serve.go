package mqtttest

import (
	"net"
	"sync"
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Serve runs handle in a goroutine for each connection ln accepts, until
// the test ends; cleanup closes the listener and every connection, and
// waits for every goroutine.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); handle(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// ScriptedBroker is a broker on a loopback port that hands each packet
// it receives, on each connection, to answer; answer returns false to
// close that connection. It returns the broker's address.
func ScriptedBroker(t testing.TB, answer func(c net.Conn, p mqttwire.Packet) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		r := mqttwire.NewReader(c, 256, 1<<20)
		for {
			p, err := r.Next()
			if err != nil || !answer(c, p) {
				return
			}
		}
	})
	return ln.Addr().String()
}
