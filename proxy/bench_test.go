package proxy

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/acl"
	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// repeatConn is a client that sends one packet n times, then EOF (a
// broker: first, once, its CONNACK).
type repeatConn struct {
	net.Conn
	first []byte // sent once, before
	pkt   []byte
	n     int // packets left
	off   int
}

func (c *repeatConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 {
		k := copy(b, c.first)
		c.first = c.first[k:]
		return k, nil
	}
	if c.n == 0 {
		return 0, io.EOF
	}
	w := 0
	for w < len(b) && c.n > 0 {
		k := copy(b[w:], c.pkt[c.off:])
		w += k
		c.off += k
		if c.off == len(c.pkt) {
			c.off = 0
			c.n--
		}
	}
	return w, nil
}

func (c *repeatConn) Close() error { return nil }

// sinkConn is a broker that takes every byte.
type sinkConn struct {
	net.Conn
	n int
}

func (s *sinkConn) Write(b []byte) (int, error)      { s.n += len(b); return len(b), nil }
func (s *sinkConn) SetWriteDeadline(time.Time) error { return nil }
func (s *sinkConn) Close() error                     { return nil }

// topicCheck is an inspector that looks at every PUBLISH topic, as the ACL
// check will.
type topicCheck struct{}

func (topicCheck) Inspect(_ *Session, in *Inspected) Decision {
	if in.Packet.Type == mqttwire.PUBLISH && len(in.Publish.Topic) > 0 && in.Publish.Topic[0] == '$' {
		return Decision{Verdict: Refuse, Code: mqttwire.NotAuthorized}
	}
	return Decision{}
}

var benchPublish = func() []byte {
	topic := "factory/line-3/press-12/temperature"
	body := append([]byte{0, byte(len(topic))}, topic...)
	body = append(body, 0, 1)
	body = append(body, make([]byte, 64)...)
	return append([]byte{0x32, byte(len(body))}, body...)
}()

// benchACL is an ACL file that allows the benchmark's topic.
func benchACL(tb testing.TB) *acl.Engine {
	file := filepath.Join(tb.TempDir(), "acl")
	if err := os.WriteFile(file, []byte("topic deny factory/line-3/+/secret\ntopic readwrite factory/#\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	e, err := acl.NewEngine(acl.Options{File: file})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// forward runs the client-to-broker pump over n PUBLISH packets.
func forward(tb testing.TB, rules *acl.Engine, n int) *sinkConn {
	return forwardWith(tb, rules, n, Config{})
}

// forwardWith is forward with the operations plane's counters of cfg
// (Traffic, Meter).
func forwardWith(tb testing.TB, rules *acl.Engine, n int, cfg Config) *sinkConn {
	cfg.Backend, cfg.Inspector = "127.0.0.1:1", InspectorChain{topicCheck{}}
	srv, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	client, broker := &repeatConn{pkt: benchPublish, n: n}, &sinkConn{}
	sess := &Session{srv: srv, client: client, broker: broker, Version: mqttwire.V311}
	sess.brokerShared = true // as every session with topic rights: the delivery check may turn on
	sess.reader = mqttwire.NewReader(client, initialReadBuffer, mqttwire.DefaultMaxPacketSize)
	sess.topics.rights = rules.View(acl.Client{}) // the real ACL is on the path too
	sess.limiter = limits.NewSessions(limits.PacketLimits{MaxTopicLength: 1024, MaxTopicLevels: 16, MaxInflight: 65535,
		PublishRate: 1e12, PublishBytesRate: 1e15}).Open(limits.Start{Who: "bench"}, time.Now()) // and the limits, with rates that never hold it back
	if reason := srv.clientToBroker(sess, client); reason != closeClient {
		tb.Fatalf("pump ended with %q", reason)
	}
	return broker
}

// The PUBLISH path (framing, validation, topic rights, limits, inspection, forwarding) allocates
// per connection, never per packet.
func TestPublishPathAllocatesNothingPerPacket(t *testing.T) {
	rules := benchACL(t)
	if got := forward(t, rules, 1000).n; got != 1000*len(benchPublish) {
		t.Fatalf("forwarded %d bytes", got)
	}
	small := testing.AllocsPerRun(5, func() { forwardWith(t, rules, 100, Config{Traffic: new(Traffic)}) })
	large := testing.AllocsPerRun(5, func() { forwardWith(t, rules, 100_000, Config{Traffic: new(Traffic)}) })
	if large > small {
		t.Fatalf("%v allocations for 100,000 packets, %v for 100: allocation per packet", large, small)
	}
}

func BenchmarkPublishForward(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPublish)))
	rules := benchACL(b)
	b.ResetTimer()
	forward(b, rules, b.N)
}

