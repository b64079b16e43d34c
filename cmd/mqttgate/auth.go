package main

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn"
	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

var authnNames = []string{"cert", "rules", "password", "jwt", "http"}

// checkAuthn checks the authentication settings; auth is the checked
// client-certificate mode.
func (c *config) checkAuthn(auth certstore.ClientAuth) error {
	for i, name := range c.Authn {
		if !slices.Contains(authnNames, name) {
			return bad("AUTHN", "%q: want a list of cert, rules, password, jwt, http", name)
		}
		if slices.Index(c.Authn, name) != i {
			return bad("AUTHN", "%q listed twice", name)
		}
	}
	has := func(name string) bool { return slices.Contains(c.Authn, name) }
	if has("cert") && (auth == certstore.ClientAuthNone || c.ListenTLS == "") {
		return bad("AUTHN", "cert needs client certificates: set MQTTGATE_TLS_CLIENT_AUTH=require (or optional) and MQTTGATE_TLS_CLIENT_CA")
	}
	var err error
	for v, f := range map[string]struct {
		s   string
		out *authn.CertField
	}{"CERT_IDENTITY": {c.CertIdentity, &c.parsed.usernameFrom}, "CERT_IDENTITY_CLIENTID": {c.CertIdentityClientID, &c.parsed.clientIDFrom}} {
		s := f.s
		if *f.out, err = authn.ParseCertField(s); err != nil {
			return bad(v, "%v", err)
		}
		// Only a certificate verified against the CA bundle may name a
		// client: with optional or no client auth, anyone could claim any
		// identity with a self-signed one, or none.
		if s != "" && (auth != certstore.ClientAuthRequire || c.ListenTCP != "" || c.ListenWS != "") {
			return bad(v, "identity mapping needs MQTTGATE_TLS_CLIENT_AUTH=require with MQTTGATE_TLS_CLIENT_CA, and no plaintext listener")
		}
	}
	if c.parsed.clientIDPattern, err = authn.ParseClientIDPattern(c.ClientIDPattern); err != nil {
		return bad("CLIENTID_PATTERN", "%v", err)
	}
	if c.parsed.authnRules, err = authn.ParseRules(c.AuthnRules); err != nil {
		return bad("AUTHN_RULES", "%v", err)
	}
	if has("rules") != (c.AuthnRules != "") {
		return bad("AUTHN_RULES", "set MQTTGATE_AUTHN_RULES and list rules in MQTTGATE_AUTHN together")
	}
	if has("password") != (c.PasswordFile != "") {
		return bad("PASSWORD_FILE", "set MQTTGATE_PASSWORD_FILE and list password in MQTTGATE_AUTHN together")
	}
	if c.PasswordCacheTTL < 0 || c.PasswordMaxConcurrent < 0 {
		return bad("PASSWORD_CACHE_TTL", "must not be negative (nor MQTTGATE_PASSWORD_MAX_CONCURRENT)")
	}
	if err := c.checkJWT(has("jwt")); err != nil {
		return err
	}
	if err := c.checkWebhook(has("http")); err != nil {
		return err
	}
	if err := c.checkACL(); err != nil {
		return err
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	if c.FilePollInterval < 100*time.Millisecond {
		return bad("FILE_POLL_INTERVAL", "%v: at least 100ms", c.FilePollInterval)
	}
	return nil
}

// reloadable is a file in service that is read again when it changes.
type reloadable struct {
	name   string // the variable that names it
	reload func(force bool) (changed bool, err error)
	// path, when one file: a change seen by polling is loaded only once
	// the file has been still for fileSettle, so that a file being
	// written in place (truncated, then filled) is never taken half
	// written: an empty password file is a valid one that admits nobody.
	path string
}

// fileSettle is how long a changed file must be left alone before a
// poll loads it; SIGHUP loads at once (the operator says it is done).
const fileSettle = 500 * time.Millisecond

// settling reports whether f changed too recently to be loaded by a poll.
func (f reloadable) settling(now time.Time) bool {
	if f.path == "" {
		return false
	}
	st, err := os.Stat(f.path)
	return err == nil && now.Sub(st.ModTime()) < fileSettle
}

// buildAuthn builds the authentication chain the settings ask for, and
// returns the files it keeps in service and what stops the authenticators
// that run in the background (also when it fails half-way).
func (c *config) buildAuthn(log zerolog.Logger, budget *logbudget.Budget) (_ *authn.Chain, files []reloadable, closers []func(), err error) {
	cfg := authn.Config{AllowAnonymous: c.AllowAnonymous, Logger: log, UsernameIsSecret: c.usernameIsSecret(), LogBudget: budget}
	cfg.UsernameFrom, cfg.ClientIDFrom = c.parsed.usernameFrom, c.parsed.clientIDFrom
	cfg.Rules, cfg.ClientIDPattern = c.parsed.authnRules, c.parsed.clientIDPattern
	for _, name := range c.Authn {
		switch name {
		case "cert":
			if c.CertIdentity == "" {
				log.Warn().Msg("MQTTGATE_AUTHN lists cert without MQTTGATE_CERT_IDENTITY: a certificate admits a client only without a user name or with its common name as the user name; any other user name goes to the next authenticator, and the broker sees the CONNECT as the client sent it")
			}
			cfg.Authenticators = append(cfg.Authenticators, authn.Cert{Field: cfg.UsernameFrom})
		case "password":
			p, err := authn.NewPasswordFile(authn.PasswordOptions{Path: c.PasswordFile, CacheTTL: c.PasswordCacheTTL, MaxConcurrent: c.PasswordMaxConcurrent})
			if err != nil {
				return nil, nil, closers, bad("PASSWORD_FILE", "%v", err)
			}
			log.Info().Str("file", c.PasswordFile).Int("users", p.Users()).Msg("password file loaded")
			cfg.Authenticators = append(cfg.Authenticators, p)
			files = append(files, reloadable{"PASSWORD_FILE", p.Reload, c.PasswordFile})
		case "jwt":
			j, err := authn.NewJWT(c.jwtOptions(log))
			if err != nil {
				return nil, nil, closers, bad("JWT_KEYS", "%v", err)
			}
			closers = append(closers, j.Close)
			cfg.Authenticators = append(cfg.Authenticators, j)
			files = append(files, reloadable{"JWT_KEYS", j.Reload, ""})
		case "http":
			w, err := authn.NewWebhook(c.webhookOptions())
			if err != nil {
				return nil, nil, closers, bad("HTTP_AUTH_CA", "%v", err)
			}
			closers = append(closers, w.Close)
			if u, _ := url.Parse(c.HTTPAuthURL); u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
				log.Warn().Str("url", authn.RedactURL(c.HTTPAuthURL)).Msg("MQTTGATE_HTTP_AUTH_URL is plain http: passwords cross the network unencrypted")
			}
			cfg.Authenticators = append(cfg.Authenticators, w)
		}
	}
	switch {
	case len(cfg.Authenticators) == 0 && !c.AllowAnonymous:
		log.Warn().Msg("no authenticator configured (MQTTGATE_AUTHN): every client is refused")
	case len(cfg.Authenticators) == 0:
		log.Warn().Msg("no authenticator configured (MQTTGATE_AUTHN) and MQTTGATE_ALLOW_ANONYMOUS=true: clients without credentials are admitted, clients with credentials are refused")
	case c.AllowAnonymous:
		log.Warn().Msg("MQTTGATE_ALLOW_ANONYMOUS=true: clients without credentials are admitted")
	}
	return authn.NewChain(cfg), files, closers, nil
}

