package wstransport

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// wstransport is a transport: it imports nothing of this module (the
// proxy declares the seam it satisfies); its tests the shared helpers.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDependsOutsideTests(t, ".")
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire")
}
