package acl

import (
	"bufio"
	"bytes"
	"slices"
	"strconv"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// parseMosquitto reads Mosquitto's acl_file syntax:
//
//	# comment
//	topic [read|write|readwrite|deny] TOPIC   (before any user line: anonymous clients)
//	user USERNAME
//	topic [read|write|readwrite|deny] TOPIC   (that user)
//	pattern [read|write|readwrite|deny] TOPIC (every client; %c and %u substituted)
//
// read is subscribe, write publish. As in Mosquitto, a client's topic
// lines (its user's, or the anonymous ones) are read before the pattern
// lines, and within each, deny lines before the lines that grant access.
func parseMosquitto(name string, b []byte) (*RuleSet, error) {
	var denies, allows, patternDenies, patternAllows []Rule
	current := who{kind: whoAnonymous}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		keyword, rest, _ := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		rest = strings.TrimLeft(rest, " \t")
		switch keyword {
		case "user":
			if rest == "" {
				return nil, lineError(name, n, "user without a name")
			}
			current = who{kind: whoUser, s: rest}
			continue
		case "topic", "pattern":
		default:
			return nil, lineError(name, n, "unknown keyword %q: want user, topic or pattern", keyword)
		}
		access, topic := "readwrite", rest
		if a, t, ok := strings.Cut(rest, " "); ok {
			switch a {
			case "read", "write", "readwrite", "deny":
				access, topic = a, strings.TrimLeft(t, " \t")
			}
		}
		if !validFilter(topic) {
			return nil, lineError(name, n, "%q is not a valid topic filter", topic)
		}
		r := Rule{Allow: access != "deny", Action: identity.All, retain: -1, Source: lineSource(name, n)}
		switch access {
		case "read":
			r.Action = identity.Subscribe
		case "write":
			r.Action = identity.Publish
		}
		if keyword == "pattern" {
			r.who = who{kind: whoAll}
			r.topics = []pattern{newPattern(topic, false)}
		} else {
			r.who = current
			r.topics = []pattern{{text: topic, fixed: true}} // no substitution on topic lines
		}
		switch {
		case keyword == "pattern" && r.Allow:
			patternAllows = append(patternAllows, r)
		case keyword == "pattern":
			patternDenies = append(patternDenies, r)
		case r.Allow:
			allows = append(allows, r)
		default:
			denies = append(denies, r)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, lineError(name, 0, "%v", err)
	}
	return newRuleSet("mosquitto", slices.Concat(denies, allows, patternDenies, patternAllows)), nil
}

func lineSource(name string, n int) string { return name + ":" + strconv.Itoa(n) }
