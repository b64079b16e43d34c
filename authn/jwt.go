package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/limits/sharedfile"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// DefaultJWTAlgorithms are accepted unless configured otherwise; HMAC
// algorithms only ever with an explicitly configured secret.
var DefaultJWTAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// JWTOptions configure the JWT authenticator.
type JWTOptions struct {
	// KeyFiles hold PEM public keys or certificates, or a JWKS document.
	KeyFiles []string
	// JWKSURL is fetched in the background at start and every JWKSRefresh (and early, at
	// most every 10 seconds, when a token names an unknown key id).
	JWKSURL     string
	JWKSRefresh time.Duration
	// JWKSMinInterval spaces fetches caused by unknown key ids (default 10s).
	JWKSMinInterval time.Duration
	HTTPClient      *http.Client
	// Secret enables HS256/HS384/HS512 when they are listed in Algorithms.
	Secret     []byte
	Algorithms []string
	// FromUsername takes the token from the user name field instead of
	// the password field; the identity's user name is then the token's
	// sub claim, which is required.
	FromUsername bool
	Issuer       string
	Audience     string
	// RequireExp refuses tokens without an expiry.
	RequireExp bool
	// Leeway is the allowed clock skew for exp and nbf.
	Leeway time.Duration
	// Claims must match the connection: claim name to a template such as
	// ${username}, ${clientid} or ${cert_cn} (see Rules for placeholders).
	// A template that uses ${username} ties the CONNECT's user name to the
	// token, and it becomes the identity's; otherwise the identity's user
	// name is the token's sub, and a CONNECT naming another is refused. A
	// template that uses ${clientid}, or a clientid claim in the token,
	// ties the client id (see bindIdentity).
	Claims map[string]string
	// SuperuserClaim, when set, names a boolean claim that makes the
	// client a superuser.
	SuperuserClaim string
	Logger         zerolog.Logger
}

// JWT authenticates clients that present a signed JSON Web Token.
type JWT struct {
	o      JWTOptions
	parser *jwt.Parser
	files  []*sharedfile.File[[]jwtKey]
	remote atomic.Pointer[[]jwtKey]

	refresh chan struct{}
	stop    chan struct{}
	done    sync.WaitGroup
	close   sync.Once
}

var _ Authenticator = (*JWT)(nil)

