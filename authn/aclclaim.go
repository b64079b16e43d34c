package authn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// maxClientRules bounds the per-client rules a token or webhook may carry.
const maxClientRules = 1000

// ParseClientRules reads per-client ACL rules as they arrive in a JWT
// "acl" claim or a webhook answer, in either common broker form:
//
//	{"pub": ["t/${clientid}/#"], "sub": ["cmd/${clientid}"], "all": ["shared/#"]}
//
// (each an allow rule), or a list of rule objects:
//
//	[{"permission": "allow", "action": "publish", "topic": "t/1", "qos": [0, 1], "retain": false},
//	 {"permission": "deny", "action": "all", "topics": ["#"]}]
//
// The raw value is what encoding/json produced (map, slice...). Anything
// malformed is an error: a client with rules that cannot be read is refused.
func ParseClientRules(v any) ([]identity.Rule, error) {
	var out []identity.Rule
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		for key, action := range map[string]identity.Action{"pub": identity.Publish, "sub": identity.Subscribe, "all": identity.All} {
			raw, ok := v[key]
			if !ok {
				continue
			}
			topics, err := topicList(raw)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", key, err)
			}
			out = append(out, identity.Rule{Allow: true, Action: action, Topics: topics})
		}
		for key := range v {
			if key != "pub" && key != "sub" && key != "all" {
				return nil, fmt.Errorf("unknown key %q: want pub, sub, all", key)
			}
		}
	case []any:
		if len(v) > maxClientRules {
			return nil, fmt.Errorf("%d rules: at most %d", len(v), maxClientRules)
		}
		for i, r := range v {
			rule, err := ruleObject(r)
			if err != nil {
				return nil, fmt.Errorf("rule %d: %w", i+1, err)
			}
			out = append(out, rule)
		}
	default:
		return nil, errors.New("want an object with pub/sub/all or a list of rules")
	}
	return out, nil
}

func ruleObject(v any) (identity.Rule, error) {
	var r identity.Rule
	m, ok := v.(map[string]any)
	if !ok {
		return r, errors.New("not an object")
	}
	for k := range m {
		switch k {
		case "permission", "action", "topic", "topics", "qos", "retain":
		default:
			return r, fmt.Errorf("unknown key %q", k)
		}
	}
	switch m["permission"] {
	case "allow":
		r.Allow = true
	case "deny":
	default:
		return r, errors.New(`permission: want "allow" or "deny"`)
	}
	switch m["action"] {
	case "publish":
		r.Action = identity.Publish
	case "subscribe":
		r.Action = identity.Subscribe
	case "all", nil:
		r.Action = identity.All
	default:
		return r, errors.New(`action: want "publish", "subscribe" or "all"`)
	}
	_, one := m["topic"]
	_, many := m["topics"]
	var err error
	switch {
	case one && many:
		return r, errors.New("both topic and topics")
	case one:
		r.Topics, err = topicList([]any{m["topic"]})
	case many:
		r.Topics, err = topicList(m["topics"])
	default:
		return r, errors.New("no topic")
	}
	if err != nil {
		return r, err
	}
	if q, ok := m["qos"]; ok {
		if r.QoS, err = qosList(q); err != nil {
			return r, err
		}
	}
	if rt, ok := m["retain"]; ok {
		b, ok := rt.(bool)
		if !ok {
			return r, errors.New("retain: want true or false")
		}
		r.Retain = &b
	}
	return r, nil
}

func topicList(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("want a list of topic filters")
	}
	if len(list) == 0 || len(list) > maxClientRules {
		return nil, fmt.Errorf("%d topics: want 1 to %d", len(list), maxClientRules)
	}
	out := make([]string, 0, len(list))
	for _, t := range list {
		s, ok := t.(string)
		// "eq FILTER" is a rule about the filter itself, not what it matches.
		if !ok || !mqttwire.ValidTopicFilter([]byte(strings.TrimPrefix(s, "eq "))) {
			return nil, fmt.Errorf("bad topic filter %v", t)
		}
		out = append(out, s)
	}
	return out, nil
}

func qosList(v any) ([]byte, error) {
	if n, ok := v.(float64); ok {
		v = []any{n}
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 || len(list) > 3 {
		return nil, errors.New("qos: want 0, 1, 2 or a list of them")
	}
	out := make([]byte, 0, len(list))
	for _, q := range list {
		n, ok := q.(float64)
		if !ok || (n != 0 && n != 1 && n != 2) {
			return nil, fmt.Errorf("qos: bad level %v", q)
		}
		out = append(out, byte(n))
	}
	return out, nil
}

// withoutClientID drops the topics that name the client id (${clientid}
// or %c) from rules whose source did not bind it, and a rule left without
// topics: such a topic matches nothing, as the acl package treats a
// placeholder it cannot fill. A rule that had no topics (every topic)
// stays as it is.
func withoutClientID(rules []identity.Rule) []identity.Rule {
	out := rules[:0:0]
	for _, r := range rules {
		if len(r.Topics) == 0 {
			out = append(out, r)
			continue
		}
		var kept []string
		for _, t := range r.Topics {
			if !strings.Contains(t, "${clientid}") && !strings.Contains(t, "%c") {
				kept = append(kept, t)
			}
		}
		if len(kept) > 0 {
			r.Topics = kept
			out = append(out, r)
		}
	}
	return out
}
