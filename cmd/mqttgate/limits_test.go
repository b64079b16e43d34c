package main

import (
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// dialGate connects a raw MQTT client over TLS from the given loopback
// source address ("" for any).
func dialGate(t *testing.T, g *gate, from string, v mqttwire.Version, c *mqttwire.Connect) (*mqtttest.RawClient, mqttwire.Packet, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := tls.DialWithDialer(d, "tcp", g.addr, g.clientTLS())
	if err != nil {
		return nil, mqttwire.Packet{}, err
	}
	rc, ack := mqtttest.NewRawClient(t, conn, v, c)
	return rc, ack, nil
}

func connackProps(t *testing.T, p mqttwire.Packet) mqttwire.Properties {
	t.Helper()
	a, err := mqttwire.ParseAck(p, mqttwire.V5)
	if err != nil || p.Type != mqttwire.CONNACK {
		t.Fatalf("CONNACK %x: %v", p.Raw, err)
	}
	return a.Properties
}

// An oversized PUBLISH, a too-deep topic and one subscription too many,
// each answered as the protocol says; the CONNACK tells a v5 client the
// limits.
func TestPacketLimitsThroughProxy(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_MAX_PACKET_SIZE=1024", "MQTTGATE_MAX_TOPIC_LEVELS=3", "MQTTGATE_MAX_SUBSCRIPTIONS=2",
		"MQTTGATE_MAX_KEEPALIVE=30s")
	c, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("lim"), KeepAlive: 600})
	if err != nil {
		t.Fatal(err)
	}
	props := connackProps(t, ack)
	if n, _, ok := props.Lookup(mqttwire.PropMaximumPacketSize); !ok || n != 1024 {
		t.Errorf("CONNACK Maximum Packet Size %d (%v), want 1024", n, ok)
	}
	if n, _, ok := props.Lookup(mqttwire.PropServerKeepAlive); !ok || n != 30 {
		t.Errorf("CONNACK Server Keep Alive %d (%v), want 30", n, ok)
	}
	c.Send(mqtttest.SubscribePacket(mqttwire.V5, 1, "a", "b"))
	if got := mqtttest.SubackCodes(t, c.Next(), mqttwire.V5); string(got) != "\x01\x01" {
		t.Fatalf("two subscriptions: %x", got)
	}
	c.Send(mqtttest.SubscribePacket(mqttwire.V5, 2, "c"))
	if got := mqtttest.SubackCodes(t, c.Next(), mqttwire.V5); string(got) != "\x97" {
		t.Fatalf("third subscription: %x, want 97 (quota exceeded)", got)
	}
	c.Send(mqtttest.PublishPacket(mqttwire.V5, "a/b/c/d", 0, 0, nil, "deep"))
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != 0x90 {
		t.Fatalf("too-deep topic: %s %x, want DISCONNECT 0x90", p.Type, p.Raw)
	}

	c2, _, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("big")})
	if err != nil {
		t.Fatal(err)
	}
	big := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte("x")})[:0]
	big = append(big, 0x30, 0x80, 0x10, 0, 1, 'x', 0) // PUBLISH, remaining length 2048
	big = append(big, make([]byte, 2048-4)...)
	c2.Send(big)
	if p := c2.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != 0x95 {
		t.Fatalf("oversized PUBLISH: %s %x, want DISCONNECT 0x95", p.Type, p.Raw)
	}
	for _, kind := range []string{`"limit":"max_subscriptions"`, `"limit":"max_topic_levels"`} {
		g.waitLog(t, kind)
	}
}

// A publisher over MQTTGATE_PUBLISH_RATE is slowed to it (backpressure:
// the proxy stops reading), measured by a subscriber on the broker.
func TestPublishRateBackpressure(t *testing.T) {
	const rate, burst, total = 50, 50, 200
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_PUBLISH_RATE=50")
	conn, err := net.Dial("tcp", backend)
	if err != nil {
		t.Fatal(err)
	}
	watch, _ := mqtttest.NewRawClient(t, conn, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("watch")})
	watch.Send(mqtttest.SubscribePacket(mqttwire.V311, 1, "rate/#"))
	watch.Next()
	c, _, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("fast")})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range total {
			if _, err := c.Write(mqtttest.PublishPacket(mqttwire.V311, "rate/x", 0, 0, nil, "m")); err != nil {
				return
			}
		}
	}()
	var first, last time.Time
	for i := range total {
		watch.Next() // each within 5 s
		switch i {
		case burst:
			first = time.Now()
		case total - 1:
			last = time.Now()
		}
	}
	got := float64(total-1-burst) / last.Sub(first).Seconds()
	t.Logf("after the burst of %d: %.1f messages/s, limit %d", burst, got, rate)
	if got < rate*0.9 || got > rate*1.1 {
		t.Fatalf("measured %.1f messages/s, want %d ±10%%", got, rate)
	}
}

