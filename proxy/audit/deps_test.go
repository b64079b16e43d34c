package audit

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// audit is a leaf: the proxy, the admin plane and the command write to it.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire")
}
