package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/proxy/proxytest"
)

// Anonymous clients are refused unless MQTTGATE_ALLOW_ANONYMOUS says
// otherwise, with CONNACK "not authorised", before the broker is involved.
func TestAnonymousRefusedByDefault(t *testing.T) {
	broker := proxytest.Mosquitto(t, "")
	g := startGate(t, broker, "MQTTGATE_ALLOW_ANONYMOUS=false")
	err := pub(t, append(g.tlsArgs(""), "-t", "a", "-m", "anon")...)
	if err == nil || !strings.Contains(err.Error(), "not authori") {
		t.Fatalf("anonymous publish: %v", err)
	}
	if !strings.Contains(g.logs.String(), "every client is refused") {
		t.Error("no start-up warning that nobody can connect")
	}
	if !strings.Contains(g.logs.String(), `"cause":"anonymous"`) {
		t.Error("refusal not logged with its cause")
	}
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
	broker := proxytest.Mosquitto(t, "user root\nacl_file "+acl+"\n") // root: the file is in a private temporary directory
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
	if !strings.Contains(g.logs.String(), `"username":"bob"`) {
		t.Error("log does not show the mapped user name")
	}
}
