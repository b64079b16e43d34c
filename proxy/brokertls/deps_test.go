package brokertls

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// The broker hop's TLS decides one question and depends on nothing else
// of this module (no decider, not the proxy) but certstore, for the one
// list of TLS 1.2 suites; its tests borrow the dev PKI and the shared
// helpers.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDependsOutsideTests(t, ".", "proxy/certstore")
	mqtttest.OnlyDepends(t, ".", "proxy/certstore", "mqttwire/mqtttest", "mqttwire", "cmd/mqttgate/devpki")
}
