package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// stormClients connect at once (at most stormParallel dialling together)
// as stormUsers users with bcrypt (cost 10) passwords.
const (
	stormClients  = 1000
	stormUsers    = 50
	stormParallel = 250
)

// A 1,000-client connect storm with bcrypt passwords is admitted in full
// while a client that was already connected keeps getting its PINGRESPs
// within its keepalive: the verifications are bounded and shared, and the
// rest of the proxy keeps running.
func TestConnectStormWithBcrypt(t *testing.T) {
	// Hashed by the built binary, one file per user, then joined: in this
	// test process the race detector would make bcrypt crawl.
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range stormUsers {
		wg.Go(func() {
			f := filepath.Join(dir, fmt.Sprint(i))
			if out, err := exec.Command(binary, "passwd", "-c", "-b", "-H", "bcrypt", f, fmt.Sprintf("user%d", i), fmt.Sprintf("pw-%d", i)).CombinedOutput(); err != nil {
				t.Errorf("%v %s", err, out)
			}
		})
	}
	wg.Wait()
	var all []byte
	for i := range stormUsers {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	file := filepath.Join(dir, "passwd")
	if err := os.WriteFile(file, all, 0o600); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+file, "MQTTGATE_LOG_LEVEL=info",
		"MQTTGATE_CONNECT_TIMEOUT=30s")
	tlsCfg := g.clientTLS()

	const keepAlive = 5 * time.Second
	watcher, err := stormConnect(g.addr, tlsCfg, "watcher", 0, uint16(keepAlive/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	stop, pinged := make(chan struct{}), make(chan error, 1)
	var worst atomic.Int64
	go func() {
		r := mqttwire.NewReader(watcher, 64, 1024)
		for {
			select {
			case <-stop:
				pinged <- nil
				return
			case <-time.After(250 * time.Millisecond):
			}
			start := time.Now()
			_ = watcher.SetDeadline(start.Add(keepAlive))
			if _, err := watcher.Write([]byte{0xC0, 0}); err != nil {
				pinged <- err
				return
			}
			if p, err := r.Next(); err != nil || p.Type != mqttwire.PINGRESP {
				pinged <- fmt.Errorf("no PINGRESP within the keepalive (%v) after %v: %v", keepAlive, time.Since(start), err)
				return
			}
			if d := int64(time.Since(start)); d > worst.Load() {
				worst.Store(d)
			}
		}
	}()

	start := time.Now()
	var admitted atomic.Int32
	sem := make(chan struct{}, stormParallel)
	for i := range stormClients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := stormConnect(g.addr, tlsCfg, fmt.Sprintf("storm-%d", i), i%stormUsers+1, 60)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			admitted.Add(1)
			_, _ = c.Write([]byte{0xE0, 0})
			c.Close()
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	if err := <-pinged; err != nil {
		t.Fatalf("the connected client suffered: %v", err)
	}
	if n := admitted.Load(); n != stormClients {
		t.Fatalf("%d of %d admitted", n, stormClients)
	}
	t.Logf("%d clients (%d bcrypt users) admitted in %v; worst PINGRESP of the bystander %v", stormClients, stormUsers, took, time.Duration(worst.Load()))
}

// stormConnect opens a TLS connection and completes CONNECT as user N
// (0: the watcher, user0's password is not needed: it uses user1's).
func stormConnect(addr string, cfg *tls.Config, id string, user int, keepAlive uint16) (*tls.Conn, error) {
	if user == 0 {
		user = 1
	}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	u := user - 1
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, CleanStart: true, ClientID: []byte(id), KeepAlive: keepAlive,
		UsernameFlag: true, Username: []byte(fmt.Sprintf("user%d", u)), PasswordFlag: true, Password: []byte(fmt.Sprintf("pw-%d", u))})
	if _, err := c.Write(pkt); err != nil {
		c.Close()
		return nil, err
	}
	p, err := mqttwire.NewReader(c, 64, 1024).Next()
	if err != nil || p.Type != mqttwire.CONNACK || len(p.Body) < 2 || p.Body[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK %x: %v", p.Raw, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
