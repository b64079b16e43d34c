package certstore

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// The certificate store decides one question and depends on nothing else
// of this module: its tests on the shared helpers alone (which bring
// mqttwire).
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire")
}
