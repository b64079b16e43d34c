package authn

import (
	"context"
	"crypto/x509"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// Request is what an authenticator sees of a connecting client. Password
// is a secret: it is never logged and never kept after the answer.
type Request struct {
	ClientID string
	Username string
	Password []byte
	// UsernameSet and PasswordSet report the CONNECT flags: an empty
	// password is still a password.
	UsernameSet, PasswordSet bool
	Version                  mqttwire.Version
	Peer                     netip.AddrPort
	Listener                 string
	// Cert is the client certificate when it was verified against the
	// client CA bundle; nil otherwise.
	Cert *x509.Certificate
	// Token is a bearer token from the transport (identity.Peer.Token):
	// the JWT authenticator takes it when the CONNECT's field is empty.
	Token string
}

// anonymous reports whether the client presented no credentials at all.
func (r *Request) anonymous() bool {
	return !r.UsernameSet && !r.PasswordSet && r.Cert == nil && r.Token == ""
}

// Verdict is an authenticator's answer.
type Verdict uint8

// Verdicts.
const (
	// Ignore: not mine, ask the next authenticator.
	Ignore Verdict = iota
	// Allow admits the client and ends the chain.
	Allow
	// Deny refuses the client and ends the chain.
	Deny
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "ignore"
}

// Result is an authenticator's typed decision.
type Result struct {
	Verdict Verdict
	// Reason is the v5 CONNACK code a Deny is sent with.
	Reason mqttwire.ReasonCode
	// Cause is a short word for logs and counters (unknown_user,
	// bad_password, expired...). Never a secret.
	Cause string
	// Detail adds context to the log event (a webhook's error, a token's
	// key id); it is not counted. Never a secret.
	Detail string
	// What an Allow grants. Username, when set, replaces the CONNECT's
	// in the identity (a token in the user name field names its subject).
	Username  string
	Superuser bool
	Expires   time.Time
	Rules     []identity.Rule
}

func allow(cause string) Result { return Result{Verdict: Allow, Cause: cause} }

func deny(code mqttwire.ReasonCode, cause string) Result {
	return Result{Verdict: Deny, Reason: code, Cause: cause}
}

func ignore(cause string) Result { return Result{Verdict: Ignore, Cause: cause} }

// Authenticator is one link of the chain.
type Authenticator interface {
	// Name is the chain entry that selects it (cert, password, jwt, http).
	Name() string
	Authenticate(ctx context.Context, r *Request) Result
}

// Config builds a Chain.
type Config struct {
	// Authenticators run in order; the first Allow or Deny decides.
	Authenticators []Authenticator
	// Rules run before every authenticator: cheap checks that can only deny.
	Rules *Rules
	// AllowAnonymous admits a client that presents no user name, no
	// password and no verified certificate.
	AllowAnonymous bool
	// UsernameFrom and ClientIDFrom map the verified client certificate
	// to the user name and client id the broker sees (CertNone: keep the
	// client's). The CONNECT is rewritten, so the client cannot choose.
	UsernameFrom, ClientIDFrom CertField
	// ClientIDPattern, when set, must match the client id of every client
	// the chain admits, filled with the admitted identity; a client id
	// that does not is refused with "client identifier not valid".
	ClientIDPattern *ClientIDPattern
	// UsernameIsSecret keeps user names out of the logs (a JWT in the
	// user name field).
	UsernameIsSecret bool
	Logger           zerolog.Logger
	// LogBudget bounds the refusals logged; share it with the proxy's
	// security events. Default: logbudget.New().
	LogBudget *logbudget.Budget
}

// Chain is the configured authentication chain. It is safe for concurrent use.
type Chain struct {
	cfg Config
	// logs bounds refusal events, so a flood of bad logins cannot flood
	// the log, with a share per client address; what it holds back is
	// counted in the next event.
	logs *logbudget.Budget

	mu     sync.Mutex
	counts map[countKey]*atomic.Int64
}

type countKey struct{ authenticator, verdict, cause string }

// NewChain returns a chain. With no authenticators and anonymous access
// off it refuses everyone.
func NewChain(cfg Config) *Chain {
	logs := cfg.LogBudget
	if logs == nil {
		logs = logbudget.New()
	}
	return &Chain{cfg: cfg, counts: map[countKey]*atomic.Int64{}, logs: logs}
}

// Peer and Outcome are the identity package's, the seam the proxy
// speaks: *Chain is its Authenticator.
type (
	Peer    = identity.Peer
	Outcome = identity.Admission
)

// Authenticate runs the chain for one CONNECT.
func (ch *Chain) Authenticate(ctx context.Context, c *mqttwire.Connect, p Peer) Outcome {
	req := Request{
		ClientID: string(c.ClientID), Username: string(c.Username), Password: c.Password,
		UsernameSet: c.UsernameFlag, PasswordSet: c.PasswordFlag,
		Version: c.Version, Peer: p.Addr, Listener: p.Listener, Cert: p.Cert, Token: p.Token,
	}
	var out Outcome
	if ch.cfg.UsernameFrom != CertNone || ch.cfg.ClientIDFrom != CertNone {
		rc, res, ok := ch.mapIdentity(c, &req)
		if !ok {
			return ch.finish(&req, "cert", res)
		}
		out.Connect = rc
	}
	if c.Version == mqttwire.V5 {
		if _, m, ok := c.Properties.Lookup(mqttwire.PropAuthMethod); ok {
			res := deny(mqttwire.BadAuthenticationMethod, "unsupported_auth_method")
			res.Detail = "authentication method " + safeWord(string(m))
			return ch.finish(&req, "chain", res)
		}
	}
	if ch.cfg.Rules != nil {
		if res := ch.cfg.Rules.Check(&req); res.Verdict == Deny {
			return ch.finish(&req, "rules", res)
		}
	}
	if req.anonymous() {
		if ch.cfg.AllowAnonymous {
			return ch.admit(c, &req, "anonymous", allow("anonymous"), out)
		}
		return ch.finish(&req, "chain", deny(mqttwire.NotAuthorized, "anonymous"))
	}
	for _, a := range ch.cfg.Authenticators {
		res := a.Authenticate(ctx, &req)
		switch res.Verdict {
		case Allow:
			return ch.admit(c, &req, a.Name(), res, out)
		case Deny:
			if !res.Reason.IsError() {
				res.Reason = mqttwire.NotAuthorized
			}
			return ch.finish(&req, a.Name(), res)
		}
		ch.count(a.Name(), res)
	}
	code := mqttwire.NotAuthorized
	if req.UsernameSet || req.PasswordSet {
		code = mqttwire.BadUserNameOrPassword
	}
	return ch.finish(&req, "chain", deny(code, "no_authenticator_accepted"))
}

// mapIdentity rewrites the CONNECT with the certificate's identity. A
// client without a verified certificate, or whose certificate lacks the
// field, is refused: the mapping is only configured when mTLS is required.
func (ch *Chain) mapIdentity(c *mqttwire.Connect, req *Request) (*mqttwire.Connect, Result, bool) {
	if req.Cert == nil {
		return nil, deny(mqttwire.NotAuthorized, "no_certificate"), false
	}
	rc := *c
	if f := ch.cfg.UsernameFrom; f != CertNone {
		v := f.Value(req.Cert)
		if v == "" {
			return nil, deny(mqttwire.NotAuthorized, "certificate_lacks_"+f.String()), false
		}
		rc.Username, rc.UsernameFlag, req.Username, req.UsernameSet = []byte(v), true, v, true
	}
	if f := ch.cfg.ClientIDFrom; f != CertNone {
		v := f.Value(req.Cert)
		if v == "" {
			return nil, deny(mqttwire.ClientIdentifierNotValid, "certificate_lacks_"+f.String()), false
		}
		rc.ClientID, req.ClientID = []byte(v), v
	}
	return &rc, Result{}, true
}

// admit builds the identity from what the authenticator verified: its
// Username when it names one (a token's subject), else the CONNECT's,
// which the authenticator checked. The client id must then fit the
// configured pattern.
func (ch *Chain) admit(c *mqttwire.Connect, req *Request, by string, res Result, out Outcome) Outcome {
	user := req.Username
	if res.Username != "" {
		user = res.Username
	}
	id := &identity.Identity{
		ClientID: req.ClientID, Username: user,
		Superuser: res.Superuser, Expires: res.Expires, Rules: res.Rules, Source: by,
	}
	if req.Cert != nil {
		id.CertCN, id.CertDN = req.Cert.Subject.CommonName, req.Cert.Subject.String()
	}
	ch.count(by, res)
	if p := ch.cfg.ClientIDPattern; p != nil && !p.Match(id) {
		refusal := deny(mqttwire.ClientIdentifierNotValid, "clientid_pattern")
		refusal.Detail = "client id does not match " + p.String()
		return ch.finish(req, "chain", refusal)
	}
	if req.Username == "" && user != "" {
		// The broker sees the identity, too: a token's subject fills an
		// empty user name.
		rc := *c
		if out.Connect != nil {
			rc = *out.Connect
		}
		rc.Username, rc.UsernameFlag = []byte(user), true
		out.Connect = &rc
	}
	if ch.cfg.Logger.GetLevel() <= zerolog.DebugLevel {
		ch.event(ch.cfg.Logger.Debug(), req, by, res).Str("identity", user).Bool("superuser", res.Superuser).Msg("client authenticated")
	}
	out.Admit, out.Identity = true, id
	return out
}

// finish refuses: the event is logged (never with the password) and counted.
func (ch *Chain) finish(req *Request, by string, res Result) Outcome {
	ch.count(by, res)
	ok, suppressed := ch.logs.Allow(req.Peer.Addr())
	if !ok {
		return Outcome{Reason: res.Reason}
	}
	ev := ch.event(ch.cfg.Logger.Warn(), req, by, res).Stringer("reason_code", reasonHex(res.Reason))
	if suppressed > 0 {
		ev = ev.Int64("suppressed", suppressed)
	}
	ev.Msg("authentication refused")
	return Outcome{Reason: res.Reason}
}

func (ch *Chain) event(ev *zerolog.Event, req *Request, by string, res Result) *zerolog.Event {
	ev = ev.Str("event", "auth_"+res.Verdict.String()).Str("authenticator", by).Str("cause", res.Cause).
		Stringer("client", req.Peer).Str("client_id", req.ClientID)
	if req.UsernameSet && !ch.cfg.UsernameIsSecret {
		ev = ev.Str("username", req.Username)
	}
	if req.Cert != nil {
		ev = ev.Str("cert_subject", req.Cert.Subject.String())
	}
	if res.Detail != "" {
		ev = ev.Str("detail", res.Detail)
	}
	return ev
}

type reasonHex mqttwire.ReasonCode

func (r reasonHex) String() string {
	const hex = "0123456789abcdef"
	return string([]byte{'0', 'x', hex[r>>4], hex[r&15]})
}

func (ch *Chain) count(by string, res Result) {
	k := countKey{by, res.Verdict.String(), res.Cause}
	ch.mu.Lock()
	n := ch.counts[k]
	if n == nil {
		n = new(atomic.Int64)
		ch.counts[k] = n
	}
	ch.mu.Unlock()
	n.Add(1)
}

// Count is one counter: how often an authenticator gave a verdict for a cause.
type Count struct {
	Authenticator, Verdict, Cause string
	N                             int64
}

// Counts returns every counter, sorted.
func (ch *Chain) Counts() []Count {
	ch.mu.Lock()
	out := make([]Count, 0, len(ch.counts))
	for k, n := range ch.counts {
		out = append(out, Count{k.authenticator, k.verdict, k.cause, n.Load()})
	}
	ch.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Authenticator != b.Authenticator {
			return a.Authenticator < b.Authenticator
		}
		if a.Verdict != b.Verdict {
			return a.Verdict < b.Verdict
		}
		return a.Cause < b.Cause
	})
	return out
}

// safeWord keeps a client-supplied word printable and short for a log field.
func safeWord(s string) string {
	b := make([]byte, 0, 32)
	for i := 0; i < len(s) && len(b) < 32; i++ {
		c := s[i]
		if c > ' ' && c < 0x7f {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}
