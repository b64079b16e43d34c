package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func claimsValid(extra map[string]any) map[string]any {
	c := map[string]any{"sub": "dev1", "aud": "mqtt", "iss": "https://idp.example", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func tokenReq(token string) *Request {
	return &Request{ClientID: "dev1", Username: "dev1", UsernameSet: true, Password: []byte(token), PasswordSet: true, Version: mqttwire.V5}
}

func newJWT(t *testing.T, o JWTOptions) *JWT {
	t.Helper()
	if o.Audience == "" {
		o.Audience, o.Issuer = "mqtt", "https://idp.example"
	}
	o.RequireExp, o.Leeway = true, 2*time.Second
	j, err := NewJWT(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j
}

func TestJWTSignedByOpenSSL(t *testing.T) {
	signers := map[string]*mqtttest.JWTSigner{"RS256": mqtttest.NewJWTSigner(t, "RS256"), "ES256": mqtttest.NewJWTSigner(t, "ES256"), "EdDSA": mqtttest.NewJWTSigner(t, "EdDSA")}
	j := newJWT(t, JWTOptions{KeyFiles: []string{signers["RS256"].Pub, signers["ES256"].Pub, signers["EdDSA"].Pub},
		Claims: map[string]string{"sub": "${username}"}})
	ctx := t.Context()
	for alg, s := range signers {
		res := j.Authenticate(ctx, tokenReq(s.Token(claimsValid(nil), nil)))
		if res.Verdict != Allow {
			t.Errorf("%s: %v %s (%s)", alg, res.Verdict, res.Cause, res.Detail)
		}
		if d := time.Until(res.Expires); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("%s: expires in %v, want the token's exp", alg, d)
		}
	}

	rs := signers["RS256"]
	pub, _ := os.ReadFile(rs.Pub)
	noneToken := mqtttest.JSONPart(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + mqtttest.JSONPart(t, claimsValid(nil)) + "."
	hsInput := mqtttest.JSONPart(t, map[string]any{"alg": "HS256", "typ": "JWT"}) + "." + mqtttest.JSONPart(t, claimsValid(nil))
	hsToken := hsInput + "." + base64.RawURLEncoding.EncodeToString(opensslHMAC(t, pub, hsInput))
	other := mqtttest.NewJWTSigner(t, "RS256")
	for name, c := range map[string]struct {
		token string
		cause string
	}{
		"expired":            {rs.Token(claimsValid(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), nil), "expired"},
		"not yet valid":      {rs.Token(claimsValid(map[string]any{"nbf": time.Now().Add(time.Minute).Unix()}), nil), "not_yet_valid"},
		"wrong audience":     {rs.Token(claimsValid(map[string]any{"aud": "other"}), nil), "wrong_audience"},
		"wrong issuer":       {rs.Token(claimsValid(map[string]any{"iss": "https://evil.example"}), nil), "wrong_issuer"},
		"no exp":             {rs.Token(claimsValid(map[string]any{"exp": nil}), nil), "missing_claim"},
		"alg none":           {noneToken, "bad_signature"},
		"HS256 with pub key": {hsToken, "bad_signature"},
		"unknown key":        {other.Token(claimsValid(nil), nil), "bad_signature"},
		"claim mismatch":     {rs.Token(claimsValid(map[string]any{"sub": "dev2"}), nil), "claim_mismatch"},
		"tampered":           {tamper(rs.Token(claimsValid(nil), nil)), "bad_signature"},
	} {
		res := j.Authenticate(ctx, tokenReq(c.token))
		if res.Verdict != Deny || res.Cause != c.cause {
			t.Errorf("%s: %v %s (%s), want deny %s", name, res.Verdict, res.Cause, res.Detail, c.cause)
		}
	}
	// Not a token at all: the next authenticator's business.
	if res := j.Authenticate(ctx, tokenReq("plain password")); res.Verdict != Ignore {
		t.Errorf("plain password: %v", res.Verdict)
	}
}

// tamper changes the payload and keeps the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(b), `"dev1"`, `"dev9"`, 1)))
	return strings.Join(parts, ".")
}

func opensslHMAC(t *testing.T, key []byte, input string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:"+hex.EncodeToString(key), "-binary")
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key) // the same, computed here: the test is about the verifier
	m.Write([]byte(input))
	if !hmac.Equal(out, m.Sum(nil)) {
		t.Fatal("openssl HMAC differs")
	}
	return out
}

// With HS256 explicitly enabled, a token MACed with the public key is
// still refused: the secret, never the public key, is the HMAC key.
func TestJWTAlgorithmConfusion(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	pub, _ := os.ReadFile(rs.Pub)
	j := newJWT(t, JWTOptions{KeyFiles: []string{rs.Pub}, Secret: []byte("a-configured-secret-of-32-bytes!"), Algorithms: []string{"RS256", "HS256"}})
	input := mqtttest.JSONPart(t, map[string]any{"alg": "HS256", "typ": "JWT"}) + "." + mqtttest.JSONPart(t, claimsValid(nil))
	if res := j.Authenticate(t.Context(), tokenReq(input+"."+base64.RawURLEncoding.EncodeToString(opensslHMAC(t, pub, input)))); res.Verdict != Deny {
		t.Fatalf("HS256 signed with the public key: %v", res.Verdict)
	}
	if res := j.Authenticate(t.Context(), tokenReq(input+"."+base64.RawURLEncoding.EncodeToString(opensslHMAC(t, []byte("a-configured-secret-of-32-bytes!"), input)))); res.Verdict != Allow {
		t.Fatalf("HS256 with the secret: %v %s", res.Verdict, res.Detail)
	}
	if _, err := NewJWT(JWTOptions{KeyFiles: []string{rs.Pub}, Algorithms: []string{"HS256"}}); err == nil {
		t.Fatal("HS256 without a secret accepted")
	}
	if _, err := NewJWT(JWTOptions{KeyFiles: []string{rs.Pub}, Algorithms: []string{"none"}}); err == nil {
		t.Fatal("alg none accepted in the configuration")
	}
}

func TestJWTACLClaimAndSuperuser(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	j := newJWT(t, JWTOptions{KeyFiles: []string{rs.Pub}, SuperuserClaim: "is_superuser"})
	res := j.Authenticate(t.Context(), tokenReq(rs.Token(claimsValid(map[string]any{
		"acl": map[string]any{"pub": []any{"t/${clientid}/#"}, "sub": []any{"cmd/${clientid}"}}, "is_superuser": true, "clientid": "dev1"}), nil)))
	if res.Verdict != Allow || !res.Superuser || len(res.Rules) != 2 {
		t.Fatalf("%v %s superuser %v rules %+v", res.Verdict, res.Detail, res.Superuser, res.Rules)
	}
	res = j.Authenticate(t.Context(), tokenReq(rs.Token(claimsValid(map[string]any{
		"acl": []any{map[string]any{"permission": "deny", "action": "publish", "topic": "t/x", "qos": []any{1.0, 2.0}, "retain": true}}}), nil)))
	want := identity.Rule{Allow: false, Action: identity.Publish, Topics: []string{"t/x"}, QoS: []byte{1, 2}}
	if res.Verdict != Allow || len(res.Rules) != 1 || res.Rules[0].Action != want.Action || res.Rules[0].Allow ||
		string(res.Rules[0].QoS) != string(want.QoS) || res.Rules[0].Retain == nil || !*res.Rules[0].Retain {
		t.Fatalf("%v %+v", res.Verdict, res.Rules)
	}
	res = j.Authenticate(t.Context(), tokenReq(rs.Token(claimsValid(map[string]any{"acl": []any{map[string]any{"permission": "maybe", "topic": "x"}}}), nil)))
	if res.Verdict != Deny || res.Cause != "bad_acl_claim" {
		t.Fatalf("unreadable acl claim: %v %s", res.Verdict, res.Cause)
	}
}

func jwksOf(t *testing.T, kid string, pubFile string) []byte {
	t.Helper()
	b, _ := os.ReadFile(pubFile)
	keys, err := parseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwkset.NewJWKFromKey(keys[0].key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{k.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Keys from a JWKS URL, by key id; a token with a new key id makes the
// authenticator fetch the set again (key rotation).
func TestJWTFromJWKSURL(t *testing.T) {
	a, b := mqtttest.NewJWTSigner(t, "RS256"), mqtttest.NewJWTSigner(t, "ES256")
	var body atomic.Value
	body.Store(jwksOf(t, "key-a", a.Pub))
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(body.Load().([]byte))
	}))
	defer srv.Close()
	j := newJWT(t, JWTOptions{JWKSURL: srv.URL, JWKSRefresh: time.Hour, JWKSMinInterval: 50 * time.Millisecond})
	tokA := a.Token(claimsValid(nil), map[string]any{"kid": "key-a"})
	mqtttest.WaitFor(t, "first JWKS fetch", func() bool { return j.remote.Load() != nil })
	if res := j.Authenticate(t.Context(), tokenReq(tokA)); res.Verdict != Allow {
		t.Fatalf("key-a: %v %s", res.Verdict, res.Detail)
	}
	if res := j.Authenticate(t.Context(), tokenReq(a.Token(claimsValid(nil), map[string]any{"kid": "key-x"}))); res.Verdict != Deny {
		t.Fatalf("wrong kid: %v", res.Verdict)
	}
	body.Store(jwksOf(t, "key-b", b.Pub)) // rotated
	tok := b.Token(claimsValid(nil), map[string]any{"kid": "key-b"})
	mqtttest.WaitFor(t, "rotated key in service", func() bool {
		return j.Authenticate(t.Context(), tokenReq(tok)).Verdict == Allow
	})
	if n := fetches.Load(); n < 2 {
		t.Fatalf("%d fetches", n)
	}
}

// A JWKS file works like a PEM file; a JWKS with a symmetric key or a PEM
// file with a private key is refused.
func TestJWTKeyFiles(t *testing.T) {
	es := mqtttest.NewJWTSigner(t, "ES256")
	dir := t.TempDir()
	jwks := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(jwks, jwksOf(t, "k1", es.Pub), 0o644); err != nil {
		t.Fatal(err)
	}
	j := newJWT(t, JWTOptions{KeyFiles: []string{jwks}})
	if res := j.Authenticate(t.Context(), tokenReq(es.Token(claimsValid(nil), map[string]any{"kid": "k1"}))); res.Verdict != Allow {
		t.Fatalf("JWKS file: %v %s", res.Verdict, res.Detail)
	}
	oct := filepath.Join(dir, "oct.json")
	os.WriteFile(oct, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), 0o644)
	if _, err := NewJWT(JWTOptions{KeyFiles: []string{oct}}); err == nil {
		t.Error("symmetric JWKS key accepted")
	}
	if _, err := NewJWT(JWTOptions{KeyFiles: []string{es.Key}}); err == nil || !strings.Contains(err.Error(), "never a private key") {
		t.Errorf("private key file: %v", err)
	}
}

