package admin

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// admin shows what the proxy's parts count (cmd hands it readers) and
// acts on sessions through the proxy's registry and on the bans file;
// it decides nothing the deciders decide.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDependsOutsideTests(t, ".", "mqttwire", "proxy", "proxy/audit", "limits", "limits/cidr", "limits/logbudget", "limits/sharedfile",
		"authn/identity", "proxy/certstore")
}
