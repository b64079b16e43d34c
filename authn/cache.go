package authn

import (
	"sync"
	"time"
)

// maxCached bounds each cache of authentication answers.
const maxCached = 50_000

// ttlCache remembers answers under a keyed hash until they expire. A full
// cache drops expired entries first, then whatever the map yields.
type ttlCache[V any] struct {
	mu sync.Mutex
	m  map[[32]byte]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v     V
	until time.Time
}

func (c *ttlCache[V]) get(k [32]byte) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !time.Now().Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k [32]byte, v V, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]ttlEntry[V]{}
	}
	if len(c.m) >= maxCached {
		now := time.Now()
		for old, e := range c.m {
			if !now.Before(e.until) || len(c.m) >= maxCached {
				delete(c.m, old)
			}
		}
	}
	c.m[k] = ttlEntry[V]{v, until}
}
