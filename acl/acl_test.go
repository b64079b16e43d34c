package acl

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

func engineFor(t testing.TB, name, content string) *Engine {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Options{File: f})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type check struct {
	kind   string // pub, sub (granted whole), grant (whole or in part), recv
	topic  string
	qos    byte
	retain bool
	allow  bool
}

func run(t *testing.T, v *View, who string, checks []check) {
	t.Helper()
	for _, c := range checks {
		var d ruling
		switch c.kind {
		case "pub":
			d = v.publish([]byte(c.topic), c.qos, c.retain)
		case "sub": // granted whole: a partial grant is not one
			d = v.subscribe([]byte(c.topic), c.qos)
			d.Allow = d.Allow && !d.Partial
		case "grant": // granted, whole or in part (deliveries judged)
			d = v.subscribe([]byte(c.topic), c.qos)
		case "recv":
			d = v.receive([]byte(c.topic))
		}
		if d.Allow != c.allow {
			t.Errorf("%s %s %q (qos %d retain %v): allow %v by %s, want %v", who, c.kind, c.topic, c.qos, c.retain, d.Allow, d.Source, c.allow)
		}
	}
}

const mosquittoACL = `# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write shared/in
topic read shared/out

user bob
topic read alice/+/status

pattern readwrite devices/%c/#
pattern read users/%u/inbox
`

func TestMosquittoSemantics(t *testing.T) {
	e := engineFor(t, "acl", mosquittoACL)
	if f := e.set.Load().Format; f != "mosquitto" {
		t.Fatalf("format %s", f)
	}
	run(t, e.View(Client{ClientID: "a1", Username: "alice"}), "alice", []check{
		{"pub", "alice/x", 0, false, true},
		{"sub", "alice/#", 0, false, false}, // a deny inside it
		{"sub", "alice/x/#", 0, false, true},
		{"pub", "alice/secret/x", 1, false, false}, // deny before readwrite
		{"sub", "alice/secret/x", 0, false, false},
		{"pub", "shared/in", 0, false, true},
		{"sub", "shared/in", 0, false, false}, // write only
		{"sub", "shared/out", 0, false, true},
		{"pub", "shared/out", 0, false, false}, // read only
		{"pub", "public/x", 0, false, false},   // the anonymous section is not alice's
		{"pub", "devices/a1/t", 0, false, true},
		{"pub", "devices/a2/t", 0, false, false},
		{"sub", "users/alice/inbox", 0, false, true},
		{"recv", "alice/secret/y", 0, false, false},
		{"recv", "alice/y", 0, false, true},
	})
	run(t, e.View(Client{ClientID: "b1", Username: "bob"}), "bob", []check{
		{"sub", "alice/x/status", 0, false, true},
		{"sub", "alice/+/status", 0, false, true},
		{"sub", "alice/#", 0, false, false},
		{"pub", "alice/x/status", 0, false, false},
	})
	run(t, e.View(Client{ClientID: "anon"}), "anonymous", []check{
		{"sub", "public/news", 0, false, true},
		{"pub", "public/news", 0, false, false},
		{"sub", "users//inbox", 0, false, false}, // %u empty: the pattern matches nothing
	})
}

const emqxACL = `%% EMQX syntax
{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.
{allow, {ipaddr, "10.1.0.0/16"}, all, ["lan/#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, {'and', [{clientid, {re, "^dev-"}}, {username, "fleet"}]}, publish, ["t/${clientid}/#"]}.
{allow, {clientid, "c3"}, {publish, [{qos, [0, 1]}, {retain, false}]}, ["q/#"]}.
{allow, {user, "fan"}, subscribe, ["news/+", {eq, "news/#"}]}.
{allow, all, subscribe, ["room/${username}"]}.
{deny, all}.
`

