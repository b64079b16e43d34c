package acl

import (
	"strings"
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func seeds() map[string][][]byte {
	return map[string][][]byte{
		"FuzzMosquittoFile": {[]byte(mosquittoACL), []byte("topic deny #\npattern read %u/%c\n"), []byte("user a b\ntopic write x y\n")},
		"FuzzEMQXFile": {[]byte(emqxACL), []byte(`{deny, {'or', [{ipaddrs, ["::1", "10.0.0.0/8"]}, {cert_cn, "x"}]}, {all, [{qos, 2}]}, [{eq, "#"}]}.`),
			[]byte("{allow, all}.\n%% c\n{deny, all}.")},
	}
}

// TestSeedCorpus regenerates testdata/fuzz when ACL_WRITE_CORPUS=1.
func TestSeedCorpus(t *testing.T) { mqtttest.SeedCorpus(t, "ACL_WRITE_CORPUS", seeds()) }

// fuzzFile parses and, when that works, checks some topics: nothing
// panics, and $SYS stays closed to ordinary clients unless a rule names
// it.
func fuzzFile(t *testing.T, name string, parse func(string, []byte) (*RuleSet, error), b []byte) {
	s, err := parse(name, b)
	if err != nil {
		return
	}
	e := &Engine{}
	e.set.Store(s)
	for _, c := range []Client{{ClientID: "c", Username: "a"}, {ClientID: "#", Username: "+"}, {}} {
		v := e.View(c)
		for _, tp := range []string{"a", "a/b", "x/y/z", "#", "+/#", "$SYS/x", "$share/g/a/#"} {
			v.publish([]byte(tp), 1, false)
			if d := v.subscribe([]byte(tp), 1); d.Allow && tp == "$SYS/x" && !strings.Contains(string(b), "$") {
				t.Fatalf("$SYS subscription allowed by %s, which names no $ topic (%s)", name, d.Source)
			}
			v.receive([]byte(tp))
		}
	}
}

func FuzzMosquittoFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzFile(t, "acl", parseMosquitto, b) })
}

func FuzzEMQXFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzFile(t, "acl.conf", parseEMQX, b) })
}
