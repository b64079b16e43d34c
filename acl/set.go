package acl

import (
	"sort"
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
	// shared indexes rules about everyone with fixed topics: they are
	// matched without any per-connection work.
	shared trie
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
				s.shared.insert(p, id)
			}
		default:
			s.general = append(s.general, id)
		}
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
	size int
}

type tnode struct {
	children   map[string]*tnode
	plus, hash *tnode
	rules      []int32 // rules whose filter ends here, ascending
}

func (t *trie) insert(p pattern, id int32) {
	t.size++
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
			if n.children == nil {
				n.children = map[string]*tnode{}
			}
			c := n.children[lvl]
			if c == nil {
				c = &tnode{}
				n.children[lvl] = c
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

// best keeps the first (lowest) rule id that a check accepts.
type best struct {
	id   int32
	ok   func(id int32) bool // nil: every candidate counts
	seen bool
}

func (b *best) offer(ids []int32) {
	for _, id := range ids {
		if b.seen && id >= b.id {
			return // ascending: nothing better follows
		}
		if b.ok == nil || b.ok(id) {
			b.id, b.seen = id, true
			return
		}
	}
}

// matchCover offers the rules whose filter covers the filter sub. A topic
// name is a filter without wildcards, and the filters that cover it are
// the ones that match it: the same walk serves PUBLISH and delivery checks.
func (t *trie) matchCover(sub string, b *best) {
	if t.eq != nil {
		b.offer(t.eq[sub])
	}
	walkCover(&t.root, sub, false, true, len(sub) > 0 && sub[0] == '$', b)
}

func walkCover(n *tnode, rest string, done, first, dollar bool, b *best) {
	if n.hash != nil && !(first && dollar) {
		b.offer(n.hash.rules)
	}
	if done {
		b.offer(n.rules)
		return
	}
	lvl, r, more := nextLevel(rest)
	switch lvl {
	case "#":
		return // only # covers #
	case "+":
	default:
		if c := n.children[lvl]; c != nil {
			walkCover(c, r, !more, false, dollar, b)
		}
	}
	if n.plus != nil && !(first && dollar) {
		walkCover(n.plus, r, !more, false, dollar, b)
	}
}

// matchIntersect offers the rules whose filter shares a topic with sub.
func (t *trie) matchIntersect(sub string, b *best) {
	if t.eq != nil {
		b.offer(t.eq[sub])
	}
	walkIntersect(&t.root, sub, false, true, len(sub) > 0 && sub[0] == '$', b)
}

func walkIntersect(n *tnode, rest string, done, first, dollar bool, b *best) {
	if n.hash != nil && !(first && dollar) {
		b.offer(n.hash.rules)
	}
	if done {
		b.offer(n.rules)
		return
	}
	lvl, r, more := nextLevel(rest)
	switch lvl {
	case "#":
		b.offer(n.rules) // "a/#" also means "a"
		for k, c := range n.children {
			if !(first && len(k) > 0 && k[0] == '$') {
				offerAll(c, b)
			}
		}
		if n.plus != nil {
			offerAll(n.plus, b)
		}
		return
	case "+":
		for k, c := range n.children {
			if !(first && len(k) > 0 && k[0] == '$') {
				walkIntersect(c, r, !more, false, dollar, b)
			}
		}
	default:
		if c := n.children[lvl]; c != nil {
			walkIntersect(c, r, !more, false, dollar, b)
		}
	}
	if n.plus != nil && !(first && dollar) {
		walkIntersect(n.plus, r, !more, false, dollar, b)
	}
}

func offerAll(n *tnode, b *best) {
	b.offer(n.rules)
	if n.hash != nil {
		b.offer(n.hash.rules)
	}
	if n.plus != nil {
		offerAll(n.plus, b)
	}
	for _, c := range n.children {
		offerAll(c, b)
	}
}
