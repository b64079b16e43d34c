package mqttwire

// Subscribe is a decoded SUBSCRIBE or UNSUBSCRIBE packet. Iterate its
// filters with Filters().
type Subscribe struct {
	Unsubscribe bool
	PacketID    uint16
	Properties  Properties // v5 only
	Count       int        // number of filters
	payload     []byte
}

// Filter is one topic filter of a SUBSCRIBE (with its options byte) or of
// an UNSUBSCRIBE (Options is 0).
type Filter struct {
	Topic   []byte
	Options byte
}

// QoS returns the maximum QoS requested for the filter.
func (f Filter) QoS() byte { return f.Options & 3 }

// FilterIter walks the filters of a parsed SUBSCRIBE or UNSUBSCRIBE without
// allocating.
type FilterIter struct {
	b     []byte
	unsub bool
}

// Filters returns an iterator over s's filters.
func (s *Subscribe) Filters() FilterIter { return FilterIter{b: s.payload, unsub: s.Unsubscribe} }

// Next returns the next filter; ok is false at the end.
func (it *FilterIter) Next() (f Filter, ok bool) {
	if len(it.b) == 0 {
		return f, false
	}
	f.Topic, it.b, _ = readBinary(it.b)
	if !it.unsub && len(it.b) > 0 {
		f.Options, it.b = it.b[0], it.b[1:]
	}
	return f, true
}

// ParseSubscribe decodes and validates a SUBSCRIBE or UNSUBSCRIBE packet.
func ParseSubscribe(p Packet, v Version) (Subscribe, error) {
	var s Subscribe
	if p.Type != SUBSCRIBE && p.Type != UNSUBSCRIBE {
		return s, wrap(ErrUnexpectedPacket, "%s, want SUBSCRIBE or UNSUBSCRIBE", p.Type)
	}
	s.Unsubscribe = p.Type == UNSUBSCRIBE
	b := p.Body
	var err error
	if s.PacketID, b, err = readUint16(b); err != nil {
		return s, err
	}
	if s.PacketID == 0 {
		return s, wrap(ErrProtocol, "packet identifier 0 [MQTT-2.2.1-3]")
	}
	if v == V5 {
		if s.Properties, b, _, err = readProps(b, kindOf(p.Type)); err != nil {
			return s, err
		}
	}
	s.payload = b
	for len(b) > 0 {
		var topic []byte
		if topic, b, err = readBinary(b); err != nil {
			return s, err
		}
		if !ValidTopicFilter(topic) {
			return s, wrap(ErrBadFilter, "filter %d [MQTT-4.7.1-2]", s.Count)
		}
		if !s.Unsubscribe {
			if len(b) == 0 {
				return s, wrap(ErrMalformed, "missing subscription options")
			}
			o := b[0]
			b = b[1:]
			if o&3 == 3 {
				return s, wrap(ErrBadQoS, "subscription QoS 3 [MQTT-3.8.3-4]")
			}
			if v == V5 {
				if o&0xc0 != 0 || (o>>4)&3 == 3 {
					return s, wrap(ErrMalformed, "reserved subscription options [MQTT-3.8.3-5]")
				}
				if o&0x04 != 0 && len(topic) > 7 && string(topic[:7]) == "$share/" {
					return s, wrap(ErrProtocol, "No Local on a shared subscription [MQTT-3.8.3-4]")
				}
			} else if o&0xfc != 0 {
				return s, wrap(ErrMalformed, "reserved subscription options [MQTT-3-8.3-4]")
			}
		}
		s.Count++
	}
	if s.Count == 0 {
		return s, wrap(ErrProtocol, "no topic filter [MQTT-3.8.3-3]")
	}
	return s, nil
}
