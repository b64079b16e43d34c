package mqttwire

import (
	"bytes"
	"io"
	"testing"
)

// loopReader replays one packet forever, like a steady client stream.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

var (
	benchPublish   = pkt(0x32, cat(str("factory/line-3/press-12/temperature"), []byte{0, 1}, make([]byte, 64))...)
	benchPublishV5 = pkt(0x32, cat(str("factory/line-3/press-12/temperature"), []byte{0, 1, 3, 0x23, 0, 9}, make([]byte, 64))...)
	benchSubscribe = pkt(0x82, cat([]byte{0, 1}, str("factory/+/press-12/#"), []byte{1}, str("alerts/line-3"), []byte{2})...)
)

// inspect frames and inspects one packet as the proxy's client pump does.
func inspect(r *Reader, v Version) (int, error) {
	p, err := r.Next()
	if err != nil {
		return 0, err
	}
	switch p.Type {
	case PUBLISH:
		pub, err := ParsePublish(p, v)
		return len(pub.Topic) + len(pub.Payload), err
	case SUBSCRIBE:
		s, err := ParseSubscribe(p, v)
		n := 0
		it := s.Filters()
		for f, ok := it.Next(); ok; f, ok = it.Next() {
			n += len(f.Topic)
		}
		return n, err
	}
	return 0, io.ErrUnexpectedEOF
}

func TestZeroAllocs(t *testing.T) {
	for name, c := range map[string]struct {
		raw []byte
		v   Version
	}{
		"publish v3.1.1": {benchPublish, V311},
		"publish v5":     {benchPublishV5, V5},
		"subscribe":      {benchSubscribe, V311},
	} {
		r := NewReader(&loopReader{data: c.raw}, 4096, DefaultMaxPacketSize)
		if _, err := inspect(r, c.v); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := inspect(r, c.v); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocs per packet, want 0", name, n)
		}
	}
}

func benchInspect(b *testing.B, raw []byte, v Version) {
	r := NewReader(&loopReader{data: raw}, 4096, DefaultMaxPacketSize)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inspect(r, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishFrameInspect(b *testing.B)   { benchInspect(b, benchPublish, V311) }
func BenchmarkPublishFrameInspectV5(b *testing.B) { benchInspect(b, benchPublishV5, V5) }
func BenchmarkSubscribeFrameInspect(b *testing.B) { benchInspect(b, benchSubscribe, V311) }

// chunkReader delivers a stream in reads of at most chunk bytes, as a
// socket does.
type chunkReader struct {
	data  []byte
	off   int
	chunk int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if c.off == len(c.data) {
		c.off = 0 // endless
	}
	n := copy(b[:min(len(b), c.chunk)], c.data[c.off:])
	c.off += n
	return n, nil
}

// A stream of 16 KiB PUBLISHes read in socket-sized pieces: the buffer
// grows once, then stays.
func BenchmarkReaderLargePublish(b *testing.B) {
	payload := make([]byte, 16<<10)
	pkt := append([]byte{0x30, 0x87, 0x80, 0x01, 0, 1, 't'}, payload...)
	pkt[1], pkt[2], pkt[3] = byte((len(pkt)-4)|0x80), byte((len(pkt)-4)>>7|0x80), byte((len(pkt)-4)>>14)
	r := NewReader(&chunkReader{data: bytes.Repeat(pkt, 8), chunk: 4096}, 4096, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
