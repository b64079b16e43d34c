package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// These tests drive the built binary from outside, as a user would, with
// the real mosquitto broker and clients, openssl and haproxy.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqttgate-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mqttgate")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building mqttgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type gate struct {
	addr string
	cmd  *exec.Cmd
	logs *mqtttest.SyncBuffer
	pki  *devpki.Files
}

// clientTLS is what a client of the gate trusts: its test CA.
func (g *gate) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(g.pki.Authority.Root)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// clientCertTLS is clientTLS presenting the named client certificate of
// the gate's PKI.
func (g *gate) clientCertTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(g.pki.Clients[name][0], g.pki.Clients[name][1])
	if err != nil {
		t.Fatal(err)
	}
	cfg := g.clientTLS()
	cfg.Certificates = []tls.Certificate{pair}
	return cfg
}

// waitLog waits for s in the proxy's log: a line the proxy wrote before
// what the test saw may still be on its way through the log pipe.
func (g *gate) waitLog(t *testing.T, s string) {
	t.Helper()
	mqtttest.WaitFor(t, "log line with "+s, func() bool { return strings.Contains(g.logs.String(), s) })
}

// startGate runs the binary with a fresh PKI in front of backend.
func startGate(t *testing.T, backend string, env ...string) *gate {
	t.Helper()
	pki, err := devpki.Init(t.TempDir(), "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	return startGateWith(t, pki, backend, env...)
}

// startGateWith runs the binary with pki's files; later env entries win.
func startGateWith(t *testing.T, pki *devpki.Files, backend string, env ...string) *gate {
	t.Helper()
	addr := mqtttest.FreeAddr(t)
	cmd := exec.Command(binary)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"),
		"MQTTGATE_BACKEND=" + backend, "MQTTGATE_LISTEN_TLS=" + addr,
		"MQTTGATE_TLS_CERT=" + pki.ServerCert, "MQTTGATE_TLS_KEY=" + pki.ServerKey,
		"MQTTGATE_TLS_CLIENT_CA=" + pki.CA, "MQTTGATE_LOG_LEVEL=debug",
		"MQTTGATE_ALLOW_ANONYMOUS=true", "MQTTGATE_ACL_NO_MATCH=allow"}, env...) // tests about authentication and ACLs say otherwise
	logs := mqtttest.Start(t, "mqttgate", cmd)
	mqtttest.WaitFor(t, "mqttgate listening", func() bool { return strings.Contains(logs.String(), "TLS listener ready") })
	return &gate{addr: addr, cmd: cmd, logs: logs, pki: pki}
}

func (g *gate) port() string { _, p, _ := net.SplitHostPort(g.addr); return p }

// tlsArgs are the mosquitto client options to reach the proxy, with the
// named client certificate ("" for none).
func (g *gate) tlsArgs(cert string) []string {
	a := []string{"-h", "localhost", "-p", g.port(), "--cafile", g.pki.CA}
	if cert != "" {
		a = append(a, "--cert", g.pki.Clients[cert][0], "--key", g.pki.Clients[cert][1])
	}
	return a
}

