package mqttwire_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/proxy/proxytest"
)

// mqttwire knows MQTT bytes and nothing else: the standard library only,
// and of this module, its tests use the shared test helpers alone.
func TestDependencies(t *testing.T) {
	proxytest.OnlyStandardLibrary(t, ".")
	proxytest.OnlyDepends(t, ".", "proxy/proxytest")
}
