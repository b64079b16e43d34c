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

func TestReaderBuffered(t *testing.T) {
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
	if got := r.Held(); !bytes.Equal(got, stream) {
		t.Fatalf("held %x, want %x", got, stream)
	}
}

// socketReader hands out scripted arrivals the way a socket does: a read
// takes what fits of the current arrival, the rest stays for the next.
// Each read records whether the Reader held a buffer while it waited.
type socketReader struct {
	arrivals [][]byte
	r        *Reader
	waits    []bool // per read: the Reader held a buffer
	sizes    []int  // per read: len of the slice read into
}

func (s *socketReader) Read(b []byte) (int, error) {
	if len(s.arrivals) == 0 {
		return 0, io.EOF
	}
	s.waits = append(s.waits, s.r.buf != nil)
	s.sizes = append(s.sizes, len(b))
	n := copy(b, s.arrivals[0])
	if s.arrivals[0] = s.arrivals[0][n:]; len(s.arrivals[0]) == 0 {
		s.arrivals = s.arrivals[1:]
	}
	return n, nil
}

// A pooled Reader holds no buffer while it waits for a quiet connection's
// next packet, keeps one while data comes faster than its small array
// takes it, and frames the same packets either way.
func TestPooledReaderHoldsNoBufferWhileIdle(t *testing.T) {
	pool := NewBufferPool(1024)
	ping := pkt(0xc0)
	big := cat([]byte{0x30, 0x83, 0x04, 0, 1, 't'}, bytes.Repeat([]byte{'x'}, 512)) // remaining length 515
	burst := bytes.Repeat(ping, 300)                                                // 600 bytes: more than tinyRead
	src := &socketReader{arrivals: [][]byte{ping, ping, big, burst, ping, ping}}
	r := NewReader(src, 64, DefaultMaxPacketSize)
	r.UsePool(pool)
	src.r = r
	r.HoldPackets()
	var got []byte
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Raw...)
		if !r.Buffered() {
			r.Written() // what the pumps do: write on, then wait
		}
	}
	if want := cat(ping, ping, big, burst, ping, ping); !bytes.Equal(got, want) {
		t.Fatalf("framed %d bytes, want %d", len(got), len(want))
	}
	// Reads: ping, ping (tiny); big (tiny, filled; the rest into a pool
	// buffer: one packet, so still quiet); burst (tiny, filled, many
	// packets: busy); the rest of the burst (straight into a pool buffer;
	// it did not fill it: quiet again); ping, ping (tiny).
	wantHeld := []bool{false, false, false, true, false, true, false, false}
	if len(src.waits) != len(wantHeld) {
		t.Fatalf("%d reads %v (sizes %v), want %d", len(src.waits), src.waits, src.sizes, len(wantHeld))
	}
	for i, held := range src.waits {
		if held != wantHeld[i] {
			t.Errorf("read %d (len %d): held a buffer = %v, want %v", i, src.sizes[i], held, wantHeld[i])
		}
	}
	if r.buf != nil {
		t.Errorf("the Reader kept a %d-byte buffer at EOF", len(r.buf))
	}
}

// waitingSource is a socketReader that can wait for readability, as the
// proxy's raw TCP connections can: the Reader waits holding nothing.
type waitingSource struct {
	socketReader
	waited  int   // WaitReadable calls
	waitErr error // returned by WaitReadable once the arrivals are gone
}

func (w *waitingSource) WaitReadable() error {
	w.waited++
	if w.r.buf != nil || w.r.bufp != nil {
		panic("WaitReadable with a buffer held")
	}
	if len(w.arrivals) == 0 && w.waitErr != nil {
		return w.waitErr
	}
	return nil
}

