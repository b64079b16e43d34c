package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// mosquittoTLS is Mosquitto with its own TLS listener alone, requiring a
// client certificate that clientCA issued, serving the certificate in
// cert and key.
type mosquittoTLS struct {
	addr string
	cmd  *exec.Cmd
	logs *mqtttest.SyncBuffer
}

func startMosquittoTLS(t *testing.T, clientCA, cert, key string) *mosquittoTLS {
	t.Helper()
	return startMosquittoTLSAt(t, mqtttest.FreeAddr(t), clientCA, cert, key)
}

func startMosquittoTLSAt(t *testing.T, addr, clientCA, cert, key string) *mosquittoTLS {
	t.Helper()
	bin := mqtttest.Need(t, "mosquitto")
	host, port, _ := net.SplitHostPort(addr)
	// root: the files are in the test's private directory.
	conf := writeFile(t, "mosquitto.conf", fmt.Sprintf("user root\npersistence false\nallow_anonymous true\n"+
		"listener %s %s\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", port, host, clientCA, cert, key))
	cmd := exec.Command(bin, "-c", conf)
	logs := mqtttest.Start(t, "mosquitto", cmd)
	mqtttest.WaitListening(t, addr)
	return &mosquittoTLS{addr: addr, cmd: cmd, logs: logs}
}

// restart stops m and starts it again on its address with the files as
// they are now (and new TLS session keys: nothing resumes across it).
func (m *mosquittoTLS) restart(t *testing.T, clientCA, cert, key string) {
	t.Helper()
	if err := m.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "mosquitto stopped", func() bool {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	*m = *startMosquittoTLSAt(t, m.addr, clientCA, cert, key)
}

func copyFileTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// brokerSide is the broker's PKI: its server certificate (localhost,
// 127.0.0.1) and the certificate the proxy presents to it, "mqttgate".
func brokerSide(t *testing.T) *devpki.Files {
	t.Helper()
	f, err := devpki.Init(t.TempDir(), "mqttgate")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// backendTLSEnv turns TLS to the broker on, trusting ca and presenting
// the proxy's certificate from b.
func backendTLSEnv(b *devpki.Files, ca string, extra ...string) []string {
	return append([]string{"MQTTGATE_BACKEND_TLS=true", "MQTTGATE_BACKEND_TLS_CA=" + ca,
		"MQTTGATE_BACKEND_TLS_CERT=" + b.Clients["mqttgate"][0], "MQTTGATE_BACKEND_TLS_KEY=" + b.Clients["mqttgate"][1]}, extra...)
}

// gateConnack connects a raw client of version v through g and returns
// the code of the CONNACK it is answered.
func gateConnack(t *testing.T, g *gate, v mqttwire.Version, id string) byte {
	t.Helper()
	c, ack, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte(id)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Conn().Close()
	return connackCode(t, ack)
}

// mqttgate in front of Mosquitto's own TLS listener with
// require_certificate: with the right CA and client certificate, a
// message goes round from a v5 client to a 3.1.1 one; later connections
// resume the TLS session to the broker.
func TestBackendTLSToMosquitto(t *testing.T) {
	b := brokerSide(t)
	m := startMosquittoTLS(t, b.CA, b.ServerCert, b.ServerKey)
	g := startGate(t, m.addr, backendTLSEnv(b, b.CA)...)
	g.waitLog(t, `"server_name":"127.0.0.1"`) // the backend's host, by default

	sub, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("sub")})
	if err != nil || ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("subscriber: %v, CONNACK %x", err, ack.Raw)
	}
	sub.Send(mqtttest.SubscribePacket(mqttwire.V311, 1, "tls/#"))
	if codes := mqtttest.SubackCodes(t, sub.Next(), mqttwire.V311); len(codes) != 1 || codes[0] > 1 {
		t.Fatalf("SUBACK %x", codes)
	}
	pub, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("pub")})
	if err != nil || ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("publisher: %v, CONNACK %x", err, ack.Raw)
	}
	pub.Send(mqtttest.PublishPacket(mqttwire.V5, "tls/x", 0, 0, nil, "through TLS"))
	m1, err := mqttwire.ParsePublish(sub.Next(), mqttwire.V311)
	if err != nil || string(m1.Topic) != "tls/x" || string(m1.Payload) != "through TLS" {
		t.Fatalf("delivered %q %q: %v", m1.Topic, m1.Payload, err)
	}
	// Mosquitto admitted the proxy, which it does only with a certificate.
	if !strings.Contains(m.logs.String(), "New client connected") {
		t.Errorf("mosquitto logged no client")
	}
	g.waitLog(t, `"event":"broker_tls","conn":1`)
	if !regexp.MustCompile(`"event":"broker_tls","conn":1,"tls_version":"TLSv1.3","cipher":"[A-Z0-9_]+","resumed":false`).MatchString(g.logs.String()) {
		t.Errorf("the first connection to the broker was not a full TLS 1.3 handshake")
	}
	g.waitLog(t, `"event":"broker_tls","conn":2`)
	if n := strings.Count(g.logs.String(), `"resumed":true`); n != 1 {
		t.Errorf("%d connections resumed the TLS session to the broker, want the second one", n)
	}
}

