package authn

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func seeds() map[string][][]byte {
	pbkdf2 := "alice:$7$101$S1xxPVa8t7uV1ZGb$DAnqaEGbOtlKvkAAx5RVy0FE+5mDh+u+t/9e6Cf95C9LkTAEiQ17vs4jWJ8Lxct896nXCxgw4ZQ7o2A7Gs32fw=="
	sha := "bob:$6$Yz+6TynPzkqwO6kt$hbBaCVlkuN0aLMh7TaXj7KtiSnymbOXl7xCL5ijyxNuqTZiqaP3x/w1iHYv8dQ69/W5FSyx2pRDjXx68fNuIYQ=="
	bc := "carol:$2y$04$abcdefghijklmnopqrstuu3ZtGxL7z7.Tq3n6bSUu1.2nLHk1iGsy"
	return map[string][][]byte{
		"FuzzPasswordFile": {
			[]byte(pbkdf2 + "\n" + sha + "\n" + bc + "\n"),
			[]byte("# comment\n\n" + sha + "\r\n"),
			[]byte("dave:plaintext\n"),
			[]byte("eve:$7$99999999999$AAAA$AAAA\n"),
		},
		"FuzzClientRules": {
			[]byte(`{"pub":["t/${clientid}/#"],"sub":["cmd/${clientid}"],"all":["shared/#"]}`),
			[]byte(`[{"permission":"allow","action":"publish","topic":"t/1","qos":[0,1],"retain":false},{"permission":"deny","action":"all","topics":["#"]}]`),
			[]byte(`[{"permission":"allow","action":"subscribe","topic":"eq t/#","qos":2}]`),
			[]byte(`{"pub":"t"}`),
		},
		"FuzzJWTClaims": {
			[]byte(`{"sub":"dev1","clientid":"c1","exp":1999999999,"acl":{"pub":["t/#"]},"is_superuser":true}`),
			[]byte(`{"sub":"dev1","clientid":"c2"}`),
			[]byte(`{"sub":["dev1"],"clientid":"c1","acl":[{"permission":"deny","topic":"#"}]}`),
		},
		"FuzzClientIDPattern": {
			[]byte("${username}-*\nalice\n\nalice-1"),
			[]byte("${username}-*\na*\n\na-anything"),
			[]byte("*-${cert_cn}-*\n\ndev1\nx-dev1-y"),
			[]byte("a**b$c\nu\nc\nab$c"),
			[]byte("${username\nu\nc\nu"),
		},
		"FuzzJWTIdentity": {
			[]byte(`{"sub":"alice","clientid":"c1","acl":{"pub":["t/${clientid}/#","u/${username}"]}}`),
			[]byte(`{"sub":"admin","acl":{"all":["t/%c"]}}`),
			[]byte(`{"sub":"alice","clientid":"c2","acl":[{"permission":"allow","topics":["a/${clientid}","b"]}]}`),
			[]byte(`{"clientid":7}`),
		},
		"FuzzWebhookAnswer": {
			[]byte(`{"result":"allow","is_superuser":false,"acl":[{"permission":"allow","action":"publish","topic":"t/1"}],"expire_at":1999999999}`),
			[]byte(`{"result":"deny"}`),
			[]byte(`{"result":"ignore"}`),
			[]byte(`{"result":"allow","expire_at":1}`),
			[]byte(`{"result":"allow","acl":{"sub":["a/+"]}}`),
		},
	}
}

// TestSeedCorpus regenerates testdata/fuzz when AUTHN_WRITE_CORPUS=1.
func TestSeedCorpus(t *testing.T) { mqtttest.SeedCorpus(t, "AUTHN_WRITE_CORPUS", seeds()) }

// A password file that parses renders to a file that parses to the same users.
func FuzzPasswordFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePasswords(b)
		if err != nil {
			return
		}
		q, err := ParsePasswords(p.Bytes())
		if err != nil {
			t.Fatalf("rendered file does not parse: %v\n%s", err, p.Bytes())
		}
		if len(q.users) != len(p.users) {
			t.Fatalf("%d users, then %d", len(p.users), len(q.users))
		}
		for u, h := range p.users {
			if q.users[u].String() != h.String() {
				t.Fatalf("user %q: %s became %s", u, h, q.users[u])
			}
			if h.kind == HashSHA512 && h.verify([]byte("x")) != q.users[u].verify([]byte("x")) {
				t.Fatal("verification differs after rendering")
			}
		}
	})
}