func TestEMQXSemantics(t *testing.T) {
	e := engineFor(t, "acl.conf", emqxACL)
	if f := e.set.Load().Format; f != "emqx" {
		t.Fatalf("format %s", f)
	}
	run(t, e.View(Client{ClientID: "dev-7", Username: "fleet"}), "dev-7", []check{
		{"pub", "t/dev-7/x", 2, true, true},
		{"pub", "t/dev-8/x", 0, false, false},
		{"sub", "room/fleet", 0, false, true},
		{"sub", "room/other", 0, false, false},
	})
	run(t, e.View(Client{ClientID: "x-7", Username: "fleet"}), "x-7", []check{{"pub", "t/x-7/x", 0, false, false}})
	run(t, e.View(Client{ClientID: "c3"}), "c3", []check{
		{"pub", "q/a", 1, false, true},
		{"pub", "q/a", 2, false, false},
		{"pub", "q/a", 0, true, false},
	})
	run(t, e.View(Client{ClientID: "f", Username: "fan"}), "fan", []check{
		{"sub", "news/a", 0, false, true},
		{"sub", "news/#", 0, false, true}, // eq: the filter itself
		{"sub", "news/a/b", 0, false, false},
	})
	run(t, e.View(Client{ClientID: "l", Addr: netip.MustParseAddr("10.1.2.3")}), "lan", []check{
		{"pub", "lan/x", 0, false, true},
		{"sub", "#", 0, false, false},
	})
	run(t, e.View(Client{ClientID: "l2", Addr: netip.MustParseAddr("10.2.2.3")}), "not lan", []check{{"pub", "lan/x", 0, false, false}})
	// $SYS is granted by a rule that names it (issue 13), to dashboard
	// only: the deny line closes it to everyone else, and a rule about
	// every topic or a filter starting with a wildcard never opens it.
	run(t, e.View(Client{Username: "dashboard"}), "dashboard", []check{
		{"sub", "$SYS/broker/load", 0, false, true}, {"sub", "$SYS/#", 0, false, true}, {"recv", "$SYS/broker/load", 0, false, true},
		{"grant", "#", 0, false, false},
	})
	run(t, e.View(Client{Username: "eve"}), "eve", []check{
		{"grant", "$SYS/broker/load", 0, false, false}, {"recv", "$SYS/broker/load", 0, false, false},
	})
	run(t, e.View(Client{Username: "root", Superuser: true}), "superuser", []check{
		{"sub", "$SYS/#", 0, false, true}, {"pub", "anything", 2, true, true}, {"sub", "#", 0, false, true},
	})
}

// A client id or user name that is a wildcard gains nothing through a
// placeholder, in either syntax and in client rules.
func TestPlaceholdersCannotWiden(t *testing.T) {
	for name, content := range map[string]string{
		"acl":      "pattern readwrite t/%c/#\npattern readwrite u/%u\n",
		"acl.conf": `{allow, all, all, ["t/${clientid}/#", "u/${username}"]}.` + "\n",
	} {
		e := engineFor(t, name, content)
		for _, id := range []string{"#", "+", "a/+", "a/b", ""} {
			v := e.View(Client{ClientID: id, Username: id})
			for _, topic := range []string{"t/x/y", "t/#", "t/+/y", "u/x", "t/a/b/c", "u/a/+"} {
				if d := v.publish([]byte(topic), 0, false); d.Allow {
					t.Errorf("%s: client id %q may publish to %q (%s)", name, id, topic, d.Source)
				}
				if d := v.subscribe([]byte(topic), 0); d.Allow {
					t.Errorf("%s: client id %q may subscribe to %q (%s)", name, id, topic, d.Source)
				}
			}
		}
		v := e.View(Client{ClientID: "ok", Username: "ok"})
		if !v.publish([]byte("t/ok/x"), 0, false).Allow || !v.subscribe([]byte("u/ok"), 0).Allow {
			t.Errorf("%s: a plain client id lost its rights", name)
		}
	}
}

