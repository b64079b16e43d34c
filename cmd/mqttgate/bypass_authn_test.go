package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// Issue 11: the attacks on who a client is, each run against the built
// binary in front of a real Mosquitto, and each failing.

// dialGateCert connects a raw client presenting the named client
// certificate of the gate's PKI.
func dialGateCert(t *testing.T, g *gate, cert string, v mqttwire.Version, c *mqttwire.Connect) (*mqtttest.RawClient, mqttwire.Packet) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.addr, g.clientCertTLS(t, cert))
	if err != nil {
		t.Fatal(err)
	}
	return mqtttest.NewRawClient(t, conn, v, c)
}

// connackCode is a CONNACK's v5 reason code or v3 return code.
func connackCode(t *testing.T, p mqttwire.Packet) byte {
	t.Helper()
	if p.Type != mqttwire.CONNACK || len(p.Body) < 2 {
		t.Fatalf("want CONNACK, got %s %x", p.Type, p.Raw)
	}
	return p.Body[1]
}

// publishCode publishes at QoS 1 (v5) and returns the PUBACK's reason
// code: 0x87 when the proxy refused, below 0x80 when the broker took it.
func publishCode(c *mqtttest.RawClient, topic string, id uint16) byte {
	c.Send(mqtttest.PublishPacket(mqttwire.V5, topic, 1, id, nil, "m"))
	if p := c.Next(); len(p.Body) > 2 {
		return p.Body[2]
	}
	return 0
}

// eachVersion connects once per protocol version and checks the CONNACK:
// v5's reason code and v3.1.1's return code for the same answer.
func eachVersion(t *testing.T, what string, v5, v3 byte, dial func(mqttwire.Version) mqttwire.Packet) {
	t.Helper()
	for v, want := range map[mqttwire.Version]byte{mqttwire.V5: v5, mqttwire.V311: v3} {
		if got := connackCode(t, dial(v)); got != want {
			t.Errorf("v%d %s: CONNACK %#x, want %#x", v, what, got, want)
		}
	}
}

// plain dials the gate without a client certificate and returns the CONNACK.
func plain(t *testing.T, g *gate, c *mqttwire.Connect) func(mqttwire.Version) mqttwire.Packet {
	return func(v mqttwire.Version) mqttwire.Packet {
		t.Helper()
		_, ack, err := dialGate(t, g, "", v, c)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
}

func credentials(user, password string) *mqttwire.Connect {
	c := &mqttwire.Connect{}
	if user != "" {
		c.UsernameFlag, c.Username = true, []byte(user)
	}
	if password != "" {
		c.PasswordFlag, c.Password = true, []byte(password)
	}
	return c
}

func withClientID(c *mqttwire.Connect, id string) *mqttwire.Connect {
	c.ClientID = []byte(id)
	return c
}

const bypassACL = "user admin\ntopic readwrite #\n\nuser alice\ntopic readwrite alice/#\n"

// A token issued to alice, sent with the user name admin, is refused as a
// bad user name or password (v5 0x86, v3 0x04); sent without a user name
// it connects as alice, and admin's ACL section does not apply to it.
func TestBypassJWTForAliceCannotConnectAsAdmin(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS="+rs.Pub,
		"MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_ACL_FILE="+writeFile(t, "acl", bypassACL))
	alice := rs.Token(map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}, nil)
	eachVersion(t, "token for alice as admin", 0x86, 0x04, plain(t, g, withClientID(credentials("admin", alice), "a1")))
	g.waitLog(t, `"cause":"username_not_subject"`)

	for _, user := range []string{"", "alice"} {
		c, ack, err := dialGate(t, g, "", mqttwire.V5, withClientID(credentials(user, alice), "a2"))
		if err != nil || connackCode(t, ack) != 0 {
			t.Fatalf("token for alice, user name %q: %x %v, want admitted", user, ack.Raw, err)
		}
		if code := publishCode(c, "admin/x", 1); code != 0x87 {
			t.Errorf("user name %q: admin/x %#x, want 0x87: admin's section applied to alice's token", user, code)
		}
		if code := publishCode(c, "alice/x", 2); code >= 0x80 {
			t.Errorf("user name %q: alice/x %#x, want alice's section", user, code)
		}
	}
	g.waitLog(t, `"identity":"alice"`)
}

// A token's own rules expand ${username} to its sub, and ${clientid} only
// when the token names the client id (a clientid claim, equal to the
// CONNECT's: another client id is refused 0x85/0x02).
func TestBypassJWTRulePlaceholdersAreTheTokens(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS="+rs.Pub,
		"MQTTGATE_ACL_NO_MATCH=deny")
	token := func(extra map[string]any) string {
		c := map[string]any{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
			"acl": map[string]any{"pub": []any{"u/${username}/#", "c/${clientid}/#"}}}
		for k, v := range extra {
			c[k] = v
		}
		return rs.Token(c, nil)
	}
	// No clientid claim: the client id "bob" it chose does not widen the rules.
	c, ack, err := dialGate(t, g, "", mqttwire.V5, withClientID(credentials("", token(nil)), "bob"))
	if err != nil || connackCode(t, ack) != 0 {
		t.Fatalf("CONNACK %x %v", ack.Raw, err)
	}
	for topic, allowed := range map[string]bool{"u/alice/x": true, "u/bob/x": false, "c/bob/x": false} {
		if code := publishCode(c, topic, 1); (code < 0x80) != allowed {
			t.Errorf("unbound client id: %s %#x, want allowed=%v", topic, code, allowed)
		}
	}
	// A clientid claim binds it.
	bound := token(map[string]any{"clientid": "alice-1"})
	c, ack, err = dialGate(t, g, "", mqttwire.V5, withClientID(credentials("alice", bound), "alice-1"))
	if err != nil || connackCode(t, ack) != 0 {
		t.Fatalf("CONNACK %x %v", ack.Raw, err)
	}
	if code := publishCode(c, "c/alice-1/x", 1); code >= 0x80 {
		t.Errorf("bound client id: c/alice-1/x %#x, want allowed", code)
	}
	eachVersion(t, "token for client alice-1 used as bob", 0x85, 0x02, plain(t, g, withClientID(credentials("alice", bound), "bob")))
}

