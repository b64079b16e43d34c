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

// repeatConn is a client that sends one packet n times, then EOF.
type repeatConn struct {
	net.Conn
	pkt []byte
	n   int // packets left
	off int
}

func (c *repeatConn) Read(b []byte) (int, error) {
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

func (s *sinkConn) Write(b []byte) (int, error) { s.n += len(b); return len(b), nil }
func (s *sinkConn) Close() error                { return nil }

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
	srv, err := New(Config{Backend: "127.0.0.1:1", Inspector: InspectorChain{topicCheck{}}})
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
	small := testing.AllocsPerRun(5, func() { forward(t, rules, 100) })
	large := testing.AllocsPerRun(5, func() { forward(t, rules, 100_000) })
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
