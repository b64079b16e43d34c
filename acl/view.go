package acl

import (
	"hash/maphash"
	"math"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// ruling is the answer to one check, before the engine's options shape
// it into the decision the proxy enforces.
type ruling struct {
	Allow bool
	// Partial, with Allow, grants a filter only part of whose topics the
	// client may read (Source names the rule that denies the rest): what
	// the broker delivers on it must be judged topic by topic.
	Partial bool
	// Source names the rule that decided ("acl.conf:12", "jwt", ...) or
	// the default ("superuser", "no match", "wildcard", "cost").
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
		return !cr.rule.Allow || !dollar(topic) // a $ topic is granted only by a rule that names it
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
	d     ruling
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

// Publish decides whether the client may publish to topic (and a will).
func (v *View) Publish(topic []byte, qos byte, retain bool) mqttwire.Decision {
	return v.eng.answer(v.publish(topic, qos, retain), true)
}

// Subscribe decides whether the client may subscribe to the filter at
// the QoS it requests for it (see subscribe).
func (v *View) Subscribe(filter []byte, qos byte) mqttwire.Decision {
	return v.eng.answer(v.subscribe(filter, qos), false)
}

// Receive decides whether a message on topic may be delivered to the
// client (see receive).
func (v *View) Receive(topic []byte) mqttwire.Decision {
	return v.eng.answer(v.receive(topic), false)
}

// answer shapes a ruling into the decision the proxy enforces: a denial
// refuses the packet (Not authorized), ends the session instead for a
// PUBLISH with DenyDisconnect, and in dry run is only reported.
func (e *Engine) answer(r ruling, publish bool) mqttwire.Decision {
	switch {
	case r.Allow:
		d := mqttwire.Decision{Why: r.Source}
		if r.Partial {
			d.Mark = mqttwire.Partial
		}
		return d
	case e.opts.DryRun:
		return mqttwire.Decision{Why: r.Source, Mark: mqttwire.DryRun}
	case publish && e.opts.DenyDisconnect:
		return mqttwire.Decision{Verdict: mqttwire.End, Code: mqttwire.NotAuthorized, Why: r.Source}
	}
	return mqttwire.Decision{Verdict: mqttwire.Refuse, Code: mqttwire.NotAuthorized, Why: r.Source}
}

func (v *View) publish(topic []byte, qos byte, retain bool) ruling {
	if v.c.Superuser {
		return ruling{Allow: true, Source: "superuser"}
	}
	if len(topic) >= 4 && string(topic[:4]) == "$SYS" && (len(topic) == 4 || topic[4] == '/') {
		return ruling{Source: "$SYS"} // the broker's own topics: no client writes them, whatever the rules (Mosquitto drops them too)
	}
	if qos > 2 {
		return ruling{Source: "qos"}
	}
	var r int8
	if retain {
		r = 1
	}
	return v.cached(kindPublish, topic, int(qos), r)
}

// subscribe decides whether the client may subscribe to the filter at
// the QoS it requests for it: granted whole, granted in part (Partial:
// the deliveries on it are judged), or refused when the client may read
// none of its topics (see decide). A rule with a QoS condition that does not
// admit qos does not match, as in EMQX, which refuses such a filter
// rather than granting it at a lower QoS. A shared subscription
// ($share/group/F) and EMQX's $queue/F and $exclusive/F are judged by F,
// the filter whose messages the broker delivers.
func (v *View) subscribe(filter []byte, qos byte) ruling {
	if v.c.Superuser {
		return ruling{Allow: true, Source: "superuser"}
	}
	f := stripPrefixes(filter)
	if qos > 2 {
		return ruling{Source: "qos"}
	}
	r := v.cached(kindSubscribe, f, int(qos), -1)
	if r.Partial && len(f) != len(filter) {
		// A shared subscription takes its share of the group's messages:
		// a member whose deliveries are dropped would lose the group's
		// messages with it (acknowledged and gone). Whole, or refused.
		return ruling{Source: r.Source}
	}
	return r
}

// receive decides whether a message on topic may be delivered to the
// client: its subscribe rights, for the topic name. A rule's QoS
// condition does not enter: it was applied when the client subscribed.
func (v *View) receive(topic []byte) ruling {
	if v.c.Superuser {
		return ruling{Allow: true, Source: "superuser"}
	}
	return v.cached(kindReceive, topic, anyQoS, -1)
}

// dollar reports whether a topic or filter starts with $ ($SYS, ...): no
// filter starting with a wildcard matches it [MQTT-4.7.2-1], and neither
// a rule about every topic nor the allowing default grants it; only a
// rule whose filter names the $ level does.
func dollar(t string) bool { return len(t) > 0 && t[0] == '$' }

// stripPrefixes removes the subscription prefixes that name how a broker
// shares a filter, not which topics it matches: $share/group/ (MQTT 5),
// and EMQX's $queue/ (a share without a group) and $exclusive/ (one
// subscriber at a time). A prefix followed by nothing is left alone: it
// is judged as the literal $ filter it is.
func stripPrefixes(f []byte) []byte {
	for {
		switch {
		case hasPrefix(f, "$share/"):
			i := strings.IndexByte(string(f[len("$share/"):]), '/')
			if i < 0 || len(f) == len("$share/")+i+1 {
				return f
			}
			f = f[len("$share/")+i+1:]
		case hasPrefix(f, "$queue/"):
			f = f[len("$queue/"):]
		case hasPrefix(f, "$exclusive/"):
			f = f[len("$exclusive/"):]
		default:
			return f
		}
	}
}

// hasPrefix: f starts with p and holds more after it.
func hasPrefix(f []byte, p string) bool { return len(f) > len(p) && string(f[:len(p)]) == p }

// cached looks the decision up by kind, QoS, retain and topic; a miss
// decides and remembers it. Only a miss allocates (the topic is copied).
func (v *View) cached(kind byte, topic []byte, qos int, retain int8) ruling {
	set := v.current()
	if v.cache == nil {
		v.cache = new([cacheSize]centry)
	}
	h := maphash.Bytes(v.seed, topic) ^ uint64(kind)<<56 ^ uint64(qos)<<48 ^ uint64(retain+1)<<40
	e := &v.cache[h%cacheSize]
	if e.gen == set && e.key == h && e.kind == kind && e.topic == string(topic) {
		return e.d
	}
	t := string(topic)
	d := v.decide(kind, t, qos, retain)
	*e = centry{key: h, kind: kind, topic: t, d: d, gen: set}
	return d
}

func (v *View) noMatch(t string) ruling {
	return ruling{Allow: v.eng.noMatchAllow && !dollar(t), Source: "no match"}
}

// decide returns the first rule, in order, that the view's own rules or
// the shared indexes offer, or the default. The indexes are walked only
// for rules before the first own match, within walkBudget nodes; if the
// budget runs out before the answer is known the check is denied, with
// the source "cost": no filter costs more than that to judge.
//
// A subscription is granted whole by an allow rule that covers the whole
// filter with no deny rule before it sharing a topic with it. A filter
// of wildcards only (#, +, +/#, +/+/#, ...) matches every topic of some
// depths, and a few of them together every topic: it is granted whole
// only by a rule whose filter covers it, never by a rule about every
// topic nor by an allowing default. Otherwise it is granted in part
// (Partial: each delivery on it is judged, as Mosquitto judges read
// access per message) when the client may read some of its topics
// (readable), and refused when it may read none.
func (v *View) decide(kind byte, t string, qos int, retain int8) ruling {
	wide := kind == kindSubscribe && allWild(t)
	first := int32(math.MaxInt32)
	var src *Rule
	for i := range v.own {
		if cr := &v.own[i]; v.ownMatch(cr, kind, t, qos, retain, wide) {
			first, src = cr.order, cr.rule
			break
		}
	}
	if v.set != nil {
		w := newWalker(v.set.rules, first, qos, retain, t)
		switch kind {
		case kindPublish:
			w.cover(&v.set.pub, t)
		case kindReceive:
			w.cover(&v.set.sub, t)
			w.cover(&v.set.deny, t)
		case kindSubscribe:
			w.cover(&v.set.sub, t)
			w.intersect(&v.set.deny, t)
		}
		if w.id < first {
			src = &v.set.rules[w.id]
		}
		if w.spent && (src == nil || src.Allow) {
			return ruling{Source: "cost"}
		}
	}
	var r ruling
	switch {
	case src != nil:
		r = ruling{Allow: src.Allow, Source: src.Source}
	case wide:
		r = ruling{Source: "wildcard"}
	default:
		r = v.noMatch(t)
	}
	if kind == kindSubscribe && !r.Allow && v.readable(t, qos, wide) {
		r.Allow, r.Partial = true, true
	}
	return r
}

// readable reports whether the client may read some topic the filter t
// matches: the first allow rule for subscribing at qos that shares a
// topic with t is not preceded by a deny rule covering all of t; with
// no such allow, the allowing default applies unless a deny covers t.
// A filter of wildcards only (wide) needs an allow rule whose filter
// covers it, as for a grant whole: otherwise + and +/+/# together would
// read every topic that a rule about every topic, or the default,
// allows. It may answer yes for a filter whose topics several denials
// share out between them: the deliveries are judged one by one anyway.
// When the walk's budget runs out it answers no (refused, as "cost").
func (v *View) readable(t string, qos int, wide bool) bool {
	allow, deny := int32(math.MaxInt32), int32(math.MaxInt32)
	for i := range v.own {
		cr := &v.own[i]
		r := cr.rule
		if r.Action&identity.Subscribe == 0 || !r.appliesAtQoS(byte(qos)) {
			continue
		}
		if r.Allow && allow == math.MaxInt32 && (!wide && cr.meets(t) || wide && !cr.any && cr.coversAll(t)) {
			allow = cr.order
		}
		if !r.Allow && deny == math.MaxInt32 && cr.coversAll(t) {
			deny = cr.order
		}
	}
	if v.set != nil {
		w := newWalker(v.set.rules, allow, qos, -1, t)
		if wide {
			w.cover(&v.set.sub, t)
		} else {
			w.intersect(&v.set.sub, t)
		}
		d := newWalker(v.set.rules, deny, qos, -1, t)
		d.cover(&v.set.deny, t)
		if w.spent || d.spent {
			return false
		}
		allow, deny = w.id, d.id
	}
	if allow != math.MaxInt32 {
		return deny > allow
	}
	return deny == math.MaxInt32 && v.eng.noMatchAllow && !dollar(t) && !wide
}

// meets reports whether the rule's filters share a topic with the
// filter t.
func (cr *crule) meets(t string) bool {
	if cr.any {
		return !dollar(t)
	}
	for i, f := range cr.topics {
		if (cr.eq[i] && f == t) || (!cr.eq[i] && intersects(f, t)) {
			return true
		}
	}
	return false
}

// coversAll reports whether one of the rule's filters covers every topic
// of the filter t.
func (cr *crule) coversAll(t string) bool {
	if cr.any {
		return true
	}
	for i, f := range cr.topics {
		if (cr.eq[i] && f == t) || (!cr.eq[i] && covers(f, t)) {
			return true
		}
	}
	return false
}

// ownMatch reports whether one of the view's own rules decides the check.
func (v *View) ownMatch(cr *crule, kind byte, t string, qos int, retain int8, wide bool) bool {
	r := cr.rule
	switch kind {
	case kindPublish:
		return r.Action&identity.Publish != 0 && r.appliesAtQoS(byte(qos)) &&
			(r.retain < 0 || r.retain == retain) && cr.matchesName(t)
	case kindReceive:
		return r.Action&identity.Subscribe != 0 && cr.matchesName(t)
	}
	if r.Action&identity.Subscribe == 0 || !r.appliesAtQoS(byte(qos)) {
		return false
	}
	if cr.any {
		return !r.Allow || !wide && !dollar(t)
	}
	for i, f := range cr.topics {
		switch {
		case cr.eq[i]:
			if f == t {
				return true
			}
		case r.Allow:
			if covers(f, t) {
				return true
			}
		default:
			if intersects(f, t) {
				return true
			}
		}
	}
	return false
}
