package wstransport

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// wstransport is a transport: of this module it imports only the one
// address-range reader (the proxy declares the seam it satisfies); its
// tests the shared helpers.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDependsOutsideTests(t, ".", "limits/cidr")
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire", "limits/cidr")
}
