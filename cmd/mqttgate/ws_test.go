package main

import (
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// wsGate is a gate with both WebSocket listeners beside its TLS one.
type wsGate struct {
	*gate
	wss, ws string // host:port
}

func startWSGate(t *testing.T, backend string, env ...string) *wsGate {
	t.Helper()
	wss, wsAddr := mqtttest.FreeAddr(t), mqtttest.FreeAddr(t)
	g := startGate(t, backend, append([]string{"MQTTGATE_LISTEN_WSS=" + wss, "MQTTGATE_LISTEN_WS=" + wsAddr}, env...)...)
	mqtttest.WaitListening(t, wss)
	mqtttest.WaitListening(t, wsAddr)
	return &wsGate{gate: g, wss: wss, ws: wsAddr}
}

// wssURL is the wss URL of the gate with the host the certificate names.
func (g *wsGate) wssURL(path string) string {
	_, port, _ := strings.Cut(g.wss, ":")
	return "wss://localhost:" + port + path
}

// wsClient opens a WebSocket to the gate (wss unless plain) and sends
// CONNECT c, returning the raw MQTT client and the CONNACK.
func wsClient(t *testing.T, g *wsGate, plain bool, header http.Header, v mqttwire.Version, c *mqttwire.Connect) (*mqtttest.RawClient, mqttwire.Packet) {
	t.Helper()
	url, tc := g.wssURL("/mqtt"), g.clientTLS()
	if plain {
		url, tc = "ws://"+g.ws+"/mqtt", nil
	}
	conn, err := mqtttest.DialWS(url, tc, "mqtt", header)
	if err != nil {
		t.Fatalf("dialling %s: %v", url, err)
	}
	return mqtttest.NewRawClient(t, conn, v, c)
}

// Issue 15: MQTT.js over wss and ws, protocol 4 and 5, through the
// pipeline: a denied subscription gets its failure code, a denied publish
// PUBACK 0x87 (v5), and a message round trips.
func TestMQTTjsOverWebSocket(t *testing.T) {
	pw := passwordFile(t, "alice")
	aclFile := writeFile(t, "acl", "user alice\ntopic readwrite ws/ok/#\n")
	g := startWSGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw,
		"MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny")
	dir := npmPackages(t, filepath.Join("..", "..", "testdata", "clients", "mqttjs"), "mqtt")
	for _, c := range []struct {
		url, ca, ver string
		want         []string
	}{
		{g.wssURL("/mqtt"), g.pki.CA, "5", []string{"granted 1 135", "denied-publish 135", "got ws/ok/5s over-ws"}},
		{g.wssURL("/mqtt"), g.pki.CA, "4", []string{"granted 1 128", "denied-publish acked", "got ws/ok/4s over-ws"}},
		{"ws://" + g.ws + "/mqtt", "-", "5", []string{"granted 1 135", "denied-publish 135", "got ws/ok/5p over-ws"}},
		{"ws://" + g.ws + "/mqtt", "-", "4", []string{"granted 1 128", "denied-publish acked", "got ws/ok/4p over-ws"}},
	} {
		topic := "ws/ok/" + c.ver + map[bool]string{true: "s", false: "p"}[strings.HasPrefix(c.url, "wss")]
		cmd := exec.Command(mqtttest.Need(t, "node"), "wsacl.mjs", c.url, c.ver, c.ca, "alice", "alice-pw", topic, "ws/secret/x")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if got := strings.Split(strings.TrimSpace(string(out)), "\n"); err != nil || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s v%s: %v\n%s\nwant %q", c.url, c.ver, err, out, c.want)
		}
	}
	g.waitLog(t, `"listener":"wss"`)
	g.waitLog(t, `"listener":"ws"`)
}

