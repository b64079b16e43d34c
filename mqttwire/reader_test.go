package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// Examples from MQTT 3.1.1 table 2.4 and 5.0 table 1-1 [MQTT-1.5.5].
func TestRemainingLength(t *testing.T) {
	cases := []struct {
		enc  []byte
		want int
	}{
		{[]byte{0x00}, 0},
		{[]byte{0x7f}, 127},
		{[]byte{0x80, 0x01}, 128},
		{[]byte{0xff, 0x7f}, 16_383},
		{[]byte{0x80, 0x80, 0x01}, 16_384},
		{[]byte{0xff, 0xff, 0x7f}, 2_097_151},
		{[]byte{0x80, 0x80, 0x80, 0x01}, 2_097_152},
		{[]byte{0xff, 0xff, 0xff, 0x7f}, MaxRemainingLength},
	}
	for _, c := range cases {
		v, n, err := decodeVarint(c.enc)
		if err != nil || v != c.want || n != len(c.enc) {
			t.Errorf("decode %x = %d, %d, %v; want %d", c.enc, v, n, err, c.want)
		}
		if got := appendVarint(nil, c.want); !bytes.Equal(got, c.enc) {
			t.Errorf("encode %d = %x, want %x", c.want, got, c.enc)
		}
		if varintLen(c.want) != len(c.enc) {
			t.Errorf("varintLen(%d) = %d", c.want, varintLen(c.want))
		}
	}
	// A fifth continuation byte is malformed [MQTT-1.5.5-1].
	if _, _, err := decodeVarint([]byte{0xff, 0xff, 0xff, 0xff, 0x01}); !errors.Is(err, ErrMalformedVarint) {
		t.Errorf("5-byte varint: %v, want ErrMalformedVarint", err)
	}
	// Truncated: need more bytes, not an error.
	if _, n, err := decodeVarint([]byte{0x80, 0x80}); n != 0 || err != nil {
		t.Errorf("truncated varint: n=%d err=%v", n, err)
	}
}

// countingReader records how many bytes were read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

func TestOversizeRejectedBeforeBody(t *testing.T) {
	// Declares 2 MiB, sends only the header and a few body bytes; the
	// reader must refuse without growing its buffer to the declared size.
	stream := append(appendVarint([]byte{0x30}, 2<<20), make([]byte, 10)...)
	cr := &countingReader{r: iotest.OneByteReader(bytes.NewReader(stream))}
	r := NewReader(cr, 64, DefaultMaxPacketSize)
	_, err := r.Next()
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("got %v, want ErrPacketTooLarge", err)
	}
	if ReasonOf(err) != PacketTooLarge {
		t.Errorf("reason %#x, want 0x95", ReasonOf(err))
	}
	if len(r.buf) > 64 {
		t.Errorf("buffer grew to %d bytes", len(r.buf))
	}
	if cr.n > 5 {
		t.Errorf("read %d bytes; the body must not be read", cr.n)
	}
}

func TestReaderFramesAcrossReads(t *testing.T) {
	p1 := pkt(0x30, cat(str("a/b"), []byte("hello"))...)
	p2 := pkt(0xc0)                                      // PINGREQ
	p3 := pkt(0x30, cat(str("x"), make([]byte, 300))...) // grows the 64-byte buffer
	p4 := pkt(0xe0)
	stream := cat(p1, p2, p3, p4)
	for name, src := range map[string]io.Reader{
		"one read":      bytes.NewReader(stream),
		"one byte":      iotest.OneByteReader(bytes.NewReader(stream)),
		"half":          iotest.HalfReader(bytes.NewReader(stream)),
		"data with EOF": iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		r := NewReader(src, 64, DefaultMaxPacketSize)
		for i, want := range [][]byte{p1, p2, p3, p4} {
			p, err := r.Next()
			if err != nil {
				t.Fatalf("%s: packet %d: %v", name, i, err)
			}
			if !bytes.Equal(p.Raw, want) {
				t.Fatalf("%s: packet %d = %x, want %x", name, i, p.Raw, want)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Errorf("%s: at end got %v, want EOF", name, err)
		}
	}
}

func TestReaderTruncatedIsUnexpectedEOF(t *testing.T) {
	r := NewReader(bytes.NewReader([]byte{0x30, 0x05, 0x00}), 64, DefaultMaxPacketSize)
	if _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want ErrUnexpectedEOF", err)
	}
}

