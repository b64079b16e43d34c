package mqttwire_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// mqttwire knows MQTT bytes and nothing else: the standard library only,
// and of this module, its tests use the shared test helpers alone.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyStandardLibrary(t, ".")
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest")
}
