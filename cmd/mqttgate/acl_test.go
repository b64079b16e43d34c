package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

const mosquittoACLFile = `# Mosquitto syntax
user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read shared/#

user bob
topic write shared/bob

user root
topic read #

pattern readwrite devices/%c/#
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func passwordFile(t *testing.T, users ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "passwd")
	bin := mqtttest.Need(t, "mosquitto_passwd")
	for i, u := range users {
		args := []string{"-b", file, u, u + "-pw"}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	return file
}

// aclScenario runs the same clients against a target: conn are the
// mosquitto client options to reach it (before -u/-P). watch is a
// subscriber on # that sees everything the broker accepted.
func aclScenario(t *testing.T, conn []string, watch []string) (watched, aliceGot []string) {
	t.Helper()
	as := func(user string, args ...string) []string {
		return append(append(append([]string{}, conn...), "-u", user, "-P", user+"-pw"), args...)
	}
	watchLines, _ := sub(t, append(watch, "-t", "#", "-q", "1")...)
	aliceLines, _ := sub(t, as("alice", "-i", "alice-sub", "-t", "shared/#", "-t", "bob/#", "-q", "1")...)
	for _, p := range []struct {
		user, id, topic string
	}{
		{"alice", "a1", "alice/secret/x"}, // deny line
		{"bob", "b1", "alice/x"},          // not bob's
		{"alice", "a1", "shared/x"},       // read only
		{"alice", "dev1", "devices/dev2/t"},
		{"bob", "b1", "bob/x"}, // bob may not write there either: alice's denied filter must stay silent
		{"alice", "a1", "alice/x"},
		{"bob", "b1", "shared/bob"},
		{"alice", "dev1", "devices/dev1/t"},
	} {
		if err := pub(t, as(p.user, "-i", p.id, "-q", "1", "-t", p.topic, "-m", p.user)...); err != nil {
			t.Fatalf("%s publishing %s: %v", p.user, p.topic, err)
		}
	}
	// Every allowed message arrives, in order, after the denied ones were
	// sent: what the watcher saw first is all that got through.
	for range 3 {
		select {
		case l := <-watchLines:
			watched = append(watched, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("watcher saw only %q", watched)
		}
	}
	select {
	case l := <-aliceLines:
		aliceGot = append(aliceGot, l)
	case <-time.After(10 * time.Second):
		t.Fatal("alice got nothing")
	}
	return watched, aliceGot
}

// A Mosquitto acl_file behaves through the proxy as it does in Mosquitto:
// the same clients, run once against Mosquitto enforcing the file itself
// and once through mqttgate in front of a Mosquitto without ACLs, see the
// same messages.
func TestMosquittoACLFileAsInMosquitto(t *testing.T) {
	aclFile := writeFile(t, "acl", mosquittoACLFile)
	pw := passwordFile(t, "alice", "bob", "root")
	want := []string{"alice/x alice", "shared/bob bob", "devices/dev1/t alice"}
	wantAlice := []string{"shared/bob bob"}

	direct := mqtttest.Mosquitto(t, "user root\nallow_anonymous false\npassword_file "+pw+"\nacl_file "+aclFile+"\n")
	host, port, _ := strings.Cut(direct, ":")
	dconn := []string{"-h", host, "-p", port}
	w, a := aclScenario(t, dconn, append(append([]string{}, dconn...), "-u", "root", "-P", "root-pw"))
	if strings.Join(w, "|") != strings.Join(want, "|") || strings.Join(a, "|") != strings.Join(wantAlice, "|") {
		t.Fatalf("Mosquitto itself: watcher %q alice %q; the test's expectations are wrong", w, a)
	}

	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw,
		"MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny")
	bhost, bport, _ := strings.Cut(backend, ":")
	w, a = aclScenario(t, g.tlsArgs(""), []string{"-h", bhost, "-p", bport}) // the watcher sits on the broker itself
	if strings.Join(w, "|") != strings.Join(want, "|") {
		t.Errorf("through mqttgate the broker saw %q, want %q", w, want)
	}
	if strings.Join(a, "|") != strings.Join(wantAlice, "|") {
		t.Errorf("through mqttgate alice got %q, want %q", a, wantAlice)
	}
	g.waitLog(t, `"rule":"acl:4"`) // the deny line is named
}

// One SUBSCRIBE with three filters, the middle one denied: v3.1.1 and v5
// clients get one code per filter in order and messages on the allowed two
// only; with rules from a Mosquitto file, an EMQX file, and a JWT claim.
func TestSubackPerFilterFromEachSource(t *testing.T) {
	rs := mqtttest.NewJWTSigner(t, "ES256")
	pw := passwordFile(t, "dev")
	sources := map[string][]string{
		"mosquitto": {"MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE=" + pw,
			"MQTTGATE_ACL_FILE=" + writeFile(t, "acl", "user dev\ntopic read a/#\ntopic read c/#\ntopic write #\n")},
		"emqx": {"MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE=" + pw,
			"MQTTGATE_ACL_FILE=" + writeFile(t, "acl.conf", `{allow, {username, "dev"}, subscribe, ["a/#", "c/#"]}.`+"\n"+`{allow, all, publish, ["#"]}.`+"\n")},
		"jwt": {"MQTTGATE_AUTHN=jwt", "MQTTGATE_JWT_KEYS=" + rs.Pub},
	}
	for name, env := range sources {
		t.Run(name, func(t *testing.T) {
			backend := mqtttest.Mosquitto(t, "")
			g := startGate(t, backend, append(env, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_ACL_NO_MATCH=deny")...)
			password := "dev-pw"
			if name == "jwt" {
				password = rs.Token(map[string]any{"sub": "dev", "exp": time.Now().Add(time.Hour).Unix(),
					"acl": map[string]any{"sub": []any{"a/#", "c/#"}, "pub": []any{"#"}}}, nil)
			}
			for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
				deny := notAuthorized(v)
				conn, err := tls.Dial("tcp", g.addr, g.clientTLS())
				if err != nil {
					t.Fatal(err)
				}
				c, ack := mqtttest.NewRawClient(t, conn, v, &mqttwire.Connect{ClientID: []byte("dev-sub"),
					UsernameFlag: true, Username: []byte("dev"), PasswordFlag: true, Password: []byte(password)})
				if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
					t.Fatalf("v%d: CONNACK %x", v, ack.Raw)
				}
				c.Send(mqtttest.SubscribePacket(v, 3, "a/1", "b/1", "c/1"))
				if got := mqtttest.SubackCodes(t, c.Next(), v); !bytes.Equal(got, []byte{1, deny, 1}) {
					t.Fatalf("v%d: SUBACK %x, want [01 %02x 01]", v, got, deny)
				}
				for _, topic := range []string{"b/1", "a/1", "c/1"} {
					if err := pub(t, "-h", strings.Split(backend, ":")[0], "-p", strings.Split(backend, ":")[1], "-t", topic, "-m", "x"); err != nil {
						t.Fatal(err)
					}
				}
				for _, want := range []string{"a/1", "c/1"} {
					m, err := mqttwire.ParsePublish(c.Next(), v)
					if err != nil || string(m.Topic) != want {
						t.Fatalf("v%d: message on %q (%v), want %s: the denied filter reached the broker", v, m.Topic, err, want)
					}
				}
				conn.Close()
			}
		})
	}
}

// A client id of # or a/+ gains nothing from a ${clientid} rule.
func TestWildcardClientIDGainsNothing(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_ACL_NO_MATCH=deny",
		"MQTTGATE_ACL_FILE="+writeFile(t, "acl.conf", `{allow, all, all, ["t/${clientid}/#"]}.`+"\n"))
	bhost, bport, _ := strings.Cut(backend, ":")
	watch, _ := sub(t, "-h", bhost, "-p", bport, "-t", "#")
	for _, id := range []string{"#", "a/+", "+"} {
		if err := pub(t, append(g.tlsArgs(""), "-i", id, "-q", "1", "-t", "t/victim/x", "-m", id)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub(t, append(g.tlsArgs(""), "-i", "victim", "-q", "1", "-t", "t/victim/x", "-m", "own")...); err != nil {
		t.Fatal(err)
	}
	expectLine(t, watch, "t/victim/x own")
}

// The ACL file is reloaded when it changes and on SIGHUP; established
// connections get the new rules; a broken file keeps the old ones.
func TestACLReload(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	file := writeFile(t, "acl", "pattern write one/#\n")
	g := startGate(t, backend, "MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_ACL_FILE="+file, "MQTTGATE_FILE_POLL_INTERVAL=100ms")
	bhost, bport, _ := strings.Cut(backend, ":")
	watch, _ := sub(t, "-h", bhost, "-p", bport, "-t", "#")
	conn, err := tls.Dial("tcp", g.addr, g.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mqtttest.NewRawClient(t, conn, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("kept")})
	publish := func(topic string, id uint16) byte {
		c.Send(mqtttest.PublishPacket(mqttwire.V5, topic, 1, id, nil, "m"))
		if p := c.Next(); len(p.Body) > 2 {
			return p.Body[2]
		}
		return 0 // success, reason code omitted
	}
	if code := publish("two/x", 1); code != 0x87 {
		t.Fatalf("two/x before the reload: %#x", code)
	}
	if err := os.WriteFile(file, []byte("pattern write two/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mqtttest.WaitFor(t, "ACL reload", func() bool { return strings.Contains(g.logs.String(), `"file":"MQTTGATE_ACL_FILE"`) })
	if code := publish("two/x", 2); code >= 0x80 {
		t.Fatalf("two/x after the reload, same connection: %#x", code)
	}
	expectLine(t, watch, "two/x m")
	if err := os.WriteFile(file, []byte("pattern write three/#\nnonsense\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, "broken ACL reported", func() bool { return strings.Contains(g.logs.String(), "acl:2: unknown keyword") })
	if code := publish("two/y", 3); code >= 0x80 {
		t.Fatalf("a broken file changed the rules: %#x", code)
	}
}

// MQTTGATE_ACL_CHECK_DELIVERY: a subscription made before a rule was
// taken away delivers nothing more on what the new rules deny.
func TestACLCheckDeliveryAfterReload(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	file := writeFile(t, "acl", "pattern read a/#\npattern read b/#\n")
	g := startGate(t, backend, "MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_ACL_FILE="+file, "MQTTGATE_ACL_CHECK_DELIVERY=true")
	conn, err := tls.Dial("tcp", g.addr, g.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := mqtttest.NewRawClient(t, conn, mqttwire.V311, &mqttwire.Connect{ClientID: []byte("old-sub")})
	c.Send(mqtttest.SubscribePacket(mqttwire.V311, 1, "a/#", "b/#"))
	if got := mqtttest.SubackCodes(t, c.Next(), mqttwire.V311); !bytes.Equal(got, []byte{1, 1}) {
		t.Fatalf("SUBACK %x", got)
	}
	if err := os.WriteFile(file, []byte("pattern read b/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = g.cmd.Process.Signal(syscall.SIGHUP)
	mqtttest.WaitFor(t, "ACL reload", func() bool { return strings.Contains(g.logs.String(), `"file":"MQTTGATE_ACL_FILE"`) })
	bhost, bport, _ := strings.Cut(backend, ":")
	for _, topic := range []string{"a/x", "b/x"} {
		if err := pub(t, "-h", bhost, "-p", bport, "-q", "1", "-t", topic, "-m", "m"); err != nil {
			t.Fatal(err)
		}
	}
	p := c.Next()
	if m, err := mqttwire.ParsePublish(p, mqttwire.V311); err != nil || string(m.Topic) != "b/x" {
		t.Fatalf("got %q (%v), want b/x only", m.Topic, err)
	}
	g.waitLog(t, `"action":"deliver"`) // the dropped delivery
}

// notAuthorized is the SUBACK code of a refused filter: v5 0x87 Not
// authorized, v3.1.1 0x80 Failure.
func notAuthorized(v mqttwire.Version) byte {
	if v == mqttwire.V5 {
		return 0x87
	}
	return 0x80
}

// subscribeAt encodes a SUBSCRIBE asking the given QoS for each filter.
func subscribeAt(v mqttwire.Version, id uint16, qos byte, filters ...string) []byte {
	fs := make([]mqttwire.Filter, len(filters))
	for i, f := range filters {
		fs[i] = mqttwire.Filter{Topic: []byte(f), Options: qos}
	}
	return mqttwire.AppendSubscribe(nil, v, id, nil, fs)
}

// firstDelivery publishes each topic on the broker itself (QoS 1: routed
// before the next is sent), then the sentinel, and returns the topic of
// the first message the client gets: the sentinel unless something
// published before it got through.
func firstDelivery(t *testing.T, c *mqtttest.RawClient, v mqttwire.Version, backend, sentinel string, topics ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(backend, ":")
	for _, topic := range append(topics, sentinel) {
		if err := pub(t, "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", "m"); err != nil {
			t.Fatal(err)
		}
	}
	m, err := mqttwire.ParsePublish(c.Next(), v)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Topic)
}

// The attack of issue 11 item 10, against EMQX's stock acl.conf (# denied
// by spelling, then {allow, all}): + and +/+/# in one SUBSCRIBE would
// receive every topic. Both are refused; the literal filter is granted.
func TestWildcardOnlyFiltersRefusedThroughGate(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_ACL_FILE="+writeFile(t, "acl.conf", `{allow, {username, "dashboard"}, subscribe, ["$SYS/#"]}.
{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.
{allow, all}.
`), "MQTTGATE_ACL_NO_MATCH=deny")
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		deny := notAuthorized(v)
		c, _, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte("eve")})
		if err != nil {
			t.Fatal(err)
		}
		c.Send(mqtttest.SubscribePacket(v, 1, "+", "+/+/#", "+/+", "done"))
		if got := mqtttest.SubackCodes(t, c.Next(), v); !bytes.Equal(got, []byte{deny, deny, deny, 1}) {
			t.Fatalf("v%d: SUBACK %x, want [%02x %02x %02x 01]", v, got, deny, deny, deny)
		}
		if got := firstDelivery(t, c, v, backend, "done", "x", "a/b", "a/b/c"); got != "done" {
			t.Fatalf("v%d: received %q: a wildcard-only filter reached the broker", v, got)
		}
		g.waitLog(t, `"topic":"+/+/#","rule":"wildcard"`)
	}
}

// The same mosquitto_sub -t + -t +/+/# (and its own eve/#) against a
// Mosquitto enforcing the acl_file itself and through mqttgate enforcing
// it in front of a Mosquitto without ACLs: neither delivers a topic the
// file does not let eve read.
func TestWildcardOnlyFiltersAsInMosquitto(t *testing.T) {
	aclFile := writeFile(t, "acl", "user eve\ntopic read eve/#\ntopic deny secret/#\n\nuser root\ntopic readwrite #\n")
	pw := passwordFile(t, "eve", "root")
	denied := []string{"x", "a/b", "secret/c/d", "other/eve/x"}
	// lines waits for the sentinel and returns what came before it.
	before := func(lines <-chan string) []string {
		var got []string
		for {
			select {
			case l := <-lines:
				if l == "eve/done m" {
					return got
				}
				got = append(got, l)
			case <-time.After(10 * time.Second):
				t.Fatalf("no sentinel; got %q", got)
			}
		}
	}
	publishAll := func(conn []string) {
		for _, topic := range append(denied, "eve/done") {
			if err := pub(t, append(append([]string{}, conn...), "-q", "1", "-t", topic, "-m", "m")...); err != nil {
				t.Fatal(err)
			}
		}
	}
	filters := []string{"-t", "+", "-t", "+/+/#", "-t", "eve/#", "-q", "1"}

	direct := mqtttest.Mosquitto(t, "user root\nallow_anonymous false\npassword_file "+pw+"\nacl_file "+aclFile+"\n")
	host, port, _ := strings.Cut(direct, ":")
	lines, _ := sub(t, append([]string{"-h", host, "-p", port, "-u", "eve", "-P", "eve-pw", "-i", "eve-d"}, filters...)...)
	publishAll([]string{"-h", host, "-p", port, "-u", "root", "-P", "root-pw"})
	if got := before(lines); len(got) != 0 {
		t.Fatalf("Mosquitto itself delivered %q; the test's expectations are wrong", got)
	}

	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw,
		"MQTTGATE_ACL_FILE="+aclFile, "MQTTGATE_ACL_NO_MATCH=deny")
	lines, _ = sub(t, append(append(g.tlsArgs(""), "-u", "eve", "-P", "eve-pw", "-i", "eve-g"), filters...)...)
	bhost, bport, _ := strings.Cut(backend, ":")
	publishAll([]string{"-h", bhost, "-p", bport})
	if got := before(lines); len(got) != 0 {
		t.Fatalf("through mqttgate eve got %q before the sentinel", got)
	}
}

// Issue 11 item 11 through the binary: an EMQX rule that allows a filter
// at QoS 0 and 1 only refuses it at QoS 2, as EMQX does (SUBACK 0x80 /
// 0x87), and grants it at QoS 1; the refused filter gets no message.
func TestSubscribeQoSConditionThroughGate(t *testing.T) {
	backend := mqtttest.Mosquitto(t, "")
	g := startGate(t, backend, "MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_ACL_FILE="+writeFile(t, "acl.conf",
		`{allow, all, {subscribe, [{qos, [0, 1]}]}, ["t/#"]}.`+"\n"))
	for _, v := range []mqttwire.Version{mqttwire.V311, mqttwire.V5} {
		deny := notAuthorized(v)
		c, _, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte("q")})
		if err != nil {
			t.Fatal(err)
		}
		c.Send(subscribeAt(v, 1, 2, "t/two"))
		if got := mqtttest.SubackCodes(t, c.Next(), v); !bytes.Equal(got, []byte{deny}) {
			t.Fatalf("v%d: QoS 2 SUBACK %x, want %02x", v, got, deny)
		}
		c.Send(subscribeAt(v, 2, 1, "t/one"))
		if got := mqtttest.SubackCodes(t, c.Next(), v); !bytes.Equal(got, []byte{1}) {
			t.Fatalf("v%d: QoS 1 SUBACK %x, want 01", v, got)
		}
		if got := firstDelivery(t, c, v, backend, "t/one", "t/two"); got != "t/one" {
			t.Fatalf("v%d: received %q on the filter refused at QoS 2", v, got)
		}
	}
}