// A token in the user name field: the identity's user name is its subject.
func TestJWTFromUsername(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	j := newJWT(t, JWTOptions{KeyFiles: []string{rs.Pub}, FromUsername: true})
	tok := rs.Token(claimsValid(nil), nil)
	ch := NewChain(Config{Authenticators: []Authenticator{j}})
	out := ch.Authenticate(t.Context(), connect(4, "c1", tok, ""), Peer{})
	if !out.Admit || out.Identity.Username != "dev1" {
		t.Fatalf("admit %v identity %+v", out.Admit, out.Identity)
	}
	if res := j.Authenticate(t.Context(), &Request{Username: rs.Token(claimsValid(map[string]any{"sub": nil}), nil), UsernameSet: true}); res.Verdict != Deny {
		t.Fatalf("token without sub: %v", res.Verdict)
	}
}

// The identity is the token's: its sub is the user name, a CONNECT that
// names another user is refused, and the token's ${clientid} rules hold
// only when the token names the client id.
func TestJWTIdentityIsTheTokens(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "RS256")
	j := newJWT(t, JWTOptions{KeyFiles: []string{rs.Pub}})
	rules := map[string]any{"pub": []any{"t/${clientid}/#", "u/${username}/#"}, "sub": []any{"c/%c"}}
	tok := func(extra map[string]any) string { return rs.Token(claimsValid(extra), nil) }
	as := func(user, clientID, token string) *Request {
		r := tokenReq(token)
		r.Username, r.UsernameSet, r.ClientID = user, user != "", clientID
		return r
	}

	res := j.Authenticate(t.Context(), as("admin", "dev1", tok(nil)))
	if res.Verdict != Deny || res.Reason != mqttwire.BadUserNameOrPassword || res.Cause != "username_not_subject" {
		t.Fatalf("token for dev1 with user name admin: %v %#x %s, want deny 0x86", res.Verdict, res.Reason, res.Cause)
	}
	for _, user := range []string{"", "dev1"} {
		if res := j.Authenticate(t.Context(), as(user, "x", tok(nil))); res.Verdict != Allow || res.Username != "dev1" {
			t.Fatalf("user name %q: %v %s, identity %q; want allow as dev1", user, res.Verdict, res.Cause, res.Username)
		}
	}
	if res := j.Authenticate(t.Context(), as("", "x", tok(map[string]any{"sub": nil}))); res.Verdict != Allow || res.Username != "" {
		t.Fatalf("no sub, no user name: %v %s %q", res.Verdict, res.Cause, res.Username)
	}
	if res := j.Authenticate(t.Context(), as("dev1", "x", tok(map[string]any{"sub": nil}))); res.Verdict != Deny {
		t.Fatalf("no sub, user name dev1: %v", res.Verdict)
	}

	// Unbound client id: the rules naming it are gone, the others stay.
	res = j.Authenticate(t.Context(), as("dev1", "victim", tok(map[string]any{"acl": rules})))
	if res.Verdict != Allow || len(res.Rules) != 1 || strings.Join(res.Rules[0].Topics, ",") != "u/${username}/#" {
		t.Fatalf("unbound client id: %v %+v, want only the u/${username}/# rule", res.Verdict, res.Rules)
	}
	// Bound by a clientid claim: it must equal the CONNECT's.
	res = j.Authenticate(t.Context(), as("dev1", "dev1-a", tok(map[string]any{"acl": rules, "clientid": "dev1-a"})))
	if res.Verdict != Allow || len(res.Rules) != 2 {
		t.Fatalf("clientid claim: %v %+v, want both rules", res.Verdict, res.Rules)
	}
	for _, id := range []string{"victim", ""} {
		res = j.Authenticate(t.Context(), as("dev1", id, tok(map[string]any{"clientid": "dev1-a"})))
		if res.Verdict != Deny || res.Reason != mqttwire.ClientIdentifierNotValid {
			t.Fatalf("client id %q under a clientid claim: %v %#x, want deny 0x85", id, res.Verdict, res.Reason)
		}
	}
	// Bound by a template: ${clientid} and ${username} are the CONNECT's,
	// checked against the token.
	jt := newJWT(t, JWTOptions{KeyFiles: []string{rs.Pub}, Claims: map[string]string{"sub": "${username}", "cid": "${clientid}"}})
	res = jt.Authenticate(t.Context(), as("dev1", "c9", tok(map[string]any{"acl": rules, "cid": "c9"})))
	if res.Verdict != Allow || len(res.Rules) != 2 {
		t.Fatalf("template-bound: %v %s %+v", res.Verdict, res.Cause, res.Rules)
	}
}
