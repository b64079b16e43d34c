package mqttwire

import (
	"io"
	"sync"
)

// DefaultMaxPacketSize is the default limit on a packet's remaining length.
const DefaultMaxPacketSize = 1 << 20

// Reader frames packets from a byte stream into one reused buffer. It never
// allocates more than the declared size of a packet that passed the size
// check, and the buffer only grows for packets larger than its current size.
type Reader struct {
	r     io.Reader
	buf   []byte
	mark  int // first byte returned by Next but not yet written on (see Held)
	start int // first unread byte
	end   int // end of buffered data
	max   int // maximum remaining length
	init  int // initial buffer size
	hold  bool
	// small counts the packets in a row that fit the initial buffer: a
	// grown buffer is given back only after a run of them, so a stream of
	// large packets does not shrink and regrow it for each one.
	small int

	// With a pool (UsePool), buf comes from it while bytes are in hand
	// (bufp is then the pool's) and goes back when all are dealt with.
	pool *BufferPool
	bufp *[]byte
	// busy: the last wake-up's first read filled the space it had, and
	// brought more than one packet: data is coming faster than it is
	// written on, so the next read goes straight into a buffer.
	// largep is a buffer grown for large packets, from the size-classed
	// pools (pooled Readers only).
	largep     *[]byte
	lastFilled bool // the last read filled the space it had
	busy       bool
	filled     bool            // the first read since everything was written filled its space
	packets    int             // packets framed since everything was written
	tiny       *[tinyRead]byte // allocated at the first wait of a Reader whose source is no ReadWaiter
}

// A ReadWaiter is a source that can wait until a read would not block,
// without a buffer to read into: a pooled Reader over one waits for the
// next bytes holding no memory for them at all.
type ReadWaiter interface {
	WaitReadable() error
}

// shrinkAfter is how many small packets in a row give back a grown buffer.
const shrinkAfter = 64

// tinyRead is what a pooled Reader reads into while it holds no buffer:
// enough for the small packets of a quiet connection (PINGREQ, a short
// PUBLISH), so that waiting for them costs no more than this.
const tinyRead = 256

// A BufferPool shares read buffers of one size between Readers, so that
// a connection holds a buffer only while it has bytes in hand.
type BufferPool struct {
	size int
	p    sync.Pool
}

// NewBufferPool returns a pool of buffers of size bytes.
func NewBufferPool(size int) *BufferPool {
	return &BufferPool{size: max(size, tinyRead)}
}

func (bp *BufferPool) get() *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bp.size)
	return &b
}

// largePools hold grown read buffers by size class (powers of two from
// 8 KiB to 2^29, above the largest packet), shared by every pooled
// Reader: a large packet borrows one while its bytes are in hand.
var largePools [30]sync.Pool

func largeClass(size int) int {
	c := 13
	for 1<<c < size {
		c++
	}
	return c
}

func getLarge(size int) *[]byte {
	c := largeClass(size)
	if b, ok := largePools[c].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 1<<c)
	return &b
}

func putLarge(b *[]byte) { largePools[largeClass(len(*b))].Put(b) }

// NewReader returns a Reader with an initial buffer of size bytes that
// rejects packets whose remaining length exceeds max.
func NewReader(r io.Reader, size, max int) *Reader {
	if max <= 0 || max > MaxRemainingLength {
		max = MaxRemainingLength
	}
	if size < 16 {
		size = 16
	}
	return &Reader{r: r, max: max, init: size}
}

// UsePool makes the Reader take its buffer from p (which sets the initial
// size) and give it back whenever every byte read has been dealt with, so
// an idle connection holds none: it then waits for the next bytes with
// no buffer (a ReadWaiter source) or in a small array of its own, and
// reads straight into a pool buffer again
// while data keeps arriving faster than that array can take it. Call it
// before the first Next.
func (r *Reader) UsePool(p *BufferPool) {
	r.pool, r.init = p, p.size
}

// Next returns the next packet. Its views are valid until the next call. The
// fixed header is validated (type, reserved flags, length limit); the body is
// not: use the Parse functions for that.
func (r *Reader) Next() (Packet, error) {
	if !r.hold {
		r.mark = r.start
	}
	if r.buf == nil && r.pool == nil {
		r.buf = make([]byte, r.init)
	}
	for {
		n, err := FrameLen(r.buf[r.start:r.end], r.max)
		if err != nil {
			return Packet{}, err
		}
		if n > 0 && r.end-r.start >= n {
			raw := r.buf[r.start : r.start+n : r.start+n]
			r.start += n
			r.packets++
			if n <= r.init {
				r.small++
			} else {
				r.small = 0
			}
			t, flags := Type(raw[0]>>4), raw[0]&0x0f
			if err := checkFlags(t, flags); err != nil {
				return Packet{}, err
			}
			return Packet{Type: t, Flags: flags, Raw: raw, Body: raw[n-bodyLen(raw):]}, nil
		}
		if err := r.fill(n); err != nil {
			return Packet{}, err
		}
	}
}

func bodyLen(raw []byte) int {
	rl, _, _ := decodeVarint(raw[1:])
	return rl
}