// The upgrade: a missing subprotocol, another path and a browser Origin
// not listed are refused with an HTTP error, before any MQTT; a listed
// Origin is served; malformed frames close with their code.
func TestWebSocketUpgradeAndFrames(t *testing.T) {
	g := startWSGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_WS_ORIGINS=https://app.example.com,https://*.example.net")
	refused := func(url, proto string, h http.Header, status int) {
		t.Helper()
		_, err := mqtttest.DialWS(url, g.clientTLS(), proto, h)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != status {
			t.Errorf("%s (%q, %v): %v, want HTTP %d", url, proto, h, err, status)
		}
	}
	refused(g.wssURL("/mqtt"), "", nil, 400)
	refused(g.wssURL("/other"), "mqtt", nil, 404)
	refused(g.wssURL("/mqtt"), "mqtt", http.Header{"Origin": {"https://evil.example"}}, 403)
	refused(g.wssURL("/mqtt"), "mqtt", http.Header{"Origin": {"https://" + strings.Replace(g.wss, "127.0.0.1", "localhost", 1)}}, 403) // its own host, not listed
	refused(g.wssURL("/mqtt"), "mqtt", http.Header{"Origin": {"https://app.example.com.evil.example"}}, 403)
	c, ack := wsClient(t, g, false, http.Header{"Origin": {"https://a.example.net"}}, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("origin-ok")})
	if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("a listed Origin: %x", ack.Raw)
	}
	c.Send([]byte{0xc0, 0}) // PINGREQ in a frame of its own
	if p := c.Next(); p.Type != mqttwire.PINGRESP {
		t.Errorf("PINGREQ over wss: %x", p.Raw)
	}

	for name, tc := range map[string]struct {
		send func(*mqtttest.WSClient) error
		code ws.StatusCode
	}{
		"text frame": {func(c *mqtttest.WSClient) error { return c.WriteFrame(ws.OpText, true, []byte{0xc0, 0}) }, ws.StatusUnsupportedData},
		"unmasked":   {func(c *mqtttest.WSClient) error { return c.WriteRaw([]byte{0x82, 2, 0xc0, 0}) }, ws.StatusProtocolError},
		"oversized": {func(c *mqtttest.WSClient) error {
			return c.WriteRaw([]byte{0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 2, 3, 4}) // 256 MiB announced
		}, ws.StatusMessageTooBig},
	} {
		conn, err := mqtttest.DialWS(g.wssURL("/mqtt"), g.clientTLS(), "mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.send(conn); err != nil {
			t.Fatal(err)
		}
		op, body := conn.NextFrame(t)
		if op != ws.OpClose || len(body) < 2 || ws.StatusCode(int(body[0])<<8|int(body[1])) != tc.code {
			t.Errorf("%s: got %v %x, want close %d", name, op, body, tc.code)
		}
		conn.Close()
	}

	// A packet split over frames, a ping answered, then a packet over the
	// limit spread over frames: the protocol's answer, then a close.
	conn, err := mqtttest.DialWS(g.wssURL("/mqtt"), g.clientTLS(), "mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte("frag"), KeepAlive: 30, CleanStart: true})
	_ = conn.WriteFrame(ws.OpBinary, false, connect[:3])
	_ = conn.WriteFrame(ws.OpPing, true, []byte("hi"))
	_ = conn.WriteFrame(ws.OpContinuation, true, connect[3:])
	if op, body := conn.NextFrame(t); op != ws.OpPong || string(body) != "hi" {
		t.Errorf("ping: %v %q", op, body)
	}
	if op, body := conn.NextFrame(t); op != ws.OpBinary || len(body) < 4 || body[0] != 0x20 || body[3] != 0 {
		t.Fatalf("CONNACK over split frames: %v %x", op, body)
	}
	big := mqtttest.PublishPacket(mqttwire.V5, "ws/big", 0, 0, nil, strings.Repeat("x", 2<<20)) // over the 1 MiB default
	_ = conn.WriteFrame(ws.OpBinary, false, big[:10])
	_ = conn.WriteFrame(ws.OpContinuation, true, big[10:64])
	if op, body := conn.NextFrame(t); op != ws.OpBinary || len(body) < 3 || body[0] != 0xe0 || body[2] != byte(mqttwire.PacketTooLarge) {
		t.Errorf("an oversized packet over frames: %v %x, want DISCONNECT 0x95", op, body)
	}
	conn.Close()

	// Each violation closed its own connection only: the first client,
	// connected all along, is still served.
	c.Send([]byte{0xc0, 0})
	if p := c.Next(); p.Type != mqttwire.PINGRESP {
		t.Errorf("the bystander after the violations: %x", p.Raw)
	}
}

