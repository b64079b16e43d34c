package authn

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// fixed answers the same for everyone.
type fixed struct {
	name string
	res  Result
}

func (f fixed) Name() string                                  { return f.name }
func (f fixed) Authenticate(context.Context, *Request) Result { return f.res }

func connect(v mqttwire.Version, id, user, pass string) *mqttwire.Connect {
	c := &mqttwire.Connect{Version: v, ClientID: []byte(id)}
	if user != "" {
		c.UsernameFlag, c.Username = true, []byte(user)
	}
	if pass != "" {
		c.PasswordFlag, c.Password = true, []byte(pass)
	}
	return c
}

func clientCert(cn string) *x509.Certificate {
	u, _ := url.Parse("spiffe://example.org/dev/" + cn)
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: []string{"Acme"}},
		DNSNames: []string{cn + ".devices.example"}, EmailAddresses: []string{cn + "@example.org"}, URIs: []*url.URL{u}}
}

func TestChainVerdicts(t *testing.T) {
	allowAll := fixed{"a", allow("ok")}
	denyAll := fixed{"d", deny(mqttwire.BadUserNameOrPassword, "bad_password")}
	pass := fixed{"p", ignore("unknown_user")}
	cases := []struct {
		name  string
		cfg   Config
		c     *mqttwire.Connect
		cert  *x509.Certificate
		admit bool
		code  mqttwire.ReasonCode
	}{
		{"no authenticator refuses credentials", Config{}, connect(5, "c", "u", "p"), nil, false, mqttwire.BadUserNameOrPassword},
		{"no authenticator refuses anonymous", Config{}, connect(5, "c", "", ""), nil, false, mqttwire.NotAuthorized},
		{"anonymous allowed", Config{AllowAnonymous: true}, connect(5, "c", "", ""), nil, true, 0},
		{"anonymous allowed, credentials still checked", Config{AllowAnonymous: true}, connect(5, "c", "u", ""), nil, false, mqttwire.BadUserNameOrPassword},
		{"anonymous allowed, certificate is a credential", Config{AllowAnonymous: true}, connect(5, "c", "", ""), clientCert("x"), false, mqttwire.NotAuthorized},
		{"anonymous refused by default even with an allowing authenticator", Config{Authenticators: []Authenticator{allowAll}}, connect(5, "c", "", ""), nil, false, mqttwire.NotAuthorized},
		{"first allow wins", Config{Authenticators: []Authenticator{pass, allowAll, denyAll}}, connect(5, "c", "u", "p"), nil, true, 0},
		{"first deny wins", Config{Authenticators: []Authenticator{pass, denyAll, allowAll}}, connect(5, "c", "u", "p"), nil, false, mqttwire.BadUserNameOrPassword},
		{"all ignore refuses", Config{Authenticators: []Authenticator{pass, pass}}, connect(5, "c", "u", "p"), nil, false, mqttwire.BadUserNameOrPassword},
		{"cert allows verified certificate", Config{Authenticators: []Authenticator{Cert{}}}, connect(5, "c", "", ""), clientCert("dev1"), true, 0},
		{"cert passes without certificate", Config{Authenticators: []Authenticator{Cert{}}}, connect(5, "c", "u", "p"), nil, false, mqttwire.BadUserNameOrPassword},
		{"cert admits its common name as user name", Config{Authenticators: []Authenticator{Cert{}}}, connect(5, "c", "dev1", ""), clientCert("dev1"), true, 0},
		{"cert does not vouch for another user name", Config{Authenticators: []Authenticator{Cert{}}}, connect(5, "c", "admin", ""), clientCert("dev1"), false, mqttwire.BadUserNameOrPassword},
		{"cert passes another user name to the next", Config{Authenticators: []Authenticator{Cert{}, denyAll}}, connect(5, "c", "admin", ""), clientCert("dev1"), false, mqttwire.BadUserNameOrPassword},
		{"cert with a mapped field compares that field", Config{Authenticators: []Authenticator{Cert{Field: CertSANDNS}}, UsernameFrom: CertSANDNS}, connect(5, "c", "admin", ""), clientCert("dev1"), true, 0},
		{"rules run before an allowing authenticator", Config{Authenticators: []Authenticator{allowAll}, Rules: mustRules(t, `username != ""`)}, connect(5, "c", "", "p"), nil, false, mqttwire.NotAuthorized},
		{"unsupported auth method", Config{Authenticators: []Authenticator{allowAll}}, withAuthMethod(connect(5, "c", "u", "p"), "SCRAM-SHA-1"), nil, false, mqttwire.BadAuthenticationMethod},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := NewChain(c.cfg).Authenticate(context.Background(), c.c, Peer{Cert: c.cert})
			if out.Admit != c.admit || (!c.admit && out.Reason != c.code) {
				t.Fatalf("admit %v reason %#x, want admit %v reason %#x", out.Admit, out.Reason, c.admit, c.code)
			}
			if out.Admit && out.Identity == nil {
				t.Fatal("admitted without identity")
			}
		})
	}
}

