package authn

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password hash formats, as in Mosquitto's password files plus bcrypt.
const (
	// HashPBKDF2 is Mosquitto's $7$: PBKDF2-HMAC-SHA512.
	HashPBKDF2 = "sha512-pbkdf2"
	// HashSHA512 is Mosquitto's older $6$: SHA-512 of password and salt.
	HashSHA512 = "sha512"
	// HashBcrypt is $2a$/$2b$/$2y$.
	HashBcrypt = "bcrypt"
)

// Defaults for new hashes. Mosquitto reads the iteration count from the
// file, so a count above its own 101 stays compatible.
const (
	DefaultPBKDF2Iterations = 20_000
	DefaultBcryptCost       = 10
	maxPBKDF2Iterations     = 10_000_000
)

const (
	saltLen    = 12 // as mosquitto_passwd
	sha512Len  = 64
	bcryptLen  = 60
	hashPrefix = "$"
)

var b64 = base64.StdEncoding

// passwordHash is one parsed hash.
type passwordHash struct {
	kind string
	iter int
	salt []byte
	sum  []byte // SHA-512 or PBKDF2 output; the whole hash for bcrypt
}

var errPlaintext = errors.New("plaintext password refused: hash it with 'mqttgate passwd' or 'mosquitto_passwd -U'")

// parseHash reads one hash as it appears after "user:".
func parseHash(s string) (passwordHash, error) {
	if !strings.HasPrefix(s, hashPrefix) {
		return passwordHash{}, errPlaintext
	}
	parts := strings.Split(s, "$")
	switch parts[1] {
	case "6":
		if len(parts) != 4 {
			return passwordHash{}, errors.New("malformed $6$ hash: want $6$salt$hash")
		}
		return decodeSalted(HashSHA512, 0, parts[2], parts[3])
	case "7":
		if len(parts) != 5 {
			return passwordHash{}, errors.New("malformed $7$ hash: want $7$iterations$salt$hash")
		}
		iter, err := strconv.Atoi(parts[2])
		if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
			return passwordHash{}, fmt.Errorf("malformed $7$ hash: iterations %q", parts[2])
		}
		return decodeSalted(HashPBKDF2, iter, parts[3], parts[4])
	case "2a", "2b", "2y":
		if len(s) != bcryptLen {
			return passwordHash{}, fmt.Errorf("malformed bcrypt hash: %d characters, want %d", len(s), bcryptLen)
		}
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return passwordHash{}, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return passwordHash{kind: HashBcrypt, sum: []byte(s)}, nil
	}
	return passwordHash{}, fmt.Errorf("unknown hash type $%s$: want $7$, $6$ or bcrypt", parts[1])
}

func decodeSalted(kind string, iter int, salt64, sum64 string) (passwordHash, error) {
	salt, err := b64.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return passwordHash{}, fmt.Errorf("malformed %s hash: bad salt", kind)
	}
	sum, err := b64.DecodeString(sum64)
	if err != nil || len(sum) != sha512Len {
		return passwordHash{}, fmt.Errorf("malformed %s hash: bad hash value", kind)
	}
	return passwordHash{kind: kind, iter: iter, salt: salt, sum: sum}, nil
}

// String renders the hash in the file's format.
func (h passwordHash) String() string {
	switch h.kind {
	case HashSHA512:
		return "$6$" + b64.EncodeToString(h.salt) + "$" + b64.EncodeToString(h.sum)
	case HashPBKDF2:
		return "$7$" + strconv.Itoa(h.iter) + "$" + b64.EncodeToString(h.salt) + "$" + b64.EncodeToString(h.sum)
	}
	return string(h.sum)
}

// verify compares in constant time (bcrypt does its own).
func (h passwordHash) verify(password []byte) bool {
	switch h.kind {
	case HashBcrypt:
		return bcrypt.CompareHashAndPassword(h.sum, password) == nil
	case HashSHA512:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return subtle.ConstantTimeCompare(d.Sum(nil), h.sum) == 1
	case HashPBKDF2:
		k, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iter, sha512Len)
		return err == nil && subtle.ConstantTimeCompare(k, h.sum) == 1
	}
	return false
}

// HashPassword makes a new hash of the given kind; cost is the PBKDF2
// iteration count or the bcrypt cost (0: the default).
func HashPassword(kind string, password []byte, cost int) (string, error) {
	switch kind {
	case HashBcrypt:
		if cost == 0 {
			cost = DefaultBcryptCost
		}
		b, err := bcrypt.GenerateFromPassword(password, cost)
		return string(b), err
	case HashSHA512, HashPBKDF2:
		salt := make([]byte, saltLen)
		rand.Read(salt)
		h := passwordHash{kind: kind, salt: salt}
		if kind == HashSHA512 {
			d := sha512.New()
			d.Write(password)
			d.Write(salt)
			h.sum = d.Sum(nil)
			return h.String(), nil
		}
		if cost == 0 {
			cost = DefaultPBKDF2Iterations
		}
		if cost < 1 || cost > maxPBKDF2Iterations {
			return "", fmt.Errorf("iterations %d: between 1 and %d", cost, maxPBKDF2Iterations)
		}
		h.iter = cost
		k, err := pbkdf2.Key(sha512.New, string(password), salt, cost, sha512Len)
		if err != nil {
			return "", err
		}
		h.sum = k
		return h.String(), nil
	}
	return "", fmt.Errorf("hash %q: want %s, %s or %s", kind, HashPBKDF2, HashSHA512, HashBcrypt)
}