func TestReaderBufferedAndRelease(t *testing.T) {
	stream := cat(pkt(0xc0), pkt(0xc0))
	r := NewReader(bytes.NewReader(stream), 64, DefaultMaxPacketSize)
	r.HoldPackets()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !r.Buffered() {
		t.Fatal("second packet should be buffered")
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() {
		t.Fatal("nothing should be buffered")
	}
	r.Release()
	if r.buf == nil {
		t.Fatal("Release dropped held bytes")
	}
	if got := r.Held(); !bytes.Equal(got, stream) {
		t.Fatalf("held %x, want %x", got, stream)
	}
	r.Written()
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept the buffer of an idle reader")
	}
}

// Reserved flag bits [MQTT-2.2.2-1], [MQTT-2.2.2-2], QoS 3 [MQTT-3.3.1-4].
func TestFixedHeaderFlags(t *testing.T) {
	cases := []struct {
		first byte
		ok    bool
	}{
		{0x10, true}, {0x11, false}, // CONNECT
		{0x30, true}, {0x3b, true}, {0x36, false}, {0x38, false}, // PUBLISH: QoS 3, DUP on QoS 0
		{0x62, true}, {0x60, false}, // PUBREL
		{0x82, true}, {0x80, false}, // SUBSCRIBE
		{0xa2, true}, {0xa0, false}, // UNSUBSCRIBE
		{0xc0, true}, {0xc1, false}, // PINGREQ
		{0x00, false}, // reserved type
	}
	for _, c := range cases {
		body := []byte{0x00, 0x01, 'a', 0x00, 0x01}
		r := NewReader(bytes.NewReader(pkt(c.first, body...)), 64, DefaultMaxPacketSize)
		_, err := r.Next()
		if (err == nil) != c.ok {
			t.Errorf("first byte %#02x: err=%v, want ok=%v", c.first, err, c.ok)
		}
	}
}

// The pump forwards held packets in one write, dropping some in between.
func TestReaderHeldSpans(t *testing.T) {
	a, b, c := pkt(0xc0), pkt(0x30, cat(str("drop"), []byte("x"))...), pkt(0x30, cat(str("keep"), make([]byte, 100))...)
	r := NewReader(iotest.HalfReader(bytes.NewReader(cat(a, b, c, a))), 16, DefaultMaxPacketSize)
	r.HoldPackets()
	var out []byte
	for i := 0; i < 4; i++ {
		if !r.Buffered() {
			out = append(out, r.Held()...)
			r.Written()
		}
		p, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(p.Raw, []byte("drop")) {
			out = append(out, r.HeldBefore(p)...)
			r.Written()
		}
	}
	out = append(out, r.Held()...)
	if want := cat(a, c, a); !bytes.Equal(out, want) {
		t.Fatalf("forwarded %x, want %x", out, want)
	}
}

// A client that declares a large packet and trickles it holds memory in
// proportion to what it sent, not to what it declared.
func TestReaderGrowsWithDataNotDeclaration(t *testing.T) {
	stream := append(appendVarint([]byte{0x30}, 1<<20-10), make([]byte, 1000)...)
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 64, DefaultMaxPacketSize)
	if _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v", err)
	}
	if len(r.buf) > 4096 {
		t.Fatalf("buffer of %d bytes for 1004 bytes received", len(r.buf))
	}
}

// A buffer grown for large packets is kept while they keep coming and
// given back after a run of small ones.
func TestReaderKeepsThenGivesBackLargeBuffer(t *testing.T) {
	large := append([]byte{0x30, 0x83, 0x40, 0, 1, 't'}, make([]byte, 8192)...) // remaining length 8195
	large[1], large[2] = byte((len(large)-3)&0x7f|0x80), byte((len(large)-3)>>7)
	small := []byte{0x30, 3, 0, 1, 't'}
	var stream []byte
	for range 10 {
		stream = append(stream, large...)
	}
	for range shrinkAfter + 1 {
		stream = append(stream, small...)
	}
	stream = append(stream, small...)
	r := NewReader(&chunkReader{data: stream, chunk: len(small)}, 256, 1<<20) // reads end where small packets do
	grown := 0
	for i := range 10 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			grown = len(r.buf)
		} else if len(r.buf) != grown {
			t.Fatalf("large packet %d: buffer %d, was %d: reallocated", i, len(r.buf), grown)
		}
	}
	for range shrinkAfter + 2 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.buf) != 256 {
		t.Fatalf("after %d small packets the buffer is still %d bytes", shrinkAfter, len(r.buf))
	}
}
