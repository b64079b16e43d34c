package mqttwire_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/proxy/proxytest"
)

// TestWriteSeedCorpus regenerates testdata/fuzz from the golden packets when
// MQTTWIRE_WRITE_CORPUS=1, and otherwise checks that the corpus is present.
func TestWriteSeedCorpus(t *testing.T) {
	proxytest.SeedCorpus(t, "MQTTWIRE_WRITE_CORPUS", mqttwire.Seeds())
}
