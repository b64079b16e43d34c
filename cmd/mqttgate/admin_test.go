package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	code, body, err := httpTry(u)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// httpTry is one GET, within 5 s.
func httpTry(u string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// tryConnack connects a v5 client and returns its CONNACK's reason code,
// -1 when it got none (closed: a live session the ban ends as it loads);
// it never fails the test, for use in a wait.
func tryConnack(g *gate, c *mqttwire.Connect) int {
	conn, err := tls.Dial("tcp", g.addr, g.clientTLS())
	if err != nil {
		return -1
	}
	defer conn.Close()
	c.Version, c.KeepAlive, c.CleanStart = mqttwire.V5, 30, true
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(mqttwire.AppendConnect(nil, c)); err != nil {
		return -1
	}
	p, err := mqttwire.NewReader(conn, 256, 1<<16).Next()
	if err != nil || p.Type != mqttwire.CONNACK || len(p.Body) < 2 {
		return -1
	}
	return int(p.Body[1])
}

// Issue 14, the metrics: a real Prometheus server scrapes the admin
// listener; after scripted traffic (a refused password, a denied
// publish, a failed TLS handshake) each series is read back through
// Prometheus's query API, and promtool finds nothing to fault in the
// exposition.
func TestPrometheusScrapesTheAdminListener(t *testing.T) {
	promBin, promtool := mqtttest.Need(t, "prometheus"), mqtttest.Need(t, "promtool")
	pw := passwordFile(t, "alice")
	aclFile := writeFile(t, "acl", "user alice\ntopic write allowed/#\n")
	adminAddr := mqtttest.FreeAddr(t)
	bansFile := filepath.Join(t.TempDir(), "bans.json")
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_AUTHN=password",
		"MQTTGATE_PASSWORD_FILE="+pw, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny",
		"MQTTGATE_READY_CHECK_INTERVAL=200ms", "MQTTGATE_BANS_FILE="+bansFile, "MQTTGATE_FILE_POLL_INTERVAL=100ms",
		"MQTTGATE_FLAPPING_MAX_DISCONNECTS=0") // the wait for the ban reconnects quickly
	base := "http://" + adminAddr
	if code, body := httpGet(t, base+"/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	mqtttest.WaitFor(t, "/readyz 200", func() bool { code, _ := httpGet(t, base+"/readyz"); return code == 200 })

	// The traffic: a wrong password, a publish the ACL denies, a TLS
	// handshake that fails.
	if err := pub(t, append(g.tlsArgs(""), "-u", "alice", "-P", "wrong", "-t", "allowed/x", "-m", "m")...); err == nil {
		t.Fatal("a wrong password was admitted")
	}
	c, _, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("a1"), UsernameFlag: true, Username: []byte("alice"), PasswordFlag: true, Password: []byte("alice-pw")})
	if err != nil {
		t.Fatal(err)
	}
	c.Send(mqtttest.PublishPacket(mqttwire.V5, "denied/x", 1, 1, nil, "m"))
	if p := c.Next(); p.Type != mqttwire.PUBACK || len(p.Body) < 3 || p.Body[2] != byte(mqttwire.NotAuthorized) {
		t.Fatalf("denied publish: %s %x", p.Type, p.Raw)
	}
	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_, _ = io.ReadAll(raw)
	raw.Close()

	// A ban, from the command, and the banned client refused.
	if out, err := exec.Command(binary, "bans", "-f", bansFile, "add", "clientid", "stolen", "-for", "1h").CombinedOutput(); err != nil {
		t.Fatalf("bans add: %v %s", err, out)
	}
	mqtttest.WaitFor(t, "the ban enforced", func() bool {
		return tryConnack(g, &mqttwire.Connect{ClientID: []byte("stolen"), UsernameFlag: true, Username: []byte("alice"),
			PasswordFlag: true, Password: []byte("alice-pw")}) == int(mqttwire.Banned)
	})

	dir := t.TempDir()
	promAddr := mqtttest.FreeAddr(t)
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mqttgate\n    static_configs:\n      - targets: ['%s']\n", adminAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	mqtttest.Start(t, "prometheus", exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr))
	mqtttest.WaitFor(t, "Prometheus ready", func() bool { code, _, _ := httpTry("http://" + promAddr + "/-/ready"); return code == 200 })
	query := func(q string) float64 {
		code, body, err := httpTry("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil || code != 200 {
			return -1
		}
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(body), &r) != nil || len(r.Data.Result) == 0 {
			return -1
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return -1
		}
		return v
	}
	for _, q := range []string{
		`sum(mqttgate_auth_outcomes_total{cause="bad_password"})`,
		`mqttgate_connections_refused_total{stage="handshake"}`,
		`mqttgate_acl_denials_total`,
		`mqttgate_decisions_total{stage="topics",verdict="refuse",dry_run="false"}`,
		`mqttgate_connections_open{listener="tls",protocol="5.0"}`,
		`mqttgate_certificate_expiry_seconds{certificate="server"} > 3600`,
		`mqttgate_certificate_expiry_seconds{certificate="intermediate"} > 3600`,
		`mqttgate_certificate_expiry_seconds{certificate="client_ca"} > 3600`,
		`mqttgate_packets_total{direction="from_client",type="PUBLISH"}`,
		`mqttgate_packet_bytes_total{direction="from_broker",type="CONNACK"} >= 4`,
		`mqttgate_tls_handshakes_total{result="failed"}`,
		`mqttgate_tls_handshakes_total{version="TLS 1.3",result="ok"}`,
		`mqttgate_tls_handshake_duration_seconds_count`,
		`mqttgate_broker_dial_duration_seconds_count{result="ok",backend!=""}`,
		`mqttgate_bans{kind="clientid"}`,
		`mqttgate_reloads_total{file="MQTTGATE_BANS_FILE",result="ok"}`,
		`mqttgate_limit_hits_total{limit="banned"}`,
	} {
		mqtttest.WaitFor(t, "Prometheus reads "+q, func() bool { return query(q) >= 1 })
	}

	_, exposition := httpGet(t, base+"/metrics")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(exposition)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, secret := range []string{"alice-pw", "wrong", "a1", "denied/x", "stolen"} {
		if strings.Contains(exposition, secret) {
			t.Errorf("the exposition holds %q: no label holds a client id, user name, topic or secret", secret)
		}
	}
}

