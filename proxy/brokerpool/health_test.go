package brokerpool

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBroker accepts on loopback; answering says whether it answers a
// CONNECT with a CONNACK (a stuck broker reads and says nothing).
func fakeBroker(t *testing.T, answering *atomic.Bool) string {
	return mqtttest.ScriptedBroker(t, func(c net.Conn, p mqttwire.Packet) bool {
		if p.Type == mqttwire.CONNECT && answering.Load() {
			_, _ = c.Write(mqttwire.AppendConnack(nil, mqttwire.V311, false, 0, nil))
		}
		return p.Type == mqttwire.CONNECT // then the DISCONNECT, or the checker giving up, ends it
	})
}

// A broker that takes TCP but never answers CONNECT passes a TCP check
// and fails the MQTT one; it goes down after Fall failures and comes up
// after Rise good checks.
func TestMQTTCheckFindsAStuckBroker(t *testing.T) {
	var answering atomic.Bool
	addr := fakeBroker(t, &answering)
	d := &net.Dialer{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := TCPCheck(d.DialContext, nil)(ctx, addr); err != nil {
		t.Fatalf("TCP check of a stuck broker: %v", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if err := MQTTCheck(d.DialContext, nil, nil, "", "")(short, addr); err == nil {
		t.Fatal("the MQTT check passed a broker that never answers")
	}

	p, err := New([]string{addr}, ClientID)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan State, 4)
	p.Changed = func(_ *Node, _, to State, _ error) { changes <- to }
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(rctx, Health{Every: 100 * time.Millisecond, Rise: 2, Fall: 3, Check: MQTTCheck(d.DialContext, nil, nil, "", "")})
	}()
	defer func() { stop(); <-done }()
	wait := func(want State) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case got := <-changes:
			if got != want {
				t.Fatalf("went %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("never went %v", want)
		}
		return time.Since(start)
	}
	d1 := wait(Down)
	answering.Store(true)
	d2 := wait(Up)
	t.Logf("down after %v (fall 3 × 100 ms), up after %v (rise 2)", d1.Round(time.Millisecond), d2.Round(time.Millisecond))
	if n, _ := p.Pick([]byte("x"), Set{}); n == nil {
		t.Fatal("the node is up but not picked")
	}
}

// A failed dial makes the node suspect: new clients go elsewhere for a
// while, nobody is told it is down (its clients stay); a local error
// (descriptors) suspects no node; with every node suspect, one is tried
// all the same.
func TestFailedDialSuspects(t *testing.T) {
	p, _ := New(nodes(2), ClientID)
	p.Suspect = time.Hour
	var told []State
	p.Changed = func(_ *Node, _, to State, _ error) { told = append(told, to) }
	i, _ := p.PickBroker([]byte("c"), Set{})
	p.Dialled(i, syscall.EMFILE)
	if j, _ := p.PickBroker([]byte("c"), Set{}); j != i {
		t.Fatalf("a local error moved the client: %d, then %d", i, j)
	}
	p.Dialled(i, syscall.ECONNREFUSED)
	j, _ := p.PickBroker([]byte("c"), Set{})
	if j == i || j < 0 || len(told) != 0 || p.Nodes()[i].State() != Up {
		t.Fatalf("after a failed dial on %d: picked %d, told %v, state %v", i, j, told, p.Nodes()[i].State())
	}
	p.Dialled(j, syscall.ECONNREFUSED)
	if k, _ := p.PickBroker([]byte("c"), Set{}); k < 0 {
		t.Fatal("every node suspect: none tried")
	}
	p.clearSuspect(p.Nodes()[i]) // a check passed
	if k, _ := p.PickBroker([]byte("c"), Set{}); k != i {
		t.Fatalf("after the check: %d, want %d again", k, i)
	}
	p.Dialled(i, nil)
	if p.Nodes()[i].Conns() != 1 {
		t.Fatal("a good dial not counted")
	}
	p.Done(i)
	if p.Nodes()[i].Conns() != 0 {
		t.Fatal("Done not counted")
	}
}

// A drained node given back is down until the checks find it up.
func TestUndrainWaitsForTheChecks(t *testing.T) {
	p, _ := New(nodes(2), ClientID)
	p.Drain(0)
	if !p.Undrain(0) || p.Nodes()[0].State() != Down {
		t.Fatalf("undrained: %v", p.Nodes()[0].State())
	}
	if p.Undrain(1) {
		t.Fatal("a node not draining undrained")
	}
	p.apply(p.Nodes()[0], nil, true, false)
	if p.Nodes()[0].State() != Up {
		t.Fatal("the checks did not bring it up")
	}
}
