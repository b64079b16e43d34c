package devpki_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// devpki is a leaf the binary and tests share: it imports no package of
// this module.
func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire") // the test kit alone, and what it imports
}
