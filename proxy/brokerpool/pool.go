package brokerpool

import (
	"errors"
	"fmt"

	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// State is a node's health as the pool sees it.
type State int32

// States.
const (
	Up       State = iota // takes new clients
	Down                  // failed its checks: takes none
	Draining              // an operator is taking it out: takes none, its clients are moved off
	Gone                  // its name no longer resolves to it: takes none, its clients are moved off
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	case Draining:
		return "draining"
	case Gone:
		return "gone"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Node is one broker address.
type Node struct {
	Addr string
	// Origin is the configured name:port the node was resolved from ("":
	// configured as it is).
	Origin string
	seed   uint64 // the address hashed: its rendezvous identity, the same in every process
	state  atomic.Int32
	conns  atomic.Int64
	// slowUntil (Unix nanoseconds; 0: none): until then the node, back up,
	// takes a share of the new clients that grows from 0 to all
	// (Pool.SlowStart).
	slowUntil atomic.Int64
	// suspectUntil (Unix nanoseconds; 0: not): a dial to the node failed;
	// new clients go elsewhere until then, or until a check passes. Only
	// the checks take a node down and move its clients off.
	suspectUntil atomic.Int64
	lastCheck    atomic.Pointer[CheckResult]
}

// CheckResult is a node's last health check.
type CheckResult struct {
	At       time.Time     `json:"at"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// LastCheck is the node's last health check (nil before the first).
func (n *Node) LastCheck() *CheckResult { return n.lastCheck.Load() }

// State returns the node's state.
func (n *Node) State() State { return State(n.state.Load()) }

// SetState sets it (health checks, the admin API).
func (n *Node) SetState(s State) { n.state.Store(int32(s)) }

// Conns is how many clients the node serves now.
func (n *Node) Conns() int64 { return n.conns.Load() }

// Acquire and Release count a client on the node.
func (n *Node) Acquire() { n.conns.Add(1) }

// Release counts a client off the node.
func (n *Node) Release() { n.conns.Add(-1) }

// Balance is how a client's node is chosen.
type Balance int

// Balances.
const (
	// ClientID: the same client id lands on the same healthy node
	// (rendezvous hashing: removing one of N nodes moves only the ids
	// that were on it, about 1/N); an empty client id goes by LeastConn.
	ClientID Balance = iota
	// LeastConn: the healthy node with the fewest clients.
	LeastConn
	// Random: the less loaded of two healthy nodes drawn at random.
	Random
)

// ParseBalance reads clientid, leastconn or random.
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "clientid":
		return ClientID, nil
	case "leastconn":
		return LeastConn, nil
	case "random":
		return Random, nil
	}
	return 0, fmt.Errorf("%q: want clientid, leastconn or random", s)
}

// Pool is the nodes and the balance. It is safe for concurrent use.
type Pool struct {
	nodes   atomic.Pointer[[]*Node] // append only: a node's index is its for good (Sync adds, marks gone)
	syncMu  sync.Mutex
	balance Balance
	// Changed, when set before use, is told each change of a node's
	// state: by the health checks, or by a failed dial (passive).
	Changed func(n *Node, from, to State, err error)
	// SlowStart, when set before use, ramps a node that comes back up
	// from no share of new clients to its full share over this time.
	SlowStart time.Duration
	slowing   atomic.Int32 // nodes in slow start: Pick looks only while some are
	// Suspect is how long a node whose dial failed is passed over by new
	// clients (default 2 s; the checks end it sooner when they pass).
	Suspect  time.Duration
	suspects atomic.Int32 // nodes suspect now: Pick looks only while some are
}

// MaxNodes bounds a pool (the nodes a client's CONNECT was tried on are
// a set of that many bits).
const MaxNodes = 128

// Set is a set of node indexes (the nodes a CONNECT was tried on).
type Set = [MaxNodes / 64]uint64

func has(s Set, i int) bool { return s[i>>6]&(1<<uint(i&63)) != 0 }

// With returns s with node i in it.
func With(s Set, i int) Set {
	s[i>>6] |= 1 << uint(i&63)
	return s
}

// New builds a pool of addrs (at most MaxNodes, no address twice; none:
// Sync adds them, and until then nothing is picked).
func New(addrs []string, b Balance) (*Pool, error) {
	if len(addrs) > MaxNodes {
		return nil, fmt.Errorf("%d broker nodes: at most %d", len(addrs), MaxNodes)
	}
	p := &Pool{balance: b}
	seen := map[string]bool{}
	var nodes []*Node
	for _, a := range addrs {
		if seen[a] {
			return nil, fmt.Errorf("broker node %s listed twice", a)
		}
		seen[a] = true
		nodes = append(nodes, newNode(a, ""))
	}
	p.nodes.Store(&nodes)
	return p, nil
}

func newNode(addr, origin string) *Node {
	return &Node{Addr: addr, Origin: origin, seed: hashString(addr)}
}

// Nodes returns the nodes, in the order configured (then as Sync added
// them), gone ones included.
func (p *Pool) Nodes() []*Node { return *p.nodes.Load() }

// Pick returns the node for a client, skipping the nodes tried already,
// and the node's index; nil when no healthy node is left. It allocates
// nothing.
func (p *Pool) Pick(clientID []byte, tried Set) (*Node, int) {
	if n, i := p.pick(clientID, tried, true); n != nil {
		return n, i
	}
	return p.pick(clientID, tried, false) // only suspects left: better tried than refused
}

func (p *Pool) pick(clientID []byte, tried Set, trusting bool) (*Node, int) {
	nodes := p.Nodes()
	if trusting && p.suspects.Load() > 0 {
		sus := p.suspectSet()
		for k := range tried {
			tried[k] |= sus[k]
		}
	}
	switch {
	case len(nodes) == 1:
		if n := nodes[0]; usable(n, 0, tried) {
			return n, 0
		}
		return nil, -1
	case p.balance == ClientID && len(clientID) > 0:
		return p.rendezvous(nodes, hashBytes(clientID), tried)
	case p.balance == Random:
		return p.twoChoices(nodes, tried)
	}
	return p.leastConn(nodes, tried)
}

func usable(n *Node, i int, tried Set) bool {
	return n.State() == Up && !has(tried, i)
}

// suspectSet is the nodes still suspect, as a tried set; those whose time
// is over are cleared on the way.
func (p *Pool) suspectSet() Set {
	var set Set
	now := time.Now().UnixNano()
	for i, n := range p.Nodes() {
		if until := n.suspectUntil.Load(); until != 0 {
			if now < until {
				set = With(set, i)
			} else if n.suspectUntil.CompareAndSwap(until, 0) {
				p.suspects.Add(-1)
			}
		}
	}
	return set
}

// clearSuspect ends a node's suspicion (a check passed).
func (p *Pool) clearSuspect(n *Node) {
	if until := n.suspectUntil.Load(); until != 0 && n.suspectUntil.CompareAndSwap(until, 0) {
		p.suspects.Add(-1)
	}
}

// rendezvous picks the usable node with the highest score for the
// client's hash: the next node in the client's own order when the first
// is down or tried.
func (p *Pool) rendezvous(nodes []*Node, h uint64, tried Set) (*Node, int) {
	best, bi := uint64(0), -1
	slowing := p.slowing.Load() > 0
	anyTried := tried != (Set{}) // most CONNECTs: the tests below cost nothing then
	for i, n := range nodes {
		if n.State() != Up || anyTried && has(tried, i) || slowing && n.slowUntil.Load() != 0 && p.slowSkip(n) {
			continue
		}
		if s := mix(h ^ n.seed); bi < 0 || s > best {
			best, bi = s, i
		}
	}
	if bi < 0 {
		return nil, -1
	}
	return nodes[bi], bi
}

// slowSkip reports whether a node in slow start is passed over for this
// client: with the probability of the share it does not have yet.
func (p *Pool) slowSkip(n *Node) bool {
	until := n.slowUntil.Load()
	left := until - time.Now().UnixNano()
	if left <= 0 {
		if n.slowUntil.CompareAndSwap(until, 0) {
			p.slowing.Add(-1)
		}
		return false
	}
	return rand.Int64N(int64(p.SlowStart)) < left
}

func (p *Pool) leastConn(nodes []*Node, tried Set) (*Node, int) {
	bi, least := -1, int64(0)
	for i, n := range nodes {
		if !usable(n, i, tried) {
			continue
		}
		if c := n.Conns(); bi < 0 || c < least {
			bi, least = i, c
		}
	}
	if bi < 0 {
		return nil, -1
	}
	return nodes[bi], bi
}

// twoChoices draws two usable nodes and takes the less loaded ("the power
// of two choices"); with one usable node, that one.
func (p *Pool) twoChoices(nodes []*Node, tried Set) (*Node, int) {
	n := len(nodes)
	a, b := -1, -1
	for range 2 * n { // bounded: a few draws find the usable ones
		i := rand.IntN(n)
		if !usable(nodes[i], i, tried) || i == a {
			continue
		}
		if a < 0 {
			a = i
			continue
		}
		b = i
		break
	}
	switch {
	case a < 0:
		return p.leastConn(nodes, tried) // draws missed: look at all
	case b < 0:
		return nodes[a], a
	case nodes[b].Conns() < nodes[a].Conns():
		return nodes[b], b
	}
	return nodes[a], a
}

// FNV-1a, then a finaliser: stable across processes and versions, so a
// fleet of proxies sends a client id to the same node.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return mix(h)
}

func hashString(s string) uint64 { return hashBytes([]byte(s)) }

// mix is splitmix64's finaliser: every input bit reaches every output bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// The proxy's broker picker (proxy.BrokerPicker).

// PickBroker returns the node index and address for a client, skipping
// those in tried; -1 when no healthy node is left.
func (p *Pool) PickBroker(clientID []byte, tried Set) (int, string) {
	n, i := p.Pick(clientID, tried)
	if n == nil {
		return -1, ""
	}
	return i, n.Addr
}

// Dialled hears how a dial to node i went: a failure marks the node down
// at once (passive health: the checks bring it back), a success counts a
// client on it.
func (p *Pool) Dialled(i int, err error) {
	n := p.Nodes()[i]
	if err == nil {
		n.Acquire()
		return
	}
	if localError(err) {
		return // this process is short of descriptors or ports: no node's fault
	}
	d := p.Suspect
	if d <= 0 {
		d = 2 * time.Second
	}
	if n.suspectUntil.Swap(time.Now().Add(d).UnixNano()) == 0 {
		p.suspects.Add(1)
	}
}

// localError reports a dial error of this host's own making.
func localError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOMEM)
}

// Drain marks node i draining (new clients avoid it; the caller moves
// its clients off).
func (p *Pool) Drain(i int) {
	n := p.Nodes()[i]
	if from := n.State(); from != Draining {
		n.SetState(Draining)
		if p.Changed != nil {
			p.Changed(n, from, Draining, nil)
		}
	}
}

// Undrain gives a draining node back to the checks: down until they
// find it up (Rise good checks in a row), so a dead node is never put in
// service by hand.
func (p *Pool) Undrain(i int) bool {
	n := p.Nodes()[i]
	if !n.state.CompareAndSwap(int32(Draining), int32(Down)) {
		return false
	}
	if p.Changed != nil {
		p.Changed(n, Draining, Down, nil)
	}
	return true
}

// Len is how many nodes there are.
func (p *Pool) Len() int { return len(p.Nodes()) }

// Done counts a client off node i.
func (p *Pool) Done(i int) { p.Nodes()[i].Release() }

// Gone reports whether a name no longer resolves to the node.
func (n *Node) Gone() bool { return n.State() == Gone }

// Sync makes the nodes resolved from origin (a configured name:port) be
// addrs: new addresses become nodes in state start (Up at start-up, as
// configured nodes; Down later, until the checks find them up), ones no
// longer there are marked gone and returned by index (the
// caller moves their clients off), ones back again return to the checks.
// Indexes never change: a session's node stays its own.
func (p *Pool) Sync(origin string, addrs []string, start State) (gone []int, err error) {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	old := p.Nodes()
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	have := map[string]bool{}
	for i, n := range old {
		if n.Origin != origin {
			continue
		}
		have[n.Addr] = true
		switch from := n.State(); {
		case !want[n.Addr] && from != Gone:
			n.SetState(Gone)
			gone = append(gone, i)
			if p.Changed != nil {
				p.Changed(n, from, Gone, nil)
			}
		case want[n.Addr] && from == Gone:
			n.SetState(Down) // the checks raise it
		}
	}
	nodes := old
	for _, a := range addrs {
		if have[a] {
			continue
		}
		if len(nodes) >= MaxNodes {
			return gone, fmt.Errorf("%s: past %d broker nodes, %s left out", origin, MaxNodes, a)
		}
		n := newNode(a, origin)
		n.SetState(start)
		nodes = append(slices.Clip(nodes), n)
		have[a] = true
	}
	if len(nodes) != len(old) {
		p.nodes.Store(&nodes)
	}
	return gone, nil
}
