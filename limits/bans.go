package limits

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mqttgate/mqttgate/limits/cidr"
	"github.com/mqttgate/mqttgate/limits/sharedfile"
)

// Ban kinds.
const (
	BanClientID = "clientid"
	BanUsername = "username"
	BanIP       = "ip"
	// BanIdentity bans one client id for one authenticated identity
	// (User): what flapping bans, so that nobody can get another user's
	// client id banned by flapping with it.
	BanIdentity = "identity"
)

// Ban is one entry of the bans file.
type Ban struct {
	Kind  string `json:"kind"`  // clientid, username, ip or identity
	Value string `json:"value"` // an ip may be a CIDR; the client id of an identity ban
	// User is the identity of an identity ban (see IdentityKey).
	User   string    `json:"user,omitempty"`
	Until  time.Time `json:"until"` // RFC 3339
	Reason string    `json:"reason,omitempty"`
}

type bansFile struct {
	Bans []Ban `json:"bans"`
}

// check validates one entry.
func (b Ban) check() error {
	switch b.Kind {
	case BanClientID, BanUsername:
		if b.Value == "" {
			return fmt.Errorf("%s ban without a value", b.Kind)
		}
	case BanIP:
		if _, err := cidr.Parse(b.Value); err != nil {
			return fmt.Errorf("ip ban %q: %w", b.Value, err)
		}
	case BanIdentity:
		if b.Value == "" || b.User == "" {
			return errors.New("identity ban needs a value (client id) and a user")
		}
	default:
		return fmt.Errorf("kind %q: want clientid, username, ip or identity", b.Kind)
	}
	if b.User != "" && b.Kind != BanIdentity {
		return fmt.Errorf("%s ban %q: only identity bans have a user", b.Kind, b.Value)
	}
	if b.Until.IsZero() {
		return fmt.Errorf("%s ban %q without until", b.Kind, b.Value)
	}
	return nil
}

