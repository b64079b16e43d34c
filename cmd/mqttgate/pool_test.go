package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// brokerNode is a Mosquitto process on a fixed loopback port, so that it
// can be killed and started again on the same address.
type brokerNode struct {
	t    *testing.T
	addr string
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

func startNode(t *testing.T) *brokerNode {
	t.Helper()
	addr := mqtttest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &brokerNode{t: t, addr: addr, conf: conf}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *brokerNode) start() {
	n.t.Helper()
	n.cmd = exec.Command(mqtttest.Need(n.t, "mosquitto"), "-c", n.conf)
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(n.cmd, n.done)
	mqtttest.WaitListening(n.t, n.addr)
}

// kill ends the process at once (SIGKILL) and waits for it.
func (n *brokerNode) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

// poolGate runs the gate in front of nodes, with fast health checks.
func poolGate(t *testing.T, nodes []string, env ...string) *gate {
	t.Helper()
	return startGate(t, strings.Join(nodes, ","), append([]string{"MQTTGATE_BACKEND_CHECK_INTERVAL=200ms", "MQTTGATE_BACKEND_RISE=2",
		"MQTTGATE_BACKEND_FALL=2", "MQTTGATE_BACKEND_DOWN_SPREAD=1s", "MQTTGATE_FLAPPING_MAX_DISCONNECTS=0",
		"MQTTGATE_MAX_CONNECTIONS_PER_IP=0", "MQTTGATE_CONNECT_RATE_PER_IP=0"}, env...)...)
}

// nodeOf is the node the gate's log says served the client id's last
// connection.
func nodeOf(t *testing.T, g *gate, clientID string) string {
	t.Helper()
	var node string
	mqtttest.WaitFor(t, "the open event of "+clientID, func() bool {
		for _, l := range strings.Split(g.logs.String(), "\n") {
			if strings.Contains(l, `"event":"open"`) && strings.Contains(l, `"client_id":"`+clientID+`"`) {
				if _, rest, ok := strings.Cut(l, `"backend":"`); ok {
					node, _, _ = strings.Cut(rest, `"`)
				}
			}
		}
		return node != ""
	})
	return node
}

// Issue 16: a persistent session comes back to its node; 3,000 client ids
// spread over three nodes within 1.15 of each other, and removing one
// moves only the ids it had.
func TestPoolAffinity(t *testing.T) {
	nodes := []*brokerNode{startNode(t), startNode(t), startNode(t)}
	tcpAddr := mqtttest.FreeAddr(t)
	g := poolGate(t, []string{nodes[0].addr, nodes[1].addr, nodes[2].addr}, "MQTTGATE_LISTEN_TCP="+tcpAddr, "MQTTGATE_LOG_LEVEL=info")
	expiry := mqttwire.AppendProperty(nil, mqttwire.PropSessionExpiry, 300, nil)
	c, _, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("persist-1"), CleanStart: true, Properties: expiry})
	if err != nil {
		t.Fatal(err)
	}
	c.Send(mqttwire.AppendSubscribe(nil, mqttwire.V5, 1, nil, []mqttwire.Filter{{Topic: []byte("p/1"), Options: 1}}))
	if p := c.Next(); p.Type != mqttwire.SUBACK {
		t.Fatalf("SUBACK %x", p.Raw)
	}
	c.Send(mqttwire.AppendDisconnect(nil, mqttwire.V5, 0, ""))
	c.NextOrClosed()
	home := nodeOf(t, g, "persist-1")
	_, port, _ := net.SplitHostPort(home)
	if out, err := exec.Command(mqtttest.Need(t, "mosquitto_pub"), "-h", "127.0.0.1", "-p", port, "-t", "p/1", "-m", "while-away", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("publishing to the session's node: %v %s", err, out)
	}
	conn, err := tlsDial(g)
	if err != nil {
		t.Fatal(err)
	}
	back, ack := mqtttest.NewRawSession(t, conn, mqttwire.V5, &mqttwire.Connect{ClientID: []byte("persist-1"), Properties: expiry})
	if ack.Body[0]&1 != 1 {
		t.Fatalf("session not present: came to another node? %x", ack.Raw)
	}
	p := back.Next()
	if m, err := mqttwire.ParsePublish(p, mqttwire.V5); err != nil || string(m.Payload) != "while-away" {
		t.Fatalf("queued message: %x %v", p.Raw, err)
	}

	// Spread: 3,000 client ids over the three nodes (over the plaintext
	// listener: the TLS handshakes add nothing here), then one node gone.
	connectAll := func() map[string]string {
		t.Helper()
		for i := range 3000 {
			conn, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte(fmt.Sprintf("spread-%d", i)), KeepAlive: 30, CleanStart: true}))
			p, err := mqttwire.NewReader(conn, 64, 1024).Next()
			conn.Close()
			if err != nil || p.Type != mqttwire.CONNACK || p.Body[1] != 0 {
				t.Fatalf("spread-%d: %x %v", i, p.Raw, err)
			}
		}
		g.waitLog(t, `"client_id":"spread-2999"`)
		return opens(g)
	}
	before := connectAll()
	count := map[string]int{}
	for i := range 3000 {
		count[before[fmt.Sprintf("spread-%d", i)]]++
	}
	lo, hi := 3000, 0
	for _, n := range nodes {
		lo, hi = min(lo, count[n.addr]), max(hi, count[n.addr])
	}
	t.Logf("3,000 client ids over three nodes: %v, max/min %.3f", count, float64(hi)/float64(lo))
	if float64(hi)/float64(lo) > 1.15 {
		t.Errorf("max/min share %.3f, over 1.15", float64(hi)/float64(lo))
	}
	gone := nodes[2]
	gone.kill()
	g.waitLog(t, `"event":"broker_node_down","backend":"`+gone.addr+`"`)
	after := connectAll()
	moved, strayed := 0, 0
	for i := range 3000 {
		id := fmt.Sprintf("spread-%d", i)
		if after[id] != before[id] {
			moved++
			if before[id] != gone.addr {
				strayed++
			}
		}
	}
	t.Logf("one node removed: %d of 3,000 ids moved (%.1f%%, ideal 33%%), %d of them from a surviving node", moved, float64(moved)/30, strayed)
	if moved > 1200 || strayed > 0 {
		t.Errorf("moved %d (over 40%%?), %d from surviving nodes", moved, strayed)
	}
}

