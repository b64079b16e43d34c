package limits

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// limits decides how much a client may do and who may connect: it
// depends on the wire format and the shared leaves alone (tests
// included), never on the proxy, authn or the ACLs; logbudget and
// sharedfile on nothing of this module.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire", "authn/identity", "limits/logbudget", "limits/cidr", "limits/sharedfile", "mqttwire/mqtttest")
	mqtttest.OnlyDepends(t, "./sharedfile")
	mqtttest.OnlyDepends(t, "./logbudget")
}
