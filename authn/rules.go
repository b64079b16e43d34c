package authn

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Rules are client-info checks run before any cryptography or network
// call. Each rule must hold, or the client is refused at once. A rule is
//
//	FIELD OP VALUE
//
// FIELD is clientid, username or cert_cn. OP is == (equal), != (not
// equal), ^= (starts with), $= (ends with), ~ (matches the regular
// expression) or !~ (does not match). VALUE is text in which ${clientid},
// ${username} and ${cert_cn} are replaced by the connection's values, or a
// Go-quoted string ("" is the empty string); for ~ and !~ it is a regular
// expression (RE2 syntax, unanchored unless it says ^ and $). A VALUE that
// uses a placeholder whose value is empty never holds. Rules are separated
// by ; or newlines. Examples:
//
//	clientid == ${cert_cn}
//	clientid ~ ^[a-z0-9-]{1,64}$
//	username != ""
//	clientid ^= ${username}-
type Rules struct {
	list []rule
}

type rule struct {
	text  string
	field string
	op    string
	value string // template; for ~ and !~ unused
	re    *regexp.Regexp
}

var ruleOps = []string{"==", "!=", "^=", "$=", "!~", "~"} // longest first where prefixes overlap

var ruleFields = map[string]bool{"clientid": true, "username": true, "cert_cn": true}

// ParseRules reads rules; "" is no rules (nil).
func ParseRules(s string) (*Rules, error) {
	var rs Rules
	n := 0
	for _, line := range splitRules(s) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n++
		r, err := parseRule(line)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", n, line, err)
		}
		rs.list = append(rs.list, r)
	}
	if len(rs.list) == 0 {
		return nil, nil
	}
	return &rs, nil
}

// splitRules cuts at ; and newlines outside double quotes.
func splitRules(s string) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case (c == ';' || c == '\n') && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func parseRule(line string) (rule, error) {
	r := rule{text: line}
	field, rest, ok := strings.Cut(line, " ")
	if !ok {
		return r, fmt.Errorf("want FIELD OP VALUE")
	}
	if !ruleFields[field] {
		return r, fmt.Errorf("unknown field %q: want clientid, username or cert_cn", field)
	}
	r.field = field
	rest = strings.TrimSpace(rest)
	for _, op := range ruleOps {
		if v, ok := strings.CutPrefix(rest, op); ok {
			r.op, rest = op, strings.TrimSpace(v)
			break
		}
	}
	if r.op == "" {
		return r, fmt.Errorf("unknown operator: want ==, !=, ^=, $=, ~ or !~")
	}
	if strings.HasPrefix(rest, `"`) {
		v, err := strconv.Unquote(rest)
		if err != nil {
			return r, fmt.Errorf("bad quoted value %s: %w", rest, err)
		}
		rest = v
	}
	if r.op == "~" || r.op == "!~" {
		re, err := regexp.Compile(rest)
		if err != nil {
			return r, err
		}
		r.re = re
		return r, nil
	}
	if err := checkTemplate(rest); err != nil {
		return r, err
	}
	r.value = rest
	return r, nil
}

// Check returns Deny for the first rule the request breaks, Ignore otherwise.
func (rs *Rules) Check(req *Request) Result {
	for i := range rs.list {
		if !rs.list[i].holds(req) {
			res := deny(mqttwire.NotAuthorized, "rule_violated")
			res.Detail = rs.list[i].text
			return res
		}
	}
	return ignore("rules_hold")
}

func (r *rule) holds(req *Request) bool {
	have := fieldValue(r.field, req)
	if r.re != nil {
		return r.re.MatchString(have) == (r.op == "~")
	}
	want, ok := expand(r.value, req)
	if !ok {
		return false
	}
	switch r.op {
	case "==":
		return have == want
	case "!=":
		return have != want
	case "^=":
		return strings.HasPrefix(have, want)
	case "$=":
		return strings.HasSuffix(have, want)
	}
	return false
}

func fieldValue(name string, req *Request) string {
	switch name {
	case "clientid":
		return req.ClientID
	case "username":
		return req.Username
	case "cert_cn":
		if req.Cert != nil {
			return req.Cert.Subject.CommonName
		}
	}
	return ""
}

// checkTemplate accepts text whose ${...} placeholders all name a field.
func checkTemplate(t string) error {
	for {
		i := strings.Index(t, "${")
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return fmt.Errorf("unclosed placeholder in %q", t)
		}
		if name := t[i+2 : i+j]; !ruleFields[name] {
			return fmt.Errorf("unknown placeholder ${%s}: want ${clientid}, ${username} or ${cert_cn}", name)
		}
		t = t[i+j+1:]
	}
}

// expand fills a checked template's placeholders; ok is false when one of
// them is empty, so that a rule about a missing value never holds.
func expand(t string, req *Request) (string, bool) {
	if !strings.Contains(t, "${") {
		return t, true
	}
	var b strings.Builder
	for {
		i := strings.Index(t, "${")
		if i < 0 {
			b.WriteString(t)
			return b.String(), true
		}
		j := strings.IndexByte(t[i:], '}')
		v := fieldValue(t[i+2:i+j], req)
		if v == "" {
			return "", false
		}
		b.WriteString(t[:i])
		b.WriteString(v)
		t = t[i+j+1:]
	}
}