// A JWT from the upgrade: the Authorization header always, the cookie
// only when its name is configured.
func TestWebSocketBearerTokens(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	token := rs.Token(map[string]any{"sub": "browser1", "exp": time.Now().Add(time.Hour).Unix()}, nil)
	for _, cookie := range []bool{true, false} {
		env := []string{"MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS=" + rs.Pub, "MQTTGATE_WS_ORIGINS=https://app.example.com"}
		if cookie {
			env = append(env, "MQTTGATE_WS_TOKEN_COOKIE=mqtt_token")
		}
		g := startWSGate(t, mqtttest.Mosquitto(t, ""), env...)
		_, ack := wsClient(t, g, false, http.Header{"Authorization": {"Bearer " + token}}, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("b1")})
		if ack.Body[1] != 0 {
			t.Errorf("cookie %v: a bearer token was refused: %x", cookie, ack.Raw)
		}
		_, ack = wsClient(t, g, true, http.Header{"Cookie": {"theme=dark; mqtt_token=" + token}, "Origin": {"https://app.example.com"}},
			mqttwire.V311, &mqttwire.Connect{ClientID: []byte("b2")})
		if admitted := ack.Body[1] == 0; admitted != cookie {
			t.Errorf("cookie configured %v: the cookie's token admitted %v (%x)", cookie, admitted, ack.Raw)
		}
		_, ack = wsClient(t, g, false, nil, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("b3")})
		if ack.Body[1] == 0 {
			t.Errorf("no token at all was admitted")
		}
	}
}

// An HTTP balancer in front of the WebSocket listener (HAProxy in mode
// http, setting X-Forwarded-For), trusted by MQTTGATE_WS_TRUSTED_PROXIES
// alone (no PROXY protocol): the client it names is who the access rules
// judge, whom the per-address cap counts and whom the log names, not the
// balancer's one address. A client's own X-Forwarded-For, sent directly,
// names nobody.
func TestHTTPBalancerNamesTheClient(t *testing.T) {
	g := startWSGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_WS_TRUSTED_PROXIES=127.0.0.1/32",
		"MQTTGATE_ACCESS_RULES=deny 127.0.0.66, allow all", "MQTTGATE_MAX_CONNECTIONS_PER_IP=1")
	front := startHAProxy(t, "http", g.ws, "  http-request set-header X-Forwarded-For %[src]\n", "")

	// dial connects from src through HAProxy (or, direct, to the gate) and
	// sends a CONNECT; it reports the CONNACK's code, or false when the
	// upgrade or the session was refused.
	dial := func(src string, direct bool, header http.Header, id string) (*mqtttest.WSClient, bool) {
		t.Helper()
		url := "ws://" + front + "/mqtt"
		if direct {
			url = "ws://" + g.ws + "/mqtt"
		}
		conn, err := mqtttest.DialWSFrom(net.ParseIP(src), url, nil, "mqtt", header)
		if err != nil {
			return nil, false
		}
		t.Cleanup(func() { conn.Close() })
		connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte(id), KeepAlive: 30, CleanStart: true})
		if _, err := conn.Write(connect); err != nil {
			return conn, false
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := mqttwire.NewReader(conn, 256, 1<<16).Next()
		return conn, err == nil && p.Type == mqttwire.CONNACK && p.Body[1] == 0
	}
	if _, ok := dial("127.0.0.5", false, nil, "first"); !ok {
		t.Fatalf("a client through the balancer was refused:\n%s", g.logs.String())
	}
	g.waitLog(t, `"client":"127.0.0.5:`) // the session is the client's, not HAProxy's 127.0.0.1
	if _, ok := dial("127.0.0.6", false, nil, "second"); !ok {
		t.Fatal("another client through the same balancer was refused: the cap counted the balancer")
	}
	if _, ok := dial("127.0.0.5", false, nil, "again"); ok {
		t.Fatal("a second connection from 127.0.0.5 was admitted with MAX_CONNECTIONS_PER_IP=1")
	}
	if _, ok := dial("127.0.0.66", false, nil, "denied"); ok {
		t.Fatal("a client the access rules deny was admitted through the balancer")
	}
	// Directly from 127.0.0.7, naming 127.0.0.8: not a trusted peer, so
	// the header names nobody and the session is 127.0.0.7's.
	if _, ok := dial("127.0.0.7", true, http.Header{"X-Forwarded-For": {"127.0.0.8"}}, "direct"); !ok {
		t.Fatal("a direct client was refused")
	}
	g.waitLog(t, `"client":"127.0.0.7:`)
	if strings.Contains(g.logs.String(), `"client":"127.0.0.8:`) {
		t.Fatal("a direct client's own X-Forwarded-For was believed")
	}
}