// jwtKey is one verification key; kid may be empty.
type jwtKey struct {
	kid string
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// NewJWT loads the key files and, with a JWKS URL, starts fetching it in
// the background until Close.
func NewJWT(o JWTOptions) (*JWT, error) {
	if len(o.Algorithms) == 0 {
		o.Algorithms = DefaultJWTAlgorithms
	}
	for _, a := range o.Algorithms {
		m := jwt.GetSigningMethod(a)
		if m == nil || a == "none" {
			return nil, fmt.Errorf("algorithm %q: not supported", a)
		}
		if strings.HasPrefix(a, "HS") && len(o.Secret) == 0 {
			return nil, fmt.Errorf("algorithm %s needs a configured secret", a)
		}
	}
	if len(o.KeyFiles) == 0 && o.JWKSURL == "" && len(o.Secret) == 0 {
		return nil, errors.New("no keys: configure key files, a JWKS URL or a secret")
	}
	for name, t := range o.Claims {
		if err := checkTemplate(t); err != nil {
			return nil, fmt.Errorf("claim %q: %w", name, err)
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(o.Algorithms), jwt.WithLeeway(o.Leeway)}
	if o.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	j := &JWT{o: o, parser: jwt.NewParser(opts...), refresh: make(chan struct{}, 1), stop: make(chan struct{})}
	for _, f := range o.KeyFiles {
		w, err := sharedfile.OpenExisting(f, parseKeyFile)
		if err != nil {
			return nil, err
		}
		j.files = append(j.files, w)
	}
	if o.JWKSURL != "" {
		if o.HTTPClient == nil {
			o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
			j.o.HTTPClient = o.HTTPClient
		}
		if o.JWKSRefresh <= 0 {
			j.o.JWKSRefresh = 5 * time.Minute
		}
		if o.JWKSMinInterval <= 0 {
			j.o.JWKSMinInterval = 10 * time.Second
		}
		j.done.Add(1)
		go j.fetchLoop()
	}
	return j, nil
}

// Close stops the JWKS refresher.
func (j *JWT) Close() {
	j.close.Do(func() { close(j.stop) })
	j.done.Wait()
	if j.o.HTTPClient != nil {
		j.o.HTTPClient.CloseIdleConnections()
	}
}

// Name implements Authenticator.
func (*JWT) Name() string { return "jwt" }

// Reload rereads changed key files; a broken file keeps its old keys.
func (j *JWT) Reload(force bool) (bool, error) {
	var changed bool
	var errs []error
	for _, w := range j.files {
		c, err := w.Reload(force)
		changed = changed || c
		errs = append(errs, err)
	}
	return changed, errors.Join(errs...)
}

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(_ context.Context, r *Request) Result {
	token := r.Password
	if j.o.FromUsername {
		token = []byte(r.Username)
	}
	if len(token) == 0 && r.Token != "" { // the CONNECT's field first, then the WebSocket upgrade's
		token = []byte(r.Token)
	}
	if len(token) == 0 {
		return ignore("no_token")
	}
	if !looksLikeJWT(token) {
		return ignore("not_a_token")
	}
	claims := jwt.MapClaims{}
	_, err := j.parser.ParseWithClaims(string(token), claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return j.keyFor(t.Method.Alg(), kid)
	})
	if err != nil {
		res := deny(mqttwire.BadUserNameOrPassword, jwtCause(err))
		res.Detail = err.Error()
		return res
	}
	res := j.checkClaims(claims, r)
	if res.Verdict != Allow {
		return res
	}
	if res = j.bindIdentity(claims, r, res); res.Verdict != Allow {
		return res
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		res.Expires = exp.Time.Add(j.o.Leeway)
	}
	return res
}

// ClientIDClaim names the claim that binds a token to one client id.
const ClientIDClaim = "clientid"

// bindIdentity makes the identity the token's, not the CONNECT's. The user
// name is the token's sub: a CONNECT without a user name takes it, one
// with another name is refused, unless a claim template (JWTOptions.Claims)
// already tied the CONNECT's user name to the token. The client id is only
// the token's when a template uses ${clientid} or the token has a clientid
// claim, which must then equal the CONNECT's; otherwise the token's own
// rules that name ${clientid} are dropped, so they match nothing.
func (j *JWT) bindIdentity(claims jwt.MapClaims, r *Request, res Result) Result {
	sub, _ := claims["sub"].(string)
	switch {
	case j.o.FromUsername:
		// The user name field was the token: the identity is its subject.
		if sub == "" {
			return deny(mqttwire.NotAuthorized, "no_subject")
		}
		res.Username = sub
	case j.templated("${username}"):
	case r.Username != "" && r.Username != sub:
		return deny(mqttwire.BadUserNameOrPassword, "username_not_subject")
	default:
		res.Username = sub
	}
	bound := j.templated("${clientid}")
	if v, ok := claims[ClientIDClaim]; ok {
		if id, _ := v.(string); id == "" || id != r.ClientID {
			return deny(mqttwire.ClientIdentifierNotValid, "clientid_not_token")
		}
		bound = true
	}
	if !bound {
		res.Rules = withoutClientID(res.Rules)
	}
	return res
}

// templated reports whether a claim template uses the placeholder.
func (j *JWT) templated(placeholder string) bool {
	for _, t := range j.o.Claims {
		if strings.Contains(t, placeholder) {
			return true
		}
	}
	return false
}

// looksLikeJWT: three base64url parts; anything else is somebody else's
// password, for the next authenticator.
func looksLikeJWT(b []byte) bool {
	if len(b) < 5 || strings.Count(string(b), ".") != 2 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '=':
		default:
			return false
		}
	}
	return true
}

func jwtCause(err error) string {
	for _, c := range []struct {
		err   error
		cause string
	}{
		{jwt.ErrTokenExpired, "expired"},
		{jwt.ErrTokenNotValidYet, "not_yet_valid"},
		{jwt.ErrTokenInvalidAudience, "wrong_audience"},
		{jwt.ErrTokenInvalidIssuer, "wrong_issuer"},
		{jwt.ErrTokenRequiredClaimMissing, "missing_claim"},
		{jwt.ErrTokenUnverifiable, "unverifiable"},
		{jwt.ErrTokenSignatureInvalid, "bad_signature"},
		{jwt.ErrTokenMalformed, "malformed"},
	} {
		if errors.Is(err, c.err) {
			return c.cause
		}
	}
	return "invalid_token"
}