// A flood of connections from one address stops at the per-address cap,
// before the TLS handshake, while another address still connects.
func TestConnectionFloodCappedPerAddress(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_MAX_CONNECTIONS_PER_IP=5")
	for i := range 5 {
		if _, ack, err := dialGate(t, g, "127.0.0.2", mqttwire.V311, &mqttwire.Connect{ClientID: []byte{'f', byte('0' + i)}}); err != nil || ack.Type != mqttwire.CONNACK {
			t.Fatalf("connection %d within the cap: %v", i+1, err)
		}
	}
	for i := range 5 {
		if _, _, err := dialGate(t, g, "127.0.0.2", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("over")}); err == nil {
			t.Fatalf("connection %d over the cap got through the handshake", 6+i)
		}
	}
	if _, ack, err := dialGate(t, g, "127.0.0.3", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("other")}); err != nil || ack.Type != mqttwire.CONNACK {
		t.Fatalf("another address refused: %v", err)
	}
	g.waitLog(t, `"limit":"max_connections_per_ip"`)
	if strings.Contains(g.logs.String(), `"event":"tls_handshake_failed"`) {
		t.Error("refused connections reached the TLS handshake")
	}
}

// A banned client id is refused (v5 0x8A, v3 0x05), and still after a
// restart: the ban lives in the bans file, written by mqttgate bans.
func TestBannedClientIDPersistsAcrossRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bans.json")
	if out, err := exec.Command(binary, "bans", "-f", file, "add", "clientid", "evil", "-for", "1h", "-reason", "test").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	backend := mqtttest.Mosquitto(t, "")
	for round := range 2 {
		g := startGate(t, backend, "MQTTGATE_BANS_FILE="+file)
		for v, want := range map[mqttwire.Version]string{mqttwire.V311: "20020005", mqttwire.V5: "2003008a00"} {
			_, ack, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte("evil")})
			if err != nil {
				t.Fatal(err)
			}
			if got := hexOf(ack.Raw); got != want {
				t.Fatalf("round %d v%d: CONNACK %s, want %s", round, v, got, want)
			}
		}
		if _, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("good")}); err != nil || ack.Body[1] != 0 {
			t.Fatalf("round %d: an unbanned client refused: %x %v", round, ack.Raw, err)
		}
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		mqtttest.WaitFor(t, "gate stopped", func() bool { return strings.Contains(g.logs.String(), `"message":"stopped"`) })
	}
	out, err := exec.Command(binary, "bans", "-f", file, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "clientid  evil") {
		t.Fatalf("bans list: %v\n%s", err, out)
	}
}

func hexOf(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, h[c>>4], h[c&15])
	}
	return string(out)
}

// A client id that disconnects more than the threshold within the window
// is banned, in the bans file, and refused.
func TestFlappingClientBanned(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bans.json")
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_BANS_FILE="+file, "MQTTGATE_FLAPPING_MAX_DISCONNECTS=3",
		"MQTTGATE_FLAPPING_WINDOW=1m", "MQTTGATE_FLAPPING_BAN=5m")
	for i := range 4 {
		c, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("flappy")})
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("connect %d: %x %v", i+1, ack.Raw, err)
		}
		c.Send([]byte{0xe0, 0}) // DISCONNECT
		mqtttest.WaitFor(t, "close logged", func() bool { return strings.Count(g.logs.String(), `"event":"close"`) >= i+1 })
	}
	mqtttest.WaitFor(t, "flapping ban", func() bool { return strings.Contains(g.logs.String(), `"event":"flapping"`) })
	if _, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("flappy")}); err != nil || ack.Body[1] != 0x8a {
		t.Fatalf("after flapping: %x %v, want CONNACK 0x8A", ack.Raw, err)
	}
	raw, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(raw), `"value": "flappy"`) || !strings.Contains(string(raw), "flapping") {
		t.Fatalf("bans file: %v\n%s", err, raw)
	}
}

// A client silent for 1.5 times its keepalive is closed (v5 0x8D); a
// client asking for no keepalive gets the maximum.
func TestKeepAliveEnforced(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_MAX_KEEPALIVE=1s")
	c, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("silent"), KeepAlive: 0})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, ok := connackProps(t, ack).Lookup(mqttwire.PropServerKeepAlive); !ok || n != 1 {
		t.Fatalf("Server Keep Alive %d %v, want 1", n, ok)
	}
	start := time.Now()
	if p := c.Next(); p.Type != mqttwire.DISCONNECT || p.Body[0] != 0x8d {
		t.Fatalf("%s %x, want DISCONNECT 0x8D", p.Type, p.Raw)
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", d)
	}
}
