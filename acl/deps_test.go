package acl

import (
	"testing"

	"github.com/mqttgate/mqttgate/proxy/proxytest"
)

// acl decides what a client may do: it depends on the wire format, the
// identity and the shared address parser alone (tests included), never
// on the proxy, authn or the limits.
func TestDependencies(t *testing.T) {
	proxytest.OnlyDepends(t, ".", "mqttwire", "authn/identity", "limits/cidr", "proxy/proxytest")
}
