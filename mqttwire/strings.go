package mqttwire

import (
	"encoding/binary"
	"unicode/utf8"
)

// ValidUTF8 reports whether b is a well-formed MQTT UTF-8 string: valid
// UTF-8 without surrogates and without U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2].
// Topics are mostly ASCII, so eight bytes at a time are first checked for
// a high bit or a zero byte; only a string with either goes byte by byte.
func ValidUTF8(b []byte) bool {
	const lows, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if (x|(x-lows)&^x)&highs != 0 { // a byte >= 0x80, or a zero byte
			break
		}
	}
	ascii := true
	for _, c := range b[i:] {
		if c == 0 {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	return ascii || utf8.Valid(b[i:])
}

func readUint16(b []byte) (uint16, []byte, error) {
	if len(b) < 2 {
		return 0, nil, wrap(ErrMalformed, "truncated integer")
	}
	return binary.BigEndian.Uint16(b), b[2:], nil
}

// readBinary reads a two-byte length-prefixed field.
func readBinary(b []byte) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, wrap(ErrMalformed, "truncated length")
	}
	l := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < l {
		return nil, nil, wrap(ErrMalformed, "field of %d bytes exceeds packet", l)
	}
	return b[2 : 2+l : 2+l], b[2+l:], nil
}

// readString reads a length-prefixed UTF-8 string.
func readString(b []byte) ([]byte, []byte, error) {
	s, rest, err := readBinary(b)
	if err != nil {
		return nil, nil, err
	}
	if !ValidUTF8(s) {
		return nil, nil, ErrBadUTF8
	}
	return s, rest, nil
}

func appendBinary(dst, s []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// ValidTopicName reports whether t may be used as a PUBLISH topic: non-empty,
// no wildcard characters [MQTT-3.3.2-2], valid UTF-8.
func ValidTopicName(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c == '+' || c == '#' {
			return false
		}
	}
	return ValidUTF8(t)
}

// ValidTopicFilter reports whether f is a valid subscription filter: '#'
// only as the whole last level, '+' only as a whole level [MQTT-4.7.1-2],
// [MQTT-4.7.1-3], and, for a shared subscription ($share/group/filter), a
// group name without wildcards and a non-empty filter.
func ValidTopicFilter(f []byte) bool {
	if len(f) == 0 || !ValidUTF8(f) {
		return false
	}
	if len(f) > 7 && string(f[:7]) == "$share/" {
		rest := f[7:]
		i := 0
		for i < len(rest) && rest[i] != '/' {
			if rest[i] == '+' || rest[i] == '#' {
				return false
			}
			i++
		}
		if i == 0 || i >= len(rest)-1 {
			return false
		}
		f = rest[i+1:]
	}
	levelStart := 0
	for i, c := range f {
		switch c {
		case '/':
			levelStart = i + 1
		case '+':
			if i != levelStart || (i+1 < len(f) && f[i+1] != '/') {
				return false
			}
		case '#':
			if i != levelStart || i != len(f)-1 {
				return false
			}
		}
	}
	return true
}