// opens maps each client id to the node its last open event names.
func opens(g *gate) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(l, `"event":"open"`) {
			continue
		}
		_, b, ok1 := strings.Cut(l, `"backend":"`)
		_, id, ok2 := strings.Cut(l, `"client_id":"`)
		if ok1 && ok2 {
			b, _, _ = strings.Cut(b, `"`)
			id, _, _ = strings.Cut(id, `"`)
			m[id] = b
		}
	}
	return m
}

// Issue 16: a node killed with 300 clients connected: its clients are
// disconnected within 5 s and served by another node when they come
// back; new CONNECTs during the failure are never refused; the node is
// marked down within fall × interval and up again after a restart within
// rise × interval.
func TestPoolFailover(t *testing.T) {
	nodes := []*brokerNode{startNode(t), startNode(t), startNode(t)}
	g := poolGate(t, []string{nodes[0].addr, nodes[1].addr, nodes[2].addr})
	const n = 300
	type client struct {
		id     string
		closed chan time.Time
	}
	clients := make([]client, n)
	for i := range n {
		v := mqttwire.V311
		if i%2 == 0 {
			v = mqttwire.V5
		}
		id := fmt.Sprintf("fo-%d", i)
		c, ack, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil || ack.Body[len(ack.Body)-1] != 0 && ack.Body[1] != 0 {
			t.Fatalf("%s: %x %v", id, ack.Raw, err)
		}
		cl := client{id: id, closed: make(chan time.Time, 1)}
		clients[i] = cl
		go func() {
			for {
				if _, open := c.NextOrClosedWithin(30 * time.Second); !open {
					cl.closed <- time.Now()
					return
				}
			}
		}()
	}
	victim := nodes[1]
	onVictim := map[string]bool{}
	for _, cl := range clients {
		if nodeOf(t, g, cl.id) == victim.addr {
			onVictim[cl.id] = true
		}
	}
	t.Logf("%d of %d clients on the node to be killed", len(onVictim), n)
	killed := time.Now()
	victim.kill()

	// New clients during the failure: never refused.
	var wg sync.WaitGroup
	refused := make(chan string, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("during-%d", i)
			conn, err := tlsDial(g)
			if err != nil {
				refused <- id + ": " + err.Error()
				return
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte(id), KeepAlive: 30, CleanStart: true}))
			p, err := mqttwire.NewReader(conn, 64, 1024).Next()
			if err != nil || p.Type != mqttwire.CONNACK || p.Body[1] != 0 {
				refused <- fmt.Sprintf("%s: %x %v", id, p.Raw, err)
			}
		}()
	}
	wg.Wait()
	close(refused)
	for r := range refused {
		t.Errorf("a client refused during the failure: %s", r)
	}

	// The victim's clients are disconnected within 5 s; the others stay.
	for _, cl := range clients {
		if !onVictim[cl.id] {
			continue
		}
		select {
		case at := <-cl.closed:
			if at.Sub(killed) > 5*time.Second {
				t.Errorf("%s disconnected %v after the kill", cl.id, at.Sub(killed))
			}
		case <-time.After(6 * time.Second):
			t.Fatalf("%s still connected 6 s after its node was killed", cl.id)
		}
	}
	for _, cl := range clients {
		if onVictim[cl.id] {
			continue
		}
		select {
		case <-cl.closed:
			t.Errorf("%s, on a surviving node, was disconnected", cl.id)
		default:
		}
	}
	g.waitLog(t, `"event":"broker_node_down","backend":"`+victim.addr+`"`)
	if d := time.Since(killed); d > 2*time.Second+2*200*time.Millisecond {
		t.Errorf("marked down %v after the kill: over fall × interval (2 × 200 ms) and the checks above", d)
	}
	// They come back and are served elsewhere.
	for id := range onVictim {
		c, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("%s reconnecting: %x %v", id, ack.Raw, err)
		}
		c.Conn().Close()
	}
	restarted := time.Now()
	victim.start()
	g.waitLog(t, `"event":"broker_node_up","backend":"`+victim.addr+`"`)
	up := time.Since(restarted)
	t.Logf("the node was back in service %v after its restart (rise 2 × 200 ms)", up.Round(10*time.Millisecond))
	if up > 3*200*time.Millisecond+time.Second {
		t.Errorf("up %v after the restart: over rise × interval", up)
	}
}

