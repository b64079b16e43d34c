package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

// Anonymous clients are refused unless MQTTGATE_ALLOW_ANONYMOUS says
// otherwise, with CONNACK "not authorised", before the broker is involved.
func TestAnonymousRefusedByDefault(t *testing.T) {
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false")
	err := pub(t, append(g.tlsArgs(""), "-t", "a", "-m", "anon")...)
	if err == nil || !strings.Contains(err.Error(), "not authori") {
		t.Fatalf("anonymous publish: %v", err)
	}
	if !strings.Contains(g.logs.String(), "every client is refused") {
		t.Error("no start-up warning that nobody can connect")
	}
	g.waitLog(t, `"cause":"anonymous"`)
}

// With mTLS and CN identity the broker sees the certificate's CN as the
// user name, whatever the client put in CONNECT: Mosquitto's own ACL,
// keyed on the user name, lets alice's certificate reach alice's topics and
// keeps bob out of them even when bob claims to be alice.
func TestCertificateCNIsTheUsernameTheBrokerSees(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("user alice\ntopic readwrite private/alice/#\nuser bob\ntopic readwrite private/bob/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.Mosquitto(t, "user root\nacl_file "+acl+"\n") // root: the file is in a private temporary directory
	g := startGate(t, broker, "MQTTGATE_TLS_CLIENT_AUTH=require", "MQTTGATE_AUTHN=cert", "MQTTGATE_CERT_IDENTITY=cn")
	lines, _ := sub(t, append(g.tlsArgs("alice"), "-u", "bob", "-i", "alice-sub", "-t", "private/#", "-q", "1")...)
	// bob claims alice's name; the broker sees bob and drops the publish.
	if err := pub(t, append(g.tlsArgs("bob"), "-u", "alice", "-q", "1", "-t", "private/alice/x", "-m", "forged")...); err != nil {
		t.Fatal(err)
	}
	if err := pub(t, append(g.tlsArgs("alice"), "-u", "root", "-q", "1", "-t", "private/alice/x", "-m", "genuine")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "private/alice/x genuine")
	g.waitLog(t, `"username":"bob"`) // the mapped user name
}

// A password file written by the real mosquitto_passwd works through the
// proxy; a change to the file is picked up; a broken one keeps the users.
func TestPasswordFileFromMosquittoPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	mpw := mqtttest.Need(t, "mosquitto_passwd")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(mpw, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v %s", args, err, out)
		}
	}
	run("-c", "-b", file, "alice", "wonderland")
	run("-H", "sha512", "-b", file, "bob", "builder")
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password",
		"MQTTGATE_PASSWORD_FILE="+file, "MQTTGATE_FILE_POLL_INTERVAL=100ms")
	lines, _ := sub(t, append(g.tlsArgs(""), "-u", "alice", "-P", "wonderland", "-t", "pw/#")...)
	if err := pub(t, append(g.tlsArgs(""), "-u", "bob", "-P", "builder", "-t", "pw/bob", "-m", "hi")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "pw/bob hi")
	for _, c := range [][]string{{"-u", "alice", "-P", "wrong"}, {"-u", "mallory", "-P", "wonderland"}, {}} {
		err := pub(t, append(append(g.tlsArgs(""), c...), "-t", "pw/x", "-m", "no")...)
		if err == nil || !strings.Contains(err.Error(), "Connection Refused") {
			t.Errorf("%v: %v, want refused", c, err)
		}
	}
	for _, cause := range []string{`"cause":"bad_password"`, `"cause":"no_authenticator_accepted"`, `"cause":"anonymous"`} {
		g.waitLog(t, cause)
	}
	if strings.Contains(g.logs.String(), "wonderland") {
		t.Error("a password reached the log")
	}

	// Changed on disk: carol is in, bob is out, without a signal.
	run("-c", "-b", file, "carol", "c")
	mqtttest.WaitFor(t, "password file reload", func() bool { return strings.Contains(g.logs.String(), `"event":"reloaded"`) })
	if err := pub(t, append(g.tlsArgs(""), "-u", "carol", "-P", "c", "-t", "pw/c", "-m", "carol")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "pw/c carol")
	if err := pub(t, append(g.tlsArgs(""), "-u", "bob", "-P", "builder", "-t", "pw/x", "-m", "no")...); err == nil {
		t.Error("removed user still admitted")
	}
	// Broken: carol stays in service; SIGHUP reports it.
	if err := os.WriteFile(file, []byte("carol:plaintext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "failed reload logged", func() bool { return strings.Contains(g.logs.String(), "line 1") })
	if err := pub(t, append(g.tlsArgs(""), "-u", "carol", "-P", "c", "-t", "pw/c", "-m", "still")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "pw/c still")
}

// mqttgate passwd writes what mqttgate and Mosquitto read, mode 0600,
// prompting (here: reading stdin) when no password is given.
func TestPasswdCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	mgp := func(stdin string, args ...string) error {
		cmd := exec.Command(binary, append([]string{"passwd"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := mgp("", "-c", "-b", file, "alice", "a-pass"); err != nil {
		t.Fatal(err)
	}
	if err := mgp("b-pass\n", "-H", "bcrypt", file, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := mgp("", "-H", "sha512", "-b", file, "carol", "c-pass"); err != nil {
		t.Fatal(err)
	}
	if err := mgp("", "-b", file, "alice"); err == nil {
		t.Error("-b without a password accepted")
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), "alice:$7$") || !strings.Contains(string(b), "bob:$2a$") || !strings.Contains(string(b), "carol:$6$") {
		t.Fatalf("file:\n%s", b)
	}
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+file)
	for user, pass := range map[string]string{"alice": "a-pass", "bob": "b-pass", "carol": "c-pass"} {
		if err := pub(t, append(g.tlsArgs(""), "-u", user, "-P", pass, "-t", "x", "-m", "m")...); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
	if err := mgp("", "-D", file, "bob"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), "bob:") {
		t.Error("bob not deleted")
	}
}

// Tokens signed by openssl work through the proxy as passwords; an expired
// one is refused; an admitted client is disconnected (v5: DISCONNECT 0x87)
// when its token expires.
func TestJWTThroughProxy(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	es := mqtttest.NewJWTSigner(t, "ES256")
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt",
		"MQTTGATE_JWT_KEYS="+rs.Pub+","+es.Pub, "MQTTGATE_JWT_AUDIENCE=mqtt", "MQTTGATE_JWT_LEEWAY=0s",
		`MQTTGATE_JWT_CLAIMS={"sub":"${username}"}`)
	claims := func(sub string, exp time.Duration) map[string]any {
		return map[string]any{"sub": sub, "aud": "mqtt", "exp": time.Now().Add(exp).Unix()}
	}
	lines, _ := sub(t, append(g.tlsArgs(""), "-u", "dev1", "-P", rs.Token(claims("dev1", time.Hour), nil), "-t", "jwt/#")...)
	if err := pub(t, append(g.tlsArgs(""), "-u", "dev2", "-P", es.Token(claims("dev2", time.Hour), nil), "-t", "jwt/es", "-m", "es256")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "jwt/es es256")
	for name, tok := range map[string]string{
		"expired":       rs.Token(claims("dev2", -time.Minute), nil),
		"other subject": rs.Token(claims("dev1", time.Hour), nil),
	} {
		if err := pub(t, append(g.tlsArgs(""), "-u", "dev2", "-P", tok, "-t", "jwt/x", "-m", "no")...); err == nil {
			t.Errorf("%s token admitted", name)
		}
	}

	// Expiry while connected.
	conn, err := tls.Dial("tcp", g.addr, g.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := rs.Token(claims("dev3", 1500*time.Millisecond), nil)
	c := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, CleanStart: true, ClientID: []byte("dev3"), KeepAlive: 60,
		UsernameFlag: true, Username: []byte("dev3"), PasswordFlag: true, Password: []byte(tok)})
	if _, err := conn.Write(c); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := mqttwire.NewReader(conn, 256, 1<<16)
	p, err := r.Next()
	if err != nil || p.Type != mqttwire.CONNACK || p.Body[1] != 0 {
		t.Fatalf("CONNACK: %v %x", err, p.Raw)
	}
	start := time.Now()
	p, err = r.Next()
	if err != nil || p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.NotAuthorized) {
		t.Fatalf("want DISCONNECT 0x87 at expiry, got %v %x", err, p.Raw)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("disconnected %v after CONNACK, token lived 1.5s", d)
	}
	if _, err := r.Next(); err == nil {
		t.Error("connection still open after DISCONNECT")
	}
}