// With cert,password a device certificate does not vouch for the user
// name admin: without admin's password the chain refuses (0x86/0x04);
// with the certificate's own name it connects, under that name's ACLs.
func TestBypassCertDoesNotVouchForAnotherUsername(t *testing.T) {
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_TLS_CLIENT_AUTH=require",
		"MQTTGATE_AUTHN=cert,password", "MQTTGATE_PASSWORD_FILE="+passwordFile(t, "admin"),
		"MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_ACL_FILE="+writeFile(t, "acl", bypassACL))
	eachVersion(t, "alice's certificate as admin without password", 0x86, 0x04, func(v mqttwire.Version) mqttwire.Packet {
		_, ack := dialGateCert(t, g, "alice", v, withClientID(credentials("admin", ""), "d1"))
		return ack
	})
	c, ack := dialGateCert(t, g, "alice", mqttwire.V5, withClientID(credentials("alice", ""), "d2"))
	if connackCode(t, ack) != 0 {
		t.Fatalf("alice's certificate as alice: %x", ack.Raw)
	}
	if code := publishCode(c, "admin/x", 1); code != 0x87 {
		t.Errorf("admin/x %#x, want 0x87: the section user admin applied", code)
	}
	if code := publishCode(c, "alice/x", 2); code >= 0x80 {
		t.Errorf("alice/x %#x, want allowed by the section user alice", code)
	}
	// admin's own password still works alongside a certificate: the
	// password file verified the name.
	_, ack = dialGateCert(t, g, "alice", mqttwire.V5, withClientID(credentials("admin", "admin-pw"), "d3"))
	if connackCode(t, ack) != 0 {
		t.Errorf("admin with the right password: %x", ack.Raw)
	}
	g.waitLog(t, "lists cert without MQTTGATE_CERT_IDENTITY") // the start-up warning
}

// MQTTGATE_CLIENTID_PATTERN=${username}-*: alice may not take bob's client
// id (and so his session), nor an empty one; a user name holding * is
// matched literally.
func TestBypassClientIDBoundToUsername(t *testing.T) {
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password",
		"MQTTGATE_PASSWORD_FILE="+passwordFile(t, "alice", "a*", "alice-bob"), "MQTTGATE_CLIENTID_PATTERN=${username}-*")
	for _, c := range []struct {
		user, id string
		ok       bool
	}{
		{"alice", "bob-sensor", false},
		// alice-bob-phone is alice's: a user name holding the separator
		// matches nothing, so no other user's session can have that id.
		{"alice-bob", "alice-bob-phone", false},
		{"alice", "alice-bob-phone", true},
		{"alice", "", false},
		{"a*", "a-anything", false},
		{"alice", "alice-1", true},
		{"a*", "a*-1", true},
	} {
		v5, v3 := byte(0x85), byte(0x02)
		if c.ok {
			v5, v3 = 0, 0
		}
		eachVersion(t, c.user+" with client id "+c.id, v5, v3, plain(t, g, withClientID(credentials(c.user, c.user+"-pw"), c.id)))
	}
	g.waitLog(t, `"cause":"clientid_pattern"`)
}

// Two binary passwords that JSON would both render as U+FFFD: the first
// is admitted by the webhook and cached, the second is not admitted from
// that cache.
func TestBypassWebhookBinaryPasswordsNotConfused(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body["password_base64"] == "/wE=" { // 0xff 0x01
			io.WriteString(w, `{"result":"allow"}`)
			return
		}
		io.WriteString(w, `{"result":"deny"}`)
	}))
	defer svc.Close()
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=http",
		"MQTTGATE_HTTP_AUTH_URL="+svc.URL, "MQTTGATE_HTTP_AUTH_CACHE_TTL=1m")
	for _, c := range []struct {
		password string
		want     byte
	}{{"\xff\x01", 0}, {"\xfe\x01", 0x87}} {
		if got := connackCode(t, plain(t, g, withClientID(credentials("dev", c.password), "dev-1"))(mqttwire.V5)); got != c.want {
			t.Errorf("password %x: CONNACK %#x, want %#x", c.password, got, c.want)
		}
	}
}

// A user-name ban applies to the identity's user name, the token's
// subject, even when the token itself is the CONNECT's user name
// (MQTTGATE_JWT_FROM=username).
func TestBypassUsernameBanAppliesToTheTokensSubject(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	bans := writeFile(t, "bans.json", `{"bans": [{"kind": "username", "value": "mallory", "until": "2099-01-01T00:00:00Z"}]}`)
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS="+rs.Pub,
		"MQTTGATE_JWT_FROM=username", "MQTTGATE_BANS_FILE="+bans)
	exp := time.Now().Add(time.Hour).Unix()
	mallory := rs.Token(map[string]any{"sub": "mallory", "exp": exp}, nil)
	eachVersion(t, "banned subject", 0x8a, 0x05, plain(t, g, withClientID(credentials(mallory, ""), "m1")))
	alice := rs.Token(map[string]any{"sub": "alice", "exp": exp}, nil)
	eachVersion(t, "subject not banned", 0, 0, plain(t, g, withClientID(credentials(alice, ""), "a1")))
}
