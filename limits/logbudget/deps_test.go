package logbudget_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// logbudget is a leaf the proxy and the authentication chain share: it imports
// no package of this module.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire") // the test kit alone, and what it imports
}
