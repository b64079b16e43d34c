package certstore

import (
	"testing"

	"github.com/mqttgate/mqttgate/proxy/proxytest"
)

// The certificate store decides one question and depends on nothing else
// of this module: its tests on the shared helpers alone (which bring
// mqttwire).
func TestDependencies(t *testing.T) {
	proxytest.OnlyDepends(t, ".", "proxy/proxytest", "mqttwire")
}
