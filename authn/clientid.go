package authn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// ClientIDPattern binds client ids to the admitted identity: a client id
// picks the broker's session, so without it one user may resume another's.
// A pattern is literal text in which a star ("*") stands for any run of
// characters, none included, and two placeholders stand for the admitted
// identity: ${username} its user name, ${cert_cn} its verified client
// certificate's common name.
//
// A placeholder's value is matched literally: a user name "a*" matches
// only the text "a*". A placeholder must be separated from a star by
// literal text, and its value may not hold the separator characters
// around it (see Match), so a client id fits one identity at most. A placeholder whose value is empty matches nothing,
// so the client is refused. Nothing else is special, and there is no
// escape: a pattern cannot ask for a literal star. The whole client id
// must match, as the client sent it (or as MQTTGATE_CERT_IDENTITY_CLIENTID
// rewrote it). An empty client id, which leaves the broker to assign one,
// never matches: it cannot be checked, so it is refused. Examples:
//
//	${username}-*   alice may use alice-1 or alice-sensor, not bob-1
//	                (and a user name holding "-" matches nothing)
//	${cert_cn}      exactly the certificate's common name
type ClientIDPattern struct {
	text  string
	parts []idPart
}

type idPart struct {
	lit   string // literal text, when neither star nor field
	star  bool
	field string // "username" or "cert_cn"
}

var idFields = map[string]bool{"username": true, "cert_cn": true}

// ParseClientIDPattern reads a pattern; "" is no pattern (nil).
func ParseClientIDPattern(s string) (*ClientIDPattern, error) {
	if s == "" {
		return nil, nil
	}
	p := &ClientIDPattern{text: s}
	for t := s; t != ""; {
		i := strings.IndexAny(t, "*$")
		if i < 0 {
			p.parts = append(p.parts, idPart{lit: t})
			break
		}
		if i > 0 {
			p.parts = append(p.parts, idPart{lit: t[:i]})
			t = t[i:]
		}
		switch {
		case t[0] == '*':
			if n := len(p.parts); n == 0 || !p.parts[n-1].star { // ** is *
				p.parts = append(p.parts, idPart{star: true})
			}
			t = t[1:]
		case strings.HasPrefix(t, "${"):
			j := strings.IndexByte(t, '}')
			if j < 0 {
				return nil, fmt.Errorf("unclosed placeholder in %q", s)
			}
			if name := t[2:j]; !idFields[name] {
				return nil, fmt.Errorf("unknown placeholder ${%s}: want ${username} or ${cert_cn}", name)
			}
			p.parts = append(p.parts, idPart{field: t[2:j]})
			t = t[j+1:]
		default: // a $ that starts no placeholder is text
			p.parts = append(p.parts, idPart{lit: "$"})
			t = t[1:]
		}
	}
	if len(p.parts) == 1 && p.parts[0].star {
		return nil, errors.New(`"*" alone binds nothing: leave the pattern unset instead`)
	}
	for i, part := range p.parts {
		if part.field == "" {
			continue
		}
		// Between a placeholder and a star nothing marks where the value
		// ends: under ${username}*, alice could use alicebob's ids.
		if (i > 0 && p.parts[i-1].star) || (i+1 < len(p.parts) && p.parts[i+1].star) {
			return nil, fmt.Errorf("%q: put a separator between ${%s} and *, e.g. ${%s}-*", s, part.field, part.field)
		}
	}
	return p, nil
}

// String is the pattern as written.
func (p *ClientIDPattern) String() string { return p.text }

// Match reports whether id's client id fits the pattern filled with id's
// user name and certificate common name.
//
// A placeholder followed by literal text must have a value that does not
// hold that text's first character: under ${username}-*, user alice-bob
// matches nothing, for otherwise alice could use alice-bob-phone, the
// client id (and the broker session) of alice-bob. So a client id fits
// one identity's pattern at most.
func (p *ClientIDPattern) Match(id *identity.Identity) bool {
	// Fill the placeholders into literal pieces between the stars.
	pieces := make([]string, 1, 4)
	for i, part := range p.parts {
		switch {
		case part.star:
			pieces = append(pieces, "")
		case part.field != "":
			v := id.Username
			if part.field == "cert_cn" {
				v = id.CertCN
			}
			if v == "" {
				return false
			}
			if !p.bounded(i, v) {
				return false // the value could reach into another identity's ids
			}
			pieces[len(pieces)-1] += v
		default:
			pieces[len(pieces)-1] += part.lit
		}
	}
	return globMatch(pieces, id.ClientID)
}

// bounded reports whether v, the value of placeholder part i, holds
// neither the first character of the literal after it nor the last of
// the literal before it: the characters that mark where it ends.
func (p *ClientIDPattern) bounded(i int, v string) bool {
	if i+1 < len(p.parts) {
		if lit := p.parts[i+1].lit; lit != "" {
			if r, _ := utf8.DecodeRuneInString(lit); strings.ContainsRune(v, r) {
				return false
			}
		}
	}
	if i > 0 {
		if lit := p.parts[i-1].lit; lit != "" {
			if r, _ := utf8.DecodeLastRuneInString(lit); strings.ContainsRune(v, r) {
				return false
			}
		}
	}
	return true
}

// globMatch matches s against pieces joined by stars: the first piece is
// a prefix, the last a suffix, the ones between occur in order. Taking
// the leftmost occurrence of each middle piece is enough when the only
// wildcard is "any run of characters".
func globMatch(pieces []string, s string) bool {
	if len(pieces) == 1 {
		return s == pieces[0]
	}
	first, last := pieces[0], pieces[len(pieces)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	for _, m := range pieces[1 : len(pieces)-1] {
		i := strings.Index(s, m)
		if i < 0 {
			return false
		}
		s = s[i+len(m):]
	}
	return true
}
