package acl

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// emqxStockACL is the acl.conf EMQX ships: # is denied by spelling only.
const emqxStockACL = `{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, all}.
`

// The attack of issue 11 item 10: + and +/+/# together match every
// topic, and a rule about every topic granted both. A filter of wildcards
// only is as wide as #: only a rule whose filter covers it grants it.
func TestWildcardOnlyFiltersNeedACoveringRule(t *testing.T) {
	e := engineFor(t, "acl.conf", emqxStockACL)
	var checks []check
	for _, f := range []string{"#", "+", "+/#", "+/+", "+/+/#", "+/+/+", "+/+/+/#", "$share/g/+/+/#", "$queue/+", "$exclusive/+/#"} {
		checks = append(checks, check{"grant", f, 0, false, false}) // not even in part
	}
	for _, f := range []string{"a/#", "a/+/#", "+/a", "+/+/a/#", "a"} {
		checks = append(checks, check{"sub", f, 0, false, true}) // a literal level narrows it
	}
	run(t, e.View(Client{ClientID: "attacker", Username: "eve"}), "eve", checks)

	// Rules with topics decide by topic algebra, in the list and in the
	// shared index alike.
	for _, who := range []string{"all", `{username, "u"}`} {
		e := engineFor(t, "acl.conf", fmt.Sprintf(`{allow, %[1]s, subscribe, ["a/#"]}.
{allow, %[1]s, subscribe, ["x/+/#"]}.
{allow, %[1]s, subscribe, ["+/+/#"]}.
{deny, all}.
`, who))
		run(t, e.View(Client{ClientID: "c", Username: "u"}), who, []check{
			{"sub", "+/+/#", 0, false, true}, {"sub", "+/+", 0, false, true}, {"sub", "+/+/+", 0, false, true},
			{"grant", "+", 0, false, false}, {"grant", "+/#", 0, false, false}, {"grant", "#", 0, false, false},
			{"sub", "a/#", 0, false, true}, {"sub", "a", 0, false, true},
		})
	}
	e2 := engineFor(t, "acl.conf", `{allow, all, subscribe, ["+/#"]}.`+"\n")
	run(t, e2.View(Client{ClientID: "c"}), "+/# rule", []check{
		{"sub", "+", 0, false, true}, {"sub", "+/+/#", 0, false, true}, {"grant", "#", 0, false, false},
	})
	e3, _ := NewEngine(Options{NoMatchAllow: true})
	run(t, e3.View(Client{ClientID: "c"}), "no match allows", []check{
		{"grant", "+", 0, false, false}, {"grant", "+/+/#", 0, false, false}, {"sub", "a/+", 0, false, true},
	})
}

// Issue 11 item 11: {subscribe, [{qos, Q}]} is a condition. As in EMQX
// (emqx_authz_rich_actions_SUITE t_rich_actions_subscribe), a rule whose
// QoS list does not hold the requested QoS does not match: with nothing
// after it the filter is refused, not granted at a lower QoS.
func TestSubscribeQoSCondition(t *testing.T) {
	e := engineFor(t, "acl.conf", `{allow, all, {subscribe, [{qos, 0}]}, ["t0"]}.
{allow, all, {subscribe, [{qos, [0, 1]}]}, ["t1/#"]}.
{deny, all, {subscribe, [{qos, 2}]}, ["d/#"]}.
{allow, all, subscribe, ["d/#"]}.
{allow, {username, "u"}, {subscribe, [{qos, 1}]}, ["own/#"]}.
{deny, all}.
`)
	run(t, e.View(Client{ClientID: "c", Username: "u"}), "u", []check{
		{"sub", "t0", 0, false, true}, {"sub", "t0", 1, false, false}, {"sub", "t0", 2, false, false},
		{"sub", "t1/x", 1, false, true}, {"sub", "t1/#", 2, false, false}, {"sub", "t1/x", 0, false, true},
		{"sub", "d/x", 2, false, false}, {"sub", "d/x", 1, false, true}, {"sub", "d/+", 0, false, true},
		{"sub", "own/a", 1, false, true}, {"sub", "own/a", 2, false, false}, {"sub", "own/a", 0, false, false},
		{"recv", "t0", 0, false, true}, // applied at SUBSCRIBE, not per delivery
	})
	if d := e.View(Client{ClientID: "c"}).subscribe([]byte("t0"), 3); d.Allow {
		t.Errorf("QoS 3 granted by %s", d.Source)
	}
}

