package acl

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// RuleSet is a parsed ACL file, indexed. Rules are kept in evaluation
// order: the first rule that matches decides.
type RuleSet struct {
	// Format is "mosquitto" or "emqx".
	Format string
	rules  []Rule
	// byUser and byClient hold rules about one exact user name or client
	// id; general the rest that need per-connection work (placeholders,
	// regular expressions, addresses, rules about every topic).
	byUser, byClient map[string][]int32
	general          []int32
	// The rules about everyone with fixed topics are matched without any
	// per-connection work, in three indexes: pub holds those that concern
	// PUBLISH, sub the subscribe grants and deny the subscribe denials.
	// A wildcard filter's walk for denials (the one that may have to look
	// at many branches) thus never enters the grants, which are walked
	// only along the branches that cover the filter.
	pub, sub, deny trie
}

// Len is the number of rules.
func (s *RuleSet) Len() int { return len(s.rules) }

func newRuleSet(format string, rules []Rule) *RuleSet {
	s := &RuleSet{Format: format, rules: rules, byUser: map[string][]int32{}, byClient: map[string][]int32{}}
	for i := range rules {
		r := &rules[i]
		id := int32(i)
		switch {
		case r.who.kind == whoUser:
			s.byUser[r.who.s] = append(s.byUser[r.who.s], id)
		case r.who.kind == whoClient:
			s.byClient[r.who.s] = append(s.byClient[r.who.s], id)
		case r.who.kind == whoAll && len(r.topics) > 0 && allFixed(r.topics):
			for _, p := range r.topics {
				if r.Action&identity.Publish != 0 {
					s.pub.insert(p, id)
				}
				if r.Action&identity.Subscribe != 0 && r.Allow {
					s.sub.insert(p, id)
				} else if r.Action&identity.Subscribe != 0 {
					s.deny.insert(p, id)
				}
			}
		default:
			s.general = append(s.general, id)
		}
	}
	for _, t := range []*trie{&s.pub, &s.sub, &s.deny} {
		t.finish(rules)
	}
	return s
}

func allFixed(ps []pattern) bool {
	for _, p := range ps {
		if !p.fixed {
			return false
		}
	}
	return true
}

