package main

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// These tests perform the attacks of the security review (issue 11)
// against the built binary and show each one failing.

// resumingClient is a TLS client with a client certificate and a session
// cache of its own, so its second connection offers the first's ticket.
func resumingClient(t *testing.T, g *gate, name string, maxVersion uint16) *tls.Config {
	t.Helper()
	cfg := g.clientCertTLS(t, name)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cfg.MaxVersion = maxVersion
	return cfg
}

// connectOver dials with cfg and sends a v5 CONNECT; it returns whether
// the proxy admitted the client (CONNACK 0) and whether TLS resumed.
func connectOver(t *testing.T, g *gate, cfg *tls.Config, clientID string) (admitted, resumed bool) {
	t.Helper()
	conn, err := tls.Dial("tcp", g.addr, cfg)
	if err != nil {
		return false, false
	}
	defer conn.Close()
	resumed = conn.ConnectionState().DidResume
	if _, err := conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, CleanStart: true, KeepAlive: 60, ClientID: []byte(clientID)})); err != nil {
		return false, resumed
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := mqttwire.NewReader(conn, 256, 1<<16).Next()
	return err == nil && p.Type == mqttwire.CONNACK && len(p.Body) > 1 && p.Body[1] == 0, resumed
}

// Item 2: a client holding a session ticket (TLS 1.3 PSK or a TLS 1.2
// ticket) cannot keep connecting as its certificate identity once the
// certificate is revoked; and a reload that changes the CRL invalidates
// the tickets issued before it.
func TestRevokedCertificateCannotResumeTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			crl := filepath.Join(dir, "crl.pem")
			backend := mqtttest.Mosquitto(t, "")
			pki, err := devpki.Init(dir, "alice", "bob")
			if err != nil {
				t.Fatal(err)
			}
			if err := pki.Authority.WriteCRL(crl); err != nil {
				t.Fatal(err)
			}
			g := startGateWith(t, pki, backend, "MQTTGATE_TLS_CLIENT_AUTH=require", "MQTTGATE_TLS_CRL="+crl,
				"MQTTGATE_AUTHN=cert", "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_CERT_IDENTITY=cn")
			bob, alice := resumingClient(t, g, "bob", tc.max), resumingClient(t, g, "alice", tc.max)
			for _, c := range []*tls.Config{bob, alice} {
				if ok, _ := connectOver(t, g, c, ""); !ok {
					t.Fatal("not admitted on the first, full handshake")
				}
				// The control: the ticket works, so the refusal below is
				// the revocation's doing.
				if ok, resumed := connectOver(t, g, c, ""); !ok || !resumed {
					t.Fatalf("second connection: admitted %v, resumed %v; want both", ok, resumed)
				}
			}
			if err := g.pki.Authority.WriteCRL(crl, mqtttest.CertOf(t, g.pki.Clients["bob"][0])); err != nil {
				t.Fatal(err)
			}
			if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			g.waitLog(t, `"message":"certificates reloaded"`)
			if ok, resumed := connectOver(t, g, bob, ""); ok {
				t.Fatalf("revoked bob admitted (resumed %v)", resumed)
			}
			ok, resumed := connectOver(t, g, alice, "")
			if !ok || resumed {
				t.Fatalf("alice after the CRL reload: admitted %v, resumed %v; want a full handshake that admits her", ok, resumed)
			}
		})
	}
}

