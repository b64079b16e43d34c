package mqttwire

// seeds are the golden packets of the table tests, grouped by fuzz target.
func seeds() map[string][][]byte {
	connect311 := pkt(0x10, cat(str("MQTT"), []byte{4, 0xee, 0, 60}, str("dev-1"), str("will/t"), str("bye"), str("alice"), str("s3cret"))...)
	connect31 := pkt(0x10, cat(str("MQIsdp"), []byte{3, 0x02, 0, 10}, str("old"))...)
	props := []byte{0x11, 0, 0, 0, 30, 0x21, 0, 10, 0x27, 0, 0, 0x10, 0}
	connect5 := pkt(0x10, cat(str("MQTT"), []byte{5, 0xc6, 0, 30, byte(len(props))}, props, str("c5"), []byte{5, 0x18, 0, 0, 0, 5}, str("w"), str("x"), str("u"), str("p"))...)
	pub := [][]byte{benchPublish, benchPublishV5, pkt(0x30, cat(str(""), []byte{3, 0x23, 0, 7}, []byte("x"))...),
		pkt(0x3d, cat(str("a/b"), []byte{0, 1, 0}, []byte("dup qos2 retain"))...)}
	sub := [][]byte{benchSubscribe, pkt(0x82, cat([]byte{0, 1, 3, 0x0b, 0xac, 0x02}, str("$share/g/a/+"), []byte{0x2a})...),
		pkt(0xa2, cat([]byte{0, 9}, str("a/#"), str("b"))...)}
	acks := [][]byte{pkt(0x40, 0, 7), pkt(0x40, 0, 7, 0x10), pkt(0x62, 0, 7, 0x92, 4, 0x1f, 0, 1, 'x'), pkt(0xe0, 0x04),
		pkt(0x90, 0, 3, 0, 0x80), pkt(0xb0, 0, 3), pkt(0x20, 0, 0, 5, 0x27, 0, 0, 1, 0), pkt(0xc0), pkt(0xf0, 0x18, 0)}
	all := append(append(append([][]byte{connect311, connect31, connect5}, pub...), sub...), acks...)
	return map[string][][]byte{
		"FuzzReader":    append(all, cat(connect311, benchPublish, benchSubscribe, pkt(0xe0)), []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}),
		"FuzzConnect":   {connect311, connect31, connect5},
		"FuzzPublish":   pub,
		"FuzzSubscribe": sub,
		"FuzzAck":       acks,
		"FuzzValidUTF8": bytesOf("", "factory/line-3/press-12/temperature", "a/b\x00c/d/e/f/g", "caf\u00e9/\u00e9\u00e9\u00e9\u00e9\u00e9",
			"abcdefg\x80", "abcdefgh\xed\xa0\x80", "\xf4\x90\x80\x80abcdefgh", "abcdefghijklmno\x00", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x01"),
	}
}

func bytesOf(ss ...string) [][]byte {
	b := make([][]byte, len(ss))
	for i, s := range ss {
		b[i] = []byte(s)
	}
	return b
}

// Seeds is seeds, for the external test that writes them with
// mqtttest.SeedCorpus (which imports this package).
var Seeds = seeds