// usernameIsSecret: with tokens in the user name field, user names are
// kept out of the logs.
func (c *config) usernameIsSecret() bool {
	return slices.Contains(c.Authn, "jwt") && c.JWTFrom == "username"
}

func (c *config) checkJWT(enabled bool) error {
	set := len(c.JWTKeys) > 0 || c.JWTJWKSURL != "" || c.JWTSecret != "" || c.JWTSecretFile != ""
	if enabled != set {
		return bad("JWT_KEYS", "list jwt in MQTTGATE_AUTHN and configure keys (MQTTGATE_JWT_KEYS, _JWKS_URL or _SECRET) together")
	}
	if !enabled {
		return nil
	}
	if c.JWTSecret != "" && c.JWTSecretFile != "" {
		return bad("JWT_SECRET_FILE", "set only one of MQTTGATE_JWT_SECRET and MQTTGATE_JWT_SECRET_FILE")
	}
	if c.JWTSecretFile != "" {
		b, err := os.ReadFile(c.JWTSecretFile)
		if err != nil {
			return bad("JWT_SECRET_FILE", "%v", err)
		}
		c.JWTSecret = strings.TrimRight(string(b), "\r\n")
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		return bad("JWT_SECRET", "%d bytes: an HMAC secret needs at least 32", len(c.JWTSecret))
	}
	if c.JWTFrom != "password" && c.JWTFrom != "username" {
		return bad("JWT_FROM", "%q: want password or username", c.JWTFrom)
	}
	if c.JWTJWKSURL != "" {
		if u, err := url.Parse(c.JWTJWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return bad("JWT_JWKS_URL", "%q: want an http(s) URL", authn.RedactURL(c.JWTJWKSURL))
		}
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > 5*time.Minute {
		return bad("JWT_LEEWAY", "%v: between 0 and 5m", c.JWTLeeway)
	}
	if c.JWTClaims != "" {
		if err := json.Unmarshal([]byte(c.JWTClaims), &c.parsed.jwtClaims); err != nil {
			return bad("JWT_CLAIMS", "want a JSON object of claim names to templates: %v", err)
		}
	}
	return nil // keys, algorithms and templates are checked when the authenticator is built
}

func (c *config) jwtOptions(log zerolog.Logger) authn.JWTOptions {
	o := authn.JWTOptions{
		KeyFiles: c.JWTKeys, JWKSURL: c.JWTJWKSURL, JWKSRefresh: c.JWTJWKSRefresh, Algorithms: c.JWTAlgorithms,
		FromUsername: c.JWTFrom == "username", Issuer: c.JWTIssuer, Audience: c.JWTAudience,
		RequireExp: c.JWTRequireExp, Leeway: c.JWTLeeway, SuperuserClaim: c.JWTSuperuserClaim, Logger: log,
	}
	if c.JWTSecret != "" {
		o.Secret = []byte(c.JWTSecret)
	}
	o.Claims = c.parsed.jwtClaims
	return o
}

func (c *config) checkWebhook(enabled bool) error {
	if enabled != (c.HTTPAuthURL != "") {
		return bad("HTTP_AUTH_URL", "list http in MQTTGATE_AUTHN and set MQTTGATE_HTTP_AUTH_URL together")
	}
	if !enabled {
		return nil
	}
	if u, err := url.Parse(c.HTTPAuthURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return bad("HTTP_AUTH_URL", "%q: want an http(s) URL", authn.RedactURL(c.HTTPAuthURL))
	}
	if c.HTTPAuthOnError != "deny" && c.HTTPAuthOnError != "ignore" {
		return bad("HTTP_AUTH_ON_ERROR", "%q: want deny or ignore", c.HTTPAuthOnError)
	}
	if c.HTTPAuthTimeout <= 0 || c.HTTPAuthTimeout > c.ConnectTimeout {
		return bad("HTTP_AUTH_TIMEOUT", "%v: positive and at most MQTTGATE_CONNECT_TIMEOUT (%v)", c.HTTPAuthTimeout, c.ConnectTimeout)
	}
	if c.HTTPAuthCacheTTL < 0 {
		return bad("HTTP_AUTH_CACHE_TTL", "%v: must not be negative", c.HTTPAuthCacheTTL)
	}
	if c.HTTPAuthMaxInflight < 1 {
		return bad("HTTP_AUTH_MAX_INFLIGHT", "%d: at least 1", c.HTTPAuthMaxInflight)
	}
	return nil // the CA file is read when the authenticator is built
}

func (c *config) webhookOptions() authn.WebhookOptions {
	return authn.WebhookOptions{URL: c.HTTPAuthURL, Timeout: c.HTTPAuthTimeout, CAFile: c.HTTPAuthCA,
		IgnoreErrors: c.HTTPAuthOnError == "ignore", CacheTTL: c.HTTPAuthCacheTTL, MaxInflight: c.HTTPAuthMaxInflight}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
