package acl

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/limits/cidr"
)

// parseEMQX reads EMQX's acl.conf: Erlang terms, each ending with a dot,
// first match wins.
//
//	%% comment
//	{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.
//	{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.
//	{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
//	{allow, {'and', [{clientid, {re, "^dev-"}}, {username, "fleet"}]}, publish, ["t/${clientid}/#"]}.
//	{allow, all, {publish, [{qos, [0, 1]}, {retain, false}]}, ["data/#"]}.
//	{deny, all}.
//
// Who: all, {user|username, S | {re, R}}, {clientid, S | {re, R}},
// {ipaddr, CIDR}, {ipaddrs, [CIDR...]}, {cert_cn, S} (an mqttgate
// extension), {'and', [...]}, {'or', [...]}. Action: publish, subscribe,
// all (or pubsub), optionally {Action, [{qos, Q | [Q...]}, {retain, B}]}.
// Topics may use ${clientid}, ${username} and ${cert_cn}; {eq, T} matches
// the filter T itself.
func parseEMQX(name string, b []byte) (*RuleSet, error) {
	p := &termParser{name: name, src: string(b), line: 1}
	var rules []Rule
	for {
		p.skipSpace()
		if p.eof() {
			break
		}
		start := p.line
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		if err := p.expect('.'); err != nil {
			return nil, err
		}
		r, err := emqxRule(t)
		if err != nil {
			return nil, lineError(name, start, "%v", err)
		}
		r.Source = lineSource(name, start)
		rules = append(rules, r)
	}
	return newRuleSet("emqx", rules), nil
}

// term is a parsed Erlang term.
type term struct {
	kind  byte // 'a' atom, 's' string, 'i' integer, '{' tuple, '[' list
	s     string
	i     int
	items []term
}

