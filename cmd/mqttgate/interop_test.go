package main

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// aedesDir holds the Aedes broker the interoperability tests start, with
// its npm packages pinned in package-lock.json.
var aedesDir = filepath.Join("..", "..", "testdata", "brokers", "aedes")

var npmOnce sync.Once

// aedes starts Aedes with aedes-protocol-decoder reading PROXY headers,
// installing its packages first (npm ci) when they are missing, and
// returns its address and output (one JSON line per admitted client).
func aedes(t *testing.T) (string, *mqtttest.SyncBuffer) {
	t.Helper()
	node := mqtttest.Need(t, "node")
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(aedesDir, "node_modules", "aedes")); err == nil {
			return
		}
		cmd := exec.Command(mqtttest.Need(t, "npm"), "ci", "--no-audit", "--no-fund")
		cmd.Dir = aedesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", aedesDir, err, out)
		}
	})
	addr := mqtttest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(node, "broker.mjs", port)
	cmd.Dir = aedesDir
	logs := mqtttest.Start(t, "aedes", cmd)
	mqtttest.WaitFor(t, "aedes listening", func() bool { return strings.Contains(logs.String(), "listening "+port) })
	return addr, logs
}

// connectOutcome sends a CONNECT through conn and reports the broker's
// answer: "accepted", "refused", or "no CONNACK" (closed, or nothing
// within 3 s).
func connectOutcome(conn net.Conn, v mqttwire.Version, id string) string {
	defer conn.Close()
	if _, err := conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: v, ClientID: []byte(id), CleanStart: true, KeepAlive: 30})); err != nil {
		return "no CONNACK"
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	p, err := mqttwire.NewReader(conn, 256, 1<<20).Next()
	switch {
	case err != nil || p.Type != mqttwire.CONNACK || len(p.Body) < 2:
		return "no CONNACK"
	case p.Body[1] == 0:
		return "accepted"
	}
	return "refused"
}

// Issue 13: aedes-protocol-decoder 2.2 reads the PROXY v2 addresses but
// not past TLVs, so with the TLVs mqttgate sends by default (ALPN,
// AUTHORITY, SSL) Aedes takes them for MQTT bytes and admits nobody.
// MQTTGATE_BACKEND_PROXY_TLVS=none sends the bare header: Aedes then
// admits the client and reports its real address (127.0.0.7), not the
// proxy's.
func TestAedesReadsTheRealClientAddress(t *testing.T) {
	backend, logs := aedes(t)
	for _, tc := range []struct {
		tlvs, want string
	}{{"none", "accepted"}, {"all", "no CONNACK"}, {"ssl", "no CONNACK"}} {
		t.Run(tc.tlvs, func(t *testing.T) {
			g := startGate(t, backend, "MQTTGATE_BACKEND_PROXY_PROTOCOL=true", "MQTTGATE_BACKEND_PROXY_TLVS="+tc.tlvs)
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}
			conn, err := tls.DialWithDialer(d, "tcp", g.addr, g.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			id := "aedes-" + tc.tlvs
			if got := connectOutcome(conn, mqttwire.V311, id); got != tc.want {
				t.Fatalf("TLVs %s: %s, want %s\n%s", tc.tlvs, got, tc.want, logs.String())
			}
			if tc.want != "accepted" {
				return
			}
			for _, line := range strings.Split(logs.String(), "\n") {
				var ev struct{ Event, ID, IP string }
				if json.Unmarshal([]byte(line), &ev) == nil && ev.ID == id {
					if ev.IP != "127.0.0.7" {
						t.Fatalf("Aedes saw the client at %q, want 127.0.0.7", ev.IP)
					}
					return
				}
			}
			t.Fatalf("Aedes logged no connect for %s:\n%s", id, logs.String())
		})
	}
}
