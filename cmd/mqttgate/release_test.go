package main

import "testing"

// Memory is given back once after a burst of connections ends, never
// while connections keep arriving, and not after a handful.
func TestReleaseAfterBursts(t *testing.T) {
	var b burstWatch
	for i, c := range []struct {
		accepted int64
		release  bool
	}{
		{10, false},               // a few connections
		{10, false},               // quiet, but no burst
		{10 + burstSize, false},   // a storm, still going
		{10 + 2*burstSize, false}, // still going
		{10 + 2*burstSize, true},  // quiet: the storm ended
		{10 + 2*burstSize, false}, // released once
		{10 + 2*burstSize + 5, false},
		{10 + 2*burstSize + 5, false}, // five more: no burst
	} {
		if got := b.ended(c.accepted); got != c.release {
			t.Errorf("tick %d (%d accepted): release %v, want %v", i, c.accepted, got, c.release)
		}
	}
}