func (t term) String() string {
	switch t.kind {
	case 'a':
		return t.s
	case 's':
		return strconv.Quote(t.s)
	case 'i':
		return strconv.Itoa(t.i)
	}
	parts := make([]string, len(t.items))
	for i, it := range t.items {
		parts[i] = it.String()
	}
	if t.kind == '{' {
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (t term) isAtom(names ...string) bool {
	if t.kind != 'a' {
		return false
	}
	for _, n := range names {
		if t.s == n {
			return true
		}
	}
	return false
}

type termParser struct {
	name  string
	src   string
	pos   int
	line  int
	depth int
}

func (p *termParser) eof() bool { return p.pos >= len(p.src) }

func (p *termParser) errorf(format string, args ...any) error {
	return lineError(p.name, p.line, format, args...)
}

func (p *termParser) skipSpace() {
	for !p.eof() {
		switch c := p.src[p.pos]; {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '%':
			for !p.eof() && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func (p *termParser) expect(c byte) error {
	p.skipSpace()
	if p.eof() || p.src[p.pos] != c {
		return p.errorf("expected %q", c)
	}
	p.pos++
	return nil
}

const maxDepth = 32

func (p *termParser) term() (term, error) {
	p.skipSpace()
	if p.eof() {
		return term{}, p.errorf("unexpected end of file")
	}
	switch c := p.src[p.pos]; {
	case c == '{' || c == '[':
		if p.depth++; p.depth > maxDepth {
			return term{}, p.errorf("nested too deep")
		}
		defer func() { p.depth-- }()
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		p.pos++
		t := term{kind: c}
		p.skipSpace()
		if !p.eof() && p.src[p.pos] == closing {
			p.pos++
			return t, nil
		}
		for {
			it, err := p.term()
			if err != nil {
				return t, err
			}
			t.items = append(t.items, it)
			p.skipSpace()
			if p.eof() {
				return t, p.errorf("unclosed %q", c)
			}
			switch p.src[p.pos] {
			case ',':
				p.pos++
			case closing:
				p.pos++
				return t, nil
			default:
				return t, p.errorf("expected ',' or %q", closing)
			}
		}
	case c == '"':
		return p.quoted('"', 's')
	case c == '\'':
		return p.quoted('\'', 'a')
	case c >= '0' && c <= '9':
		j := p.pos
		for j < len(p.src) && p.src[j] >= '0' && p.src[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(p.src[p.pos:j])
		if err != nil {
			return term{}, p.errorf("bad integer %q", p.src[p.pos:j])
		}
		p.pos = j
		return term{kind: 'i', i: n}, nil
	case c >= 'a' && c <= 'z':
		j := p.pos
		for j < len(p.src) && (isAlnum(p.src[j]) || p.src[j] == '_' || p.src[j] == '@') {
			j++
		}
		t := term{kind: 'a', s: p.src[p.pos:j]}
		p.pos = j
		return t, nil
	default:
		return term{}, p.errorf("unexpected %q", c)
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *termParser) quoted(q, kind byte) (term, error) {
	var b strings.Builder
	for p.pos++; ; p.pos++ {
		if p.eof() {
			return term{}, p.errorf("unterminated %c", q)
		}
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return term{kind: kind, s: b.String()}, nil
		case c == '\\' && p.pos+1 < len(p.src):
			p.pos++
			switch e := p.src[p.pos]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
		case c == '\n':
			return term{}, p.errorf("line break inside a quoted term")
		default:
			b.WriteByte(c)
		}
	}
}

func emqxRule(t term) (Rule, error) {
	r := Rule{retain: -1}
	if t.kind != '{' || (len(t.items) != 2 && len(t.items) != 4) {
		return r, fmt.Errorf("want {Permission, Who, Action, Topics} or {Permission, all}, got %s", t)
	}
	switch {
	case t.items[0].isAtom("allow"):
		r.Allow = true
	case t.items[0].isAtom("deny"):
	default:
		return r, fmt.Errorf("permission %s: want allow or deny", t.items[0])
	}
	if len(t.items) == 2 {
		if !t.items[1].isAtom("all") {
			return r, fmt.Errorf("two-element rule %s: want {allow, all} or {deny, all}", t)
		}
		r.who, r.Action = who{kind: whoAll}, identity.All
		return r, nil
	}
	var err error
	if r.who, err = emqxWho(t.items[1]); err != nil {
		return r, err
	}
	if err := emqxAction(t.items[2], &r); err != nil {
		return r, err
	}
	if t.items[3].kind != '[' || len(t.items[3].items) == 0 {
		return r, fmt.Errorf("topics %s: want a non-empty list", t.items[3])
	}
	for _, tp := range t.items[3].items {
		switch {
		case tp.kind == 's':
			r.topics = append(r.topics, newPattern(tp.s, false))
		case tp.kind == '{' && len(tp.items) == 2 && tp.items[0].isAtom("eq") && tp.items[1].kind == 's':
			r.topics = append(r.topics, newPattern(tp.items[1].s, true))
		default:
			return r, fmt.Errorf("topic %s: want \"filter\" or {eq, \"filter\"}", tp)
		}
		if f := r.topics[len(r.topics)-1].text; !validFilter(f) {
			return r, fmt.Errorf("topic %q is not a valid topic filter", f)
		}
	}
	return r, nil
}

func emqxWho(t term) (who, error) {
	if t.isAtom("all") {
		return who{kind: whoAll}, nil
	}
	if t.kind != '{' || len(t.items) != 2 || t.items[0].kind != 'a' {
		return who{}, fmt.Errorf("who %s: want all or {Key, Value}", t)
	}
	key, val := t.items[0].s, t.items[1]
	str := func() (string, error) {
		if val.kind != 's' || val.s == "" {
			return "", fmt.Errorf("who %s: want a non-empty string", t)
		}
		return val.s, nil
	}
	re := func() (*regexp.Regexp, bool, error) {
		if val.kind == '{' && len(val.items) == 2 && val.items[0].isAtom("re") && val.items[1].kind == 's' {
			r, err := regexp.Compile(val.items[1].s)
			return r, true, err
		}
		return nil, false, nil
	}
	switch key {
	case "user", "username", "clientid":
		r, isRe, err := re()
		if err != nil {
			return who{}, fmt.Errorf("who %s: %w", t, err)
		}
		if isRe {
			if key == "clientid" {
				return who{kind: whoClientRe, re: r}, nil
			}
			return who{kind: whoUserRe, re: r}, nil
		}
		s, err := str()
		if err != nil {
			return who{}, err
		}
		if key == "clientid" {
			return who{kind: whoClient, s: s}, nil
		}
		return who{kind: whoUser, s: s}, nil
	case "cert_cn":
		s, err := str()
		return who{kind: whoCertCN, s: s}, err
	case "ipaddr", "ipaddrs":
		var list []term
		if key == "ipaddr" {
			list = []term{val}
		} else if val.kind == '[' {
			list = val.items
		}
		w := who{kind: whoIP}
		for _, a := range list {
			if a.kind != 's' {
				return who{}, fmt.Errorf("who %s: want address strings", t)
			}
			p, err := cidr.Parse(a.s)
			if err != nil {
				return who{}, fmt.Errorf("who %s: %w", t, err)
			}
			w.nets = append(w.nets, p)
		}
		if len(w.nets) == 0 {
			return who{}, fmt.Errorf("who %s: no address", t)
		}
		return w, nil
	case "and", "or":
		if val.kind != '[' || len(val.items) == 0 {
			return who{}, fmt.Errorf("who %s: want a non-empty list", t)
		}
		w := who{kind: whoAnd}
		if key == "or" {
			w.kind = whoOr
		}
		for _, it := range val.items {
			sub, err := emqxWho(it)
			if err != nil {
				return who{}, err
			}
			w.sub = append(w.sub, sub)
		}
		return w, nil
	}
	return who{}, fmt.Errorf("who %s: unknown key %q", t, key)
}

func emqxAction(t term, r *Rule) error {
	name := t
	var opts []term
	if t.kind == '{' && len(t.items) == 2 && t.items[1].kind == '[' {
		name, opts = t.items[0], t.items[1].items
	}
	switch {
	case name.isAtom("publish"):
		r.Action = identity.Publish
	case name.isAtom("subscribe"):
		r.Action = identity.Subscribe
	case name.isAtom("all", "pubsub"):
		r.Action = identity.All
	default:
		return fmt.Errorf("action %s: want publish, subscribe or all", t)
	}
	for _, o := range opts {
		if o.kind != '{' || len(o.items) != 2 {
			return fmt.Errorf("action option %s: want {qos, Q} or {retain, B}", o)
		}
		switch v := o.items[1]; {
		case o.items[0].isAtom("qos"):
			qs := []term{v}
			if v.kind == '[' {
				qs = v.items
			}
			for _, q := range qs {
				if q.kind != 'i' || q.i > 2 {
					return fmt.Errorf("qos %s: want 0, 1, 2 or a list of them", v)
				}
				r.qos |= 1 << q.i
			}
		case o.items[0].isAtom("retain") && v.isAtom("true"):
			r.retain = 1
		case o.items[0].isAtom("retain") && v.isAtom("false"):
			r.retain = 0
		default:
			return fmt.Errorf("action option %s: want {qos, Q} or {retain, true|false}", o)
		}
	}
	return nil
}