// Rules that parse hold only valid filters and known actions.
func FuzzClientRules(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		rules, err := ParseClientRules(v)
		if err != nil {
			return
		}
		for _, r := range rules {
			if r.Action == 0 || r.Action > 3 || len(r.Topics) == 0 {
				t.Fatalf("rule %+v", r)
			}
			for _, tp := range r.Topics {
				if !mqttwire.ValidTopicFilter([]byte(strings.TrimPrefix(tp, "eq "))) {
					t.Fatalf("invalid filter %q accepted", tp)
				}
			}
			for _, q := range r.QoS {
				if q > 2 {
					t.Fatalf("QoS %d accepted", q)
				}
			}
		}
	})
}

// Whatever a token's claims say, a client is allowed only when the
// templated claims equal its own values.
func FuzzJWTClaims(f *testing.F) {
	j := &JWT{o: JWTOptions{Claims: map[string]string{"sub": "${username}", "clientid": "${clientid}"}, SuperuserClaim: "is_superuser"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var claims map[string]any
		if json.Unmarshal(b, &claims) != nil {
			return
		}
		r := &Request{ClientID: "c1", Username: "dev1", UsernameSet: true}
		res := j.checkClaims(claims, r)
		if res.Verdict == Allow && (claims["sub"] != "dev1" || claims["clientid"] != "c1") {
			t.Fatalf("allowed with claims %v", claims)
		}
		if res.Superuser && claims["is_superuser"] != true {
			t.Fatal("superuser without the claim")
		}
	})
}

// Every answer is allow, deny, ignore or an error; an allow never carries
// an expiry in the past.
func FuzzWebhookAnswer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := parseWebhookAnswer(b)
		if err != nil {
			return
		}
		if res.Verdict == Allow && !res.Expires.IsZero() && res.Expires.Unix() < 1 {
			t.Fatalf("allow expiring at %v", res.Expires)
		}
		if res.Verdict == Deny && !res.Reason.IsError() {
			t.Fatalf("deny with reason %#x", res.Reason)
		}
	})
}

// A client id pattern matches exactly what the same pattern means as a
// regular expression with every placeholder's value quoted: a value can
// never act as a star.
func FuzzClientIDPattern(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fields := strings.SplitN(string(b), "\n", 4)
		if len(fields) != 4 || !utf8.Valid(b) { // MQTT strings are UTF-8
			return
		}
		p, err := ParseClientIDPattern(fields[0])
		if err != nil || p == nil {
			return
		}
		id := &identity.Identity{Username: fields[1], CertCN: fields[2], ClientID: fields[3]}
		re, empty := "", false
		for i, part := range p.parts {
			v := id.Username
			switch {
			case part.star:
				re += "(?s:.*)"
				continue
			case part.field == "":
				re += regexp.QuoteMeta(part.lit)
				continue
			case part.field == "cert_cn":
				v = id.CertCN
			}
			re += regexp.QuoteMeta(v)
			empty = empty || v == ""
			// A value holding a separator around it matches nothing.
			if i+1 < len(p.parts) && p.parts[i+1].lit != "" && strings.ContainsRune(v, []rune(p.parts[i+1].lit)[0]) {
				empty = true
			}
			if i > 0 && p.parts[i-1].lit != "" {
				if l := []rune(p.parts[i-1].lit); strings.ContainsRune(v, l[len(l)-1]) {
					empty = true
				}
			}
		}
		want := !empty && regexp.MustCompile("^(?:"+re+")$").MatchString(id.ClientID)
		if got := p.Match(id); got != want {
			t.Fatalf("pattern %q on %+v: %v, regexp %q says %v", fields[0], id, got, re, want)
		}
	})
}

// Whatever a verified token holds, the identity is its sub, a CONNECT
// naming another user is refused, and rules naming the client id survive
// only when the token's clientid claim is the CONNECT's.
func FuzzJWTIdentity(f *testing.F) {
	j := &JWT{}
	f.Fuzz(func(t *testing.T, b []byte) {
		var claims map[string]any
		if json.Unmarshal(b, &claims) != nil {
			return
		}
		for _, user := range []string{"", "alice"} {
			r := &Request{ClientID: "c1", Username: user, UsernameSet: user != ""}
			res := j.checkClaims(claims, r)
			if res.Verdict != Allow {
				continue
			}
			res = j.bindIdentity(claims, r, res)
			if res.Verdict != Allow {
				continue
			}
			sub, _ := claims["sub"].(string)
			if res.Username != sub || (user != "" && sub != user) {
				t.Fatalf("user %q, sub %v: identity %q", user, claims["sub"], res.Username)
			}
			for _, rule := range res.Rules {
				for _, tp := range rule.Topics {
					if (strings.Contains(tp, "${clientid}") || strings.Contains(tp, "%c")) && claims["clientid"] != "c1" {
						t.Fatalf("rule %q kept with clientid claim %v", tp, claims["clientid"])
					}
				}
			}
		}
	})
}
