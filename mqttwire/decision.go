package mqttwire

// Verdict is what a stage decides about one packet.
type Verdict uint8

// Verdicts.
const (
	// Forward sends the packet on.
	Forward Verdict = iota
	// Refuse keeps the packet from the broker and answers the client the
	// way the protocol expects: PUBACK or PUBREC with the code (v5) for a
	// QoS 1 or 2 PUBLISH, nothing for QoS 0, a SUBACK or UNSUBACK failing
	// every filter. A packet that cannot be refused alone ends the
	// session instead.
	Refuse
	// End ends the session, with DISCONNECT and the code for v5.
	End
)

// Decision is a stage's answer about one packet, in the one vocabulary
// the deciders (limits, topic rights, inspectors) speak and the proxy
// enforces. The zero value forwards. It has four fields and must keep
// to four: the compiler keeps a struct of up to four fields in registers
// (SSA); a fifth made every stage's answer go through memory, +50% on
// the PUBLISH path (BenchmarkPublishForward 86 -> 132 ns).
type Decision struct {
	Verdict Verdict
	// Code is the v5 reason code the client is told; the encoders map it
	// to a 3.1.1 return code.
	Code ReasonCode
	// Mark qualifies the verdict (DryRun, Partial).
	Mark Mark
	// Why names the rule or limit that decided, for logs and counters.
	Why string
}

// Mark qualifies a Decision; the marks combine.
type Mark uint8

const (
	// DryRun: the decider would have refused (Why says why) but only
	// reports it: the packet is forwarded, and the refusal logged and
	// counted as one.
	DryRun Mark = 1 << iota
	// Partial, on a Forward of a SUBSCRIBE filter, grants the filter
	// though the client may read only some of its topics (Why names what
	// denies the rest): every message the broker delivers to the session
	// is then judged before it reaches the client.
	Partial
)

// Is reports whether the decision carries mark m.
func (d Decision) Is(m Mark) bool { return d.Mark&m != 0 }