// candidates returns, in order, the rules outside the shared index that
// may concern c.
func (s *RuleSet) candidates(c *Client) []int32 {
	lists := [][]int32{s.general}
	if c.Username != "" {
		lists = append(lists, s.byUser[c.Username])
	}
	if c.ClientID != "" {
		lists = append(lists, s.byClient[c.ClientID])
	}
	var out []int32
	for _, l := range lists {
		out = append(out, l...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// trie indexes fixed topic filters level by level.
type trie struct {
	root tnode
	eq   map[string][]int32 // {eq, F}: the filter itself, literally
	// wild is root.low without the subtrees of levels starting with $:
	// what # meets [MQTT-4.7.2-1].
	wild [4]int32
}

type kid struct {
	level string
	n     *tnode
}

// mapKids is the number of children from which a node indexes them in
// a map; below it a scan of the sorted slice is as fast.
const mapKids = 8

// child returns n's child for the literal level lvl.
func (n *tnode) child(lvl string) *tnode {
	if n.byLevel != nil {
		return n.byLevel[lvl]
	}
	for i := range n.kids {
		if n.kids[i].level == lvl {
			return n.kids[i].n
		}
	}
	return nil
}

type tnode struct {
	// kids are the children by literal level, sorted by level once the
	// trie is built; byLevel indexes them too when there are many.
	kids       []kid
	byLevel    map[string]*tnode
	plus, hash *tnode
	rules      []int32 // rules whose filter ends here, ascending
	// low is the lowest id of the rules in this subtree (this node's
	// included) that apply at QoS 0, 1 and 2, and (3) at any QoS: a walk
	// that already holds a lower rule skips the subtree, and a filter
	// that meets all of it (a #) takes low without looking further.
	low [4]int32
}

func (t *trie) insert(p pattern, id int32) {
	if p.eq {
		if t.eq == nil {
			t.eq = map[string][]int32{}
		}
		t.eq[p.text] = append(t.eq[p.text], id)
		return
	}
	n := &t.root
	for rest, more := p.text, true; more; {
		var lvl string
		lvl, rest, more = nextLevel(rest)
		var next **tnode
		switch lvl {
		case "+":
			next = &n.plus
		case "#":
			next = &n.hash
		default:
			c := n.child(lvl)
			if c == nil {
				c = &tnode{}
				n.kids = append(n.kids, kid{lvl, c})
				if len(n.kids) == mapKids {
					n.byLevel = make(map[string]*tnode, 2*mapKids)
					for _, k := range n.kids {
						n.byLevel[k.level] = k.n
					}
				} else if n.byLevel != nil {
					n.byLevel[lvl] = c
				}
			}
			n = c
			continue
		}
		if *next == nil {
			*next = &tnode{}
		}
		n = *next
	}
	if k := len(n.rules); k == 0 || n.rules[k-1] != id {
		n.rules = append(n.rules, id)
	}
}

// finish computes low for n and its subtree.
func (n *tnode) finish(rules []Rule) {
	n.low = [4]int32{math.MaxInt32, math.MaxInt32, math.MaxInt32, math.MaxInt32}
	lower := func(l [4]int32) {
		for q := range l {
			n.low[q] = min(n.low[q], l[q])
		}
	}
	for _, id := range n.rules {
		for q := range 3 {
			if rules[id].appliesAtQoS(byte(q)) {
				n.low[q] = min(n.low[q], id)
			}
		}
		n.low[3] = min(n.low[3], id)
	}
	for _, c := range []*tnode{n.plus, n.hash} {
		if c != nil {
			c.finish(rules)
			lower(c.low)
		}
	}
	slices.SortFunc(n.kids, func(a, b kid) int { return strings.Compare(a.level, b.level) })
	for _, k := range n.kids {
		k.n.finish(rules)
		lower(k.n.low)
	}
}

// finish computes the lows of the trie.
func (t *trie) finish(rules []Rule) {
	t.root.finish(rules)
	t.wild = [4]int32{math.MaxInt32, math.MaxInt32, math.MaxInt32, math.MaxInt32}
	for q := range t.wild {
		for _, c := range []*tnode{t.root.plus, t.root.hash} {
			if c != nil {
				t.wild[q] = min(t.wild[q], c.low[q])
			}
		}
		for _, k := range t.root.kids {
			if k.level == "" || k.level[0] != '$' {
				t.wild[q] = min(t.wild[q], k.n.low[q])
			}
		}
	}
}

// anyQoS indexes tnode.low for a check that names no QoS.
const anyQoS = 3

// walkBudget is how many index nodes one decision may visit. A walk
// visits each node at most once, so a check costs at most this many
// steps whatever the filter; a wildcard filter that would need more
// against a large set of denials is refused (see View.Subscribe).
const walkBudget = 1024

// walker finds the first (lowest) rule id that a check accepts, in one
// or more tries, visiting at most walkBudget nodes in all.
type walker struct {
	rules  []Rule
	q      int  // index into tnode.low: the QoS, or anyQoS
	retain int8 // a PUBLISH's retain flag (0, 1), or -1: not a PUBLISH
	dollar bool // the filter or topic starts with $
	id     int32
	wild   *[4]int32 // the trie's wild, for an intersect walk
	left   int
	spent  bool // the budget ran out before the answer was known
}

// newWalker starts a walk for rules below id below (math.MaxInt32: any).
func newWalker(rules []Rule, below int32, q int, retain int8, subject string) walker {
	return walker{rules: rules, q: q, retain: retain, dollar: len(subject) > 0 && subject[0] == '$', id: below, left: walkBudget}
}

// enter reports whether n may hold a better rule, and counts the visit.
func (w *walker) enter(n *tnode) bool {
	if w.left--; w.left < 0 {
		w.spent = true
		return false
	}
	return n.low[w.q] < w.id
}

func (w *walker) offer(ids []int32) {
	for _, id := range ids {
		if id >= w.id {
			return // ascending: nothing better follows
		}
		if r := &w.rules[id]; (w.q == anyQoS || r.appliesAtQoS(byte(w.q))) && (w.retain < 0 || r.retain < 0 || r.retain == w.retain) {
			w.id = id
			return
		}
	}
}

// cover offers the rules of t whose filter covers the filter sub. A topic
// name is a filter without wildcards, and the filters that cover it are
// the ones that match it: the same walk serves PUBLISH and delivery
// checks. It follows only branches that cover what it has read of sub.
func (w *walker) cover(t *trie, sub string) {
	if t.eq != nil {
		w.offer(t.eq[sub])
	}
	w.walkCover(&t.root, sub, false, true)
}

// visit enters n, offers the rules of a # below it and, when the filter
// ends at n, n's own; it reports whether the walk goes on below n.
func (w *walker) visit(n *tnode, done, first bool) bool {
	if !w.enter(n) {
		return false
	}
	if n.hash != nil && !(first && w.dollar) {
		w.offer(n.hash.rules)
	}
	if done {
		w.offer(n.rules)
		return false
	}
	return true
}

func (w *walker) walkCover(n *tnode, rest string, done, first bool) {
	if !w.visit(n, done, first) {
		return
	}
	lvl, r, more := nextLevel(rest)
	switch lvl {
	case "#":
		return // only # covers #
	case "+":
	default:
		if c := n.child(lvl); c != nil {
			w.walkCover(c, r, !more, false)
		}
	}
	if n.plus != nil && !(first && w.dollar) {
		w.walkCover(n.plus, r, !more, false)
	}
}

// intersect offers the rules of t whose filter shares a topic with sub.
// Only the QoS may condition them: a subtree that sub meets whole is
// taken by its low.
func (w *walker) intersect(t *trie, sub string) {
	if t.eq != nil {
		w.offer(t.eq[sub])
	}
	w.wild = &t.wild
	w.walkIntersect(&t.root, sub, false, true)
}

func (w *walker) walkIntersect(n *tnode, rest string, done, first bool) {
	if !w.visit(n, done, first) {
		return
	}
	lvl, r, more := nextLevel(rest)
	switch lvl {
	case "#":
		// Every rule below meets it, and "a/#" also means "a": the
		// whole subtree, without the $ levels at the root.
		if first {
			w.id = min(w.id, w.wild[w.q])
		} else {
			w.id = min(w.id, n.low[w.q])
		}
		return
	case "+":
		for _, k := range n.kids {
			if !(first && len(k.level) > 0 && k.level[0] == '$') {
				w.walkIntersect(k.n, r, !more, false)
			}
			if w.spent || w.id <= n.low[w.q] {
				return // out of budget, or nothing lower below n
			}
		}
	default:
		if c := n.child(lvl); c != nil {
			w.walkIntersect(c, r, !more, false)
		}
	}
	if n.plus != nil && !(first && w.dollar) {
		w.walkIntersect(n.plus, r, !more, false)
	}
}
