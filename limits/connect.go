package limits

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Connects decides at CONNECT whether a client may go on (bans, the
// client id's length), and turns flapping into bans when admitted
// sessions end. It is safe for concurrent use.
type Connects struct {
	Bans   *Bans
	Limits *PacketLimits
	// Flapping, when not nil, bans a client id that one identity
	// disconnects too often (an identity ban).
	Flapping *Flapping
	Log      zerolog.Logger
	// IdentityIsSecret keeps identities out of the log (user names that
	// are tokens).
	IdentityIsSecret bool
}

// Check decides a CONNECT: before authentication (id nil: a banned
// client costs no hashing) and again after it, with the identity and the
// CONNECT as forwarded. It returns the v5 CONNACK code to refuse with
// (0: go on) and the limit's name for logs and counters.
func (c *Connects) Check(id *identity.Identity, addr netip.Addr, cn *mqttwire.Connect) (mqttwire.ReasonCode, string) {
	if c.Bans != nil {
		if _, banned := c.Bans.Matching(string(cn.ClientID), string(cn.Username), id, addr, time.Now()); banned {
			return mqttwire.Banned, "banned"
		}
	}
	if c.Limits != nil {
		if d := c.Limits.ClientID(cn.ClientID); d.Verdict != mqttwire.Forward {
			return d.Code, d.Why
		}
	}
	return 0, ""
}

// Matching returns a ban in force on a client: on its client id or user
// name as sent, on the user name its identity gives (a token's subject,
// even when the token is the CONNECT's user name), on its client id for
// that identity (flapping), or on its address. id may be nil (before
// authentication).
func (b *Bans) Matching(clientID, username string, id *identity.Identity, addr netip.Addr, now time.Time) (Ban, bool) {
	if ban, banned := b.Client(clientID, username, now); banned {
		return ban, true
	}
	if id != nil {
		if ban, banned := b.Client("", id.Username, now); banned {
			return ban, true
		}
		if ban, banned := b.Identity(clientID, IdentityKey(id, addr), now); banned {
			return ban, true
		}
	}
	if addr.IsValid() {
		return b.Addr(addr, now)
	}
	return Ban{}, false
}

// Closed notes the end of an admitted session; past the flapping
// threshold, the client id is banned for that identity, into the bans
// file, and logged.
func (c *Connects) Closed(clientID string, id *identity.Identity, addr netip.Addr) {
	f := c.Flapping
	if f == nil || c.Bans == nil {
		return
	}
	now := time.Now()
	who := IdentityKey(id, addr)
	if !f.Disconnected(clientID, who, now) {
		return
	}
	ban := Ban{Kind: BanIdentity, Value: clientID, User: who, Until: now.Add(f.Ban).UTC(),
		Reason: fmt.Sprintf("flapping: more than %d disconnects within %v", f.Max, f.Window)}
	err := c.Bans.Add(ban)
	ev := c.Log.Warn().Str("event", "flapping").Str("client_id", clientID)
	if !c.IdentityIsSecret {
		ev = ev.Str("identity", who)
	}
	ev.Time("until", ban.Until).AnErr("ban_error", err).Msg("flapping client banned")
}
