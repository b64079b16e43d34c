package mqttwire

import (
	"io"
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
}

// shrinkAfter is how many small packets in a row give back a grown buffer.
const shrinkAfter = 64

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

// Next returns the next packet. Its views are valid until the next call. The
// fixed header is validated (type, reserved flags, length limit); the body is
// not: use the Parse functions for that.
func (r *Reader) Next() (Packet, error) {
	if !r.hold {
		r.mark = r.start
	}
	if r.buf == nil {
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
		if len(r.buf) > 4*r.init && need <= r.init && r.small >= shrinkAfter {
			r.buf = make([]byte, r.init) // give back the space of large packets
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
			nb := make([]byte, size)
			copy(nb, r.buf[:r.end])
			r.buf = nb
		}
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if n > 0 {
		return nil
	}
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

// Release drops the buffer when nothing is buffered or held, so an idle
// connection holds no read buffer. It is reallocated by the next Next.
func (r *Reader) Release() {
	if r.mark == r.end {
		r.buf, r.mark, r.start, r.end = nil, 0, 0, 0
	}
}
