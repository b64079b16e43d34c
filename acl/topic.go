package acl

import "strings"

// nextLevel splits s at its first '/': the level and the rest, and
// whether there was a rest.
func nextLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// covers reports whether every topic the subscription filter sub matches
// is also matched by the rule filter rule: the rule grants all of sub. For
// a topic name (no wildcards) that is whether the filter matches it
// [MQTT-4.7], including that a filter starting with a wildcard never
// matches a $ topic [MQTT-4.7.2-1].
func covers(rule, sub string) bool {
	if len(sub) > 0 && sub[0] == '$' && len(rule) > 0 && (rule[0] == '+' || rule[0] == '#') {
		return false
	}
	for {
		r, rrest, rmore := nextLevel(rule)
		if r == "#" {
			return true
		}
		s, srest, smore := nextLevel(sub)
		switch {
		case s == "#":
			return false // only # covers #
		case s == "+":
			if r != "+" {
				return false
			}
		case r != "+" && r != s:
			return false
		}
		switch {
		case !rmore && !smore:
			return true
		case !smore:
			return rrest == "#"
		case !rmore:
			return false
		}
		rule, sub = rrest, srest
	}
}

// intersects reports whether some topic matches both filters: a deny rule
// that touches any part of a subscription denies it.
func intersects(a, b string) bool {
	if dollarMismatch(a, b) || dollarMismatch(b, a) {
		return false
	}
	for {
		x, xrest, xmore := nextLevel(a)
		y, yrest, ymore := nextLevel(b)
		if x == "#" || y == "#" {
			return true
		}
		if x != "+" && y != "+" && x != y {
			return false
		}
		switch {
		case !xmore && !ymore:
			return true
		case !xmore:
			return yrest == "#"
		case !ymore:
			return xrest == "#"
		}
		a, b = xrest, yrest
	}
}

// dollarMismatch: a filter starting with a wildcard meets no topic that
// the other filter pins to a $ first level.
func dollarMismatch(wild, other string) bool {
	return len(wild) > 0 && (wild[0] == '+' || wild[0] == '#') && len(other) > 0 && other[0] == '$'
}

// allWild reports whether every level of the filter is a wildcard: it
// matches every topic of one or more depths (+/+ every topic of two
// levels, +/+/# every topic of two or more), and a few such filters
// together match every topic.
func allWild(f string) bool {
	for {
		l, rest, more := nextLevel(f)
		if l != "+" && l != "#" {
			return false
		}
		if !more {
			return true
		}
		f = rest
	}
}
