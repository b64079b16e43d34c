package proxy

import (
	"crypto/tls"
	"sync/atomic"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Directions packets are counted in.
const (
	FromClient = 0
	FromBroker = 1
)

// Traffic counts packets and bytes by direction and packet type, for the
// operations plane; nothing when Config.Traffic is nil. A pump tallies
// its PUBLISHes locally and adds them once per read from its socket (a
// run of packets), so the per-packet cost is two plain adds.
type Traffic struct {
	n [2][16]trafficCount
}

type trafficCount struct {
	packets, bytes atomic.Int64
	_              [48]byte // a cache line each: the pumps of all connections add here
}

func (t *Traffic) count(dir int, p mqttwire.Packet) {
	c := &t.n[dir][p.Type&15]
	c.packets.Add(1)
	c.bytes.Add(int64(len(p.Raw)))
}

// tally is one pump's count of PUBLISHes not yet added to the Traffic.
type tally struct {
	t      *Traffic
	dir    int
	n, len int64
}

func (t *tally) add(p mqttwire.Packet) {
	if t.t == nil {
		return
	}
	if p.Type != mqttwire.PUBLISH {
		t.t.count(t.dir, p)
		return
	}
	t.n++
	t.len += int64(len(p.Raw))
}

// flush adds the tally to the Traffic: before each read that may block,
// and when the pump ends. Without Traffic there is nothing to add (add
// counted nothing).
func (t *tally) flush() {
	if t.n == 0 {
		return
	}
	c := &t.t.n[t.dir][mqttwire.PUBLISH]
	c.packets.Add(t.n)
	c.bytes.Add(t.len)
	t.n, t.len = 0, 0
}

// Read returns the packets and bytes of type typ counted in direction dir.
func (t *Traffic) Read(dir int, typ mqttwire.Type) (packets, bytes int64) {
	c := &t.n[dir][typ&15]
	return c.packets.Load(), c.bytes.Load()
}

// Observer hears how long the steps of each connection took, for the
// operations plane's histograms; once per connection, never per packet.
type Observer interface {
	// Handshake is told each TLS handshake's outcome (st nil when it
	// failed) and duration.
	Handshake(st *tls.ConnectionState, err error, d time.Duration)
	// Dialed is told each broker dial's node (its address), outcome and
	// duration.
	Dialed(backend string, err error, d time.Duration)
}
