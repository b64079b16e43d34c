package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// The seed corpora live in testdata/fuzz/<FuzzName>; `go test` runs them as
// ordinary tests and `go test -fuzz` starts from them.

var versions = []Version{V31, V311, V5}

// FuzzReader frames an arbitrary client stream and validates every packet
// for every protocol version: nothing may panic, and framing must stop at
// the first error. The same stream, delivered in chunks of a size taken
// from its first byte, through a pooled Reader held and written on as the
// proxy's pumps do, must frame the same packets and end the same way.
func FuzzReader(f *testing.F) {
	pool := NewBufferPool(64)
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream), 32, 4096)
		total := 0
		var framed [][]byte
		var end error
		for {
			p, err := r.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && ReasonOf(err) == UnspecifiedError {
					t.Fatalf("framing error without a reason code: %v", err)
				}
				end = err
				break
			}
			framed = append(framed, bytes.Clone(p.Raw))
			total += len(p.Raw)
			if total > len(stream) {
				t.Fatalf("framed more bytes than the stream holds")
			}
			if len(p.Body) > 4096 {
				t.Fatalf("body of %d bytes passed a 4096-byte limit", len(p.Body))
			}
			for _, v := range versions {
				if err := Validate(p, v); err != nil && ReasonOf(err) == UnspecifiedError {
					t.Fatalf("validation error without a reason code: %v", err)
				}
				_, _ = ParseAck(p, v)
			}
		}

		chunk := 1
		if len(stream) > 0 {
			chunk += int(stream[0]) * 2 // 1 to 511: below and above tinyRead
		}
		pr := NewReader(&pieces{data: stream, size: chunk}, 32, 4096)
		pr.UsePool(pool)
		pr.HoldPackets()
		var held []byte
		for i := 0; ; i++ {
			p, err := pr.Next()
			if err != nil {
				if err.Error() != end.Error() {
					t.Fatalf("pooled Reader ended with %v after %d packets, want %v", err, i, end)
				}
				break
			}
			if i >= len(framed) || !bytes.Equal(p.Raw, framed[i]) {
				t.Fatalf("pooled Reader: packet %d differs", i)
			}
			held = append(held, p.Raw...)
			if !pr.Buffered() { // what the pumps do: write the held run on
				if !bytes.Equal(pr.Held(), held) {
					t.Fatalf("held %x, want %x", pr.Held(), held)
				}
				held = held[:0]
				pr.Written()
			}
		}
	})
}

// pieces hands out data in reads of at most size bytes, then EOF.
type pieces struct {
	data []byte
	size int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.size)], p.data)
	p.data = p.data[n:]
	return n, nil
}

func single(data []byte) (Packet, bool) {
	r := NewReader(bytes.NewReader(data), 32, DefaultMaxPacketSize)
	p, err := r.Next()
	return p, err == nil
}

// FuzzConnect: a CONNECT that parses re-encodes to one that parses to the
// same fields.
func FuzzConnect(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ok := single(data)
		if !ok {
			return
		}
		c, err := ParseConnect(p)
		if err != nil {
			return
		}
		enc := AppendConnect(nil, &c)
		p2, ok := single(enc)
		if !ok {
			t.Fatalf("re-encoded CONNECT does not frame: %x", enc)
		}
		c2, err := ParseConnect(p2)
		if err != nil {
			t.Fatalf("re-encoded CONNECT does not parse: %v", err)
		}
		if c.Version != c2.Version || !bytes.Equal(c.ClientID, c2.ClientID) || !bytes.Equal(c.Username, c2.Username) ||
			!bytes.Equal(c.Password, c2.Password) || !bytes.Equal(c.WillTopic, c2.WillTopic) ||
			!bytes.Equal(c.WillPayload, c2.WillPayload) || !bytes.Equal(c.Properties, c2.Properties) ||
			c.KeepAlive != c2.KeepAlive || c.CleanStart != c2.CleanStart || c.WillQoS != c2.WillQoS {
			t.Fatalf("round trip changed CONNECT:\n%+v\n%+v", c, c2)
		}
	})
}

// FuzzPublish: a valid PUBLISH has a topic without wildcards (or an alias)
// and a payload that ends where the packet ends.
func FuzzPublish(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ok := single(data)
		if !ok || p.Type != PUBLISH {
			return
		}
		for _, v := range versions {
			pub, err := ParsePublish(p, v)
			if err != nil {
				continue
			}
			if bytes.ContainsAny(pub.Topic, "+#") || len(pub.Topic) == 0 && pub.TopicAlias == 0 {
				t.Fatalf("invalid topic %q accepted", pub.Topic)
			}
			if pub.QoS > 2 || pub.QoS > 0 && pub.PacketID == 0 {
				t.Fatalf("QoS %d id %d accepted", pub.QoS, pub.PacketID)
			}
			if len(pub.Payload) > 0 && &pub.Payload[len(pub.Payload)-1] != &p.Raw[len(p.Raw)-1] {
				t.Fatal("payload is not a view of the packet's tail")
			}
		}
	})
}

// FuzzSubscribe: every filter of a valid SUBSCRIBE is a valid filter and
// the iterator yields exactly Count of them.
func FuzzSubscribe(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ok := single(data)
		if !ok {
			return
		}
		for _, v := range versions {
			s, err := ParseSubscribe(p, v)
			if err != nil {
				if !errors.As(err, new(*Error)) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			n := 0
			it := s.Filters()
			for f, ok := it.Next(); ok; f, ok = it.Next() {
				if !ValidTopicFilter(f.Topic) || f.QoS() > 2 {
					t.Fatalf("invalid filter %q options %#x accepted", f.Topic, f.Options)
				}
				n++
			}
			if n != s.Count {
				t.Fatalf("iterated %d filters, Count %d", n, s.Count)
			}
		}
	})
}

// FuzzAck checks acknowledgement decoding and that our encoders' output
// decodes to what was encoded.
func FuzzAck(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ok := single(data)
		if !ok {
			return
		}
		for _, v := range versions {
			a, err := ParseAck(p, v)
			if err != nil {
				continue
			}
			switch a.Type {
			case SUBACK:
				enc := AppendSuback(nil, v, a.PacketID, a.Codes, a.Properties)
				p2, _ := single(enc)
				a2, err := ParseAck(p2, v)
				if err != nil || a2.PacketID != a.PacketID || len(a2.Codes) != len(a.Codes) {
					t.Fatalf("SUBACK round trip: %+v -> %+v %v", a, a2, err)
				}
			case PUBACK, PUBREC:
				enc := AppendPubAck(nil, a.Type, v, a.PacketID, a.Reason, a.Properties)
				p2, _ := single(enc)
				a2, err := ParseAck(p2, v)
				if err != nil || a2.PacketID != a.PacketID || a2.Reason != a.Reason || !bytes.Equal(a2.Properties, a.Properties) {
					t.Fatalf("%s round trip: %+v -> %+v %v", a.Type, a, a2, err)
				}
			}
		}
	})
}

// FuzzValidUTF8: the word-at-a-time check agrees with the plain definition
// (valid UTF-8, no U+0000) wherever the odd byte falls.
func FuzzValidUTF8(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidUTF8(b), utf8.Valid(b) && bytes.IndexByte(b, 0) < 0; got != want {
			t.Fatalf("ValidUTF8(%q) = %v, want %v", b, got, want)
		}
	})
}