// Item 4: flapping is keyed by the client id together with who used it,
// so alice flapping with bob's client id gets herself banned, not bob.
func TestFlappingCannotBanSomeoneElse(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+passwordFile(t, "alice", "bob"),
		"MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_FLAPPING_MAX_DISCONNECTS=3", "MQTTGATE_FLAPPING_WINDOW=1m", "MQTTGATE_FLAPPING_BAN=5m")
	as := func(user string) *mqttwire.Connect {
		return &mqttwire.Connect{ClientID: []byte("bob-sensor"), Username: []byte(user), UsernameFlag: true,
			Password: []byte(user + "-pw"), PasswordFlag: true}
	}
	for i := range 4 {
		c, ack, err := dialGate(t, g, "", mqttwire.V5, as("alice"))
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("alice's connect %d: %x %v", i+1, ack.Raw, err)
		}
		c.Send([]byte{0xe0, 0}) // DISCONNECT
		mqtttest.WaitFor(t, "close logged", func() bool { return strings.Count(g.logs.String(), `"event":"close"`) >= i+1 })
	}
	g.waitLog(t, `"event":"flapping"`)
	if _, ack, err := dialGate(t, g, "", mqttwire.V5, as("bob")); err != nil || ack.Body[1] != 0 {
		t.Fatalf("bob with his own client id after alice flapped with it: %x %v, want CONNACK 0", ack.Raw, err)
	}
	if _, ack, err := dialGate(t, g, "", mqttwire.V5, as("alice")); err != nil || ack.Body[1] != 0x8a {
		t.Fatalf("alice after flapping: %x %v, want CONNACK 0x8A", ack.Raw, err)
	}
	if _, ack, err := dialGate(t, g, "", mqttwire.V311, as("alice")); err != nil || ack.Body[1] != 0x05 {
		t.Fatalf("alice (3.1.1) after flapping: %x %v, want CONNACK 0x05", ack.Raw, err)
	}
}

const sessionACL = `user alice
topic readwrite alice/#

user bob
topic readwrite bob/#
`

// resumeScenario: bob leaves a persistent session (client id bob-sensor)
// subscribed to bob/#, a message for him is queued, then alice connects
// with his client id and clean session off, using the options in conn.
// It returns the first message alice receives after publishing one on
// her own topic (the positive that bounds the wait for a leak).
func resumeScenario(t *testing.T, conn []string, v string) string {
	t.Helper()
	as := func(user string, args ...string) []string {
		return append(append(append([]string{}, conn...), "-V", v, "-u", user, "-P", user+"-pw"), args...)
	}
	_, bob := sub(t, as("bob", "-c", "-i", "bob-sensor", "-q", "1", "-t", "bob/#", "-x", "3600")...)
	_ = bob.Process.Kill()
	_ = bob.Wait()
	if err := pub(t, as("bob", "-i", "bob-pub", "-q", "1", "-t", "bob/secret", "-m", "for-bob")...); err != nil {
		t.Fatal(err)
	}
	lines, _ := sub(t, as("alice", "-c", "-i", "bob-sensor", "-q", "1", "-t", "alice/#", "-x", "3600")...)
	if err := pub(t, as("alice", "-i", "alice-pub", "-q", "1", "-t", "alice/x", "-m", "for-alice")...); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("alice got nothing")
	}
	return ""
}

// Item 1: alice, who may not read bob/#, takes bob's client id with clean
// session off; the broker resumes bob's session. Mosquitto enforcing the
// same acl_file delivers her nothing of bob's (it checks read access at
// delivery); through mqttgate she gets nothing either, in 3.1, 3.1.1 and
// 5.0 (3.1's CONNACK cannot say Session Present: such a client is
// judged whenever it does not ask for a clean session).
func TestResumedSessionOfAnotherClientDeliversNothing(t *testing.T) {
	aclFile := writeFile(t, "acl", sessionACL)
	pw := passwordFile(t, "alice", "bob")
	for _, v := range []string{"mqttv31", "mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			direct := mqtttest.Mosquitto(t, "user root\nallow_anonymous false\npassword_file "+pw+"\nacl_file "+aclFile+"\n")
			host, port, _ := strings.Cut(direct, ":")
			if got := resumeScenario(t, []string{"-h", host, "-p", port}, v); got != "alice/x for-alice" {
				t.Fatalf("Mosquitto itself gave alice %q first; the test's expectations are wrong", got)
			}
			backend := mqtttest.Mosquitto(t, "")
			g := startGate(t, backend, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw,
				"MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny")
			if got := resumeScenario(t, g.tlsArgs(""), v); got != "alice/x for-alice" {
				t.Fatalf("through mqttgate alice got %q first, want her own message and nothing of bob's", got)
			}
			g.waitLog(t, `"action":"deliver"`)
		})
	}
}