// sub starts mosquitto_sub, waits until the broker has acknowledged the
// subscription (the client's own debug output says so), and returns the
// messages it prints and the process.
func sub(t *testing.T, args ...string) (<-chan string, *exec.Cmd) {
	t.Helper()
	bin := mqtttest.Need(t, "mosquitto_sub")
	// Line-buffered, or the debug lines sit in stdio's buffer.
	cmd := exec.Command(mqtttest.Need(t, "stdbuf"), append([]string{"-oL", bin}, append(args, "-v", "-d")...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines, subscribed := make(chan string, 100), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch l := sc.Text(); {
			case strings.HasSuffix(l, "received SUBACK"):
				close(subscribed)
			case strings.HasPrefix(l, "Client ") || strings.HasPrefix(l, "Subscribed (mid"):
			default:
				lines <- l
			}
		}
		close(lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatalf("mosquitto_sub %v: no SUBACK", args)
	}
	return lines, cmd
}

func pub(t *testing.T, args ...string) error {
	t.Helper()
	bin := mqtttest.Need(t, "mosquitto_pub")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l := <-lines:
		if l != want {
			t.Fatalf("subscriber got %q, want %q", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subscriber got nothing, want %q", want)
	}
}

func TestMosquittoClientsThroughProxy(t *testing.T) {
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		for _, qos := range []string{"0", "1", "2"} {
			id := "sub-" + v + "-" + qos
			lines, _ := sub(t, append(g.tlsArgs(""), "-V", v, "-q", qos, "-i", id, "-t", "rt/"+v+"/#")...)
			if err := pub(t, append(g.tlsArgs(""), "-V", v, "-q", qos, "-t", "rt/"+v+"/q"+qos, "-m", "hello "+qos)...); err != nil {
				t.Fatal(err)
			}
			expectLine(t, lines, "rt/"+v+"/q"+qos+" hello "+qos)
		}
		// Retained: published first, delivered to a later subscriber.
		if err := pub(t, append(g.tlsArgs(""), "-V", v, "-q", "1", "-r", "-t", "retained/"+v, "-m", "kept")...); err != nil {
			t.Fatal(err)
		}
		retained, _ := sub(t, append(g.tlsArgs(""), "-V", v, "-t", "retained/"+v)...)
		expectLine(t, retained, "retained/"+v+" kept")
	}

	// Will: a client that vanishes without DISCONNECT has its will published.
	wills, _ := sub(t, append(g.tlsArgs(""), "-i", "will-watcher", "-t", "wills/#")...)
	_, dying := sub(t, append(g.tlsArgs(""), "-i", "dying", "-V", "mqttv5", "-t", "nothing",
		"--will-topic", "wills/dying", "--will-payload", "gone", "--will-qos", "1")...)
	_ = dying.Process.Signal(syscall.SIGKILL) // no DISCONNECT: the will must fire
	expectLine(t, wills, "wills/dying gone")
}

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := mqtttest.Need(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOpenSSLProtocolAndCipherPolicy(t *testing.T) {
	g := startGate(t, mqtttest.FreeAddr(t))
	base := []string{"s_client", "-connect", g.addr, "-servername", "localhost", "-CAfile", g.pki.CA}
	refused := map[string][]string{
		"TLS 1.0":        {"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"},
		"TLS 1.1":        {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"},
		"TLS 1.2 CBC":    {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256"},
		"TLS 1.2 no PFS": {"-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"},
	}
	for name, extra := range refused {
		out, err := openssl(t, append(base, extra...)...)
		if err == nil || strings.Contains(out, "Verify return code: 0 (ok)") && regexp.MustCompile(`Cipher is [A-Z]`).MatchString(out) {
			t.Errorf("%s accepted:\n%s", name, out)
		}
		if !strings.Contains(out, "alert") {
			t.Errorf("%s: no alert from the server:\n%s", name, out)
		}
	}
	accepted := map[string][]string{
		"TLS 1.2 ECDHE-ECDSA-AES128-GCM": {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"},
		"TLS 1.2 ECDHE-ECDSA-CHACHA20":   {"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"},
		"TLS 1.3":                        {"-tls1_3"},
	}
	for name, extra := range accepted {
		out, err := openssl(t, append(append(base, "-showcerts"), extra...)...)
		if err != nil || !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("%s refused: %v\n%s", name, err, out)
			continue
		}
		// The full chain: leaf and intermediate.
		if n := strings.Count(out, "-----BEGIN CERTIFICATE-----"); n != 2 {
			t.Errorf("%s: served %d certificates, want leaf and intermediate", name, n)
		}
	}
}

func TestMutualTLSWithMosquittoClients(t *testing.T) {
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_TLS_CLIENT_AUTH=require", "MQTTGATE_AUTHN=cert")
	if err := pub(t, append(g.tlsArgs(""), "-t", "m", "-m", "no cert")...); err == nil {
		t.Error("publish without a client certificate succeeded")
	}
	dir := t.TempDir()
	if err := devpki.SelfSigned("alice", dir+"/self.pem", dir+"/self-key.pem"); err != nil {
		t.Fatal(err)
	}
	args := append(g.tlsArgs(""), "--cert", dir+"/self.pem", "--key", dir+"/self-key.pem", "-t", "m", "-m", "self-signed")
	if err := pub(t, args...); err == nil {
		t.Error("publish with a self-signed certificate succeeded")
	}
	lines, _ := sub(t, append(g.tlsArgs("alice"), "-i", "alice-sub", "-t", "m")...)
	if err := pub(t, append(g.tlsArgs("bob"), "-t", "m", "-m", "signed")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "m signed")
	g.waitLog(t, `"cert_subject":"CN=bob,O=mqttgate dev"`)
}

func servedCN(t *testing.T, g *gate) string {
	t.Helper()
	pem, _ := os.ReadFile(g.pki.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", g.addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestCertificateReloadOnSIGHUP(t *testing.T) {
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker)
	lines, _ := sub(t, append(g.tlsArgs(""), "-i", "steady", "-t", "r/#")...)
	if cn := servedCN(t, g); cn != "localhost" {
		t.Fatalf("served %q", cn)
	}
	// A broken file is reported and the old certificate stays in service.
	good, _ := os.ReadFile(g.pki.ServerCert)
	if err := os.WriteFile(g.pki.ServerCert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, "reload failure logged", func() bool { return strings.Contains(g.logs.String(), "reload_failed") })
	if cn := servedCN(t, g); cn != "localhost" {
		t.Fatalf("after broken reload served %q", cn)
	}
	_ = os.WriteFile(g.pki.ServerCert, good, 0o644)
	if _, err := g.pki.Authority.Issue(devpki.Leaf{CommonName: "rotated", DNSNames: []string{"localhost"}}, g.pki.ServerCert, g.pki.ServerKey); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, "reload logged", func() bool { return strings.Contains(g.logs.String(), `"event":"reloaded"`) })
	if cn := servedCN(t, g); cn != "rotated" {
		t.Fatalf("after reload served %q, want rotated", cn)
	}
	if err := pub(t, append(g.tlsArgs(""), "-t", "r/after", "-m", "still subscribed")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "r/after still subscribed")
}

// startHAProxy runs HAProxy in mode (tcp or http) in front of the
// gate's address gate, connecting from 127.0.0.1, with extra frontend
// lines and server options; it returns the frontend's address once it
// listens.
func startHAProxy(t *testing.T, mode, gate, frontend, server string) string {
	t.Helper()
	haproxy := mqtttest.Need(t, "haproxy")
	front := mqtttest.FreeAddr(t)
	conf := filepath.Join(t.TempDir(), "haproxy.cfg")
	body := fmt.Sprintf(`global
  log stderr format raw local0 warning
defaults
  mode %s
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 60s
frontend front
  bind %s
%s  default_backend gate
backend gate
  server mqttgate %s source 127.0.0.1 %s
`, mode, front, frontend, gate, server)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	mqtttest.Start(t, "haproxy", exec.Command(haproxy, "-db", "-f", conf))
	mqtttest.WaitListening(t, front)
	return front
}

func TestBehindHAProxySendProxyV2(t *testing.T) {
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_PROXY_PROTOCOL=true", "MQTTGATE_PROXY_PROTOCOL_TRUSTED=127.0.0.1")
	front := startHAProxy(t, "tcp", g.addr, "", "send-proxy-v2")
	_, frontPort, _ := net.SplitHostPort(front)

	// mosquitto clients through HAProxy.
	args := func(extra ...string) []string {
		return append([]string{"-h", "localhost", "-p", frontPort, "--cafile", g.pki.CA}, extra...)
	}
	lines, _ := sub(t, args("-i", "via-lb", "-t", "lb")...)
	if err := pub(t, args("-t", "lb", "-m", "through haproxy")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "lb through haproxy")

	// A client on 127.0.0.9 through HAProxy: the proxy logs that address.
	pem, _ := os.ReadFile(g.pki.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9)}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", front, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	connect := []byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 3, 'r', 'e', 'l'}
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	c.Close()
	mqtttest.WaitFor(t, "real address in the log", func() bool {
		return strings.Contains(g.logs.String(), `"client":"127.0.0.9:`)
	})

	// A PROXY header sent straight to the proxy from an untrusted address
	// (127.0.0.2) is refused.
	raw, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, net.TCPAddrFromAddrPort(mustAddrPort(t, g.addr)))
	if err != nil {
		t.Fatal(err)
	}
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(10, 1, 1, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8883})
	if _, err := h.WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("forged header not refused: n=%d err=%v", n, err)
	}
	raw.Close()
	mqtttest.WaitFor(t, "refusal logged", func() bool {
		return strings.Contains(g.logs.String(), `"event":"proxy_header_refused","peer":"127.0.0.2:`)
	})
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDemoCommandsWorkAsPrinted(t *testing.T) {
	mqtttest.Need(t, "mosquitto_pub")
	cmd := exec.Command(binary, "demo")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MQTTGATE_LISTEN_TLS=" + mqtttest.FreeAddr(t)}
	out := mqtttest.Start(t, "mqttgate demo", cmd)
	mqtttest.WaitFor(t, "demo instructions", func() bool { return strings.Contains(out.String(), "Press Ctrl-C") })
	var subCmd, pubCmd, deniedCmd, refusedCmd string
	for _, l := range strings.Split(out.String(), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "mosquitto_sub"):
			subCmd = l
		case strings.HasPrefix(l, "mosquitto_pub") && strings.Contains(l, "other/topic"):
			deniedCmd = l
		case strings.HasPrefix(l, "mosquitto_pub") && strings.Contains(l, "--cert"):
			pubCmd = l
		case strings.HasPrefix(l, "mosquitto_pub"):
			refusedCmd = l
		}
	}
	subProc := exec.Command("sh", "-c", "stdbuf -oL "+subCmd+" -C 1 -d")
	subOut := &mqtttest.SyncBuffer{}
	subProc.Stdout = subOut
	if err := subProc.Start(); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "demo subscriber subscribed", func() bool { return strings.Contains(subOut.String(), "received SUBACK") })
	if o, err := exec.Command("sh", "-c", pubCmd).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", pubCmd, err, o)
	}
	done := make(chan error, 1)
	go func() { done <- subProc.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = subProc.Process.Kill()
		t.Fatal("demo subscriber received nothing")
	}
	if got := subOut.String(); !strings.Contains(got, "\ndemo/hello hello through mqttgate\n") {
		t.Fatalf("demo subscriber printed %q", got)
	}
	if err := exec.Command("sh", "-c", refusedCmd).Run(); err == nil {
		t.Fatal("the printed refused command succeeded")
	}
	// A 3.1.1 client cannot be told; the proxy answers PUBACK and logs.
	if o, err := exec.Command("sh", "-c", deniedCmd).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", deniedCmd, err, o)
	}
	mqtttest.WaitFor(t, "ACL denial logged", func() bool { return strings.Contains(out.String(), "acl_deny") })
	// Ctrl-C stops the demo cleanly and removes the certificates.
	dir := regexp.MustCompile(`certificates are in (\S+)`).FindStringSubmatch(out.String())
	_ = cmd.Process.Signal(os.Interrupt)
	mqtttest.WaitFor(t, "demo stopped", func() bool { return strings.Contains(out.String(), "stopped") })
	if len(dir) == 2 {
		mqtttest.WaitFor(t, "certificates removed", func() bool { _, err := os.Stat(dir[1]); return os.IsNotExist(err) })
	} else {
		t.Error("demo did not say where its certificates are")
	}
}