// keyFor returns the keys that may verify a token signed with alg: only
// keys of alg's type, so an RSA public key is never used as an HMAC
// secret, and only those with the token's key id when it names one.
func (j *JWT) keyFor(alg, kid string) (any, error) {
	if strings.HasPrefix(alg, "HS") {
		if len(j.o.Secret) == 0 {
			return nil, errors.New("no secret configured")
		}
		return j.o.Secret, nil
	}
	var set jwt.VerificationKeySet
	consider := func(keys []jwtKey) {
		for _, k := range keys {
			if (kid == "" || k.kid == "" || k.kid == kid) && keyFits(alg, k.key) {
				set.Keys = append(set.Keys, k.key)
			}
		}
	}
	for _, w := range j.files {
		consider(w.Load())
	}
	if r := j.remote.Load(); r != nil {
		consider(*r)
	}
	if len(set.Keys) == 0 {
		if j.o.JWKSURL != "" && kid != "" {
			select {
			case j.refresh <- struct{}{}:
			default:
			}
		}
		return nil, fmt.Errorf("no %s key with id %q", alg, kid)
	}
	return set, nil
}

func keyFits(alg string, key any) bool {
	switch alg[:2] {
	case "RS", "PS":
		_, ok := key.(*rsa.PublicKey)
		return ok
	case "ES":
		_, ok := key.(*ecdsa.PublicKey)
		return ok
	case "Ed":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// checkClaims applies the claim templates and reads the acl and superuser
// claims of a verified token.
func (j *JWT) checkClaims(claims map[string]any, r *Request) Result {
	for name, tmpl := range j.o.Claims {
		want, ok := expand(tmpl, r)
		got, isString := claims[name].(string)
		if !ok || !isString || got != want {
			res := deny(mqttwire.NotAuthorized, "claim_mismatch")
			res.Detail = "claim " + name
			return res
		}
	}
	res := allow("token")
	if raw, ok := claims["acl"]; ok {
		rules, err := ParseClientRules(raw)
		if err != nil {
			res := deny(mqttwire.NotAuthorized, "bad_acl_claim")
			res.Detail = err.Error()
			return res
		}
		res.Rules = rules
	}
	if j.o.SuperuserClaim != "" {
		res.Superuser, _ = claims[j.o.SuperuserClaim].(bool)
	}
	return res
}

// parseKeyFile reads PEM public keys and certificates, or a JWKS.
func parseKeyFile(b []byte) ([]jwtKey, error) {
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "{") {
		return parseJWKS(b)
	}
	var keys []jwtKey
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var key any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				key = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d: %s, want PUBLIC KEY or CERTIFICATE (never a private key)", n, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if !keyFits("RS", key) && !keyFits("ES", key) && !keyFits("Ed", key) {
			return nil, fmt.Errorf("PEM block %d: unsupported key type %T", n, key)
		}
		keys = append(keys, jwtKey{key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or JWKS found")
	}
	return keys, nil
}

// parseJWKS reads the public keys of a JWK set; symmetric keys are
// refused (an HMAC secret is configured on its own).
func parseJWKS(b []byte) ([]jwtKey, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []jwtKey
	for i, m := range set.Keys {
		if m.KTY == jwkset.KtyOct {
			return nil, fmt.Errorf("JWKS key %d: symmetric keys are not accepted here", i+1)
		}
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (%s): %w", i+1, m.KID, err)
		}
		key := k.Key()
		if !keyFits("RS", key) && !keyFits("ES", key) && !keyFits("Ed", key) {
			return nil, fmt.Errorf("JWKS key %d (%s): %T is not a public key", i+1, m.KID, key)
		}
		keys = append(keys, jwtKey{kid: m.KID, key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS without keys")
	}
	return keys, nil
}

// fetchLoop fetches the JWKS at once, then on its interval and, at most
// every JWKSMinInterval, when a token names an unknown key.
func (j *JWT) fetchLoop() {
	defer j.done.Done()
	t := time.NewTicker(j.o.JWKSRefresh)
	defer t.Stop()
	for {
		last := time.Now()
		if err := j.fetch(); err != nil {
			j.o.Logger.Warn().Str("event", "jwks_fetch_failed").Str("url", RedactURL(j.o.JWKSURL)).Err(err).Msg("JWKS fetch failed; keeping the keys in service")
		}
		for wait := true; wait; {
			select {
			case <-j.stop:
				return
			case <-t.C:
				wait = false
			case <-j.refresh:
				wait = time.Since(last) < j.o.JWKSMinInterval
			}
		}
	}
}

func (j *JWT) fetch() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-j.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.o.JWKSURL, nil)
	if err != nil {
		return err
	}
	resp, err := j.o.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return err
	}
	j.remote.Store(&keys)
	return nil
}
