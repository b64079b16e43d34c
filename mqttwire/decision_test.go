package mqttwire

import (
	"reflect"
	"testing"
)

// Decision keeps to four fields: the compiler holds a struct of up to
// four in registers, and a fifth cost the PUBLISH path half again
// (see Decision).
func TestDecisionFitsInRegisters(t *testing.T) {
	if n := reflect.TypeFor[Decision]().NumField(); n > 4 {
		t.Fatalf("Decision has %d fields; at most 4 (add a Mark instead)", n)
	}
}