// /readyz follows the broker: 503 from the first failed readiness dial
// (with the reason), 200 again from the first good one; and 503 once a
// drain has begun. (That it comes a drain delay before the listeners
// close waits for the drain of issue 14.)
func TestReadyzFollowsTheBrokerAndTheDrain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := ln.Addr().String()
	accept := func(ln net.Listener) { // a broker that accepts every CONNECT and keeps the connection
		mqtttest.Serve(t, ln, func(c net.Conn) {
			defer c.Close()
			r := mqttwire.NewReader(c, 256, 1<<16)
			for {
				p, err := r.Next()
				if err != nil {
					return
				}
				if p.Type == mqttwire.CONNECT {
					_, _ = c.Write([]byte{0x20, 2, 0, 0})
				}
			}
		})
	}
	accept(ln)
	adminAddr := mqtttest.FreeAddr(t)
	g := startGate(t, brokerAddr, "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_READY_CHECK_INTERVAL=100ms", "MQTTGATE_DRAIN_TIMEOUT=3s")
	ready := "http://" + adminAddr + "/readyz"
	mqtttest.WaitFor(t, "ready", func() bool { code, _ := httpGet(t, ready); return code == 200 })
	ln.Close()
	mqtttest.WaitFor(t, "503 with the broker down", func() bool {
		code, body := httpGet(t, ready)
		return code == 503 && strings.Contains(body, "broker unreachable")
	})
	ln2, err := net.Listen("tcp", brokerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	accept(ln2)
	mqtttest.WaitFor(t, "200 with the broker back", func() bool { code, _ := httpGet(t, ready); return code == 200 })

	// A 3.1.1 client that stays connected keeps the drain going (it is
	// left to leave, up to the drain timeout): meanwhile the probe says 503.
	if _, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("stays")}); err != nil || ack.Type != mqttwire.CONNACK {
		t.Fatalf("client: %v %x", err, ack.Raw)
	}
	if err := g.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "503 once the drain begins", func() bool {
		code, body := httpGet(t, ready)
		return code == 503 && strings.Contains(body, "draining")
	})
}

