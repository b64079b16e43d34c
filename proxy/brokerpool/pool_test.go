package brokerpool

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func nodes(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("10.0.0.%d:1883", i+1))
	}
	return out
}

// 3,000 client ids over three nodes: max/min share at most 1.15; removing
// one node moves only the ids that were on it.
func TestClientIDSpreadAndStability(t *testing.T) {
	p, err := New(nodes(3), ClientID)
	if err != nil {
		t.Fatal(err)
	}
	const ids = 3000
	where := make([]int, ids)
	count := map[int]int{}
	for i := range ids {
		_, where[i] = p.Pick([]byte(fmt.Sprintf("device-%d", i)), Set{})
		count[where[i]]++
	}
	lo, hi := ids, 0
	for _, c := range count {
		lo, hi = min(lo, c), max(hi, c)
	}
	t.Logf("3 nodes: %v, max/min %.3f", count, float64(hi)/float64(lo))
	if float64(hi)/float64(lo) > 1.15 {
		t.Errorf("max/min share %.3f over 1.15: %v", float64(hi)/float64(lo), count)
	}
	p.Nodes()[1].SetState(Down)
	moved, strayed := 0, 0
	for i := range ids {
		_, now := p.Pick([]byte(fmt.Sprintf("device-%d", i)), Set{})
		if now != where[i] {
			moved++
			if where[i] != 1 {
				strayed++
			}
		}
	}
	t.Logf("node 1 down: %d of %d ids moved (%.1f%%), %d from surviving nodes", moved, ids, 100*float64(moved)/ids, strayed)
	if moved > ids*40/100 || strayed > 0 || moved != count[1] {
		t.Errorf("moved %d (node 1 had %d), %d from surviving nodes", moved, count[1], strayed)
	}
}

// A client's next node, when its first is tried, is the same in every
// call (its own order), and all nodes tried leaves none.
func TestFailoverOrder(t *testing.T) {
	p, _ := New(nodes(4), ClientID)
	id := []byte("sensor-7")
	first, fi := p.Pick(id, Set{})
	second, si := p.Pick(id, With(Set{}, fi))
	if second == nil || second == first {
		t.Fatalf("second choice %v", second)
	}
	if again, _ := p.Pick(id, With(Set{}, fi)); again != second {
		t.Fatal("the second choice changed")
	}
	if n, _ := p.Pick(id, With(With(With(With(Set{}, 0), 1), 2), 3)); n != nil {
		t.Fatalf("all tried, got %v", n)
	}
	p.Nodes()[fi].SetState(Draining)
	if n, _ := p.Pick(id, Set{}); n != second {
		t.Fatalf("with the first draining: %v, want the second choice", n)
	}
	_ = si
}

// No client id, leastconn, random: the least loaded healthy node.
func TestLoadBalances(t *testing.T) {
	for _, b := range []Balance{ClientID, LeastConn, Random} {
		p, _ := New(nodes(3), b)
		p.Nodes()[0].SetState(Down)
		for range 300 {
			n, _ := p.Pick(nil, Set{})
			if n == nil || n.State() != Up {
				t.Fatalf("balance %d: %v", b, n)
			}
			n.Acquire()
		}
		c1, c2 := p.Nodes()[1].Conns(), p.Nodes()[2].Conns()
		if c1+c2 != 300 || c1 < 100 || c2 < 100 {
			t.Errorf("balance %d: %d and %d", b, c1, c2)
		}
	}
}

func TestNew(t *testing.T) {
	if p, err := New(nil, ClientID); err != nil {
		t.Error(err)
	} else if n, _ := p.Pick([]byte("x"), Set{}); n != nil {
		t.Error("an empty pool picked a node")
	}
	if _, err := New([]string{"a:1", "a:1"}, ClientID); err == nil {
		t.Error("a node twice accepted")
	}
	if _, err := ParseBalance("roundrobin"); err == nil {
		t.Error("roundrobin accepted")
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	p, _ := New(nodes(100), ClientID)
	id := []byte("device-12345")
	if n := testing.AllocsPerRun(1000, func() { p.Pick(id, Set{}) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkPickBackend(b *testing.B) {
	p, _ := New(nodes(100), ClientID)
	id := []byte("device-0000012345")
	b.ReportAllocs()
	for range b.N {
		p.Pick(id, Set{})
	}
}

func TestDependencies(t *testing.T) {
	mqtttest.OnlyDepends(t, ".", "mqttwire/mqtttest", "mqttwire")
}

// A node back up in slow start takes a growing share: about none at
// first, all of its own once the ramp is over.
func TestSlowStart(t *testing.T) {
	p, _ := New(nodes(2), ClientID)
	p.SlowStart = time.Hour
	back := p.Nodes()[0]
	share := func() int {
		n := 0
		for i := range 2000 {
			if _, idx := p.Pick([]byte(fmt.Sprintf("id-%d", i)), Set{}); idx == 0 {
				n++
			}
		}
		return n
	}
	full := share()
	back.SetState(Down)
	p.apply(back, nil, true, false) // a check brings it up: slow start
	if got := share(); got > full/20 {
		t.Errorf("at the start of the ramp: %d of its %d ids", got, full)
	}
	back.slowUntil.Store(time.Now().Add(30 * time.Minute).UnixNano()) // half-way
	if got := share(); got < full/3 || got > 2*full/3 {
		t.Errorf("half-way: %d of its %d ids", got, full)
	}
	back.slowUntil.Store(time.Now().Add(-time.Second).UnixNano()) // over (the next pick ends it)
	if got := share(); got != full {
		t.Errorf("after the ramp: %d of its %d ids", got, full)
	}
}

// A name's addresses come and go: new ones join down (the checks raise
// them), ones no longer resolved are gone (never picked, Changed told),
// and come back down; indexes never move.
func TestSync(t *testing.T) {
	p, _ := New([]string{"10.0.0.1:1883"}, ClientID)
	var told []State
	p.Changed = func(_ *Node, _, to State, _ error) { told = append(told, to) }
	if _, err := p.Sync("mqtt.svc:1883", []string{"10.0.1.1:1883", "10.0.1.2:1883"}, Down); err != nil {
		t.Fatal(err)
	}
	nodes := p.Nodes()
	if len(nodes) != 3 || nodes[1].State() != Down || nodes[1].Origin != "mqtt.svc:1883" {
		t.Fatalf("after the first sync: %d nodes, %v", len(nodes), nodes[1].State())
	}
	nodes[1].SetState(Up)
	nodes[2].SetState(Up)
	gone, _ := p.Sync("mqtt.svc:1883", []string{"10.0.1.2:1883"}, Down)
	if len(gone) != 1 || gone[0] != 1 || nodes[1].State() != Gone || len(told) != 1 || told[0] != Gone {
		t.Fatalf("gone %v, state %v, told %v", gone, nodes[1].State(), told)
	}
	for i := range 300 {
		if _, idx := p.Pick([]byte(fmt.Sprintf("s-%d", i)), Set{}); idx == 1 {
			t.Fatal("a gone node picked")
		}
	}
	p.apply(nodes[1], nil, true, false)
	if nodes[1].State() != Gone {
		t.Fatal("a check raised a gone node")
	}
	p.Sync("mqtt.svc:1883", []string{"10.0.1.1:1883", "10.0.1.2:1883"}, Down)
	if len(p.Nodes()) != 3 || nodes[1].State() != Down {
		t.Fatalf("back: %d nodes, %v", len(p.Nodes()), nodes[1].State())
	}
}
