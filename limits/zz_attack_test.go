package limits

import (
	"testing"
	"time"
)

func atkSend(t *testing.T, s *Session, qos byte, ids ...uint16) {
	t.Helper()
	for _, id := range ids {
		if v := s.Publish([]byte("q"), qos, id); v.Why != "" {
			t.Fatalf("id %d: %+v", id, v)
		}
		s.Sent(qos, id)
	}
	s.Commit()
}

func refused(s *Session, id uint16) bool { return s.Publish([]byte("q"), 2, id).Why == "max_inflight" }

// A1: takeover window: B resumes (Session Present) while A, holding N
// unreleased flows, is still open: B gets room for N more; then A closes
// and B holds 2N.
func TestAtkTakeoverWindow(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxInflight: 3})
	now := time.Now()
	a := ss.Open(Start{ClientID: "x", Persists: true}, now)
	a.Started(false)
	atkSend(t, a, 2, 1, 2, 3)
	b := ss.Open(Start{ClientID: "x", Persists: true}, now)
	b.Started(true) // broker resumed the session, holding 1..3
	atkSend(t, b, 2, 4, 5, 6) // accepted: the broker now holds 6 unreleased
	a.Close(now)
	t.Logf("B in flight after A closed: %d (limit 3)", b.inflightN.Load())
	c := ss.Open(Start{ClientID: "x", Persists: true}, now)
	c.Started(true)
	atkSend(t, c, 2, 7, 8, 9) // A never closes before C? (B still open)
	t.Logf("C in flight: %d while broker holds 9", c.inflightN.Load())
}

// A2: present=0 after a takeover: the broker discarded A's session
// (A's session did not persist), but A's flows still pass to B.
func TestAtkForgottenTakeoverCharged(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxInflight: 3})
	now := time.Now()
	a := ss.Open(Start{ClientID: "x", CleanStart: true}, now) // 3.1.1 clean session 1
	a.Started(false)
	atkSend(t, a, 2, 1, 2, 3)
	b := ss.Open(Start{ClientID: "x", Persists: true}, now) // clean session 0
	b.Started(false)                                         // Mosquitto: A's clean session is not resumed
	a.Close(now)                                             // A kicked, after B's CONNACK
	if refused(b, 10) {
		t.Errorf("B refused a first QoS 2 flow in a brand-new broker session (in flight %d)", b.inflightN.Load())
	}
}

// A3: server-assigned client id: the first connection's flows are not
// remembered under the assigned id.
func TestAtkAssignedID(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxInflight: 3})
	now := time.Now()
	a := ss.Open(Start{ClientID: "", Persists: true, Expiry: time.Hour}, now)
	a.Started(false)
	atkSend(t, a, 2, 1, 2, 3)
	a.Close(now)
	b := ss.Open(Start{ClientID: "auto-123", Persists: true, Expiry: time.Hour}, now)
	b.Started(true)
	if !refused(b, 4) {
		t.Errorf("resumed the assigned-id session holding 3 unreleased: a 4th accepted")
	}
}

// A4: pruning forgets a session that still has carried flows.
func TestAtkPrune(t *testing.T) {
	ss := NewSessions(PacketLimits{MaxInflight: 3})
	now := time.Now()
	a := ss.Open(Start{ClientID: "victim", Persists: true}, now)
	a.Started(false)
	atkSend(t, a, 2, 1, 2, 3)
	a.Close(now)
	for i := 0; i <= maxOfflineSessions; i++ {
		s := ss.Open(Start{ClientID: "filler" + string(rune(i)) + itoa(i), Persists: true}, now)
		s.Started(false)
		s.Close(now)
	}
	b := ss.Open(Start{ClientID: "victim", Persists: true}, now)
	b.Started(true)
	t.Logf("victim forgotten: refused=%v, subs=%d", refused(b, 4), len(ss.subs))
}

func itoa(i int) string {
	b := []byte{}
	for i > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}
