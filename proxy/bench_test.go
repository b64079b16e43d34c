package proxy

import (
	"io"
	"net"
	"testing"
	"time"

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
		return Decision{Verdict: Refuse, Reason: mqttwire.NotAuthorized}
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

// forward runs the client-to-broker pump over n PUBLISH packets.
func forward(tb testing.TB, n int) *sinkConn {
	srv, err := New(Config{Backend: "127.0.0.1:1", Inspector: InspectorChain{topicCheck{}}})
	if err != nil {
		tb.Fatal(err)
	}
	client, broker := &repeatConn{pkt: benchPublish, n: n}, &sinkConn{}
	sess := &Session{srv: srv, client: client, broker: broker, Version: mqttwire.V311}
	sess.reader = mqttwire.NewReader(client, initialReadBuffer, mqttwire.DefaultMaxPacketSize)
	sess.topics.rights = denyMarked{} // the ACL seam is on the path too
	sess.limiter = benchLimits{limits.NewSessions(limits.PacketLimits{MaxTopicLength: 1024, MaxTopicLevels: 16, MaxInflight: 65535,
		PublishRate: 1e12, PublishBytesRate: 1e15}).Open(limits.Start{Who: "bench"}, time.Now())} // and the limits, with rates that never hold it back
	if reason := srv.clientToBroker(sess, client); reason != closeClient {
		tb.Fatalf("pump ended with %q", reason)
	}
	return broker
}

// benchLimits is cmd's adapter in small: the real limits on the path.
type benchLimits struct{ s *limits.Session }

func (b benchLimits) Check(in *Inspected) Decision {
	var v limits.Violation
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		v = b.s.Publish(in.Publish.Topic, in.Publish.QoS, in.Publish.PacketID)
	case mqttwire.SUBSCRIBE:
		v = b.s.Subscribe(&in.Subscribe)
	}
	switch {
	case v.Kind == "":
		return Decision{}
	case v.End:
		return Decision{Verdict: Disconnect, Reason: v.Code, Kind: v.Kind}
	}
	return Decision{Verdict: Refuse, Reason: v.Code, Kind: v.Kind}
}
func (b benchLimits) Sent(in *Inspected) {
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		b.s.Sent(in.Publish.QoS, in.Publish.PacketID)
	case mqttwire.SUBSCRIBE:
		it := in.Subscribe.Filters()
		for f, ok := it.Next(); ok; f, ok = it.Next() {
			b.s.Subscribed(f.Topic)
		}
	case mqttwire.UNSUBSCRIBE:
		b.s.Unsubscribe(&in.Subscribe)
	}
}
func (b benchLimits) Subscribed(filter []byte)                { b.s.Subscribed(filter) }
func (b benchLimits) Commit()                                 { b.s.Commit() }
func (b benchLimits) Take(n int, now time.Time) time.Duration { return b.s.Take(n, now) }
func (b benchLimits) Acked(id uint16, qos byte)               { b.s.Acked(id, qos) }
func (b benchLimits) Started(sessionPresent bool)             { b.s.Started(sessionPresent) }
func (b benchLimits) Expiry(seconds uint32)                   { b.s.Expiry(seconds) }
func (b benchLimits) Close(now time.Time)                     { b.s.Close(now) }

// The PUBLISH path (framing, validation, topic rights, limits, inspection, forwarding) allocates
// per connection, never per packet.
func TestPublishPathAllocatesNothingPerPacket(t *testing.T) {
	if got := forward(t, 1000).n; got != 1000*len(benchPublish) {
		t.Fatalf("forwarded %d bytes", got)
	}
	small := testing.AllocsPerRun(5, func() { forward(t, 100) })
	large := testing.AllocsPerRun(5, func() { forward(t, 100_000) })
	if large > small {
		t.Fatalf("%v allocations for 100,000 packets, %v for 100: allocation per packet", large, small)
	}
}

func BenchmarkPublishForward(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPublish)))
	forward(b, b.N)
}
