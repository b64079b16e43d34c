package authn

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// Files written by the real mosquitto_passwd verify, in both its formats.
func TestMosquittoPasswdFiles(t *testing.T) {
	bin := mqtttest.Need(t, "mosquitto_passwd")
	file := filepath.Join(t.TempDir(), "passwd")
	for _, args := range [][]string{
		{"-c", "-b", file, "alice", "s3cret"},
		{"-H", "sha512", "-b", file, "bob", "b0b:pass word"},
		{"-H", "sha512-pbkdf2", "-b", file, "carol", "ünïcode"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v %s", args, err, out)
		}
	}
	b, _ := os.ReadFile(file)
	pw, err := ParsePasswords(b)
	if err != nil {
		t.Fatal(err)
	}
	for user, pass := range map[string]string{"alice": "s3cret", "bob": "b0b:pass word", "carol": "ünïcode"} {
		h := pw.users[user]
		if !h.verify([]byte(pass)) {
			t.Errorf("%s (%s): right password refused", user, h.kind)
		}
		if h.verify([]byte(pass+"x")) || h.verify(nil) {
			t.Errorf("%s (%s): wrong password accepted", user, h.kind)
		}
	}
	if pw.users["bob"].kind != HashSHA512 || pw.users["alice"].kind != HashPBKDF2 {
		t.Errorf("kinds %v %v", pw.users["bob"].kind, pw.users["alice"].kind)
	}
	// Rendering gives back the same file.
	if got := string(pw.Bytes()); got != string(b) {
		t.Errorf("rendered\n%s\nwant\n%s", got, b)
	}
}