// Rules from the identity come first; then the file; then the default.
func TestClientRulesFirstAndDefaults(t *testing.T) {
	e := engineFor(t, "acl.conf", `{allow, all, all, ["t/#"]}.`+"\n")
	yes := true
	v := e.View(Client{ClientID: "c", Rules: []identity.Rule{
		{Allow: false, Action: identity.Publish, Topics: []string{"t/secret"}},
		{Allow: true, Action: identity.Subscribe, Topics: []string{"eq #"}},
		{Allow: true, Action: identity.Publish, Topics: []string{"r/${clientid}"}, Retain: &yes},
	}})
	run(t, v, "c", []check{
		{"pub", "t/secret", 0, false, false},
		{"pub", "t/other", 0, false, true},
		{"sub", "#", 0, false, true},
		{"pub", "r/c", 0, true, true},
		{"pub", "r/c", 0, false, false},
		{"pub", "x", 0, false, false}, // no match: deny
	})
	// Without an explicit rule, # and +/# are refused even where a rule
	// about every topic allows the rest; $share does not hide them.
	e2 := engineFor(t, "acl.conf", "{allow, all}.\n")
	run(t, e2.View(Client{ClientID: "c"}), "c", []check{
		{"sub", "#", 0, false, false}, {"sub", "+/#", 0, false, false}, {"sub", "$share/g/#", 0, false, false},
		{"sub", "a/#", 0, false, true}, {"pub", "x", 0, false, true},
	})
	e3, _ := NewEngine(Options{NoMatchAllow: true})
	run(t, e3.View(Client{ClientID: "c"}), "c", []check{{"pub", "x", 0, false, true}, {"sub", "#", 0, false, false}})
}

// A reload takes effect on the next check of every view, cached decisions
// included; a broken file keeps the old rules.
func TestReload(t *testing.T) {
	f := filepath.Join(t.TempDir(), "acl")
	os.WriteFile(f, []byte("pattern readwrite a/#\n"), 0o644)
	e, err := NewEngine(Options{File: f})
	if err != nil {
		t.Fatal(err)
	}
	v := e.View(Client{ClientID: "c"})
	if !v.publish([]byte("a/1"), 0, false).Allow {
		t.Fatal("a/1 denied")
	}
	os.WriteFile(f, []byte("pattern readwrite b/#\n"), 0o644)
	if changed, err := e.Reload(false); !changed || err != nil {
		t.Fatal(changed, err)
	}
	if v.publish([]byte("a/1"), 0, false).Allow || !v.publish([]byte("b/1"), 0, false).Allow {
		t.Fatal("reload not applied to the view")
	}
	os.WriteFile(f, []byte("pattern readwrite b/#\nbogus line\n"), 0o644)
	if _, err := e.Reload(false); err == nil || !strings.Contains(err.Error(), "acl:2") {
		t.Fatalf("broken reload: %v", err)
	}
	if !v.publish([]byte("b/1"), 0, false).Allow {
		t.Fatal("broken file took the rules out of service")
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct{ name, content, want string }{
		{"acl", "user alice\ntopic read a/#/b\n", "acl:2"},
		{"acl", "topic read ok\nuser\n", "acl:2: user without a name"},
		{"acl", "allow all\n", "acl:1: unknown keyword"},
		{"acl.conf", "{allow, all}.\n{allow, {user, \"x\"}, all, [\"a/#/b\"]}.\n", "acl.conf:2"},
		{"acl.conf", "{allow, all, publish}.\n", "acl.conf:1"},
		{"acl.conf", "{allow, {ipaddr, \"10.0.0.0/33\"}, all, [\"a\"]}.\n", "acl.conf:1"},
		{"acl.conf", "{allow, {clientid, {re, \"(\"}}, all, [\"a\"]}.\n", "acl.conf:1"},
		{"acl.conf", "{allow, all, all, [\"a\"]}\n", "expected '.'"},
		{"acl.conf", "{allow, all, {publish, [{qos, 3}]}, [\"a\"]}.\n", "qos"},
	} {
		_, err := Parse(c.name, []byte(c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.content, err, c.want)
		}
	}
}

// Many rules: the check walks an index, not the list; a cached decision
// allocates nothing.
func BenchmarkCheck100kRules(b *testing.B) {
	e := engineFor(b, "acl.conf", file100k())
	v := e.View(Client{ClientID: "c", Username: "user123"})
	topics := make([][]byte, 1024)
	for i := range topics {
		topics[i] = fmt.Appendf(nil, "site/%d/dev%d/telemetry", i*37%50_000, i)
	}
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if v.cache != nil {
				clear(v.cache[:]) // an empty cache for every check
			}
			if !v.publish(topics[i%len(topics)], 1, false).Allow {
				b.Fatal("denied")
			}
			i++
		}
	})
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		t := []byte("home/123/kitchen/temp")
		for b.Loop() {
			if !v.publish(t, 1, false).Allow {
				b.Fatal("denied")
			}
		}
	})
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	e := engineFor(t, "acl", "pattern readwrite a/%c/#\n")
	v := e.View(Client{ClientID: "c"})
	topic := []byte("a/c/x")
	v.publish(topic, 0, false)
	if n := testing.AllocsPerRun(100, func() { v.publish(topic, 0, false) }); n != 0 {
		t.Fatalf("%v allocs per cached check", n)
	}
}

