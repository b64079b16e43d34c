package logbudget

import (
	"net/netip"
	"testing"
)

// One source that floods takes only its own share: the others' events
// are still logged, and what is held back is counted.
func TestOneSourceCannotExhaustTheBudget(t *testing.T) {
	b := NewWith(1e-9, 20, 1e-9, 3) // no refill within the test
	noisy, quiet := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::ffff:127.0.0.3")
	allowed := 0
	for range 1000 {
		if ok, _ := b.Allow(noisy); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("the flooding source logged %d events, want its share of 3", allowed)
	}
	for i := range 3 {
		ok, suppressed := b.Allow(quiet)
		if !ok {
			t.Fatalf("another source's event %d held back", i+1)
		}
		if i == 0 && suppressed != 997 {
			t.Fatalf("the next event reports %d held back, want 997", suppressed)
		}
	}
	for range 20 {
		b.Allow(netip.Addr{})
	}
	if ok, _ := b.Allow(netip.MustParseAddr("127.0.0.9")); ok {
		t.Fatal("the global budget is not a bound")
	}
}

// The sources followed are bounded.
func TestSourcesBounded(t *testing.T) {
	b := New()
	for i := range maxSources + 500 {
		b.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if len(b.sources) > maxSources {
		t.Fatalf("%d sources followed, bound %d", len(b.sources), maxSources)
	}
}

// An IPv6 client's /64 is one source: rotating through its addresses
// gains it no share.
func TestIPv6SourceIsItsSlash64(t *testing.T) {
	b := NewWith(1e-9, 100, 1e-9, 3)
	allowed := 0
	for i := range 100 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		if ok, _ := b.Allow(a); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("100 addresses of one /64 logged %d events, want one source's 3", allowed)
	}
}
