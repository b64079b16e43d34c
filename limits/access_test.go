package limits

import (
	"net/netip"
	"testing"
)

func TestAccessRules(t *testing.T) {
	a, err := ParseAccessRules("allow 10.0.0.0/8, deny 127.0.0.2, allow 127.0.0.0/8, allow ::1, deny all")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "127.0.0.1": true, "127.0.0.2": false, "::1": true, "::ffff:127.0.0.1": true,
		"192.168.1.1": false, "2001:db8::1": false,
	} {
		if got := a.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: allowed=%v, want %v", addr, got, want)
		}
	}
	// First match wins.
	a, _ = ParseAccessRules("deny 127.0.0.1, allow all")
	if a.Allowed(netip.MustParseAddr("127.0.0.1")) || !a.Allowed(netip.MustParseAddr("127.0.0.9")) {
		t.Error("first match should win")
	}
	// No rule matches: denied.
	a, _ = ParseAccessRules("allow 10.0.0.0/8")
	if a.Allowed(netip.MustParseAddr("127.0.0.1")) {
		t.Error("unmatched address should be denied")
	}
	// Empty: everyone.
	a, _ = ParseAccessRules("")
	if !a.Allowed(netip.MustParseAddr("203.0.113.9")) {
		t.Error("empty rules should allow")
	}
	for _, bad := range []string{"permit 10.0.0.0/8", "allow", "allow 10.0.0.0/33", "allow nonsense", "allow 1.2.3.4 extra"} {
		if _, err := ParseAccessRules(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
}
