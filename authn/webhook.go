package authn

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
	"unicode/utf8"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// WebhookOptions configure the HTTP authenticator.
type WebhookOptions struct {
	URL string
	// Timeout bounds one request (default 5s).
	Timeout time.Duration
	// CAFile, when set, is the only trust anchor for an https URL.
	CAFile string
	// IgnoreErrors makes a timeout, a non-2xx status or an unreadable
	// body pass to the next authenticator instead of denying.
	IgnoreErrors bool
	// CacheTTL keeps answers for identical requests this long (0: off).
	CacheTTL time.Duration
	// MaxInflight bounds concurrent requests (default 32), so a
	// reconnection storm cannot melt the auth service.
	MaxInflight int
}

// WebhookRequest is the JSON body POSTed for each CONNECT.
//
// An MQTT password is binary data. PasswordBase64 carries its exact bytes
// (standard base64, padded); Password carries the same text when the bytes
// are valid UTF-8, and is empty when they are not, because JSON cannot
// hold them: a service that accepts binary passwords, or empty ones, must
// read password_base64.
type WebhookRequest struct {
	ClientID        string `json:"clientid"`
	Username        string `json:"username"`
	Password        string `json:"password"`
	PasswordBase64  string `json:"password_base64"`
	PeerHost        string `json:"peerhost"`
	PeerPort        uint16 `json:"peerport"`
	ProtoVer        byte   `json:"proto_ver"` // 3, 4 or 5
	Listener        string `json:"listener"`  // tls or tcp
	CertCommonName  string `json:"cert_common_name,omitempty"`
	CertFingerprint string `json:"cert_fingerprint,omitempty"` // SHA-256 of the DER certificate, hex
}

// WebhookResponse is the JSON answer expected with HTTP 200.
type WebhookResponse struct {
	Result      string          `json:"result"` // allow, deny or ignore
	IsSuperuser bool            `json:"is_superuser"`
	ACL         json.RawMessage `json:"acl"`       // per-client rules, as ParseClientRules reads them
	ExpireAt    int64           `json:"expire_at"` // unix seconds; 0: no expiry
}

// Webhook asks an HTTP service.
type Webhook struct {
	o      WebhookOptions
	client *http.Client
	sem    chan struct{}
	key    [32]byte
	cache  ttlCache[Result]
}

var _ Authenticator = (*Webhook)(nil)

// NewWebhook checks the options and prepares a client that reuses
// connections.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 32
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificates", o.CAFile)
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{
		TLSClientConfig: tc, MaxIdleConnsPerHost: o.MaxInflight, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment,
	}
	w := &Webhook{o: o, client: &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		sem: make(chan struct{}, o.MaxInflight)}
	rand.Read(w.key[:])
	return w, nil
}

// Name implements Authenticator.
func (*Webhook) Name() string { return "http" }

// Close drops idle connections to the service.
func (w *Webhook) Close() { w.client.CloseIdleConnections() }

// Authenticate implements Authenticator.
func (w *Webhook) Authenticate(ctx context.Context, r *Request) Result {
	body := WebhookRequest{ClientID: r.ClientID, Username: r.Username, PasswordBase64: base64.StdEncoding.EncodeToString(r.Password),
		PeerHost: r.Peer.Addr().String(), ProtoVer: byte(r.Version), Listener: r.Listener}
	if utf8.Valid(r.Password) {
		body.Password = string(r.Password)
	}
	if r.Cert != nil {
		sum := sha256.Sum256(r.Cert.Raw)
		body.CertCommonName, body.CertFingerprint = r.Cert.Subject.CommonName, hex.EncodeToString(sum[:])
	}
	key := w.cacheKey(&body) // the port changes on every reconnect: not part of the key
	body.PeerPort = r.Peer.Port()
	if res, ok := w.cached(key); ok {
		return res
	}
	res, err := w.ask(ctx, &body)
	if err != nil {
		var cause string
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errBusy):
			cause = "webhook_timeout"
		case errors.As(err, new(statusError)):
			cause = "webhook_status"
		case errors.As(err, new(bodyError)):
			cause = "webhook_bad_answer"
		default:
			cause = "webhook_down"
		}
		res = deny(mqttwire.NotAuthorized, cause)
		if w.o.IgnoreErrors {
			res = ignore(cause)
		}
		res.Detail = err.Error()
		return res
	}
	w.remember(key, res)
	return res
}

var errBusy = errors.New("too many webhook requests in flight")

type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("HTTP status %d", e.code) }

type bodyError struct{ err error }

func (e bodyError) Error() string { return "unreadable answer: " + e.err.Error() }

func (w *Webhook) ask(ctx context.Context, body *WebhookRequest) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, errBusy
	}
	defer func() { <-w.sem }()
	b, err := json.Marshal(body)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(b))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
		return Result{}, statusError{resp.StatusCode}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Result{}, err
	}
	return parseWebhookAnswer(raw)
}

// parseWebhookAnswer turns a 2xx body into a Result.
func parseWebhookAnswer(raw []byte) (Result, error) {
	var a WebhookResponse
	if err := json.Unmarshal(raw, &a); err != nil {
		return Result{}, bodyError{err}
	}
	switch a.Result {
	case "allow":
	case "deny":
		return deny(mqttwire.NotAuthorized, "webhook_denied"), nil
	case "ignore":
		return ignore("webhook_ignored"), nil
	default:
		return Result{}, bodyError{fmt.Errorf("result %q: want allow, deny or ignore", a.Result)}
	}
	res := allow("webhook_allowed")
	res.Superuser = a.IsSuperuser
	if len(a.ACL) > 0 && string(a.ACL) != "null" {
		var v any
		if err := json.Unmarshal(a.ACL, &v); err != nil {
			return Result{}, bodyError{err}
		}
		rules, err := ParseClientRules(v)
		if err != nil {
			return Result{}, bodyError{fmt.Errorf("acl: %w", err)}
		}
		res.Rules = rules
	}
	if a.ExpireAt != 0 {
		res.Expires = time.Unix(a.ExpireAt, 0)
		if !time.Now().Before(res.Expires) {
			return deny(mqttwire.NotAuthorized, "webhook_expired"), nil
		}
	}
	return res, nil
}

// cacheKey is a keyed hash of the request body, which holds the
// password's exact bytes in password_base64: two passwords that JSON would
// both turn into U+FFFD never share an answer. (User names and client ids
// are valid UTF-8: the CONNECT parser refuses others.)
func (w *Webhook) cacheKey(body *WebhookRequest) [32]byte {
	b, _ := json.Marshal(body)
	m := hmac.New(sha256.New, w.key[:])
	m.Write(b)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (w *Webhook) cached(k [32]byte) (Result, bool) {
	if w.o.CacheTTL <= 0 {
		return Result{}, false
	}
	res, ok := w.cache.get(k)
	res.Rules = append([]identity.Rule(nil), res.Rules...) // the caller's to keep
	return res, ok
}

func (w *Webhook) remember(k [32]byte, res Result) {
	if w.o.CacheTTL <= 0 {
		return
	}
	until := time.Now().Add(w.o.CacheTTL)
	if !res.Expires.IsZero() && res.Expires.Before(until) {
		until = res.Expires
	}
	w.cache.put(k, res, until)
}
