package proxy

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/brokerpool"
)

// The registry lists sessions past CONNECT; a kick tells a v5 client
// 0x98 and closes a 3.1.1 one, and leaves the others alone.
func TestRegistryListsAndKicks(t *testing.T) {
	px := startProxy(t, Config{Backend: startMosquitto(t)}, nil)
	dial := func(id string, v mqttwire.Version) *mqtttest.RawClient {
		t.Helper()
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		c, ack := mqtttest.NewRawClient(t, conn, v, &mqttwire.Connect{ClientID: []byte(id)})
		if ack.Type != mqttwire.CONNACK {
			t.Fatalf("%s: %x", id, ack.Raw)
		}
		return c
	}
	v5, v3, other := dial("k5", mqttwire.V5), dial("k3", mqttwire.V311), dial("stay", mqttwire.V5)
	conns := px.srv.Conns()
	if len(conns) != 3 || conns[0].ClientID != "k5" || conns[0].Protocol != "5.0" || conns[1].Protocol != "3.1.1" || conns[0].Listener != "tcp" {
		t.Fatalf("conns: %+v", conns)
	}
	if c, ok := px.srv.Conn(conns[1].ID); !ok || c.ClientID != "k3" {
		t.Fatalf("conn %d: %+v %v", conns[1].ID, c, ok)
	}
	if n := px.srv.Kick(func(s *Session) bool { return s.ClientID == "k5" || s.ClientID == "k3" }, "kicked"); n != 2 {
		t.Fatalf("kicked %d, want 2", n)
	}
	if p, open := v5.NextOrClosed(); !open || p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.AdministrativeAction) {
		t.Errorf("v5: %x %v, want DISCONNECT 0x98", p.Raw, open)
	}
	if p, open := v3.NextOrClosed(); open {
		t.Errorf("v3: %x, want closed", p.Raw)
	}
	other.Send([]byte{0xc0, 0}) // PINGREQ
	if p := other.Next(); p.Type != mqttwire.PINGRESP {
		t.Errorf("the session not kicked: %x", p.Raw)
	}
	mqtttest.WaitFor(t, "the kicked sessions gone", func() bool { return len(px.srv.Conns()) == 1 })
}

// A ban made while the broker is being dialled finds the session not yet
// in the registry: the CONNECT checks run again before the CONNECT leaves,
// so the client is refused all the same (v5 CONNACK 0x8A).
func TestBanDuringTheDialRefuses(t *testing.T) {
	bans, err := limits.OpenBans("")
	if err != nil {
		t.Fatal(err)
	}
	backend := startMosquitto(t)
	dialing, release := make(chan struct{}), make(chan struct{})
	px := startProxy(t, Config{Backend: backend, Connects: &limits.Connects{Bans: bans},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			close(dialing)
			select {
			case <-release:
			case <-ctx.Done():
			}
			var d net.Dialer
			return d.DialContext(context.Background(), network, addr)
		}}, nil)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan mqttwire.Packet, 1)
	go func() {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: []byte("victim"), KeepAlive: 30, CleanStart: true}))
		p, _ := mqttwire.NewReader(conn, 256, 1<<16).Next()
		done <- p
	}()
	<-dialing
	if err := bans.Add(limits.Ban{Kind: limits.BanClientID, Value: "victim", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n := px.srv.Kick(func(s *Session) bool { return s.ClientID == "victim" }, "banned"); n != 0 {
		t.Fatalf("kicked %d mid-dial: the registry holds only sessions past CONNECT", n)
	}
	close(release)
	if p := <-done; p.Type != mqttwire.CONNACK || len(p.Body) < 2 || p.Body[1] != byte(mqttwire.Banned) {
		t.Fatalf("banned mid-dial: %x, want CONNACK 0x8A", p.Raw)
	}
	conn.Close()
}

// A broker that fails before its CONNACK (down, refusing the TLS hop)
// does not get its clients banned for flapping: only sessions the broker
// accepted count.
func TestBrokerFailuresAreNotFlapping(t *testing.T) {
	bans, err := limits.OpenBans("")
	if err != nil {
		t.Fatal(err)
	}
	broker := scriptedBroker(t, func(net.Conn, mqttwire.Packet) bool { return false }) // closes on the CONNECT
	px := startProxy(t, Config{Backend: broker, Connects: &limits.Connects{Bans: bans,
		Flapping: &limits.Flapping{Max: 2, Window: time.Minute, Ban: time.Hour}}}, nil)
	for range 5 {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte("steady"), KeepAlive: 30, CleanStart: true}))
		_, _ = mqttwire.NewReader(conn, 64, 1024).Next() // closed, or a refusal
		conn.Close()
	}
	mqtttest.WaitFor(t, "the five sessions ended", func() bool { return px.srv.Stats.Closed.Load() == 5 })
	if list := bans.List(); len(list) != 0 {
		t.Fatalf("banned for the broker's failures: %+v", list)
	}
}

// A node that never answers the dial (SYNs dropped) gets only its share
// of the dial timeout: the client's next node still has time to serve it.
func TestFailoverWithinTheDialTimeout(t *testing.T) {
	const blackhole = "127.0.0.1:9" // dialled through a Dial that never completes for it
	real := startMosquitto(t)
	pool, err := brokerpool.New([]string{blackhole, real}, brokerpool.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for i := range 100 { // a client id whose first node is the black hole
		if n, _ := pool.PickBroker([]byte(fmt.Sprintf("bh-%d", i)), brokerpool.Set{}); n == 0 {
			id = fmt.Sprintf("bh-%d", i)
			break
		}
	}
	var d net.Dialer
	px := startProxy(t, Config{Backend: blackhole + "," + real, Brokers: pool, DialTimeout: 3 * time.Second,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == blackhole {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return d.DialContext(ctx, network, addr)
		}}, nil)
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, ack := mqtttest.NewRawClient(t, conn, mqttwire.V5, &mqttwire.Connect{ClientID: []byte(id)})
	if ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
		t.Fatalf("%s: %x after %v", id, ack.Raw, time.Since(start))
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("served after %v: the black hole took the whole dial timeout", d)
	}
}