// BenchmarkPublishForwardMetered is the same path with the admin
// listener's per-packet counters on (packets and bytes by type).
func BenchmarkPublishForwardMetered(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPublish)))
	rules := benchACL(b)
	tr := new(Traffic)
	b.ResetTimer()
	forwardWith(b, rules, b.N, Config{Traffic: tr})
	if n, _ := tr.Read(FromClient, mqttwire.PUBLISH); n != int64(b.N) {
		b.Fatalf("counted %d of %d", n, b.N)
	}
}

// deliver runs the broker-to-client pump over n PUBLISH packets of pkt;
// judged turns the delivery check on, as a filter granted in part does.
func deliver(tb testing.TB, pkt []byte, judged bool, n int) *sinkConn {
	rules := benchACL(tb)
	srv, err := New(Config{Backend: "127.0.0.1:1", Topics: func(*Session) TopicRights { return rules.View(acl.Client{}) }})
	if err != nil {
		tb.Fatal(err)
	}
	client, broker := &sinkConn{}, &repeatConn{first: benchConnack, pkt: pkt, n: n}
	sess := &Session{srv: srv, client: client, broker: broker, Version: mqttwire.V311, brokerShared: true}
	if judged {
		srv.judgeDeliveries(sess)
	}
	if reason := srv.brokerToClient(sess, client); reason != closeBroker {
		tb.Fatalf("pump ended with %q", reason)
	}
	return client
}

// benchConnack is the broker's CONNACK, its first packet.
var benchConnack = mqttwire.AppendConnack(nil, mqttwire.V311, false, mqttwire.Success, nil)

var benchSecret = func() []byte {
	topic := "factory/line-3/press-12/secret"
	body := append([]byte{0, byte(len(topic))}, topic...)
	body = append(body, make([]byte, 64)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}()

// benchDelivery is benchPublish as the broker sends it at QoS 0.
var benchDelivery = func() []byte {
	p := append([]byte{}, benchPublish...)
	p[0] = 0x30
	topicEnd := 2 + 2 + int(p[3])
	p = append(p[:topicEnd], p[topicEnd+2:]...) // no packet id at QoS 0
	p[1] = byte(len(p) - 2)
	return p
}()

// Deliveries on connections without a filter granted in part pass
// unjudged; with one, each is judged (a cache hit), and a denied one is
// dropped. None allocates per packet.
func BenchmarkDeliveryForward(b *testing.B) { benchDeliver(b, benchDelivery, false) }
func BenchmarkDeliveryJudged(b *testing.B)  { benchDeliver(b, benchDelivery, true) }
func BenchmarkDeliveryDropped(b *testing.B) { benchDeliver(b, benchSecret, true) }

func benchDeliver(b *testing.B, pkt []byte, judged bool) {
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	deliver(b, pkt, judged, b.N)
}

func TestDeliveryPathAllocatesNothingPerPacket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pkt    []byte
		judged bool
		out    int // bytes per packet the client gets
	}{{"unjudged", benchDelivery, false, len(benchDelivery)}, {"judged", benchDelivery, true, len(benchDelivery)}, {"dropped", benchSecret, true, 0}} {
		if got := deliver(t, tc.pkt, tc.judged, 1000).n; got != len(benchConnack)+1000*tc.out {
			t.Fatalf("%s: the client got %d bytes, want %d", tc.name, got, len(benchConnack)+1000*tc.out)
		}
		small := testing.AllocsPerRun(5, func() { deliver(t, tc.pkt, tc.judged, 100) })
		large := testing.AllocsPerRun(5, func() { deliver(t, tc.pkt, tc.judged, 100_000) })
		// A few over: the race detector makes sync.Pool drop buffers at
		// random. One per packet would be 100,000 over.
		if large > small+100 {
			t.Fatalf("%s: %v allocations for 100,000 packets, %v for 100: allocation per packet", tc.name, large, small)
		}
	}
}
