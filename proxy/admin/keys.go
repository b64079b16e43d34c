package admin

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqttgate/mqttgate/limits/sharedfile"
)

// Role is what an API key may do; each role may do what the ones below
// it may.
type Role int

// Roles.
const (
	Viewer   Role = iota + 1 // read: status, connections, bans, metrics
	Operator                 // and kick, ban, unban, drain
	Admin                    // and reload
)

var roleNames = map[Role]string{Viewer: "viewer", Operator: "operator", Admin: "admin"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if s == name {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// MarshalText and UnmarshalText keep roles by name in the keys file.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) (err error) {
	*r, err = ParseRole(string(b))
	return err
}

// Key is one API key as the keys file keeps it: the secret's SHA-256,
// never the secret (it holds 256 random bits: a slow hash adds nothing).
type Key struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

type keysFile struct {
	Keys []Key `json:"keys"`
}

// secretPrefix marks mqttgate API keys (so secret scanners find them).
const secretPrefix = "mqttgate_"

// ParseKeys reads a keys file; an empty file has no keys.
func ParseKeys(b []byte) ([]Key, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var f keysFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i, k := range f.Keys {
		sum, err := hex.DecodeString(k.SHA256)
		switch {
		case k.Name == "":
			return nil, fmt.Errorf("key %d: no name", i+1)
		case names[k.Name]:
			return nil, fmt.Errorf("key %d: name %q twice", i+1, k.Name)
		case err != nil || len(sum) != sha256.Size:
			return nil, fmt.Errorf("key %q: sha256 is not 64 hex digits", k.Name)
		case k.Role == 0:
			return nil, fmt.Errorf("key %q: no role", k.Name)
		case k.Expires.IsZero():
			return nil, fmt.Errorf("key %q: no expiry", k.Name)
		}
		names[k.Name] = true
	}
	return f.Keys, nil
}

// Keys are the API keys in force, from a file reread on change.
type Keys struct{ f *sharedfile.File[[]Key] }

// OpenKeys loads the keys file; a missing file has no keys (the first
// Create makes it).
func OpenKeys(path string) (*Keys, error) {
	f, err := sharedfile.Open(path, ParseKeys)
	if err != nil {
		return nil, err
	}
	return &Keys{f}, nil
}

// Reload reads the file again when it changed; a bad file is an error
// and the keys in force stay.
func (k *Keys) Reload(force bool) (bool, error) { return k.f.Reload(force) }

// List returns the keys in force, expired ones included.
func (k *Keys) List() []Key { return slices.Clone(k.f.Load()) }

// Key errors.
var (
	ErrUnknownKey = errors.New("unknown API key")
	ErrExpiredKey = errors.New("expired API key")
)

// Check finds the key whose secret was presented. Every key is compared,
// each in constant time, so the time taken says nothing of which one
// came close.
func (k *Keys) Check(secret string, now time.Time) (Key, error) {
	got := sha256.Sum256([]byte(secret))
	want := make([]byte, sha256.Size)
	found := -1
	list := k.f.Load()
	for i, key := range list {
		if _, err := hex.Decode(want, []byte(key.SHA256)); err != nil {
			continue
		}
		if subtle.ConstantTimeCompare(got[:], want) == 1 {
			found = i
		}
	}
	switch {
	case found < 0 || !strings.HasPrefix(secret, secretPrefix):
		return Key{}, ErrUnknownKey
	case !now.Before(list[found].Expires):
		return list[found], ErrExpiredKey
	}
	return list[found], nil
}

// Create adds a key and returns its secret, which is nowhere else.
func (k *Keys) Create(name string, role Role, ttl time.Duration, now time.Time) (string, error) {
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", fmt.Errorf("key name %q: want a word", name)
	}
	if ttl <= 0 {
		return "", errors.New("the expiry must be positive")
	}
	if _, ok := roleNames[role]; !ok {
		return "", errors.New("no role")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := secretPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	err := k.edit(func(list []Key) ([]Key, error) {
		if slices.ContainsFunc(list, func(x Key) bool { return x.Name == name }) {
			return nil, fmt.Errorf("a key named %q exists: revoke it first", name)
		}
		return append(list, Key{Name: name, Role: role, SHA256: hex.EncodeToString(sum[:]), Created: now.UTC().Truncate(time.Second),
			Expires: now.Add(ttl).UTC()}), nil
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// Revoke removes the key named name; it reports whether there was one.
func (k *Keys) Revoke(name string) (bool, error) {
	found := false
	err := k.edit(func(list []Key) ([]Key, error) {
		return slices.DeleteFunc(list, func(x Key) bool {
			found = found || x.Name == name
			return x.Name == name
		}), nil
	})
	return found, err
}

// edit changes the file (several commands may write at once), from its
// current content.
func (k *Keys) edit(change func([]Key) ([]Key, error)) error {
	return k.f.Edit(func(cur []Key) ([]Key, []byte, error) {
		list, err := change(slices.Clone(cur))
		if err != nil {
			return nil, nil, err
		}
		raw, err := json.MarshalIndent(keysFile{Keys: list}, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		return list, append(raw, '\n'), nil
	})
}
