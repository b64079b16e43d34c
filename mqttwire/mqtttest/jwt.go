package mqtttest

import (
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// JWTSigner makes JSON Web Tokens with the openssl CLI: an implementation independent
// of the one that verifies them.
type JWTSigner struct {
	t        testing.TB
	alg      string
	Key, Pub string // PEM files
}

// NewJWTSigner makes a key pair for alg (RS256, ES256 or EdDSA) with openssl.
func NewJWTSigner(t testing.TB, alg string) *JWTSigner {
	t.Helper()
	bin := Need(t, "openssl")
	dir := t.TempDir()
	s := &JWTSigner{t: t, alg: alg, Key: filepath.Join(dir, "key.pem"), Pub: filepath.Join(dir, "pub.pem")}
	var gen []string
	switch alg {
	case "RS256":
		gen = []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}
	case "ES256":
		gen = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}
	case "EdDSA":
		gen = []string{"genpkey", "-algorithm", "ed25519"}
	}
	if out, err := exec.Command(bin, append(gen, "-out", s.Key)...).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "pkey", "-in", s.Key, "-pubout", "-out", s.Pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v %s", err, out)
	}
	return s
}

// Token signs claims; header fields beyond alg and typ come from extra.
func (s *JWTSigner) Token(claims map[string]any, extra map[string]any) string {
	s.t.Helper()
	h := map[string]any{"alg": s.alg, "typ": "JWT"}
	for k, v := range extra {
		h[k] = v
	}
	input := JSONPart(s.t, h) + "." + JSONPart(s.t, claims)
	in := filepath.Join(s.t.TempDir(), "input")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		s.t.Fatal(err)
	}
	var cmd *exec.Cmd
	if s.alg == "EdDSA" {
		cmd = exec.Command("openssl", "pkeyutl", "-sign", "-rawin", "-inkey", s.Key, "-in", in)
	} else {
		cmd = exec.Command("openssl", "dgst", "-sha256", "-sign", s.Key, in)
	}
	sig, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("openssl sign: %v", err)
	}
	if s.alg == "ES256" { // openssl writes DER; JWS wants r||s, 32 bytes each
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			s.t.Fatal(err)
		}
		sig = append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
	}
	return input + "." + b64url(sig)
}

// JSONPart is v as a base64url JWT part.
func JSONPart(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64url(b)
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
