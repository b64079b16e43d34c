package limits

import (
	"sync"
	"sync/atomic"
	"time"
)

// Flapping bans a client id that disconnects more than Max times within
// Window, for Ban.
type Flapping struct {
	Max    int
	Window time.Duration
	Ban    time.Duration

	// Banned counts the client ids found flapping.
	Banned atomic.Int64

	mu   sync.Mutex
	seen map[string][]time.Time // recent disconnects per client id, oldest first
}

// maxTracked bounds the client ids followed at once.
const maxTracked = 100_000

// Disconnected records a disconnect; it reports whether the client id has
// now disconnected more than Max times within Window (and forgets it).
func (f *Flapping) Disconnected(clientID string, now time.Time) bool {
	if f.Max <= 0 || clientID == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string][]time.Time{}
	}
	if len(f.seen) >= maxTracked {
		f.prune(now)
	}
	ts := f.seen[clientID]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > f.Window {
		i++
	}
	ts = append(ts[i:], now)
	if len(ts) > f.Max {
		delete(f.seen, clientID)
		f.Banned.Add(1)
		return true
	}
	f.seen[clientID] = ts
	return false
}

func (f *Flapping) prune(now time.Time) {
	for id, ts := range f.seen {
		if now.Sub(ts[len(ts)-1]) > f.Window {
			delete(f.seen, id)
		}
	}
	for id := range f.seen { // still full: forget arbitrary ones
		if len(f.seen) < maxTracked {
			break
		}
		delete(f.seen, id)
	}
}