// ParseBans reads a bans file: {"bans": [{"kind": ..., "value": ...,
// "until": ..., "reason": ...}]}. An empty file has no bans.
func ParseBans(b []byte) ([]Ban, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var f bansFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	for i, ban := range f.Bans {
		if err := ban.check(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
	}
	return f.Bans, nil
}

// banSet is the bans in force, indexed.
type banSet struct {
	list     []Ban
	clientID map[string]Ban
	username map[string]Ban
	identity map[string]Ban // user + "\x00" + client id
	ips      []ipBan
}

type ipBan struct {
	net netip.Prefix
	ban Ban
}

func newBanSet(list []Ban) *banSet {
	s := &banSet{list: list, clientID: map[string]Ban{}, username: map[string]Ban{}, identity: map[string]Ban{}}
	for _, b := range list {
		switch b.Kind {
		case BanClientID:
			s.clientID[b.Value] = later(s.clientID[b.Value], b)
		case BanUsername:
			s.username[b.Value] = later(s.username[b.Value], b)
		case BanIdentity:
			k := b.User + "\x00" + b.Value
			s.identity[k] = later(s.identity[k], b)
		case BanIP:
			p, _ := cidr.Parse(b.Value)
			s.ips = append(s.ips, ipBan{p, b})
		}
	}
	return s
}

func later(a, b Ban) Ban {
	if a.Until.After(b.Until) {
		return a
	}
	return b
}

// Bans are the bans in force, kept in a file that survives restarts.
type Bans struct{ f *sharedfile.File[*banSet] }

// OpenBans loads the file; a missing file is no bans (it is created by
// the first Add). With path "" bans live in memory only.
func OpenBans(path string) (*Bans, error) {
	f, err := sharedfile.Open(path, func(raw []byte) (*banSet, error) {
		list, err := ParseBans(raw)
		if err != nil {
			return nil, err
		}
		return newBanSet(list), nil
	})
	if err != nil {
		return nil, err
	}
	return &Bans{f}, nil
}

// Reload reads the file again when it changed; a corrupt file is an
// error and the bans in force stay.
func (b *Bans) Reload(force bool) (bool, error) { return b.f.Reload(force) }

// List returns every entry in force, expired ones included.
func (b *Bans) List() []Ban { return slices.Clone(b.f.Load().list) }

// Client returns the ban in force on a client id or user name.
func (b *Bans) Client(clientID, username string, now time.Time) (Ban, bool) {
	s := b.f.Load()
	if ban, ok := s.clientID[clientID]; ok && clientID != "" && now.Before(ban.Until) {
		return ban, true
	}
	if ban, ok := s.username[username]; ok && username != "" && now.Before(ban.Until) {
		return ban, true
	}
	return Ban{}, false
}

// Identity returns the ban in force on a client id used by one
// identity (IdentityKey).
func (b *Bans) Identity(clientID, user string, now time.Time) (Ban, bool) {
	if clientID == "" || user == "" {
		return Ban{}, false
	}
	if ban, ok := b.f.Load().identity[user+"\x00"+clientID]; ok && now.Before(ban.Until) {
		return ban, true
	}
	return Ban{}, false
}

// Addr returns the ban in force on an address.
func (b *Bans) Addr(a netip.Addr, now time.Time) (Ban, bool) {
	a = a.Unmap()
	for _, ib := range b.f.Load().ips {
		if ib.net.Contains(a) && now.Before(ib.ban.Until) {
			return ib.ban, true
		}
	}
	return Ban{}, false
}

// Add writes a ban (replacing one on the same kind and value) and puts
// it in force; a ban that would already have run out is refused (it would
// lift the one it replaces, recorded as an expiry). Expired entries are dropped from the file on the way.
func (b *Bans) Add(ban Ban) error {
	if err := ban.check(); err != nil {
		return err
	}
	if !time.Now().Before(ban.Until) {
		return fmt.Errorf("%s ban until %s: that is past (remove a ban to lift it)", ban.Kind, ban.Until.Format(time.RFC3339))
	}
	return b.edit(func(list []Ban) []Ban {
		list = slices.DeleteFunc(list, func(x Ban) bool { return x.Kind == ban.Kind && x.Value == ban.Value && x.User == ban.User })
		return append(list, ban)
	})
}

// Remove deletes the bans on kind and value (and user, for an identity
// ban); it reports whether there was one.
func (b *Bans) Remove(kind, value, user string) (bool, error) {
	var found bool
	err := b.edit(func(list []Ban) []Ban {
		return slices.DeleteFunc(list, func(x Ban) bool {
			m := x.Kind == kind && x.Value == value && x.User == user
			found = found || m
			return m
		})
	})
	return found, err
}

// edit changes the file (the proxy and the bans command may both
// write), from its current content; entries that ran out are dropped on
// the way.
func (b *Bans) edit(change func([]Ban) []Ban) error {
	now := time.Now()
	return b.f.Edit(func(cur *banSet) (*banSet, []byte, error) {
		list := slices.DeleteFunc(slices.Clone(cur.list), func(x Ban) bool { return !now.Before(x.Until) })
		list = change(list)
		raw, err := json.MarshalIndent(bansFile{Bans: list}, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		return newBanSet(list), append(raw, '\n'), nil
	})
}

// BanChanges is what changed between two lists of bans at a moment:
// bans added (or changed), bans removed before they ran out, and bans
// that ran out.
type BanChanges struct {
	Added, Removed, Expired []Ban
}

// DiffBans compares the bans in force before (at since) with now's list.
func DiffBans(before, after []Ban, since, now time.Time) BanChanges {
	key := func(b Ban) string { return b.Kind + "\x00" + b.Value + "\x00" + b.User }
	old := map[string]Ban{}
	for _, b := range before {
		if since.Before(b.Until) {
			old[key(b)] = b
		}
	}
	var c BanChanges
	for _, b := range after {
		k := key(b)
		o, was := old[k]
		delete(old, k)
		switch {
		case !now.Before(b.Until):
			if was {
				c.Expired = append(c.Expired, b)
			}
		case !was || !o.Until.Equal(b.Until) || o.Reason != b.Reason:
			c.Added = append(c.Added, b)
		}
	}
	for _, b := range old {
		if now.Before(b.Until) {
			c.Removed = append(c.Removed, b)
		} else {
			c.Expired = append(c.Expired, b) // ran out and dropped from the file meanwhile
		}
	}
	return c
}
