package logbudget

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults: 10 events a second in bursts of 50 in all, and of those at
// most one a second in bursts of 5 from any one source address.
const (
	Rate      = 10
	Burst     = 50
	PerSource = 1
	PerBurst  = 5
)

// maxSources bounds the sources followed at once; past it the ones whose
// share is full again are forgotten, then any.
const maxSources = 10_000

// Budget is shared by every part that logs security events. It is safe
// for concurrent use. The zero value is not usable: use New.
type Budget struct {
	global     *rate.Limiter
	perRate    rate.Limit
	perBurst   int
	suppressed atomic.Int64

	mu      sync.Mutex
	sources map[netip.Addr]*rate.Limiter
}

// New returns a budget with the default rates.
func New() *Budget { return NewWith(Rate, Burst, PerSource, PerBurst) }

// NewWith returns a budget of r events a second in bursts of burst, each
// source taking at most perRate a second in bursts of perBurst.
func NewWith(r float64, burst int, perRate float64, perBurst int) *Budget {
	return &Budget{global: rate.NewLimiter(rate.Limit(r), burst), perRate: rate.Limit(perRate), perBurst: perBurst,
		sources: map[netip.Addr]*rate.Limiter{}}
}

// Allow reports whether an event about src may be logged now. When it
// may, suppressed is how many were held back since the last one allowed
// (to report with it); otherwise the event is counted as held back. An
// invalid src (an event about no client) draws on the global budget only.
func (b *Budget) Allow(src netip.Addr) (ok bool, suppressed int64) {
	if src.IsValid() && !b.source(src.Unmap()).Allow() {
		b.suppressed.Add(1)
		return false, 0
	}
	if !b.global.Allow() {
		b.suppressed.Add(1)
		return false, 0
	}
	return true, b.suppressed.Swap(0)
}

// sourceKey groups an IPv6 address by its /64, the smallest block one
// host is commonly given: a client with a /64 is one source, not 2^64.
func sourceKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (b *Budget) source(a netip.Addr) *rate.Limiter {
	a = sourceKey(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.sources[a]
	if l == nil {
		if len(b.sources) >= maxSources {
			now := time.Now()
			for k, v := range b.sources {
				if v.TokensAt(now) >= float64(b.perBurst) || len(b.sources) >= maxSources {
					delete(b.sources, k)
				}
			}
		}
		l = rate.NewLimiter(b.perRate, b.perBurst)
		b.sources[a] = l
	}
	return l
}