// Every way the broker hop can fail before the broker's CONNACK is
// answered CONNACK 0x88 to a v5 client and 0x03 to a 3.1.1 one, and
// logged with the cause: a broker certificate from another CA, for
// another name, or expired, and no client certificate for a broker that
// requires one.
func TestBackendTLSRefusals(t *testing.T) {
	b := brokerSide(t)
	other := brokerSide(t)
	expiredCert, expiredKey := filepath.Join(b.Dir, "expired.pem"), filepath.Join(b.Dir, "expired-key.pem")
	if _, err := b.Authority.Issue(devpki.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotAfter: time.Now().Add(-time.Hour)}, expiredCert, expiredKey); err != nil {
		t.Fatal(err)
	}
	noClientCert := []string{"MQTTGATE_BACKEND_TLS=true", "MQTTGATE_BACKEND_TLS_CA=" + b.CA}
	for _, tc := range []struct {
		name      string
		cert, key string // what Mosquitto serves
		env       []string
		cause     string
	}{
		{"wrong CA", b.ServerCert, b.ServerKey, backendTLSEnv(b, other.CA), "x509: certificate signed by unknown authority"},
		{"wrong server name", b.ServerCert, b.ServerKey, backendTLSEnv(b, b.CA, "MQTTGATE_BACKEND_TLS_SERVER_NAME=broker.example"),
			"x509: certificate is valid for localhost, not broker.example"},
		{"expired", expiredCert, expiredKey, backendTLSEnv(b, b.CA), "x509: certificate has expired"},
		{"no client certificate", b.ServerCert, b.ServerKey, noClientCert, "tls: certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMosquittoTLS(t, b.CA, tc.cert, tc.key)
			g := startGate(t, m.addr, tc.env...)
			if code := gateConnack(t, g, mqttwire.V5, "v5"); code != 0x88 {
				t.Errorf("v5: CONNACK %#x, want 0x88 (server unavailable)", code)
			}
			if code := gateConnack(t, g, mqttwire.V311, "v3"); code != 0x03 {
				t.Errorf("3.1.1: CONNACK %#x, want 0x03 (server unavailable)", code)
			}
			mqtttest.WaitFor(t, "both refusals logged with the cause", func() bool {
				l := g.logs.String()
				return strings.Count(l, `"event":"broker_tls_failed"`) == 2 && strings.Count(l, tc.cause) == 2
			})
		})
	}
}

