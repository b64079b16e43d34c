package mqttwire

import (
	"bytes"
	"testing"
)

// frame returns the single packet in raw, failing the test otherwise.
func frame(t testing.TB, raw []byte) Packet {
	t.Helper()
	r := NewReader(bytes.NewReader(raw), 64, DefaultMaxPacketSize)
	p, err := r.Next()
	if err != nil {
		t.Fatalf("framing %x: %v", raw, err)
	}
	if r.Unread() != 0 {
		t.Fatalf("framing %x: %d bytes left over", raw, r.Unread())
	}
	return p
}

// pkt builds a packet from a first byte and a body.
func pkt(first byte, body ...byte) []byte {
	return append(appendVarint([]byte{first}, len(body)), body...)
}

func str(s string) []byte { return appendBinary(nil, []byte(s)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