// Issue 11 item 15: EMQX's $queue/F (a shared subscription without a
// group) and $exclusive/F subscribe to F, so they are judged as F, like
// $share/group/F; nested prefixes too.
func TestQueueAndExclusivePrefixesJudgedAsTheRealFilter(t *testing.T) {
	for name, content := range map[string]string{
		"acl.conf": `{deny, all, subscribe, ["secret/#"]}.` + "\n" + `{allow, all, subscribe, ["secret/ok", "public/#", "$queue/x"]}.` + "\n",
		"acl":      "pattern deny secret/#\npattern read secret/ok\npattern read public/#\npattern read $queue/x\n",
	} {
		e := engineFor(t, name, content)
		var checks []check
		for _, f := range []string{"$queue/secret/x", "$exclusive/secret/x", "$share/g/secret/x", "$queue/$share/g/secret/#",
			"$share/g/$exclusive/secret/+", "$exclusive/$queue/secret", "$queue/+/x", "$exclusive/#",
			"$queue/x"} { // judged as x, which no rule grants

			checks = append(checks, check{"sub", f, 0, false, false})
		}
		for _, f := range []string{"$queue/public/x", "$exclusive/public/#", "$share/g/$queue/public/+", "public/x"} {
			checks = append(checks, check{"sub", f, 0, false, true})
		}
		run(t, e.View(Client{ClientID: "c"}), name, checks)
	}
}

// A wildcard filter that would need more than walkBudget index nodes to
// judge is refused, by the source "cost", and costs no more than that;
// the same rules still grant the filters they can judge.
func TestWalkBudgetFailsClosed(t *testing.T) {
	e := engineFor(t, "acl.conf", ruleFile(4*walkBudget, `{allow, all, subscribe, ["s/#"]}.`+"\n", `{deny, all, subscribe, ["s/%[1]d/x"]}.`))
	v := e.View(Client{ClientID: "c"})
	if d := v.subscribe([]byte("s/+/y"), 0); d.Allow || d.Source != "cost" {
		t.Errorf("s/+/y: %+v, want refused for its cost", d)
	}
	run(t, v, "c", []check{
		{"sub", "s/7/y", 0, false, true}, {"sub", "s/7/+", 0, false, false}, {"sub", "s/+/x", 0, false, false},
		{"sub", "s/#", 0, false, false}, {"pub", "s/1/y", 0, false, false},
	})
}

// oracle decides a check by reading the rules in order, without any
// index: the first rule that matches decides.
func oracle(rules []Rule, kind, t string, qos byte, retain bool) bool {
	wide := kind == "sub" && allWild(t)
	for i := range rules {
		r := &rules[i]
		switch kind {
		case "pub":
			if r.Action&identity.Publish == 0 || !r.appliesAtQoS(qos) || (r.retain >= 0 && (r.retain == 1) != retain) {
				continue
			}
		case "sub":
			if r.Action&identity.Subscribe == 0 || !r.appliesAtQoS(qos) {
				continue
			}
		case "recv":
			if r.Action&identity.Subscribe == 0 {
				continue
			}
		}
		match := len(r.topics) == 0 && (kind != "sub" || !r.Allow || !wide) && (!r.Allow || !strings.HasPrefix(t, "$"))
		for _, p := range r.topics {
			switch {
			case p.eq:
				match = match || p.text == t
			case kind != "sub":
				match = match || matchTopic(p.text, t)
			case r.Allow:
				match = match || covers(p.text, t)
			default:
				match = match || intersects(p.text, t)
			}
		}
		if match {
			return r.Allow
		}
	}
	return false
}

// oracleAtQoS is the oracle's receive check with the rules' QoS
// conditions applied at qos, as a subscription at qos meets them.
func oracleAtQoS(rules []Rule, topic string, qos byte) bool {
	var kept []Rule
	for _, r := range rules {
		if r.appliesAtQoS(qos) {
			kept = append(kept, r)
		}
	}
	return oracle(kept, "recv", topic, 0, false)
}

