package proxy

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// proxy owns the mechanics and declares the seams; it imports no decider.
// Its tests run the real deciders behind the seams (acl, limits), with
// certificates from the binary's dev PKI.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDependsOutsideTests(t, ".", "mqttwire", "authn/identity", "limits/cidr", "limits/logbudget", "proxy/audit")
	mqtttest.OnlyDepends(t, ".", "mqttwire", "authn/identity", "limits/logbudget", "limits/cidr", "proxy/certstore",
		"acl", "limits", "limits/sharedfile", "cmd/mqttgate/devpki", "mqttwire/mqtttest", "proxy/audit", "proxy/wstransport", "proxy/brokerpool")
}
