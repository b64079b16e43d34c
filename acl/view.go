package acl

import (
	"hash/maphash"
	"math"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// Decision is the answer to one check.
type Decision struct {
	Allow bool
	// Source names the rule that decided ("acl.conf:12", "jwt", ...) or
	// the default ("superuser", "$SYS", "no match", "wildcard").
	Source string
}

// crule is a rule compiled for one connection: placeholders resolved.
type crule struct {
	order  int32
	rule   *Rule
	any    bool     // every topic
	topics []string // resolved filters
	eq     []bool
}

// matchesName reports whether the rule is about the topic name: every
// topic, the filter itself (eq), or a filter that matches it.
func (cr *crule) matchesName(topic string) bool {
	if cr.any {
		return true
	}
	for i, f := range cr.topics {
		if (cr.eq[i] && f == topic) || (!cr.eq[i] && covers(f, topic)) {
			return true
		}
	}
	return false
}

// View is one connection's compiled rules and decision cache. A View is
// used by one goroutine (the connection's client pump).
type View struct {
	eng  *Engine
	c    Client
	set  *RuleSet
	own  []crule // the client's rules, then its file rules outside the shared index, in order
	clr  []Rule  // converted identity rules (kept for rebuilds)
	seed maphash.Seed

	// cache is allocated by the first check: an idle connection does not
	// hold its 4.5 KiB.
	cache *[cacheSize]centry
}

const cacheSize = 64

type centry struct {
	key   uint64
	kind  byte
	topic string
	d     Decision
	gen   *RuleSet
}

// Check kinds.
const (
	kindPublish byte = iota + 1
	kindSubscribe
	kindReceive
)

func (v *View) rebuild(set *RuleSet) {
	v.set = set
	// Every connection holds its view for its life: count first, then
	// fill exact-size slices, the resolved filters of all rules sharing
	// one backing array.
	var ids []int32
	if set != nil {
		ids = set.candidates(&v.c)
		n := 0
		for _, id := range ids {
			if set.rules[id].who.matches(&v.c) {
				ids[n] = id
				n++
			}
		}
		ids = ids[:n]
	}
	nrules, ntopics := len(v.clr)+len(ids), 0
	for i := range v.clr {
		ntopics += len(v.clr[i].topics)
	}
	for _, id := range ids {
		ntopics += len(set.rules[id].topics)
	}
	v.own = make([]crule, 0, nrules)
	topics, eq := make([]string, 0, ntopics), make([]bool, 0, ntopics)
	add := func(order int32, r *Rule) {
		start := len(topics)
		for _, p := range r.topics {
			if f, ok := p.resolve(&v.c); ok {
				topics = append(topics, f)
				eq = append(eq, p.eq)
			}
		}
		cr := crule{order: order, rule: r, any: len(r.topics) == 0,
			topics: topics[start:len(topics):len(topics)], eq: eq[start:len(eq):len(eq)]}
		if cr.any || len(cr.topics) > 0 {
			v.own = append(v.own, cr)
		}
	}
	for i := range v.clr {
		add(int32(i)-int32(len(v.clr)), &v.clr[i]) // before every file rule
	}
	for _, id := range ids {
		add(id, &set.rules[id])
	}
}

// current rebuilds the view when the engine loaded a new rule set since.
func (v *View) current() *RuleSet {
	if s := v.eng.set.Load(); s != v.set {
		v.rebuild(s)
	}
	return v.set
}

// Publish decides whether the client may publish to topic.
func (v *View) Publish(topic []byte, qos byte, retain bool) Decision {
	if v.c.Superuser {
		return Decision{true, "superuser"}
	}
	if isSys(topic) {
		return Decision{false, "$SYS"}
	}
	var flags byte
	if retain {
		flags = 4
	}
	return v.cached(kindPublish, qos|flags, topic, func(t string) Decision { return v.decidePublish(t, qos, retain) })
}

// Subscribe decides whether the client may subscribe to the filter. A
// shared subscription ($share/group/F) is judged by F.
func (v *View) Subscribe(filter []byte) Decision {
	if v.c.Superuser {
		return Decision{true, "superuser"}
	}
	f := stripShare(filter)
	if isSys(f) {
		return Decision{false, "$SYS"}
	}
	return v.cached(kindSubscribe, 0, f, v.decideSubscribe)
}

// Receive decides whether a message on topic may be delivered to the
// client: its subscribe rights, for the topic name.
func (v *View) Receive(topic []byte) Decision {
	if v.c.Superuser {
		return Decision{true, "superuser"}
	}
	if isSys(topic) {
		return Decision{false, "$SYS"}
	}
	return v.cached(kindReceive, 0, topic, v.decideReceive)
}

func isSys(t []byte) bool {
	return len(t) >= 4 && string(t[:4]) == "$SYS" && (len(t) == 4 || t[4] == '/')
}

func stripShare(f []byte) []byte {
	const p = "$share/"
	if len(f) > len(p) && string(f[:len(p)]) == p {
		if i := strings.IndexByte(string(f[len(p):]), '/'); i >= 0 {
			return f[len(p)+i+1:]
		}
	}
	return f
}

// cached looks the decision up by kind, flags and topic; a miss decides
// and remembers it. Only a miss allocates (the topic is copied).
func (v *View) cached(kind, flags byte, topic []byte, decide func(string) Decision) Decision {
	set := v.current()
	if v.cache == nil {
		v.cache = new([cacheSize]centry)
	}
	h := maphash.Bytes(v.seed, topic) ^ uint64(kind)<<56 ^ uint64(flags)<<48
	e := &v.cache[h%cacheSize]
	if e.gen == set && e.key == h && e.kind == kind && e.topic == string(topic) {
		return e.d
	}
	t := string(topic)
	d := decide(t)
	*e = centry{key: h, kind: kind, topic: t, d: d, gen: set}
	return d
}

func (v *View) noMatch() Decision {
	if v.eng.noMatchAllow {
		return Decision{true, "no match"}
	}
	return Decision{false, "no match"}
}

// decide returns the first rule, in order, that own or the shared index
// offer, or the default.
func (v *View) decide(ownMatch func(*crule) bool, shared func(*best)) Decision {
	first := int32(math.MaxInt32)
	var src *Rule
	for i := range v.own {
		if cr := &v.own[i]; ownMatch(cr) {
			first, src = cr.order, cr.rule
			break
		}
	}
	if v.set != nil && v.set.shared.size > 0 {
		b := best{id: first, seen: true}
		if shared(&b); b.id < first {
			src = &v.set.rules[b.id]
		}
	}
	if src == nil {
		return v.noMatch()
	}
	return Decision{src.Allow, src.Source}
}

func (v *View) decidePublish(topic string, qos byte, retain bool) Decision {
	cond := func(r *Rule) bool {
		return r.Action&identity.Publish != 0 && (r.qos == 0 || r.qos&(1<<qos) != 0) &&
			(r.retain < 0 || (r.retain == 1) == retain)
	}
	return v.decide(func(cr *crule) bool {
		return cond(cr.rule) && cr.matchesName(topic)
	}, func(b *best) {
		b.ok = func(id int32) bool { return cond(&v.set.rules[id]) }
		v.set.shared.matchCover(topic, b)
	})
}

// decideSubscribe: an allow rule must cover the whole filter; a deny rule
// that shares any topic with it denies. Subscriptions to # and +/# are
// allowed only by a rule that names such a filter, never by a rule about
// every topic.
func (v *View) decideSubscribe(filter string) Decision {
	wide := filter == "#" || filter == "+/#"
	d := v.decide(func(cr *crule) bool {
		r := cr.rule
		if r.Action&identity.Subscribe == 0 {
			return false
		}
		if cr.any {
			return !r.Allow || !wide
		}
		for i, f := range cr.topics {
			switch {
			case cr.eq[i]:
				if f == filter {
					return true
				}
			case r.Allow:
				if covers(f, filter) {
					return true
				}
			default:
				if intersects(f, filter) {
					return true
				}
			}
		}
		return false
	}, func(b *best) {
		rules := v.set.rules
		b.ok = func(id int32) bool { r := &rules[id]; return r.Allow && r.Action&identity.Subscribe != 0 }
		v.set.shared.matchCover(filter, b)
		b.ok = func(id int32) bool { r := &rules[id]; return !r.Allow && r.Action&identity.Subscribe != 0 }
		v.set.shared.matchIntersect(filter, b)
	})
	if wide && d.Source == "no match" {
		d = Decision{false, "wildcard"}
	}
	return d
}

func (v *View) decideReceive(topic string) Decision {
	return v.decide(func(cr *crule) bool {
		return cr.rule.Action&identity.Subscribe != 0 && cr.matchesName(topic)
	}, func(b *best) {
		b.ok = func(id int32) bool { return v.set.rules[id].Action&identity.Subscribe != 0 }
		v.set.shared.matchCover(topic, b)
	})
}