// What a connection holds for its rules: the view of the benchmark's
// client (one user section, nine patterns) in a 10,000-rule file.
func BenchmarkView(b *testing.B) {
	var sb strings.Builder
	for i := range 9990 {
		fmt.Fprintf(&sb, "user user%d\ntopic readwrite data/user%d/#\n", i, i)
	}
	for i := range 9 {
		fmt.Fprintf(&sb, "pattern read devices/%%c/cmd/%d/#\n", i)
	}
	sb.WriteString("user bench\ntopic readwrite bench/#\n")
	e := engineFor(b, "acl", sb.String())
	c := Client{ClientID: "bench-sub-1", Username: "bench"}
	b.ReportAllocs()
	for b.Loop() {
		if v := e.View(c); len(v.own) != 10 {
			b.Fatalf("%d rules in the view, want 10", len(v.own))
		}
	}
}

// ruleFile writes each line n times, %[1]d standing for the count, then
// the tail.
func ruleFile(n int, tail string, lines ...string) string {
	var sb strings.Builder
	for i := range n {
		for _, l := range lines {
			fmt.Fprintf(&sb, l+"\n", i)
		}
	}
	return sb.String() + tail
}

// file100k is BenchmarkCheck100kRules's file: 50,000 publish rules about
// everyone in the shared index, 50,000 one-user rules, a final deny.
func file100k() string {
	return ruleFile(50_000, "{deny, all}.\n",
		`{allow, all, publish, ["site/%[1]d/+/telemetry"]}.`, `{allow, {username, "user%[1]d"}, all, ["home/%[1]d/#"]}.`)
}

// file100kDenies holds 50,000 subscribe denials about everyone (the index
// a wildcard filter's deny walk enters), then 50,000 grants.
func file100kDenies() string {
	return ruleFile(50_000, "", `{deny, all, subscribe, ["site/%[1]d/+/secret"]}.`) +
		ruleFile(50_000, `{allow, {username, "user123"}, subscribe, ["#"]}.`+"\n{deny, all}.\n", `{allow, all, all, ["site/%[1]d/#"]}.`)
}

// file10kPatterns holds 10,000 rules about everyone with a ${username}
// placeholder: each connection's view holds them all, in order.
func file10kPatterns() string {
	return ruleFile(5_000, "{deny, all}.\n",
		`{deny, all, subscribe, ["p/%[1]d/${username}/secret"]}.`, `{allow, all, all, ["p/%[1]d/${username}/#"]}.`)
}

