package limits

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"github.com/mqttgate/mqttgate/limits/cidr"
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
type Bans struct {
	path string
	cur  atomic.Pointer[banSet]
	mu   sync.Mutex
	sum  [32]byte
}

// OpenBans loads the file; a missing file is no bans (it is created by
// the first Add). With path "" bans live in memory only.
func OpenBans(path string) (*Bans, error) {
	b := &Bans{path: path}
	b.cur.Store(newBanSet(nil))
	if _, err := b.Reload(true); err != nil {
		return nil, err
	}
	return b, nil
}

// Reload reads the file again when it changed; a corrupt file is an
// error and the bans in force stay.
func (b *Bans) Reload(bool) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reloadLocked()
}

func (b *Bans) reloadLocked() (bool, error) {
	if b.path == "" {
		return false, nil
	}
	raw, err := os.ReadFile(b.path)
	if errors.Is(err, os.ErrNotExist) {
		raw, err = nil, nil
	}
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(raw)
	if sum == b.sum {
		return false, nil
	}
	list, err := ParseBans(raw)
	if err != nil {
		return false, fmt.Errorf("%s: %w", b.path, err)
	}
	b.cur.Store(newBanSet(list))
	b.sum = sum
	return true, nil
}

// List returns every entry in force, expired ones included.
func (b *Bans) List() []Ban { return slices.Clone(b.cur.Load().list) }

// Client returns the ban in force on a client id or user name.
func (b *Bans) Client(clientID, username string, now time.Time) (Ban, bool) {
	s := b.cur.Load()
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
	if ban, ok := b.cur.Load().identity[user+"\x00"+clientID]; ok && now.Before(ban.Until) {
		return ban, true
	}
	return Ban{}, false
}

// Addr returns the ban in force on an address.
func (b *Bans) Addr(a netip.Addr, now time.Time) (Ban, bool) {
	a = a.Unmap()
	for _, ib := range b.cur.Load().ips {
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

// edit changes the file under an advisory lock (the proxy and the bans
// command may both write), from its current content, atomically.
func (b *Bans) edit(change func([]Ban) []Ban) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.path == "" {
		list := slices.DeleteFunc(b.List(), func(x Ban) bool { return !now.Before(x.Until) })
		b.cur.Store(newBanSet(change(list)))
		return nil
	}
	lock, err := os.OpenFile(b.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := b.reloadLocked(); err != nil {
		return err // never overwrite a file we could not read
	}
	list := slices.DeleteFunc(b.List(), func(x Ban) bool { return !now.Before(x.Until) })
	list = change(list)
	raw, err := json.MarshalIndent(bansFile{Bans: list}, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if err := renameio.WriteFile(b.path, raw, 0o600); err != nil {
		return err
	}
	b.cur.Store(newBanSet(list))
	b.sum = sha256.Sum256(raw)
	return nil
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
