package cidr

import (
	"net/netip"
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8": "10.0.0.0/8", "10.1.2.3": "10.1.2.3/32", "::ffff:10.1.2.3": "10.1.2.3/32",
		"2001:db8::1/64": "2001:db8::/64", "::1": "::1/128",
		"::ffff:127.0.0.0/104": "127.0.0.0/8", "::ffff:10.1.2.3/128": "10.1.2.3/32", // mapped forms name IPv4 clients
	} {
		if p, err := Parse(in); err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "all", "10.0.0.0/33", "host", "::ffff:10.0.0.0/80"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	ps, err := ParseList(" 127.0.0.1, 10.0.0.0/8 ,")
	if err != nil || len(ps) != 2 || !Contains(ps, netip.MustParseAddr("::ffff:10.9.9.9")) || Contains(ps, netip.MustParseAddr("127.0.0.2")) {
		t.Fatalf("list: %v %v", ps, err)
	}
	if _, err := ParseList("all"); err == nil {
		t.Error("all accepted in a list")
	}
}

// cidr depends on nothing of this module.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire")
}
