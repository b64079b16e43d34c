package mqttwire_test

import (
	"testing"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// TestWriteSeedCorpus regenerates testdata/fuzz from the golden packets when
// MQTTWIRE_WRITE_CORPUS=1, and otherwise checks that the corpus is present.
func TestWriteSeedCorpus(t *testing.T) {
	mqtttest.SeedCorpus(t, "MQTTWIRE_WRITE_CORPUS", mqttwire.Seeds())
}