// Over a ReadWaiter, a pooled Reader waits with no buffer and no small
// array either, then reads into a pool buffer; it frames the same
// packets, and a failed wait is the Reader's error.
func TestPooledReaderOverReadWaiterHoldsNothing(t *testing.T) {
	ping := pkt(0xc0)
	big := cat([]byte{0x30, 0x83, 0x04, 0, 1, 't'}, bytes.Repeat([]byte{'x'}, 512))
	for _, tc := range []struct {
		name    string
		waitErr error
		want    error
	}{{"eof", nil, io.EOF}, {"closed", io.ErrClosedPipe, io.ErrClosedPipe}} {
		t.Run(tc.name, func(t *testing.T) {
			src := &waitingSource{socketReader: socketReader{arrivals: [][]byte{ping, big, bytes.Repeat(ping, 300), ping}}, waitErr: tc.waitErr}
			r := NewReader(src, 64, DefaultMaxPacketSize)
			r.UsePool(NewBufferPool(1024))
			src.r = r
			r.HoldPackets()
			var got []byte
			var err error
			for {
				var p Packet
				if p, err = r.Next(); err != nil {
					break
				}
				got = append(got, p.Raw...)
				if !r.Buffered() {
					r.Written()
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Next ended with %v, want %v", err, tc.want)
			}
			if want := cat(ping, big, bytes.Repeat(ping, 300), ping); !bytes.Equal(got, want) {
				t.Fatalf("framed %d bytes, want %d", len(got), len(want))
			}
			if r.tiny != nil || src.waited < 3 {
				t.Fatalf("small array allocated %v, %d waits: want none and at least 3", r.tiny != nil, src.waited)
			}
			if r.buf != nil || r.bufp != nil {
				t.Fatal("the Reader kept a buffer at the end")
			}
		})
	}
}

// Steady traffic through a pooled Reader reuses the pool's buffers.
func TestPooledReaderAllocatesNothing(t *testing.T) {
	pool := NewBufferPool(1024)
	publish := cat([]byte{0x30, 10, 0, 1, 't'}, []byte("payload"))
	src := &socketReader{}
	r := NewReader(src, 64, DefaultMaxPacketSize)
	r.UsePool(pool)
	src.r = r
	arrivals := make([][]byte, 1)
	allocs := testing.AllocsPerRun(100, func() {
		arrivals[0] = publish
		src.arrivals, src.waits, src.sizes = arrivals, src.waits[:0], src.sizes[:0]
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet, want 0", allocs)
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
	for _, pooled := range []bool{false} { // pooled: TestPooledReaderGivesBackLargeBufferAtOnce
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
			t.Fatalf("pooled %v: after %d small packets the buffer is still %d bytes", pooled, shrinkAfter, len(r.buf))
		}
	}
}

// A pooled Reader gives a buffer grown for a large packet back as soon as
// the packet is written on and nothing more is in hand, so one large
// message to many idle clients does not pin its size in each; while large
// packets keep filling its reads it takes one of the same size again,
// without growing (and copying) from the small buffer each time.
func TestPooledReaderGivesBackLargeBufferAtOnce(t *testing.T) {
	large := append([]byte{0x30, 0x83, 0x40, 0, 1, 't'}, make([]byte, 8192)...)
	large[1], large[2] = byte((len(large)-3)&0x7f|0x80), byte((len(large)-3)>>7)
	small := []byte{0x30, 3, 0, 1, 't'}
	r := NewReader(&segReader{segs: [][]byte{large, small}}, 256, 1<<20) // the small packet comes later
	r.UsePool(NewBufferPool(256))
	r.HoldPackets()
	if p, err := r.Next(); err != nil || len(p.Raw) != len(large) {
		t.Fatalf("large: %v", err)
	}
	if len(r.buf) < len(large) || r.largep == nil {
		t.Fatalf("buffer %d for a %d-byte packet", len(r.buf), len(large))
	}
	r.Written()
	if _, err := r.Next(); err != nil { // the small one: read after the large one was written on
		t.Fatal(err)
	}
	if r.largep != nil || len(r.buf) > 256 {
		t.Fatalf("after the large packet was written on the reader still holds %d bytes", len(r.buf))
	}

	// Reads that fill a grown buffer: it is swapped for one of its size.
	var many []byte
	for range 8 {
		many = append(many, large...)
	}
	r = NewReader(&chunkReader{data: many, chunk: len(many)}, 256, 1<<20)
	r.UsePool(NewBufferPool(256))
	r.HoldPackets()
	grown := 0
	for i := range 16 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			grown = len(r.buf)
		}
		if i > 2 && len(r.buf) != grown {
			t.Fatalf("packet %d: buffer %d, was %d", i, len(r.buf), grown)
		}
		r.Written()
	}
}

// segReader returns its segments one per Read, each as far as it fits.
type segReader struct{ segs [][]byte }

func (s *segReader) Read(b []byte) (int, error) {
	if len(s.segs) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.segs[0])
	if s.segs[0] = s.segs[0][n:]; len(s.segs[0]) == 0 {
		s.segs = s.segs[1:]
	}
	return n, nil
}
