package mqtttest

import (
	"net"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// RawClient speaks MQTT by hand, for byte-exact answers in v3 and v5.
type RawClient struct {
	t    *testing.T
	conn net.Conn
	r    *mqttwire.Reader
	v    mqttwire.Version
}

// NewRawClient sends CONNECT on conn and returns the client and the
// broker's first answer.
func NewRawClient(t *testing.T, conn net.Conn, v mqttwire.Version, c *mqttwire.Connect) (*RawClient, mqttwire.Packet) {
	t.Helper()
	c.CleanStart = true
	return NewRawSession(t, conn, v, c)
}

// NewRawSession is NewRawClient with the CONNECT's clean start (clean
// session) flag as c has it.
func NewRawSession(t *testing.T, conn net.Conn, v mqttwire.Version, c *mqttwire.Connect) (*RawClient, mqttwire.Packet) {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	rc := &RawClient{t: t, conn: conn, r: mqttwire.NewReader(conn, 256, 1<<20), v: v}
	c.Version = v
	if c.KeepAlive == 0 {
		c.KeepAlive = 60
	}
	rc.Send(mqttwire.AppendConnect(nil, c))
	return rc, rc.Next()
}

// Conn is the client's connection, for writes from another goroutine
// than the test's (Send fails the test, which only the test's may).
func (c *RawClient) Conn() net.Conn { return c.conn }

// Send writes b.
func (c *RawClient) Send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// Next reads one packet, within 5 seconds.
func (c *RawClient) Next() mqttwire.Packet {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return p
}

// NextOrClosed reads one packet within 5 seconds, or reports that the
// connection was closed (what a v3 client is told of a refusal); a
// timeout fails the test.
func (c *RawClient) NextOrClosed() (mqttwire.Packet, bool) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := c.r.Next()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("reading: %v", err)
	}
	return p, err == nil
}

// NextOrClosedWithin is NextOrClosed with a wait of d, for use from
// another goroutine: a timeout is reported as closed, never a failure.
func (c *RawClient) NextOrClosedWithin(d time.Duration) (mqttwire.Packet, bool) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	p, err := c.r.Next()
	return p, err == nil
}

// Within reports whether a packet arrives within d (and reads it).
func (c *RawClient) Within(d time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := c.r.Next()
	return err == nil
}

// Quiet asserts that nothing arrives for a moment: used only after a
// message that must arrive first, so the wait bounds a negative.
func (c *RawClient) Quiet(d time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	if p, err := c.r.Next(); err == nil {
		c.t.Fatalf("unexpected %s %x", p.Type, p.Raw)
	}
}

// PublishPacket encodes a PUBLISH (props: v5 only).
func PublishPacket(v mqttwire.Version, topic string, qos byte, id uint16, props []byte, payload string) []byte {
	return mqttwire.AppendPublish(nil, v, []byte(topic), qos, false, id, props, []byte(payload))
}

// SubscribePacket encodes a SUBSCRIBE asking QoS 1 for each filter.
func SubscribePacket(v mqttwire.Version, id uint16, filters ...string) []byte {
	fs := make([]mqttwire.Filter, len(filters))
	for i, f := range filters {
		fs[i] = mqttwire.Filter{Topic: []byte(f), Options: 1}
	}
	return mqttwire.AppendSubscribe(nil, v, id, nil, fs)
}

// SubackCodes are the codes of a SUBACK, or the test fails.
func SubackCodes(t *testing.T, p mqttwire.Packet, v mqttwire.Version) []byte {
	t.Helper()
	a, err := mqttwire.ParseAck(p, v)
	if err != nil || p.Type != mqttwire.SUBACK {
		t.Fatalf("want SUBACK, got %s %x (%v)", p.Type, p.Raw, err)
	}
	return append([]byte(nil), a.Codes...) // a copy: the codes are a view of the reader's buffer
}

// Write writes b as it is, for use from another goroutine.
func (c *RawClient) Write(b []byte) (int, error) { return c.conn.Write(b) }