// What HashPassword writes, mosquitto itself accepts: checked by running a
// broker with the file and connecting with mosquitto_pub.
func TestHashesAcceptedByMosquitto(t *testing.T) {
	mqtttest.Need(t, "mosquitto")
	pw := &Passwords{users: map[string]passwordHash{}}
	for user, kind := range map[string]string{"p": HashPBKDF2, "s": HashSHA512} {
		h, err := HashPassword(kind, []byte("pw-"+user), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := pw.Set(user, h); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(file, pw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	broker := mqtttest.Mosquitto(t, "user root\nallow_anonymous false\npassword_file "+file+"\n")
	host, port, _ := strings.Cut(broker, ":")
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{{"p", "pw-p", true}, {"s", "pw-s", true}, {"p", "pw-s", false}} {
		out, err := exec.Command(mqtttest.Need(t, "mosquitto_pub"), "-h", host, "-p", port, "-u", c.user, "-P", c.pass, "-t", "t", "-m", "m").CombinedOutput()
		if (err == nil) != c.ok {
			t.Errorf("%s/%s: err %v %s, want ok=%v", c.user, c.pass, err, out, c.ok)
		}
	}
}

func TestBcryptVariants(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2a", "2b", "2y"} {
		s := "$" + v + string(b[3:])
		h, err := parseHash(s)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if !h.verify([]byte("pw")) || h.verify([]byte("pW")) {
			t.Errorf("%s: verify wrong", v)
		}
	}
}

func TestPasswordFileErrorsNameTheLine(t *testing.T) {
	good, _ := HashPassword(HashSHA512, []byte("x"), 0)
	for _, c := range []struct{ file, want string }{
		{"alice:plain", "line 1: user \"alice\": plaintext password refused"},
		{"# c\n\nalice:" + good + "\nbob\n", "line 4: want user:hash"},
		{"alice:" + good + "\nalice:" + good, "line 2: user \"alice\" already defined on line 1"},
		{"a:$7$0$AAAA$AAAA", "line 1: user \"a\": malformed $7$ hash: iterations"},
		{"a:$7$101$!!$AAAA", "line 1: user \"a\": malformed sha512-pbkdf2 hash: bad salt"},
		{"a:$6$AAAA$AAAA", "bad hash value"},
		{"a:$5$AAAA$AAAA", "unknown hash type $5$"},
		{"a:$2a$10$short", "malformed bcrypt hash"},
		{":" + good, "line 1: want user:hash"},
	} {
		_, err := ParsePasswords([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.file, err, c.want)
		}
	}
}

func writePasswords(t *testing.T, file string, users map[string]string, kind string) {
	t.Helper()
	pw := &Passwords{users: map[string]passwordHash{}}
	for u, p := range users {
		h, err := HashPassword(kind, []byte(p), 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := pw.Set(u, h); err != nil {
			t.Fatal(err)
		}
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, pw.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func req(user, pass string) *Request {
	return &Request{Username: user, UsernameSet: true, Password: []byte(pass), PasswordSet: true, Version: mqttwire.V311}
}

func TestPasswordFileAuthenticator(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	writePasswords(t, file, map[string]string{"alice": "right"}, HashBcrypt)
	p, err := NewPasswordFile(PasswordOptions{Path: file, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		r     *Request
		v     Verdict
		cause string
	}{
		{req("alice", "right"), Allow, "password"},
		{req("alice", "right"), Allow, "password_cached"},
		{req("alice", "wrong"), Deny, "bad_password"},
		{req("mallory", "right"), Ignore, "unknown_user"},
		{&Request{Username: "alice", UsernameSet: true}, Deny, "no_password"},
		{&Request{Password: []byte("right"), PasswordSet: true}, Ignore, "no_username"},
	} {
		res := p.Authenticate(ctx, c.r)
		if res.Verdict != c.v || res.Cause != c.cause {
			t.Errorf("%s/%s: %v %s, want %v %s", c.r.Username, c.r.Password, res.Verdict, res.Cause, c.v, c.cause)
		}
		if res.Verdict == Deny && res.Reason != mqttwire.BadUserNameOrPassword {
			t.Errorf("deny reason %#x", res.Reason)
		}
	}

	// A broken file keeps alice; a good one replaces her with bob; the
	// cached verification does not outlive a password change.
	if err := os.WriteFile(file, []byte("alice:plaintext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reload(true); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("broken reload: %v", err)
	}
	if res := p.Authenticate(ctx, req("alice", "right")); res.Verdict != Allow {
		t.Fatal("broken file took alice out of service")
	}
	writePasswords(t, file, map[string]string{"alice": "new", "bob": "b"}, HashPBKDF2)
	if changed, err := p.Reload(false); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if res := p.Authenticate(ctx, req("alice", "right")); res.Verdict != Deny {
		t.Fatalf("old password after change: %v %s", res.Verdict, res.Cause)
	}
	if res := p.Authenticate(ctx, req("bob", "b")); res.Verdict != Allow {
		t.Fatal("new user refused")
	}
	if changed, err := p.Reload(true); changed || err != nil {
		t.Fatalf("unchanged file reloaded: %v %v", changed, err)
	}
}

// blocking hashes hold the only verification slot until released.
func TestVerificationsAreBoundedAndShared(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	writePasswords(t, file, map[string]string{"alice": "a", "bob": "b"}, HashBcrypt)
	p, err := NewPasswordFile(PasswordOptions{Path: file, MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The slot is taken: a verification waits, and gives up with its context.
	p.sem <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	res := p.Authenticate(ctx, req("alice", "a"))
	cancel()
	if res.Verdict != Deny || res.Reason != mqttwire.ServerBusy {
		t.Fatalf("queued past its deadline: %v %#x", res.Verdict, res.Reason)
	}
	<-p.sem

	// Many identical attempts at once share verifications; all succeed.
	var wg sync.WaitGroup
	var allowed atomic.Int32
	for range 50 {
		wg.Go(func() {
			if p.Authenticate(context.Background(), req("bob", "b")).Verdict == Allow {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 50 {
		t.Fatalf("%d of 50 allowed", allowed.Load())
	}
}

// hashCounter records the hashes a PasswordFile computes.
type hashCounter struct {
	mu   sync.Mutex
	seen []passwordHash
}

func (c *hashCounter) record(h passwordHash) { c.mu.Lock(); c.seen = append(c.seen, h); c.mu.Unlock() }

func (c *hashCounter) take() []passwordHash {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen
	c.seen = nil
	return s
}

// An unknown user costs one hash of an algorithm and cost the file uses,
// as a known user with a wrong password does, and still passes to the next
// authenticator: its time does not reveal that the user is unknown.
func TestUnknownUserCostsAKnownUsersHash(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	writePasswords(t, file, map[string]string{"alice": "a"}, HashBcrypt)
	pw, _ := os.ReadFile(file)
	pb, _ := HashPassword(HashPBKDF2, []byte("b"), 1234)
	if err := os.WriteFile(file, append(pw, "bob:"+pb+"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewPasswordFile(PasswordOptions{Path: file, CacheTTL: time.Minute, MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	var hashes hashCounter
	p.onVerify = hashes.record
	ctx := context.Background()
	fileHashes := map[string]bool{}
	for _, h := range p.file.Load().users {
		fileHashes[h.String()] = true
	}

	if res := p.Authenticate(ctx, req("alice", "wrong")); res.Cause != "bad_password" {
		t.Fatalf("known user, wrong password: %s", res.Cause)
	}
	if n := len(hashes.take()); n != 1 {
		t.Fatalf("known user, wrong password: %d hashes", n)
	}
	used := map[string]bool{}
	for i := range 40 {
		user := "mallory" + strconv.Itoa(i)
		for range 2 { // never cached: every attempt pays
			if res := p.Authenticate(ctx, req(user, "x")); res.Verdict != Ignore || res.Cause != "unknown_user" {
				t.Fatalf("unknown user: %v %s, want ignore (the next authenticator decides)", res.Verdict, res.Cause)
			}
		}
		got := hashes.take()
		if len(got) != 2 || got[0].String() != got[1].String() {
			t.Fatalf("unknown user %s: %d hashes, want 2 of the same", user, len(got))
		}
		if !fileHashes[got[0].String()] { // the same algorithm, cost and salt length as a user's
			t.Fatalf("unknown user verified against %s, which no user of the file has", got[0])
		}
		used[got[0].String()] = true
	}
	if len(used) != len(fileHashes) {
		t.Errorf("40 unknown users used %d of the file's %d hashes", len(used), len(fileHashes))
	}
	// Without a password neither costs a hash.
	p.Authenticate(ctx, &Request{Username: "alice", UsernameSet: true})
	p.Authenticate(ctx, &Request{Username: "mallory", UsernameSet: true})
	if n := len(hashes.take()); n != 0 {
		t.Fatalf("no password: %d hashes", n)
	}
	// The decoy waits for the verification slot like a real one.
	p.sem <- struct{}{}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	res := p.Authenticate(tctx, req("mallory", "x"))
	cancel()
	<-p.sem
	if res.Verdict != Deny || res.Reason != mqttwire.ServerBusy {
		t.Fatalf("unknown user past the queue deadline: %v %#x, want 0x89 as a known user gets", res.Verdict, res.Reason)
	}
}

// BenchmarkPasswordUnknownUser compares, per hash kind at its default
// cost, a known user with a wrong password against an unknown user:
//
//	go test -run '^$' -bench PasswordUnknownUser ./authn/
//
// The two lines of a kind should show the same ns/op.
func BenchmarkPasswordUnknownUser(b *testing.B) {
	for _, kind := range []string{HashPBKDF2, HashBcrypt, HashSHA512} {
		h, err := HashPassword(kind, []byte("right"), 0)
		if err != nil {
			b.Fatal(err)
		}
		file := filepath.Join(b.TempDir(), "passwd")
		if err := os.WriteFile(file, []byte("alice:"+h+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		p, err := NewPasswordFile(PasswordOptions{Path: file, CacheTTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct{ name, user string }{{"known_user_wrong_password", "alice"}, {"unknown_user", "mallory"}} {
			b.Run(kind+"/"+c.name, func(b *testing.B) {
				r := req(c.user, "wrong")
				for b.Loop() {
					p.Authenticate(context.Background(), r)
				}
			})
		}
	}
}
