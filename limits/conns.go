package limits

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ConnLimits cap connections before any TLS work is spent on them.
type ConnLimits struct {
	MaxTotal, MaxPerIP int     // 0: no cap
	Rate               float64 // new connections per second on each listener; 0: none
	RatePerIP          float64 // new connections per second from one address; 0: none
	Burst              int     // bucket size for both rates (default: max(1, rate))
}

// Conns admits connections.
type Conns struct {
	l     ConnLimits
	bans  *Bans
	mu    sync.Mutex
	lists map[string]*rate.Limiter // per listener
	total int
	perIP map[netip.Addr]*ipState
}

type ipState struct {
	open int
	lim  *rate.Limiter
	last time.Time
}

// NewConns applies l, and refuses banned addresses when bans is not nil.
func NewConns(l ConnLimits, bans *Bans) *Conns {
	return &Conns{l: l, bans: bans, perIP: map[netip.Addr]*ipState{}, lists: map[string]*rate.Limiter{}}
}

func burst(b int, r float64) int {
	if b > 0 {
		return b
	}
	return max(1, int(r))
}

// Refusal reasons.
const (
	RefusedBanned    = "banned"
	RefusedTotal     = "max_connections"
	RefusedPerIP     = "max_connections_per_ip"
	RefusedRate      = "connect_rate"
	RefusedRatePerIP = "connect_rate_per_ip"
)

// Open admits a connection from a on a listener, or says why not.
// release must be called once when an admitted connection ends.
func (c *Conns) Open(a netip.Addr, listener string) (release func(), refused string) {
	a = a.Unmap()
	now := time.Now()
	if c.bans != nil {
		if _, banned := c.bans.Addr(a, now); banned {
			return nil, RefusedBanned
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l.MaxTotal > 0 && c.total >= c.l.MaxTotal {
		return nil, RefusedTotal
	}
	st := c.perIP[a]
	if st == nil {
		if len(c.perIP) >= maxTracked {
			c.pruneLocked(now)
		}
		st = &ipState{}
		if c.l.RatePerIP > 0 {
			st.lim = rate.NewLimiter(rate.Limit(c.l.RatePerIP), burst(c.l.Burst, c.l.RatePerIP))
		}
		c.perIP[a] = st
	}
	st.last = now
	if c.l.MaxPerIP > 0 && st.open >= c.l.MaxPerIP {
		return nil, RefusedPerIP
	}
	if st.lim != nil && !st.lim.AllowN(now, 1) {
		return nil, RefusedRatePerIP
	}
	if c.l.Rate > 0 {
		lim := c.lists[listener]
		if lim == nil {
			lim = rate.NewLimiter(rate.Limit(c.l.Rate), burst(c.l.Burst, c.l.Rate))
			c.lists[listener] = lim
		}
		if !lim.AllowN(now, 1) {
			return nil, RefusedRate
		}
	}
	c.total++
	st.open++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.total--
			st.open--
			c.mu.Unlock()
		})
	}, ""
}

// pruneLocked forgets addresses with nothing open that were last seen
// long enough ago for their buckets to be full again.
func (c *Conns) pruneLocked(now time.Time) {
	for a, st := range c.perIP {
		if st.open == 0 && now.Sub(st.last) > time.Minute {
			delete(c.perIP, a)
		}
	}
}