func withAuthMethod(c *mqttwire.Connect, m string) *mqttwire.Connect {
	c.Properties = mqttwire.AppendProperty(nil, mqttwire.PropAuthMethod, 0, []byte(m))
	return c
}

func mustRules(t *testing.T, s string) *Rules {
	t.Helper()
	r, err := ParseRules(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The certificate names the client; what it put in CONNECT does not count.
func TestCertIdentityRewritesConnect(t *testing.T) {
	ch := NewChain(Config{Authenticators: []Authenticator{Cert{}}, UsernameFrom: CertCN, ClientIDFrom: CertSANDNS})
	out := ch.Authenticate(context.Background(), connect(4, "root", "admin", "x"), Peer{Cert: clientCert("dev1")})
	if !out.Admit || out.Connect == nil {
		t.Fatalf("outcome %+v", out)
	}
	if u, id := string(out.Connect.Username), string(out.Connect.ClientID); u != "dev1" || id != "dev1.devices.example" || !out.Connect.UsernameFlag {
		t.Fatalf("forwarded user %q client id %q", u, id)
	}
	if out.Identity.Username != "dev1" || out.Identity.ClientID != "dev1.devices.example" || out.Identity.CertCN != "dev1" {
		t.Fatalf("identity %+v", out.Identity)
	}
	if string(out.Connect.Password) != "x" {
		t.Fatal("password dropped from the forwarded CONNECT")
	}
	// Without a certificate, or without the field, nobody is mapped.
	if out := ch.Authenticate(context.Background(), connect(4, "c", "admin", "x"), Peer{}); out.Admit {
		t.Fatal("mapped without a certificate")
	}
	if out := NewChain(Config{Authenticators: []Authenticator{Cert{}}, UsernameFrom: CertSANEmail}).Authenticate(context.Background(),
		connect(4, "c", "", ""), Peer{Cert: &x509.Certificate{Subject: pkix.Name{CommonName: "x"}}}); out.Admit {
		t.Fatal("mapped a certificate without the field")
	}
}

func TestCertFieldValues(t *testing.T) {
	c := clientCert("dev1")
	for f, want := range map[string]string{"cn": "dev1", "san_dns": "dev1.devices.example", "san_uri": "spiffe://example.org/dev/dev1",
		"san_email": "dev1@example.org", "dn": "CN=dev1,O=Acme"} {
		cf, err := ParseCertField(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Value(c); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if _, err := ParseCertField("subject"); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestRules(t *testing.T) {
	cases := []struct {
		rules    string
		id, user string
		cert     *x509.Certificate
		ok       bool
	}{
		{"clientid == ${cert_cn}", "dev1", "", clientCert("dev1"), true},
		{"clientid == ${cert_cn}", "dev2", "", clientCert("dev1"), false},
		{"clientid == ${cert_cn}", "", "", nil, false}, // empty placeholder never holds
		{`clientid ~ ^[a-z0-9-]{1,8}$`, "dev-1", "", nil, true},
		{`clientid ~ ^[a-z0-9-]{1,8}$`, "Dev#1", "", nil, false},
		{`clientid !~ ^\$`, "$sys", "", nil, false},
		{`username != ""`, "c", "", nil, false},
		{`username != ""`, "c", "u", nil, true},
		{"clientid ^= ${username}-", "alice-1", "alice", nil, true},
		{"clientid ^= ${username}-", "bob-1", "alice", nil, false},
		{"clientid ^= ${username}-", "-1", "", nil, false},
		{"clientid $= .sensor", "a.sensor", "", nil, true},
		{`username != ""; clientid ^= ${username}`, "alice1", "alice", nil, true},
		{"username != \"\"\nclientid ^= ${username}", "bob1", "alice", nil, false},
		{`clientid ~ "^a;b$"`, "a;b", "", nil, true},
	}
	for _, c := range cases {
		rs := mustRules(t, c.rules)
		res := rs.Check(&Request{ClientID: c.id, Username: c.user, Cert: c.cert})
		if (res.Verdict != Deny) != c.ok {
			t.Errorf("%q with id %q user %q: %v, want ok=%v", c.rules, c.id, c.user, res.Verdict, c.ok)
		}
	}
	for _, bad := range []string{"clientid", "ip == 1", "clientid <> x", "clientid ~ (", "clientid == ${password}", "clientid == ${username", `username == "x`} {
		if _, err := ParseRules(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if r, err := ParseRules(" ; \n"); r != nil || err != nil {
		t.Errorf("empty rules: %v %v", r, err)
	}
}

// A refusal is logged with who and why, never with the password, and counted.
func TestRefusalLoggedWithoutSecretAndCounted(t *testing.T) {
	var logs bytes.Buffer
	ch := NewChain(Config{Authenticators: []Authenticator{fixed{"password", deny(mqttwire.BadUserNameOrPassword, "bad_password")}},
		Logger: zerolog.New(&logs)})
	for range 3 {
		ch.Authenticate(context.Background(), connect(4, "c1", "alice", "hunter2-secret"), Peer{})
	}
	if s := logs.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, `"cause":"bad_password"`) ||
		!strings.Contains(s, `"username":"alice"`) || !strings.Contains(s, `"authenticator":"password"`) {
		t.Fatalf("log: %s", s)
	}
	got := ch.Counts()
	if len(got) != 1 || got[0] != (Count{"password", "deny", "bad_password", 3}) {
		t.Fatalf("counts %+v", got)
	}
}

// authn decides one question: it never depends on the proxy, the ACLs or
// the limits (tests included); only on the wire format and the shared
// leaves (the identity, the security-log budget, the file kept in force).
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire", "authn/identity", "limits/logbudget", "limits/sharedfile", "mqttwire/mqtttest")
	mqtttest.OnlyDepends(t, "./identity", "mqttwire", "mqttwire/mqtttest")
}

// A flood of refusals is logged at a bounded rate; every one is counted.
func TestRefusalLogIsRateLimited(t *testing.T) {
	var logs bytes.Buffer
	ch := NewChain(Config{Logger: zerolog.New(&logs)})
	for range 500 {
		ch.Authenticate(context.Background(), connect(4, "c", "u", "p"), Peer{})
	}
	if n := strings.Count(logs.String(), "\n"); n > 60 {
		t.Fatalf("%d log lines for 500 refusals in a burst", n)
	}
	if got := ch.Counts(); len(got) != 1 || got[0].N != 500 {
		t.Fatalf("counts %+v", got)
	}
}

// A certificate admits only its own name; another user name must be
// verified by the next authenticator, whose identity it then is.
func TestCertIdentityIsTheCertificates(t *testing.T) {
	pw := fixed{"password", allow("password")}
	ch := NewChain(Config{Authenticators: []Authenticator{Cert{}, pw}})
	out := ch.Authenticate(context.Background(), connect(4, "c", "dev1", ""), Peer{Cert: clientCert("dev1")})
	if !out.Admit || out.Identity.Source != "cert" || out.Identity.Username != "dev1" {
		t.Fatalf("user name = CN: %+v", out.Identity)
	}
	out = ch.Authenticate(context.Background(), connect(4, "c", "admin", "pw"), Peer{Cert: clientCert("dev1")})
	if !out.Admit || out.Identity.Source != "password" || out.Identity.Username != "admin" || out.Identity.CertCN != "dev1" {
		t.Fatalf("user name admin: %+v, want admitted by password", out.Identity)
	}
}

// A token's subject fills an empty user name in the identity and in the
// CONNECT the broker sees.
func TestSubjectFillsEmptyUsername(t *testing.T) {
	ch := NewChain(Config{Authenticators: []Authenticator{fixed{"jwt", Result{Verdict: Allow, Username: "alice"}}}})
	out := ch.Authenticate(context.Background(), connect(5, "c", "", "tok"), Peer{})
	if !out.Admit || out.Identity.Username != "alice" || out.Connect == nil || string(out.Connect.Username) != "alice" || !out.Connect.UsernameFlag {
		t.Fatalf("%+v %+v", out.Identity, out.Connect)
	}
	if string(out.Connect.Password) != "tok" || string(out.Connect.ClientID) != "c" {
		t.Fatal("the rest of the CONNECT changed")
	}
	if out := ch.Authenticate(context.Background(), connect(5, "c", "alice", "tok"), Peer{}); out.Connect != nil {
		t.Fatal("CONNECT rewritten though the user name was already the identity's")
	}
}

func TestClientIDPattern(t *testing.T) {
	cases := []struct {
		pattern, user, cn, id string
		ok                    bool
	}{
		{"${username}-*", "alice", "", "alice-1", true},
		{"${username}-*", "alice", "", "alice-", true},
		{"${username}-*", "alice", "", "bob-sensor", false},
		{"${username}-*", "alice", "", "alice", false},
		{"${username}-*", "alice", "", "", false}, // server-assigned: cannot be checked
		{"${username}-*", "", "", "-1", false},    // no user name: matches nothing
		{"${username}-*", "a*", "", "a-anything", false},
		{"${username}-*", "a*", "", "a*-1", true},
		{"${username}", "a*", "", "abc", false},
		{"${cert_cn}", "", "dev1", "dev1", true},
		{"${cert_cn}", "", "dev1", "dev1x", false},
		{"${cert_cn}", "dev1", "", "dev1", false},
		{"site/*/${username}", "bob", "", "site/x/y/bob", true},
		{"site/*/${username}", "bob", "", "site/bob", false},
		{"*-${username}-*", "ab", "", "x-ab-y", true},
		{"*-${username}-*", "ab", "", "-ab", false},
		{"*-${username}-*", "a-b", "", "x-a-b-y", false}, // alice-bob's ids are not alice's
		{"${username}-*", "alice-bob", "", "alice-bob-phone", false},
		{"${username}-*", "alice", "", "alice-bob-phone", true}, // alice's own: no user alice-bob can match it
		{"dev/${username}", "x/y", "", "dev/x/y", false},
		{"${username}.${cert_cn}", "u", "c", "u.c", true},
		{"a**b", "", "", "ab", true},
		{"$x${username}", "u", "", "$xu", true},
		{"$x${username}", "ux", "", "$xux", false},
	}
	for _, c := range cases {
		p, err := ParseClientIDPattern(c.pattern)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := p.Match(&identity.Identity{Username: c.user, CertCN: c.cn, ClientID: c.id}); got != c.ok {
			t.Errorf("%q user %q cn %q id %q: %v, want %v", c.pattern, c.user, c.cn, c.id, got, c.ok)
		}
	}
	for _, bad := range []string{"${user}", "${username", "*", "**", "${clientid}-x", "${username}*", "x*${cert_cn}"} {
		if _, err := ParseClientIDPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := ParseClientIDPattern(""); p != nil || err != nil {
		t.Errorf("empty pattern: %v %v", p, err)
	}
}

// The chain applies the pattern to the admitted identity, after the
// authenticator, and refuses with "client identifier not valid".
func TestChainClientIDPattern(t *testing.T) {
	p, _ := ParseClientIDPattern("${username}-*")
	jwtLike := fixed{"jwt", Result{Verdict: Allow, Username: "alice"}}
	ch := NewChain(Config{Authenticators: []Authenticator{jwtLike}, ClientIDPattern: p, AllowAnonymous: true})
	if out := ch.Authenticate(context.Background(), connect(5, "alice-1", "", "tok"), Peer{}); !out.Admit {
		t.Fatal("alice-1 refused")
	}
	for _, c := range []*mqttwire.Connect{connect(5, "bob-1", "", "tok"), connect(4, "", "", "tok"), connect(5, "x", "", "")} {
		if out := ch.Authenticate(context.Background(), c, Peer{}); out.Admit || out.Reason != mqttwire.ClientIdentifierNotValid {
			t.Errorf("client id %q user %q: admit %v %#x, want 0x85", c.ClientID, c.Username, out.Admit, out.Reason)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"https://auth.example/check":            "https://auth.example/check",
		"https://u:pw@auth.example/check":       "https://redacted@auth.example/check",
		"https://token@auth.example/check":      "https://redacted@auth.example/check",
		"https://auth.example/c?api_key=s3cr3t": "https://auth.example/c?api_key=redacted",
		"://bad":                                "<redacted>",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