// Issue 16: a node that accepts TCP and never answers CONNECT is marked
// down by the MQTT check and skipped by new clients.
func TestPoolSkipsAStuckBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mqtttest.Serve(t, ln, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // reads and says nothing
	real := startNode(t)
	g := poolGate(t, []string{ln.Addr().String(), real.addr}, "MQTTGATE_BACKEND_CHECK=mqtt", "MQTTGATE_DIAL_TIMEOUT=2s")
	g.waitLog(t, `"event":"broker_node_down","backend":"`+ln.Addr().String()+`"`)
	for i := range 40 {
		id := fmt.Sprintf("stuck-%d", i)
		c, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("%s: %x %v", id, ack.Raw, err)
		}
		c.Conn().Close()
		if node := nodeOf(t, g, id); node != real.addr {
			t.Fatalf("%s went to %s, the stuck node", id, node)
		}
	}
}

// tlsDial is a TLS connection to the gate, within 5 s.
func tlsDial(g *gate) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", g.addr, g.clientTLS())
}

// Issue 16: a node drained from the admin API: new clients avoid it, its
// clients are moved off (v5 DISCONNECT 0x8B), and it comes back.
func TestPoolDrainFromTheAPI(t *testing.T) {
	nodes := []*brokerNode{startNode(t), startNode(t)}
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	operator := newKey(t, keysFile, "oncall", "operator", "1h")
	adminAddr := mqtttest.FreeAddr(t)
	g := poolGate(t, []string{nodes[0].addr, nodes[1].addr}, "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_ADMIN_KEYS_FILE="+keysFile)
	api := newAPIClient("http://"+adminAddr, "127.0.0.1")
	var on0 []*mqtttest.RawClient
	for i := range 40 {
		id := fmt.Sprintf("dr-%d", i)
		c, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("%s: %x %v", id, ack.Raw, err)
		}
		if nodeOf(t, g, id) == nodes[0].addr {
			on0 = append(on0, c)
		}
	}
	if code, m := api.call(t, operator, "GET", "/api/v1/backends", ""); code != 200 || !strings.Contains(fmt.Sprint(m["backends"]), "up") {
		t.Fatalf("backends: %d %v", code, m)
	}
	code, m := api.call(t, operator, "POST", "/api/v1/backends/drain", `{"backend":"`+nodes[0].addr+`","drain":true}`)
	if code != 200 || m["moving"] != float64(len(on0)) {
		t.Fatalf("drain: %d %v (%d clients on the node)", code, m, len(on0))
	}
	for _, c := range on0 {
		if p, open := c.NextOrClosed(); !open || p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.ServerShuttingDown) {
			t.Errorf("a drained node's client got %x (open %v), want DISCONNECT 0x8B", p.Raw, open)
		}
	}
	for i := range 20 {
		id := fmt.Sprintf("after-drain-%d", i)
		c, _, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil {
			t.Fatal(err)
		}
		c.Conn().Close()
		if nodeOf(t, g, id) == nodes[0].addr {
			t.Fatalf("%s went to the draining node", id)
		}
	}
	if _, m := api.call(t, operator, "GET", "/api/v1/backends", ""); !strings.Contains(fmt.Sprint(m["backends"]), "draining") {
		t.Errorf("backends while draining: %v", m)
	}
	if code, _ := api.call(t, operator, "POST", "/api/v1/backends/drain", `{"backend":"`+nodes[0].addr+`","drain":false}`); code != 200 {
		t.Errorf("undrain: %d", code)
	}
	if code, _ := api.call(t, operator, "POST", "/api/v1/backends/drain", `{"backend":"127.0.0.1:1","drain":true}`); code != 404 {
		t.Errorf("an unknown node: %d, want 404", code)
	}
}

