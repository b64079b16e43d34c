package limits

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/authn/identity"
)

// Flapping bans a client id that disconnects more than Max times within
// Window, for Ban. It is keyed by the client id together with who used it
// (IdentityKey), so that a client cannot get someone else's client id
// banned by flapping with it.
type Flapping struct {
	Max    int
	Window time.Duration
	Ban    time.Duration

	// Banned counts the client ids found flapping.
	Banned atomic.Int64

	mu   sync.Mutex
	seen map[flapKey][]time.Time // recent disconnects, oldest first
}

type flapKey struct{ clientID, who string }

// IdentityKey names who a session is, for flapping and identity bans:
// the authenticated user name, else the verified certificate's subject,
// else (an anonymous client) its address (an IPv6 client's /64). Never the client id alone,
// which every client chooses.
func IdentityKey(id *identity.Identity, addr netip.Addr) string {
	switch {
	case id != nil && id.Username != "":
		return "user:" + id.Username // prefixed: a user named "ip:..." is not an address
	case id != nil && id.CertDN != "":
		return "cert:" + id.CertDN
	}
	if addr = addr.Unmap(); addr.Is6() {
		p, _ := addr.Prefix(64) // one host's block: rotating addresses in it is one identity
		return "ip:" + p.String()
	}
	return "ip:" + addr.String()
}

// maxTracked bounds the client ids followed at once.
const maxTracked = 100_000

// Disconnected records a disconnect of clientID used by who (IdentityKey);
// it reports whether that pair has now disconnected more than Max times
// within Window (and forgets it).
func (f *Flapping) Disconnected(clientID, who string, now time.Time) bool {
	if f.Max <= 0 || clientID == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[flapKey][]time.Time{}
	}
	if len(f.seen) >= maxTracked {
		f.prune(now)
	}
	k := flapKey{clientID, who}
	ts := f.seen[k]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > f.Window {
		i++
	}
	ts = append(ts[i:], now)
	if len(ts) > f.Max {
		delete(f.seen, k)
		f.Banned.Add(1)
		return true
	}
	f.seen[k] = ts
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