// An HTTP auth service decides through the proxy: allow and deny as it
// says, ignore passes to the next authenticator (a password file here),
// a service that does not answer in time denies.
func TestWebhookThroughProxy(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	release := make(chan struct{})
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
		switch m["username"] {
		case "slow":
			<-release
		case "alice":
			io.WriteString(w, `{"result":"allow"}`)
		case "carol":
			io.WriteString(w, `{"result":"ignore"}`)
		default:
			io.WriteString(w, `{"result":"deny"}`)
		}
	}))
	defer svc.Close()
	defer close(release) // before Close, which waits for the slow handler
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(mqtttest.Need(t, "mosquitto_passwd"), "-c", "-b", file, "carol", "c-pass").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=http,password", "MQTTGATE_PASSWORD_FILE="+file,
		"MQTTGATE_HTTP_AUTH_URL="+svc.URL+"/mqtt/auth", "MQTTGATE_HTTP_AUTH_TIMEOUT=500ms")
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "a-pass", true}, {"bob", "b-pass", false}, {"carol", "c-pass", true}, {"carol", "wrong", false}, {"slow", "s", false}} {
		err := pub(t, append(g.tlsArgs(""), "-u", c.user, "-P", c.pass, "-i", "cid-"+c.user, "-t", "h", "-m", "m")...)
		if (err == nil) != c.ok {
			t.Errorf("%s/%s: %v, want ok=%v", c.user, c.pass, err, c.ok)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 5 {
		t.Fatalf("service saw %d requests, want 5", len(bodies))
	}
	b := bodies[0]
	if b["clientid"] != "cid-alice" || b["username"] != "alice" || b["password"] != "a-pass" || b["peerhost"] != "127.0.0.1" ||
		b["proto_ver"] != 4.0 || b["listener"] != "tls" || b["peerport"] == nil {
		t.Errorf("request body %v", b)
	}
	g.waitLog(t, `"cause":"webhook_timeout"`)
}

// A token in the user name field works, and neither an accepted nor a
// refused token reaches the log.
func TestJWTInUsernameNeverLogged(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	broker := mqtttest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS="+rs.Pub, "MQTTGATE_JWT_FROM=username")
	good := rs.Token(map[string]any{"sub": "dev1", "exp": time.Now().Add(time.Hour).Unix()}, nil)
	expired := rs.Token(map[string]any{"sub": "dev1", "exp": time.Now().Add(-time.Hour).Unix()}, nil)
	if err := pub(t, append(g.tlsArgs(""), "-u", good, "-t", "u", "-m", "m")...); err != nil {
		t.Fatal(err)
	}
	if err := pub(t, append(g.tlsArgs(""), "-u", expired, "-t", "u", "-m", "m")...); err == nil {
		t.Fatal("expired token admitted")
	}
	mqtttest.WaitFor(t, "close logged", func() bool { return strings.Count(g.logs.String(), `"event":"close"`) >= 2 })
	logs := g.logs.String()
	for _, tok := range []string{good, expired} {
		if strings.Contains(logs, tok[strings.LastIndex(tok, ".")+1:]) || strings.Contains(logs, tok[:strings.Index(tok, ".")]) {
			t.Fatal("a token reached the log")
		}
	}
}
