package authn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mqttgate/mqttgate/limits/sharedfile"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Passwords is a parsed password file: user name to hash.
type Passwords struct {
	users map[string]passwordHash
	order []string // as in the file, for rewriting it
}

// Len is the number of users.
func (p *Passwords) Len() int { return len(p.users) }

// ParsePasswords reads the format mosquitto_passwd writes: one user:hash
// per line, $7$ (PBKDF2-SHA512), $6$ (salted SHA-512) or bcrypt hashes.
// Empty lines and lines starting with # are skipped. A plaintext password,
// a malformed hash or a user listed twice is an error naming the line.
func ParsePasswords(b []byte) (*Passwords, error) {
	p := &Passwords{users: map[string]passwordHash{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 64<<10)
	first := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if !mqttwire.ValidUTF8([]byte(user)) {
			return nil, fmt.Errorf("line %d: user name is not valid MQTT UTF-8", n)
		}
		if m, dup := first[user]; dup {
			return nil, fmt.Errorf("line %d: user %q already defined on line %d", n, user, m)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("line %d: user %q: %w", n, user, err)
		}
		first[user] = n
		p.users[user] = h
		p.order = append(p.order, user)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", len(first)+1, err)
	}
	return p, nil
}

// Set adds or replaces a user's hash (as HashPassword made it).
func (p *Passwords) Set(user, hash string) error {
	h, err := parseHash(hash)
	if err != nil {
		return err
	}
	if strings.ContainsAny(user, ":\n\r") || user == "" || !mqttwire.ValidUTF8([]byte(user)) {
		return fmt.Errorf("user name %q: must be non-empty UTF-8 without ':' or line breaks", user)
	}
	if _, ok := p.users[user]; !ok {
		p.order = append(p.order, user)
	}
	p.users[user] = h
	return nil
}

// Delete removes a user; it reports whether the user existed.
func (p *Passwords) Delete(user string) bool {
	if _, ok := p.users[user]; !ok {
		return false
	}
	delete(p.users, user)
	for i, u := range p.order {
		if u == user {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	return true
}

// Bytes renders the file.
func (p *Passwords) Bytes() []byte {
	var b bytes.Buffer
	for _, u := range p.order {
		fmt.Fprintf(&b, "%s:%s\n", u, p.users[u])
	}
	return b.Bytes()
}

// PasswordOptions configure a PasswordFile.
type PasswordOptions struct {
	Path string
	// CacheTTL is how long a successful verification is remembered
	// (keyed by a keyed hash of user name, password and stored hash); 0 is
	// no cache.
	CacheTTL time.Duration
	// MaxConcurrent bounds hash verifications in flight, so a connect
	// storm cannot starve the proxy; 0 is GOMAXPROCS-1 (at least 1).
	MaxConcurrent int
}

// PasswordFile authenticates users against a password file. A user not
// in the file passes to the next authenticator; a wrong password is denied.
type PasswordFile struct {
	file   *sharedfile.File[*Passwords]
	ttl    time.Duration
	sem    chan struct{}
	flight singleflight.Group
	key    [32]byte // keys the cache, so its keys are worthless outside the process
	cache  ttlCache[struct{}]
	// onVerify, when set (by tests), is told of every hash computed.
	onVerify func(passwordHash)
}

var _ Authenticator = (*PasswordFile)(nil)

// NewPasswordFile loads the file.
func NewPasswordFile(o PasswordOptions) (*PasswordFile, error) {
	w, err := sharedfile.OpenExisting(o.Path, ParsePasswords)
	if err != nil {
		return nil, err
	}
	n := o.MaxConcurrent
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0)-1)
	}
	p := &PasswordFile{file: w, ttl: o.CacheTTL, sem: make(chan struct{}, n)}
	rand.Read(p.key[:])
	return p, nil
}

// Name implements Authenticator.
func (*PasswordFile) Name() string { return "password" }

// Reload reads the file again if it changed (force: whatever its time
// stamp says). A broken file keeps the users in service.
func (p *PasswordFile) Reload(force bool) (bool, error) { return p.file.Reload(force) }

// Users is the number of users in service.
func (p *PasswordFile) Users() int { return p.file.Load().Len() }

// Authenticate implements Authenticator.
//
// An unknown user costs what a known user with a wrong password costs:
// the password is verified against the hash of a user of the file (the
// same for every attempt on that name), under the same bound and sharing,
// and the answer is thrown away. So the time to answer does not tell an
// unknown user name from a known one.
func (p *PasswordFile) Authenticate(ctx context.Context, r *Request) Result {
	if !r.UsernameSet {
		return ignore("no_username")
	}
	pw := p.file.Load()
	h, ok := pw.users[r.Username]
	if !ok {
		if !r.PasswordSet {
			return ignore("unknown_user") // as fast as a known user's no_password
		}
		if d, ok := p.decoy(pw, r.Username); ok {
			if _, err := p.verify(ctx, r.Username, r.Password, d); err != nil {
				return deny(mqttwire.ServerBusy, "verification_queue_timeout") // as for a known user
			}
		}
		return ignore("unknown_user")
	}
	if !r.PasswordSet {
		return deny(mqttwire.BadUserNameOrPassword, "no_password")
	}
	k := p.cacheKey(r.Username, r.Password, h)
	if p.cached(k) {
		return allow("password_cached")
	}
	good, err := p.verify(ctx, r.Username, r.Password, h)
	switch {
	case err != nil:
		return deny(mqttwire.ServerBusy, "verification_queue_timeout")
	case !good:
		return deny(mqttwire.BadUserNameOrPassword, "bad_password")
	}
	p.remember(k)
	return allow("password")
}

// verify checks password against h within the bound on verifications in
// flight; identical attempts at once share one.
func (p *PasswordFile) verify(ctx context.Context, user string, password []byte, h passwordHash) (bool, error) {
	k := p.cacheKey(user, password, h)
	v, err, _ := p.flight.Do(string(k[:]), func() (any, error) {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		defer func() { <-p.sem }()
		if p.onVerify != nil {
			p.onVerify(h)
		}
		return h.verify(password), nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// decoy is the hash an unknown user's password is verified against: a
// user of the file chosen by a keyed hash of the name, so that the
// algorithms and costs of unknown names are spread as the file's are, and
// one name always costs the same. False for a file without users.
func (p *PasswordFile) decoy(pw *Passwords, user string) (passwordHash, bool) {
	if len(pw.order) == 0 {
		return passwordHash{}, false // nothing to tell apart
	}
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(user))
	n := binary.BigEndian.Uint64(m.Sum(nil))
	return pw.users[pw.order[n%uint64(len(pw.order))]], true
}

func (p *PasswordFile) cacheKey(user string, password []byte, h passwordHash) [32]byte {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(password)
	m.Write([]byte{0})
	m.Write([]byte(h.String())) // a changed password invalidates the entry
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (p *PasswordFile) cached(k [32]byte) bool {
	if p.ttl <= 0 {
		return false
	}
	_, ok := p.cache.get(k)
	return ok
}

func (p *PasswordFile) remember(k [32]byte) {
	if p.ttl > 0 {
		p.cache.put(k, struct{}{}, time.Now().Add(p.ttl))
	}
}