// fill reads more data towards a packet of need bytes (0 while its length
// is unknown). Held bytes move with the buffer.
func (r *Reader) fill(need int) error {
	if r.mark == r.end {
		r.mark, r.start, r.end = 0, 0, 0
		r.busy, r.packets = r.filled && r.packets > 1, 0
		if r.largep != nil {
			// A buffer grown for large packets goes back as soon as they
			// are written on, so that one large message sent to many idle
			// clients does not pin its size in each of them; while they
			// keep coming (the last read filled its space) the next read
			// goes straight into one of the same size.
			size := len(*r.largep)
			putLarge(r.largep)
			r.largep, r.buf = nil, nil
			if r.lastFilled {
				r.largep = getLarge(size)
				r.buf = *r.largep
			}
		}
		switch {
		case r.bufp != nil && !r.busy: // pooled and quiet: wait without it
			r.pool.p.Put(r.bufp)
			r.buf, r.bufp = nil, nil
		case r.bufp == nil && len(r.buf) > r.shrinkAbove() && need <= r.init && r.small >= shrinkAfter:
			r.buf = nil // give back the space of large packets
			if r.largep != nil {
				putLarge(r.largep)
				r.largep = nil
			}
			if r.pool == nil {
				r.buf = make([]byte, r.init)
			}
		}
		if r.buf == nil && r.pool != nil {
			return r.fillTiny()
		}
	}
	if r.end == len(r.buf) { // no room left to read into
		held := r.start - r.mark
		if r.mark > 0 {
			r.end = copy(r.buf, r.buf[r.mark:r.end])
			r.mark, r.start = 0, held
		} else {
			// Grow by doubling, not to the declared size at once, so a
			// client that declares a large packet and sends it slowly
			// holds memory in proportion to what it actually sent.
			size := 2 * len(r.buf)
			if need > 0 {
				size = min(size, held+need)
			}
			var nb []byte
			if r.pool != nil {
				lp := getLarge(size)
				nb = *lp
				copy(nb, r.buf[:r.end])
				if r.largep != nil {
					putLarge(r.largep)
				}
				r.largep = lp
			} else {
				nb = make([]byte, size)
				copy(nb, r.buf[:r.end])
			}
			if r.bufp != nil {
				r.pool.p.Put(r.bufp)
				r.bufp = nil
			}
			r.buf = nb
		}
	}
	space := r.buf[r.end:]
	n, err := r.r.Read(space)
	if r.end == 0 {
		r.filled = n == len(space)
	}
	r.lastFilled = n == len(space)
	r.end += n
	if n > 0 {
		return nil
	}
	return r.readError(err)
}

// fillTiny waits for the next bytes holding no buffer (a ReadWaiter's
// wait, or a read into the small array), then moves them to one from the
// pool.
func (r *Reader) fillTiny() error {
	if w, ok := r.r.(ReadWaiter); ok {
		if err := w.WaitReadable(); err != nil {
			return r.readError(err)
		}
		r.bufp = r.pool.get()
		n, err := r.r.Read(*r.bufp)
		if n == 0 {
			r.pool.p.Put(r.bufp)
			r.bufp = nil
			return r.readError(err)
		}
		r.buf = *r.bufp
		r.end = n
		r.filled = n == len(r.buf)
		r.lastFilled = r.filled
		return nil
	}
	if r.tiny == nil {
		r.tiny = new([tinyRead]byte)
	}
	n, err := r.r.Read(r.tiny[:])
	if n == 0 {
		return r.readError(err)
	}
	r.filled = n == len(r.tiny)
	r.bufp = r.pool.get()
	r.buf = *r.bufp
	r.end = copy(r.buf, r.tiny[:n])
	return nil
}

// shrinkAbove is the size above which a grown buffer is given back after
// a run of small packets: any growth for a pooled Reader, whose buffers
// otherwise return to the pool.
func (r *Reader) shrinkAbove() int {
	if r.pool != nil {
		return r.init
	}
	return 4 * r.init
}

func (r *Reader) readError(err error) error {
	if err == nil {
		err = io.ErrNoProgress
	}
	if err == io.EOF && r.end > r.start {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Buffered reports whether a complete packet is already in the buffer, so
// that Next will not block. The pumps use it to batch writes.
func (r *Reader) Buffered() bool {
	n, err := FrameLen(r.buf[r.start:r.end], r.max)
	return err != nil || (n > 0 && r.end-r.start >= n)
}

// Unread returns the number of buffered bytes not yet returned by Next.
func (r *Reader) Unread() int { return r.end - r.start }

// HoldPackets makes the Reader keep the packets Next returns in its buffer
// until Written is called, so that they can be written on in one piece.
func (r *Reader) HoldPackets() { r.hold = true }

// Held returns the packets returned by Next since the last call to Written,
// as one contiguous slice in arrival order: the bytes to forward unchanged
// in a single write.
func (r *Reader) Held() []byte { return r.buf[r.mark:r.start] }

// HeldBefore returns the held bytes that precede p, the packet Next just
// returned. A caller that drops or replaces p writes these first.
func (r *Reader) HeldBefore(p Packet) []byte { return r.buf[r.mark : r.start-len(p.Raw)] }

// Written marks every held byte as dealt with.
func (r *Reader) Written() { r.mark = r.start }

// WrittenBefore marks the held bytes that precede p, the packet Next just
// returned, as dealt with; p stays held.
func (r *Reader) WrittenBefore(p Packet) { r.mark = r.start - len(p.Raw) }