func TestEncryptedKeyWithPassphraseFile(t *testing.T) {
	pki, err := devpki.Init(t.TempDir(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	enc, pass := filepath.Join(pki.Dir, "enc-key.pem"), filepath.Join(pki.Dir, "passphrase")
	if out, err := openssl(t, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", pki.ServerKey, "-out", enc, "-passout", "pass:open sesame"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := os.WriteFile(pass, []byte("open sesame\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateWith(t, pki, mqtttest.FreeAddr(t), "MQTTGATE_TLS_KEY="+enc, "MQTTGATE_TLS_KEY_PASSPHRASE_FILE="+pass)
	if cn := servedCN(t, g); cn != "localhost" {
		t.Fatalf("served %q", cn)
	}
	if strings.Contains(g.logs.String(), "open sesame") {
		t.Fatal("the passphrase reached the log")
	}
	// Without the passphrase the binary refuses to start, naming the file.
	cmd := exec.Command(binary)
	cmd.Env = []string{"MQTTGATE_TLS_CERT=" + pki.ServerCert, "MQTTGATE_TLS_KEY=" + enc, "MQTTGATE_LISTEN_TLS=" + mqtttest.FreeAddr(t)}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "enc-key.pem") || !strings.Contains(string(out), "no passphrase") {
		t.Fatalf("without passphrase: %v %s", err, out)
	}
}