// Issue 16: a pool entry given by name is resolved, each address a
// member: localhost gives 127.0.0.1 (and ::1 where the hosts file says
// so, where no broker listens: down by the checks); clients are served.
func TestPoolResolvesNames(t *testing.T) {
	a, b := startNode(t), startNode(t)
	_, portA, _ := net.SplitHostPort(a.addr)
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	viewer := newKey(t, keysFile, "dash", "viewer", "1h")
	adminAddr := mqtttest.FreeAddr(t)
	g := poolGate(t, []string{"localhost:" + portA, b.addr}, "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_ADMIN_KEYS_FILE="+keysFile)
	api := newAPIClient("http://"+adminAddr, "127.0.0.1")
	_, m := api.call(t, viewer, "GET", "/api/v1/backends", "")
	members := fmt.Sprint(m["backends"])
	if !strings.Contains(members, "127.0.0.1:"+portA) || !strings.Contains(members, b.addr) {
		t.Fatalf("members: %s", members)
	}
	t.Logf("members: %s", members)
	for i := range 20 {
		id := fmt.Sprintf("named-%d", i)
		c, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte(id)})
		if err != nil || ack.Body[1] != 0 {
			t.Fatalf("%s: %x %v", id, ack.Raw, err)
		}
		c.Conn().Close()
	}
	if strings.Contains(members, "[::1]:"+portA) {
		g.waitLog(t, `"event":"broker_node_down","backend":"[::1]:`+portA+`"`)
	}
}
