package acl

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// acl decides what a client may do: it depends on the wire format, the
// identity and the shared address parser alone (tests included), never
// on the proxy, authn or the limits.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire", "authn/identity", "limits/cidr", "mqttwire/mqtttest")
}