// With MQTTGATE_ADMIN_TLS_CERT/_KEY the admin plane is HTTPS (TLS 1.3),
// and may then listen beyond loopback.
func TestAdminOverHTTPS(t *testing.T) {
	pki, err := devpki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := mqtttest.FreeAddr(t)
	g := startGateWith(t, pki, mqtttest.Mosquitto(t, ""), "MQTTGATE_ADMIN_LISTEN="+adminAddr,
		"MQTTGATE_ADMIN_TLS_CERT="+pki.ServerCert, "MQTTGATE_ADMIN_TLS_KEY="+pki.ServerKey)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: g.clientTLS()}}
	_, port, _ := net.SplitHostPort(adminAddr)
	resp, err := c.Get("https://localhost:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("HTTPS /healthz: %d %+v", resp.StatusCode, resp.TLS)
	}
	if code, _, err := httpTry("http://" + adminAddr + "/healthz"); err == nil && code == 200 {
		t.Fatal("plain HTTP answered on the HTTPS admin listener")
	}
}

// The admin listener's own certificate is reloaded when its files change,
// and with MQTTGATE_ADMIN_TLS_CLIENT_CA a client without a certificate
// from that CA is refused at the handshake.
func TestAdminHTTPSReloadAndClientCertificates(t *testing.T) {
	pki, err := devpki.Init(t.TempDir(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")
	if _, err := pki.Authority.Issue(devpki.Leaf{CommonName: "admin-one", DNSNames: []string{"localhost"}}, cert, key); err != nil {
		t.Fatal(err)
	}
	adminAddr := mqtttest.FreeAddr(t)
	g := startGateWith(t, pki, mqtttest.Mosquitto(t, ""), "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_ADMIN_TLS_CERT="+cert,
		"MQTTGATE_ADMIN_TLS_KEY="+key, "MQTTGATE_ADMIN_TLS_CLIENT_CA="+pki.CA, "MQTTGATE_FILE_POLL_INTERVAL=100ms")
	_, port, _ := net.SplitHostPort(adminAddr)
	served := func(tc *tls.Config) (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get("https://localhost:" + port + "/healthz")
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
	}
	if _, err := served(g.clientTLS()); err == nil {
		t.Fatal("an admin client without a certificate was served")
	}
	ops := g.clientCertTLS(t, "ops")
	if cn, err := served(ops); err != nil || cn != "admin-one" {
		t.Fatalf("with a client certificate: %q %v", cn, err)
	}
	if _, err := pki.Authority.Issue(devpki.Leaf{CommonName: "admin-two", DNSNames: []string{"localhost"}}, cert, key); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "the new admin certificate served", func() bool {
		ops.ClientSessionCache = nil // a fresh handshake each time
		cn, _ := served(ops)
		return cn == "admin-two"
	})
}

// Issue 14, the drain: 1,000 connections (v5 and 3.1.1) are ended spread
// over the drain timeout after the drain delay; v5 clients, a paho.golang
// one among them, are told 0x9C with the Server Reference, 3.1.1 ones are
// closed; every QoS 1 message the broker acknowledged to a publisher
// before the drain reaches the subscriber, through the proxy before it
// went and from its session on the broker after.
func TestDrainSpreadsTheDisconnects(t *testing.T) {
	adminAddr := mqtttest.FreeAddr(t)
	backend := mqtttest.Mosquitto(t, "max_queued_messages 0\n")
	g := startGate(t, backend, "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_READY_CHECK_INTERVAL=100ms",
		"MQTTGATE_DRAIN_DELAY=1s", "MQTTGATE_DRAIN_TIMEOUT=3s", "MQTTGATE_DRAIN_SERVER_REFERENCE=other.example:8883",
		"MQTTGATE_MAX_CONNECTIONS_PER_IP=0", "MQTTGATE_CONNECT_RATE_PER_IP=0", "MQTTGATE_CONNECT_RATE=0")
	ready := "http://" + adminAddr + "/readyz"
	mqtttest.WaitFor(t, "ready", func() bool { code, _, _ := httpTry(ready); return code == 200 })

	// The QoS 1 flow: a subscriber whose session the broker keeps, and a
	// publisher that goes on until the drain ends it.
	expiry := mqttwire.AppendProperty(nil, mqttwire.PropSessionExpiry, 300, nil)
	subc, _, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("drain-sub"), CleanStart: true, Properties: expiry})
	if err != nil {
		t.Fatal(err)
	}
	subc.Send(mqttwire.AppendSubscribe(nil, mqttwire.V5, 1, nil, []mqttwire.Filter{{Topic: []byte("drain/q"), Options: 1}}))
	if p := subc.Next(); p.Type != mqttwire.SUBACK {
		t.Fatalf("SUBACK: %x", p.Raw)
	}
	received := map[string]bool{}
	subDone := make(chan struct{})
	go func() { // the subscriber's reads, until the drain ends it
		defer close(subDone)
		for {
			p, open := subc.NextOrClosedWithin(30 * time.Second)
			if !open || p.Type != mqttwire.PUBLISH {
				return
			}
			m, err := mqttwire.ParsePublish(p, mqttwire.V5)
			if err != nil {
				return
			}
			received[string(m.Payload)] = true
			_, _ = subc.Conn().Write([]byte{0x40, 2, byte(m.PacketID >> 8), byte(m.PacketID)})
		}
	}()
	pubc, _, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("drain-pub"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	pubDone := make(chan struct{})
	pubStarted := make(chan struct{})
	go func() { // publish one at a time; what the broker acknowledged counts
		defer close(pubDone)
		for i := 1; i < 60000; i++ {
			msg := fmt.Sprintf("m%d", i)
			if _, err := pubc.Conn().Write(mqtttest.PublishPacket(mqttwire.V311, "drain/q", 1, uint16(i%65000+1), nil, msg)); err != nil {
				return
			}
			p, open := pubc.NextOrClosedWithin(10 * time.Second)
			if !open || p.Type != mqttwire.PUBACK {
				return
			}
			acked = append(acked, msg)
			if i == 10 {
				close(pubStarted)
			}
		}
	}()
	<-pubStarted

	const n = 1000
	type ended struct {
		at     time.Time
		v5code int // -1: closed without a DISCONNECT
		ref    string
	}
	ends := make(chan ended, n)
	for i := range n {
		v := mqttwire.V311
		if i%2 == 0 {
			v = mqttwire.V5
		}
		c, ack, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte(fmt.Sprintf("drain-%d", i))})
		if err != nil || ack.Type != mqttwire.CONNACK {
			t.Fatalf("client %d: %v", i, err)
		}
		go func() {
			p, open := c.NextOrClosedWithin(30 * time.Second)
			e := ended{at: time.Now(), v5code: -1}
			if open && p.Type == mqttwire.DISCONNECT && len(p.Body) > 0 {
				e.v5code = int(p.Body[0])
				if a, err := mqttwire.ParseAck(p, mqttwire.V5); err == nil {
					_, ref, _ := a.Properties.Lookup(mqttwire.PropServerReference)
					e.ref = string(ref)
				}
			}
			ends <- e
		}()
	}
	pahoTold := make(chan *paho.Disconnect, 1)
	pconn, err := tls.Dial("tcp", g.addr, g.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	pc := paho.NewClient(paho.ClientConfig{ClientID: "drain-paho", Conn: packets.NewThreadSafeConn(pconn),
		OnServerDisconnect: func(d *paho.Disconnect) { pahoTold <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Connect(ctx, &paho.Connect{ClientID: "drain-paho", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "503 at once", func() bool { code, _, _ := httpTry(ready); return code == 503 })
	if time.Since(start) > 900*time.Millisecond {
		t.Fatalf("/readyz took %v to say 503", time.Since(start))
	}
	late, err := tls.Dial("tcp", g.addr, g.clientTLS()) // within the drain delay: still accepting
	if err != nil {
		t.Fatalf("the listener closed before the drain delay: %v", err)
	}
	late.Close()

	var times []time.Duration
	told := map[int]int{}
	for range n {
		select {
		case e := <-ends:
			times = append(times, e.at.Sub(start))
			told[e.v5code]++
			if e.v5code >= 0 && (e.v5code != int(mqttwire.UseAnotherServer) || e.ref != "other.example:8883") {
				t.Fatalf("v5 client told %#x %q, want 0x9c other.example:8883", e.v5code, e.ref)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d connections ended", len(times), n)
		}
	}
	if told[-1] != n/2 || told[int(mqttwire.UseAnotherServer)] != n/2 {
		t.Errorf("ends by DISCONNECT code (-1: closed): %v, want %d of each", told, n/2)
	}
	select {
	case d := <-pahoTold:
		if d.ReasonCode != byte(mqttwire.UseAnotherServer) || d.Properties == nil || d.Properties.ServerReference != "other.example:8883" {
			t.Errorf("paho.golang was told %#x %+v", d.ReasonCode, d.Properties)
		}
	case <-time.After(10 * time.Second):
		t.Error("paho.golang was told nothing")
	}
	slices.Sort(times)
	// The listeners close after the 1 s delay; the ends then come over
	// 3 s at an even rate: each second of the window holds about a third.
	first, last := times[0], times[n-1]
	if first < 900*time.Millisecond {
		t.Errorf("the first disconnect came %v after SIGTERM, before the drain delay", first)
	}
	if last-first < 2*time.Second {
		t.Errorf("%d disconnects within %v: not spread over the 3 s drain timeout", n, last-first)
	}
	for k := 1; k <= 2; k++ {
		mid := first + time.Duration(k)*(last-first)/3
		i, _ := slices.BinarySearch(times, mid)
		if frac := float64(i) / n; frac < float64(k)/3-0.12 || frac > float64(k)/3+0.12 {
			t.Errorf("%.0f%% ended by %v, want about %d%%: not an even rate", 100*frac, mid, 100*k/3)
		}
	}
	t.Logf("disconnects from %v to %v after SIGTERM", first.Round(time.Millisecond), last.Round(time.Millisecond))

	<-pubDone
	<-subDone
	// After the drain the subscriber finds its session on the broker (as
	// it would behind the next proxy) with what it had not received.
	raw, err := net.Dial("tcp", backend)
	if err != nil {
		t.Fatal(err)
	}
	back, ack := mqtttest.NewRawSession(t, raw, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("drain-sub"), Properties: expiry})
	if ack.Type != mqttwire.CONNACK || ack.Body[0]&1 != 1 {
		t.Fatalf("the subscriber's session is gone: %x", ack.Raw)
	}
	for {
		p, open := back.NextOrClosedWithin(time.Second) // bounded: the broker sends the queue at once
		if !open || p.Type != mqttwire.PUBLISH {
			break
		}
		m, err := mqttwire.ParsePublish(p, mqttwire.V5)
		if err != nil {
			t.Fatal(err)
		}
		received[string(m.Payload)] = true
		back.Send([]byte{0x40, 2, byte(m.PacketID >> 8), byte(m.PacketID)})
	}
	missing := 0
	for _, m := range acked {
		if !received[m] {
			missing++
		}
	}
	if len(acked) < 10 || missing > 0 {
		t.Errorf("%d of %d acknowledged QoS 1 messages never delivered", missing, len(acked))
	}
	t.Logf("%d QoS 1 messages acknowledged before the drain, all delivered", len(acked))
}
