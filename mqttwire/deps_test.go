package mqttwire

import (
	"go/build"
	"strings"
	"testing"
)

// mqttwire knows MQTT bytes and nothing else: standard library only.
func TestImportsOnlyStandardLibrary(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("mqttwire imports %s", imp)
		}
	}
}
