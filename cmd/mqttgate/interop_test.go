package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// aedesDir holds the Aedes broker the interoperability tests start, with
// its npm packages pinned in package-lock.json.
var aedesDir = filepath.Join("..", "..", "testdata", "brokers", "aedes")

var npmDone sync.Map // directory -> *sync.Once

// npmPackages installs dir's npm packages (npm ci, from its lock file)
// once per test binary, unless node_modules/probe is already there, and
// returns dir.
func npmPackages(t *testing.T, dir, probe string) string {
	t.Helper()
	once, _ := npmDone.LoadOrStore(dir, new(sync.Once))
	once.(*sync.Once).Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", probe)); err == nil {
			return
		}
		cmd := exec.Command(mqtttest.Need(t, "npm"), "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// aedes starts Aedes with aedes-protocol-decoder reading PROXY headers,
// installing its packages first when they are missing, and returns its
// address and output (one JSON line per admitted client).
func aedes(t *testing.T) (string, *mqtttest.SyncBuffer) {
	t.Helper()
	node := mqtttest.Need(t, "node")
	npmPackages(t, aedesDir, "aedes")
	addr := mqtttest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(node, "broker.mjs", port)
	cmd.Dir = aedesDir
	logs := mqtttest.Start(t, "aedes", cmd)
	mqtttest.WaitFor(t, "aedes listening", func() bool { return strings.Contains(logs.String(), "listening "+port) })
	return addr, logs
}

// rabbitmq starts a RabbitMQ node of the test's own (Debian's
// rabbitmq-server 3.10, its MQTT plugin on, PROXY protocol headers read
// when proxyProtocol) and returns its MQTT address and output.
func rabbitmq(t *testing.T, proxyProtocol bool) (string, *mqtttest.SyncBuffer) {
	t.Helper()
	mqtttest.Need(t, "rabbitmq-server")
	dir := t.TempDir()
	addr, dist := mqtttest.FreeAddr(t), mqtttest.FreeAddr(t)
	_, distPort, _ := net.SplitHostPort(dist)
	conf := "listeners.tcp = none\nmqtt.listeners.tcp.default = " + addr + "\nmqtt.allow_anonymous = true\nloopback_users = none\n" +
		"log.console = true\nlog.console.level = info\nlog.file = false\n"
	if proxyProtocol {
		conf += "mqtt.proxy_protocol = true\n"
	}
	for name, body := range map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[rabbitmq_mqtt].\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The server script itself, not Debian's wrapper (which switches to
	// the rabbitmq user, who cannot write the test's directory).
	cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmq-server")
	node := "mqttgate-" + distPort + "@localhost"
	cmd.Env = append(os.Environ(), "HOME="+dir, "RABBITMQ_NODENAME="+node, "RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"), "RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"), "RABBITMQ_DIST_PORT="+distPort, "RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(dir, "feature_flags"))
	// Its own process group, killed whole at the end (erl's launcher
	// leaves beam.smp running otherwise), and its output in a file: a
	// pipe would be held open by what the node spawns (epmd).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logFile := filepath.Join(dir, "out.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	logs := &mqtttest.SyncBuffer{}
	read := func() string {
		b, _ := os.ReadFile(logFile)
		return string(b)
	}
	deadline := time.Now().Add(60 * time.Second) // an Erlang node takes seconds to boot
	for !strings.Contains(read(), "Server startup complete") {
		if time.Now().After(deadline) {
			t.Fatalf("RabbitMQ did not start within 60 s:\n%s", read())
		}
		time.Sleep(100 * time.Millisecond) // polling its log: the node gives no other signal
	}
	mqtttest.WaitListening(t, addr)
	go func() { // its log, for the tests to wait on, until the test ends
		seen := 0
		for {
			b, _ := os.ReadFile(logFile)
			if len(b) > seen {
				_, _ = logs.Write(b[seen:])
				seen = len(b)
			}
			select {
			case <-t.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
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

// Issue 13: RabbitMQ 3.10 speaks MQTT 3.1.1 only, and closes on a v5
// CONNECT without a CONNACK. Through mqttgate a 3.1.1 client is admitted
// and its messages go round, RabbitMQ sees the real client address in
// the PROXY header (TLVs and all), and a v5 client is told CONNACK 0x84
// (Unsupported Protocol Version) instead of a bare close.
func TestRabbitMQBehindMqttgate(t *testing.T) {
	backend, logs := rabbitmq(t, true)
	g := startGate(t, backend, "MQTTGATE_BACKEND_PROXY_PROTOCOL=true")
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	dial := func() net.Conn {
		conn, err := tls.DialWithDialer(d, "tcp", g.addr, g.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	c, ack := mqtttest.NewRawClient(t, dial(), mqttwire.V311, &mqttwire.Connect{ClientID: []byte("rabbit-311")})
	if len(ack.Body) < 2 || ack.Body[1] != 0 {
		t.Fatalf("3.1.1 through mqttgate: CONNACK %x", ack.Raw)
	}
	c.Send(mqtttest.SubscribePacket(mqttwire.V311, 1, "rabbit/+"))
	if codes := mqtttest.SubackCodes(t, c.Next(), mqttwire.V311); codes[0] >= 0x80 {
		t.Fatalf("SUBACK %x", codes)
	}
	c.Send(mqtttest.PublishPacket(mqttwire.V311, "rabbit/x", 1, 2, nil, "round"))
	for range 2 { // the PUBACK and the message, in either order
		if p := c.Next(); p.Type == mqttwire.PUBLISH {
			if m, _ := mqttwire.ParsePublish(p, mqttwire.V311); string(m.Payload) != "round" {
				t.Fatalf("got %q", m.Payload)
			}
		} else if p.Type != mqttwire.PUBACK {
			t.Fatalf("%s %x", p.Type, p.Raw)
		}
	}
	mqtttest.WaitFor(t, "RabbitMQ logs the real client address", func() bool { return strings.Contains(logs.String(), "127.0.0.9:") })

	direct, err := net.Dial("tcp", backend)
	if err != nil {
		t.Fatal(err)
	}
	proxied := []byte("PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n") // RabbitMQ reads a header on every connection here
	if _, err := direct.Write(proxied); err != nil {
		t.Fatal(err)
	}
	if got := connectOutcome(direct, mqttwire.V5, "rabbit-5-direct"); got != "no CONNACK" {
		t.Fatalf("v5 straight to RabbitMQ: %s; the test's premise (it closes without a CONNACK) is wrong", got)
	}
	if got := connectOutcome(dial(), mqttwire.V5, "rabbit-5"); got != "refused" {
		t.Fatalf("v5 through mqttgate: %s, want a CONNACK refusing it", got)
	}
	_, ack5 := mqtttest.NewRawClient(t, dial(), mqttwire.V5, &mqttwire.Connect{ClientID: []byte("rabbit-5b")})
	if want := mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.UnsupportedProtocolVersion, nil); !bytes.Equal(ack5.Raw, want) {
		t.Fatalf("v5 through mqttgate: %x, want %x", ack5.Raw, want)
	}
	g.waitLog(t, `"event":"broker_no_v5"`)
}
