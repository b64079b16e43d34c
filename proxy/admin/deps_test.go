package admin

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// admin shows what the proxy's parts count: it imports the decision
// vocabulary, never the proxy or the deciders (cmd hands it readers).
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire", "mqttwire/mqtttest")
}