// The filters an attacker would pick, each decided against 100,000 rules
// with an empty cache: the cost of one SUBSCRIBE filter decision.
func BenchmarkSubscribeWorstFilters(b *testing.B) {
	long := strings.TrimSuffix(strings.Repeat("+/", 64), "/")
	filters := []string{"#", "+/#", "+/+/+/#", "site/+/#", "site/+/+/secret", "+/+/+/telemetry", "+/+/nomatch", "home/+/#", long}
	for _, file := range []struct{ name, content string }{{"100k", file100k()}, {"100k-denies", file100kDenies()}, {"10k-patterns", file10kPatterns()}} {
		e := engineFor(b, "acl.conf", file.content)
		v := e.View(Client{ClientID: "c", Username: "user123"})
		for _, f := range filters {
			name := strings.ReplaceAll(f, "/", "_")
			if f == long {
				name = "64x+"
			}
			b.Run(file.name+"/"+name, func(b *testing.B) {
				fb := []byte(f)
				for b.Loop() {
					if v.cache != nil {
						clear(v.cache[:])
					}
					v.subscribe(fb, 1)
				}
			})
		}
	}
}

// The engine's options shape a denial into the decision the proxy
// enforces: refuse the packet, end the session for a PUBLISH, or in dry
// run only report it.
func TestDecisionOptions(t *testing.T) {
	for _, tc := range []struct {
		opts       Options
		pub, sub   mqttwire.Verdict
		dryRun     bool
		allowedToo bool
	}{
		{Options{}, mqttwire.Refuse, mqttwire.Refuse, false, true},
		{Options{DenyDisconnect: true}, mqttwire.End, mqttwire.Refuse, false, true},
		{Options{DryRun: true}, mqttwire.Forward, mqttwire.Forward, true, true},
	} {
		e, err := NewEngine(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		v := e.View(Client{ClientID: "c"})
		p, s := v.Publish([]byte("t"), 0, false), v.Subscribe([]byte("t"), 0)
		if p.Verdict != tc.pub || s.Verdict != tc.sub || p.Is(mqttwire.DryRun) != tc.dryRun || s.Is(mqttwire.DryRun) != tc.dryRun {
			t.Errorf("%+v: publish %+v subscribe %+v", tc.opts, p, s)
		}
		if p.Verdict != mqttwire.Forward && p.Code != mqttwire.NotAuthorized {
			t.Errorf("%+v: publish refused with %#x", tc.opts, p.Code)
		}
		if p.Why != "no match" {
			t.Errorf("%+v: why %q", tc.opts, p.Why)
		}
		su := e.View(Client{ClientID: "c", Superuser: true}).Publish([]byte("t"), 0, false)
		if su.Verdict != mqttwire.Forward || su.Is(mqttwire.DryRun) {
			t.Errorf("%+v: superuser %+v", tc.opts, su)
		}
	}
}

// Issue 13: a deny line that shares topics with an allowed wildcard
// grants the wildcard in part (its deliveries judged: the denied topic is
// never read), as Mosquitto grants it and filters per message; a filter
// inside the deny is refused. The same in both formats.
func TestOverlappingDenyGrantsInPart(t *testing.T) {
	for name, content := range map[string]string{
		"acl":      "topic deny test/nosubscribe\ntopic readwrite #\n",
		"acl.conf": `{deny, all, subscribe, ["test/nosubscribe"]}.` + "\n" + `{allow, all, subscribe, ["#"]}.` + "\n",
	} {
		v := engineFor(t, name, content).View(Client{ClientID: "c"}) // anonymous: the lines before any user line are theirs
		for _, f := range []string{"#", "+/+", "test/+"} {
			if d := v.subscribe([]byte(f), 1); !d.Allow || !d.Partial {
				t.Errorf("%s: %q: %+v, want granted in part", name, f, d)
			}
		}
		run(t, v, name, []check{
			// A share granted in part would drop the group's messages for
			// every member: whole or refused.
			{"grant", "$share/g/#", 1, false, false}, {"grant", "$queue/test/+", 1, false, false}, {"sub", "$share/g/other/#", 1, false, true},
			{"sub", "other/x", 1, false, true}, {"sub", "test/x", 1, false, true},
			{"grant", "test/nosubscribe", 1, false, false},
			{"recv", "test/nosubscribe", 0, false, false}, {"recv", "test/x", 0, false, true}, {"recv", "a/b/c", 0, false, true},
			{"recv", "$SYS/broker/uptime", 0, false, false}, {"grant", "$SYS/#", 0, false, false},
		})
		if d := v.Subscribe([]byte("#"), 1); d.Verdict != mqttwire.Forward || !d.Is(mqttwire.Partial) {
			t.Errorf("%s: Subscribe(#) = %+v, want Forward, Partial", name, d)
		}
	}
}

// Issue 13: $ topics are granted by the rules that name them, to whom
// they name; # never reaches them [MQTT-4.7.2-1]. Mosquitto's topic lines
// of a user are read before the pattern lines, denials first in each.
func TestDollarTopicsByExplicitRules(t *testing.T) {
	e := engineFor(t, "acl", "user admin\ntopic read $SYS/#\nuser bob\ntopic read #\ntopic read a/#\npattern deny a/%u\npattern read #\n")
	run(t, e.View(Client{ClientID: "c1", Username: "admin"}), "admin", []check{
		{"sub", "$SYS/#", 0, false, true}, {"recv", "$SYS/broker/load", 0, false, true},
		{"grant", "#", 0, false, true}, {"sub", "#", 0, false, false}, {"recv", "a/admin", 0, false, false}, // the pattern deny, in part
		{"pub", "$SYS/x", 0, false, false},
	})
	run(t, e.View(Client{ClientID: "c2", Username: "bob"}), "bob", []check{
		{"sub", "#", 0, false, true}, {"grant", "$SYS/#", 0, false, false}, {"recv", "$SYS/broker/load", 0, false, false},
		{"recv", "a/bob", 0, false, true}, // bob's own lines before the pattern deny, as in Mosquitto
	})
	run(t, e.View(Client{ClientID: "c3", Username: "carol"}), "carol", []check{
		{"recv", "a/carol", 0, false, false}, {"recv", "a/bob", 0, false, true}, {"grant", "$SYS/#", 0, false, false},
	})
	emqx := engineFor(t, "acl.conf", `{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.`+"\n"+`{allow, all, subscribe, ["#"]}.`+"\n"+`{allow, all}.`+"\n")
	run(t, emqx.View(Client{ClientID: "d", Username: "dashboard"}), "dashboard", []check{{"sub", "$SYS/#", 0, false, true}, {"recv", "$SYS/x", 0, false, true}})
	run(t, emqx.View(Client{ClientID: "e", Username: "eve"}), "eve", []check{{"grant", "$SYS/#", 0, false, false}, {"recv", "$SYS/x", 0, false, false}, {"sub", "#", 0, false, true}})
	if d := (&Engine{noMatchAllow: true}).View(Client{ClientID: "x"}).receive([]byte("$SYS/x")); d.Allow {
		t.Errorf("the allowing default opened $SYS: %+v", d)
	}
}

// A placeholder filled with a value starting with $ matches nothing: the
// client id "$SYS" must not turn "%c/#" into "$SYS/#"; and no client
// writes $SYS, whatever the rules say.
func TestPlaceholdersDoNotOpenDollarTopics(t *testing.T) {
	for name, content := range map[string]string{
		"acl":      "pattern readwrite %c/#\n",
		"acl.conf": `{allow, all, all, ["${clientid}/#"]}.` + "\n",
	} {
		e := engineFor(t, name, content)
		run(t, e.View(Client{ClientID: "$SYS"}), name+" $SYS", []check{
			{"grant", "$SYS/#", 0, false, false}, {"recv", "$SYS/x", 0, false, false}, {"pub", "$SYS/x", 0, false, false},
		})
		run(t, e.View(Client{ClientID: "dev"}), name+" dev", []check{{"sub", "dev/#", 0, false, true}, {"pub", "dev/x", 0, false, true}})
	}
	e := engineFor(t, "acl", "user admin\ntopic readwrite $SYS/#\n")
	run(t, e.View(Client{ClientID: "a", Username: "admin"}), "admin", []check{
		{"sub", "$SYS/#", 0, false, true}, {"pub", "$SYS/x", 0, false, false}, {"pub", "$SYSTEM/x", 0, false, false},
	})
}