// universe is every topic of up to four levels over the generator's
// levels (a, b, the empty level, and $s first).
var universe = func() []string {
	var out []string
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		for _, l := range []string{"a", "b", "", "$s"} {
			if l == "$s" && prefix != "" || l == "$s" && depth > 0 {
				continue
			}
			t := l
			if depth > 0 {
				t = prefix + "/" + l
			}
			if t != "" {
				out = append(out, t)
			}
			if depth < 3 {
				grow(t, depth+1)
			}
		}
	}
	grow("", 0)
	return out
}()

// The indexes, with their pruning and whole-subtree shortcuts, decide as
// the oracle does on random rule sets, filters and topics.
func TestIndexesAgreeWithOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "$s", "", "+", "#"}
	filter := func(wild bool) string {
		n := 1 + rng.IntN(4)
		var parts []string
		for i := range n {
			l := levels[rng.IntN(len(levels))]
			if !wild && (l == "+" || l == "#") {
				l = "a"
			}
			if l == "#" && i < n-1 {
				l = "+"
			}
			if l == "$s" && i > 0 {
				l = "b"
			}
			parts = append(parts, l)
		}
		if n == 1 && parts[0] == "" {
			return "a"
		}
		return strings.Join(parts, "/")
	}
	actions := []string{"publish", "subscribe", "all", "{subscribe, [{qos, 1}]}", "{all, [{qos, [0, 2]}]}", "{publish, [{retain, true}]}"}
	for round := range 300 {
		var sb strings.Builder
		for range 1 + rng.IntN(12) {
			perm := []string{"allow", "deny"}[rng.IntN(2)]
			topic := fmt.Sprintf("%q", filter(true))
			if rng.IntN(6) == 0 {
				topic = fmt.Sprintf("{eq, %q}", filter(true))
			}
			fmt.Fprintf(&sb, "{%s, all, %s, [%s]}.\n", perm, actions[rng.IntN(len(actions))], topic)
		}
		if rng.IntN(3) == 0 {
			sb.WriteString("{allow, all}.\n")
		}
		s, err := Parse("acl.conf", []byte(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		e := &Engine{}
		e.set.Store(s)
		v := e.View(Client{ClientID: "c"})
		for range 40 {
			f, topic := filter(true), filter(false)
			qos, retain := byte(rng.IntN(3)), rng.IntN(2) == 0
			d := v.subscribe([]byte(f), qos)
			if got, want := d.Allow && !d.Partial, oracle(s.rules, "sub", f, qos, false); got != want {
				t.Fatalf("round %d: subscribe %q qos %d: %v, oracle %v\n%s", round, f, qos, got, want, sb.String())
			}
			// What a grant lets through, topic by topic: a refused filter
			// (unless made of wildcards only) has no topic the client may
			// read; a filter granted whole,
			// none it may not (at the QoS asked; eq rules name filters,
			// not topics, and are left out of this half).
			if !strings.Contains(sb.String(), "{eq,") {
				for _, topic := range universe {
					if !matchTopic(f, topic) {
						continue
					}
					readable := oracleAtQoS(s.rules, topic, qos)
					if !d.Allow && readable && !allWild(f) { // wildcard-only: a covering rule or nothing (issue 11 item 10)
						t.Fatalf("round %d: %q refused (%s) though %q may be read at QoS %d\n%s", round, f, d.Source, topic, qos, sb.String())
					}
					if d.Allow && !d.Partial && !readable {
						t.Fatalf("round %d: %q granted whole (%s) though %q may not be read at QoS %d\n%s", round, f, d.Source, topic, qos, sb.String())
					}
				}
			}
			if got, want := v.publish([]byte(topic), qos, retain).Allow, oracle(s.rules, "pub", topic, qos, retain); got != want {
				t.Fatalf("round %d: publish %q qos %d retain %v: %v, oracle %v\n%s", round, topic, qos, retain, got, want, sb.String())
			}
			if got, want := v.receive([]byte(topic)).Allow, oracle(s.rules, "recv", topic, 0, false); got != want {
				t.Fatalf("round %d: receive %q: %v, oracle %v\n%s", round, topic, got, want, sb.String())
			}
		}
	}
}
