package acl

import (
	"net/netip"
	"regexp"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Client is what the ACLs know of a connection, fixed at CONNECT.
type Client struct {
	ClientID, Username, CertCN string
	Addr                       netip.Addr
	Superuser                  bool
	// Rules come from the client's identity (JWT claim, webhook) and are
	// checked before the file's.
	Rules []identity.Rule
}

// ClientFrom builds a Client from an authenticated identity and address.
func ClientFrom(id *identity.Identity, addr netip.Addr) Client {
	if id == nil {
		return Client{Addr: addr}
	}
	return Client{ClientID: id.ClientID, Username: id.Username, CertCN: id.CertCN, Addr: addr, Superuser: id.Superuser, Rules: id.Rules}
}

type whoKind uint8

const (
	whoAll whoKind = iota
	whoAnonymous
	whoUser
	whoUserRe
	whoClient
	whoClientRe
	whoIP
	whoCertCN
	whoAnd
	whoOr
)

// who says which clients a rule is about.
type who struct {
	kind whoKind
	s    string
	re   *regexp.Regexp
	nets []netip.Prefix
	sub  []who
}

func (w *who) matches(c *Client) bool {
	switch w.kind {
	case whoAll:
		return true
	case whoAnonymous:
		return c.Username == ""
	case whoUser:
		return c.Username == w.s
	case whoUserRe:
		return w.re.MatchString(c.Username)
	case whoClient:
		return c.ClientID == w.s
	case whoClientRe:
		return w.re.MatchString(c.ClientID)
	case whoCertCN:
		return c.CertCN != "" && c.CertCN == w.s
	case whoIP:
		for _, n := range w.nets {
			if c.Addr.IsValid() && n.Contains(c.Addr.Unmap()) {
				return true
			}
		}
		return false
	case whoAnd:
		for i := range w.sub {
			if !w.sub[i].matches(c) {
				return false
			}
		}
		return true
	case whoOr:
		for i := range w.sub {
			if w.sub[i].matches(c) {
				return true
			}
		}
	}
	return false
}

// pattern is a rule's topic as written: a filter that may hold
// placeholders, or (eq) a filter to be matched literally.
type pattern struct {
	text string
	eq   bool
	// fixed is set when text holds no placeholder.
	fixed bool
}

func newPattern(text string, eq bool) pattern {
	return pattern{text: text, eq: eq, fixed: !strings.Contains(text, "${") && !strings.Contains(text, "%")}
}

// resolve fills the placeholders ${clientid}, ${username}, ${cert_cn},
// %c and %u. A value that is empty, holds +, # or /, or starts with $
// makes the pattern match nothing (ok false).
func (p pattern) resolve(c *Client) (string, bool) {
	if p.fixed {
		return p.text, true
	}
	var buf [128]byte // built on the stack; the string is one exact allocation
	b := buf[:0]
	t := p.text
	for len(t) > 0 {
		var v string
		var n int
		switch {
		case strings.HasPrefix(t, "${clientid}"):
			v, n = c.ClientID, len("${clientid}")
		case strings.HasPrefix(t, "${username}"):
			v, n = c.Username, len("${username}")
		case strings.HasPrefix(t, "${cert_cn}"):
			v, n = c.CertCN, len("${cert_cn}")
		case strings.HasPrefix(t, "%c"):
			v, n = c.ClientID, 2
		case strings.HasPrefix(t, "%u"):
			v, n = c.Username, 2
		default:
			b = append(b, t[0])
			t = t[1:]
			continue
		}
		if v == "" || strings.ContainsAny(v, "+#/") || v[0] == '$' {
			return "", false // a client id of "#" or "$SYS" must not widen a rule, nor open the $ topics
		}
		b = append(b, v...)
		t = t[n:]
	}
	return string(b), true
}

// Rule is one parsed rule.
type Rule struct {
	Allow  bool
	who    who
	Action identity.Action
	topics []pattern // empty: every topic
	// qos is a bit mask of the QoS levels the rule is about (0: any): the
	// QoS of a PUBLISH, or the QoS a SUBSCRIBE requests for a filter.
	qos uint8
	// retain: -1 any, 0 only non-retained, 1 only retained.
	retain int8
	// Source names where the rule came from, for logs: "acl.conf:12".
	Source string
}

// appliesAtQoS reports whether the rule's QoS condition, if any, admits q.
func (r *Rule) appliesAtQoS(q byte) bool { return r.qos == 0 || r.qos&(1<<q) != 0 }

func qosMask(levels []byte) uint8 {
	var m uint8
	for _, q := range levels {
		m |= 1 << q
	}
	return m
}

// clientRules converts identity rules (JWT, webhook).
func clientRules(rs []identity.Rule, source string) []Rule {
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		cr := Rule{Allow: r.Allow, Action: r.Action, qos: qosMask(r.QoS), retain: -1, Source: source}
		if r.Retain != nil {
			cr.retain = 0
			if *r.Retain {
				cr.retain = 1
			}
		}
		for _, t := range r.Topics {
			if f, ok := strings.CutPrefix(t, "eq "); ok {
				cr.topics = append(cr.topics, newPattern(f, true))
			} else {
				cr.topics = append(cr.topics, newPattern(t, false))
			}
		}
		out = append(out, cr)
	}
	return out
}

func validFilter(s string) bool { return s != "" && mqttwire.ValidTopicFilter([]byte(s)) }

func validTopic(s string) bool { return s != "" && mqttwire.ValidTopicName([]byte(s)) }
