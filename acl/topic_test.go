package acl

import "testing"

// matchTopic is the plain reading of [MQTT-4.7], kept as the oracle that
// covers is checked against.
// matchTopic: does whether the topic name matches the filter
// [MQTT-4.7]: + is one level, # the rest (including the parent level),
// and a filter starting with a wildcard never matches a $ topic
// [MQTT-4.7.2-1].
func matchTopic(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := nextLevel(filter)
		if f == "#" {
			return true
		}
		t, trest, tmore := nextLevel(topic)
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

func TestMatchTopic(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "a/b", true}, {"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true}, {"+/+", "a/", true}, {"+", "a/b", false},
		{"a/+/c", "a//c", true}, {"/+", "/a", true}, {"+", "", true}, {"a", "a/b", false}, {"a/b", "a", false},
	} {
		if got := matchTopic(c.filter, c.topic); got != c.want {
			t.Errorf("matchTopic(%q, %q) = %v", c.filter, c.topic, got)
		}
		if got := covers(c.filter, c.topic); got != c.want {
			t.Errorf("covers(%q, %q) = %v for a topic name", c.filter, c.topic, got)
		}
	}
}

func TestCoversAndIntersects(t *testing.T) {
	for _, c := range []struct {
		rule, sub     string
		cover, inters bool
	}{
		{"a/#", "a/#", true, true}, {"a/#", "a/+", true, true}, {"a/#", "a", true, true},
		{"a/+", "a/#", false, true}, {"a/+", "a/b", true, true}, {"a/b", "a/+", false, true},
		{"#", "#", true, true}, {"#", "+/#", true, true}, {"+/#", "#", false, true},
		{"a/b", "c/d", false, false}, {"a/+/c", "a/b/+", false, true}, {"#", "$SYS/#", false, false},
		{"$SYS/#", "#", false, false}, {"a/b/c", "a/#", false, true}, {"x/#", "a/#", false, false},
	} {
		if got := covers(c.rule, c.sub); got != c.cover {
			t.Errorf("covers(%q, %q) = %v", c.rule, c.sub, got)
		}
		if got := intersects(c.rule, c.sub); got != c.inters {
			t.Errorf("intersects(%q, %q) = %v", c.rule, c.sub, got)
		}
		if intersects(c.rule, c.sub) != intersects(c.sub, c.rule) {
			t.Errorf("intersects(%q, %q) not symmetric", c.rule, c.sub)
		}
	}
}

// covers agrees with matchTopic on every concrete topic: a covered
// subscription matches no topic the rule does not.
func FuzzCovers(f *testing.F) {
	for _, s := range [][3]string{{"a/#", "a/+", "a/b"}, {"+/b", "a/b", "a/b"}, {"#", "$SYS/#", "$SYS/x"}, {"a/+/#", "a/+", "a/x"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, rule, sub, topic string) {
		if !validFilter(rule) || !validFilter(sub) || !validTopic(topic) {
			return
		}
		if covers(rule, topic) != matchTopic(rule, topic) {
			t.Fatalf("covers(%q, %q) = %v, matchTopic %v", rule, topic, covers(rule, topic), matchTopic(rule, topic))
		}
		if covers(rule, sub) && matchTopic(sub, topic) && !matchTopic(rule, topic) {
			t.Fatalf("%q covers %q, but %q matches only the subscription", rule, sub, topic)
		}
		if matchTopic(rule, topic) && matchTopic(sub, topic) && !intersects(rule, sub) {
			t.Fatalf("%q and %q both match %q but do not intersect", rule, sub, topic)
		}
	})
}