// A broker certificate swapped on disk (Mosquitto restarted with one
// from another CA) refuses the clients until the proxy is given that CA:
// then the next connection goes through, the new CA file being picked up
// by the poll, or by SIGHUP. (Mosquitto reloaded by SIGHUP instead would
// keep resuming the sessions made before the swap: no new handshake, no
// new certificate to verify.)
func TestBackendTLSSwapPickedUp(t *testing.T) {
	for _, trigger := range []string{"poll", "SIGHUP"} {
		t.Run(trigger, func(t *testing.T) {
			b := brokerSide(t)
			dir := t.TempDir()
			cert, key, ca := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker-key.pem"), filepath.Join(dir, "ca.pem")
			for from, to := range map[string]string{b.ServerCert: cert, b.ServerKey: key, b.CA: ca} {
				copyFileTo(t, from, to)
			}
			m := startMosquittoTLS(t, b.CA, cert, key)
			poll := "1h" // SIGHUP alone
			if trigger == "poll" {
				poll = "100ms"
			}
			g := startGate(t, m.addr, backendTLSEnv(b, ca, "MQTTGATE_FILE_POLL_INTERVAL="+poll)...)
			if code := gateConnack(t, g, mqttwire.V5, "before"); code != 0 {
				t.Fatalf("before the swap: CONNACK %#x", code)
			}

			next, err := devpki.NewAuthority("next")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := next.Issue(devpki.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, cert, key); err != nil {
				t.Fatal(err)
			}
			m.restart(t, b.CA, cert, key)
			if code := gateConnack(t, g, mqttwire.V5, "swapped"); code != 0x88 {
				t.Fatalf("the new broker certificate, the proxy trusting the old CA: CONNACK %#x, want 0x88", code)
			}
			g.waitLog(t, "x509: certificate signed by unknown authority")

			if err := next.WriteCA(ca); err != nil {
				t.Fatal(err)
			}
			if trigger == "SIGHUP" {
				if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			g.waitLog(t, `"event":"reloaded","file":"MQTTGATE_BACKEND_TLS_CA","trigger":"`+map[string]string{"poll": "changed", "SIGHUP": "SIGHUP"}[trigger]+`"`)
			if code := gateConnack(t, g, mqttwire.V5, "after"); code != 0 {
				t.Fatalf("after the new CA: CONNACK %#x", code)
			}
			if code := gateConnack(t, g, mqttwire.V311, "after3"); code != 0 {
				t.Fatalf("after the new CA, 3.1.1: CONNACK %#x", code)
			}
		})
	}
}

// Settings for TLS to the broker that cannot work stop start-up, naming
// the variable.
func TestBackendTLSSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"certs", "init", dir}, nil, new(bytes.Buffer), new(bytes.Buffer)); code != 0 {
		t.Fatalf("certs init: exit %d", code)
	}
	good := map[string]string{"MQTTGATE_TLS_CERT": dir + "/server.pem", "MQTTGATE_TLS_KEY": dir + "/server-key.pem", "MQTTGATE_LISTEN_TLS": "127.0.0.1:0"}
	on := map[string]string{"MQTTGATE_BACKEND_TLS": "true"}
	for _, c := range []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{"MQTTGATE_BACKEND_TLS_CA": dir + "/ca.pem"}, "MQTTGATE_BACKEND_TLS_CA"}, // TLS to the broker off
		{map[string]string{"MQTTGATE_BACKEND_TLS_SERVER_NAME": "broker"}, "MQTTGATE_BACKEND_TLS_SERVER_NAME"},
		{map[string]string{"MQTTGATE_BACKEND_TLS": "yes please"}, "MQTTGATE_BACKEND_TLS"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_CERT": dir + "/client1.pem"}), "MQTTGATE_BACKEND_TLS_KEY"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_KEY": dir + "/client1-key.pem"}), "MQTTGATE_BACKEND_TLS_CERT"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_SERVER_NAME": "broker:8883"}), "MQTTGATE_BACKEND_TLS_SERVER_NAME"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND": ":8883"}), "MQTTGATE_BACKEND_TLS_SERVER_NAME"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_CA": dir + "/missing.pem"}), "MQTTGATE_BACKEND_TLS_CA"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_CA": dir + "/server-key.pem"}), "MQTTGATE_BACKEND_TLS_CA"}, // no certificate in it
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_CERT": dir + "/client1.pem", "MQTTGATE_BACKEND_TLS_KEY": dir + "/missing.pem"}), "MQTTGATE_BACKEND_TLS_KEY"},
		{merge(on, map[string]string{"MQTTGATE_BACKEND_TLS_CERT": dir + "/client1.pem", "MQTTGATE_BACKEND_TLS_KEY": dir + "/client2-key.pem"}), "MQTTGATE_BACKEND_TLS_CERT"},
	} {
		var stderr bytes.Buffer
		code := run(nil, merge(good, c.env), new(bytes.Buffer), &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.wantVar+":") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.env, code, stderr.String(), c.wantVar)
		}
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
