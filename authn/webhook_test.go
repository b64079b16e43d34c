package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// authService answers by user name: allow, deny, ignore, slow, status,
// garbage; it records every body it sees.
type authService struct {
	mu       sync.Mutex
	bodies   []map[string]any
	inflight atomic.Int32
	peak     atomic.Int32
	release  chan struct{} // "slow" waits on it
}

func (s *authService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", 400)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	s.mu.Lock()
	s.bodies = append(s.bodies, m)
	s.mu.Unlock()
	switch m["username"] {
	case "allow":
		io.WriteString(w, `{"result":"allow","is_superuser":true,"acl":{"pub":["t/${clientid}"]},"expire_at":`+
			json.Number(itoa(time.Now().Add(time.Hour).Unix())).String()+`}`)
	case "deny":
		io.WriteString(w, `{"result":"deny"}`)
	case "ignore":
		io.WriteString(w, `{"result":"ignore"}`)
	case "slow":
		<-s.release
		io.WriteString(w, `{"result":"allow"}`)
	case "status":
		http.Error(w, "boom", 500)
	case "garbage":
		io.WriteString(w, `{"result":"maybe"}`)
	case "expired":
		io.WriteString(w, `{"result":"allow","expire_at":1}`)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func (s *authService) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func hookReq(user string) *Request {
	return &Request{ClientID: "c-" + user, Username: user, UsernameSet: true, Password: []byte("pw"), PasswordSet: true,
		Version: mqttwire.V5, Peer: netip.MustParseAddrPort("127.0.0.7:40001"), Listener: "tls"}
}

func TestWebhookAnswers(t *testing.T) {
	svc := &authService{release: make(chan struct{})}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	w, err := NewWebhook(WebhookOptions{URL: srv.URL, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer close(svc.release)
	ctx := context.Background()
	for _, c := range []struct {
		user  string
		v     Verdict
		cause string
	}{
		{"allow", Allow, "webhook_allowed"},
		{"deny", Deny, "webhook_denied"},
		{"ignore", Ignore, "webhook_ignored"},
		{"slow", Deny, "webhook_timeout"},
		{"status", Deny, "webhook_status"},
		{"garbage", Deny, "webhook_bad_answer"},
		{"expired", Deny, "webhook_expired"},
	} {
		res := w.Authenticate(ctx, hookReq(c.user))
		if res.Verdict != c.v || res.Cause != c.cause {
			t.Errorf("%s: %v %s (%s), want %v %s", c.user, res.Verdict, res.Cause, res.Detail, c.v, c.cause)
		}
		if res.Verdict == Deny && res.Reason != mqttwire.NotAuthorized {
			t.Errorf("%s: reason %#x", c.user, res.Reason)
		}
	}
	res := w.Authenticate(ctx, hookReq("allow"))
	if !res.Superuser || len(res.Rules) != 1 || res.Rules[0].Topics[0] != "t/${clientid}" || time.Until(res.Expires) < 59*time.Minute {
		t.Errorf("allow answer: %+v", res)
	}

	// Failures can be configured to pass to the next authenticator.
	w2, err := NewWebhook(WebhookOptions{URL: srv.URL, Timeout: 300 * time.Millisecond, IgnoreErrors: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	for _, u := range []string{"slow", "status", "garbage"} {
		if res := w2.Authenticate(ctx, hookReq(u)); res.Verdict != Ignore {
			t.Errorf("%s with IgnoreErrors: %v", u, res.Verdict)
		}
	}
	w3, _ := NewWebhook(WebhookOptions{URL: "http://127.0.0.1:1/auth", Timeout: time.Second})
	defer w3.Close()
	if res := w3.Authenticate(ctx, hookReq("allow")); res.Verdict != Deny || res.Cause != "webhook_down" {
		t.Errorf("service down: %v %s", res.Verdict, res.Cause)
	}
}

// The body is exactly the documented one, certificate fields included.
func TestWebhookRequestBody(t *testing.T) {
	svc := &authService{}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL})
	defer w.Close()
	r := hookReq("deny")
	r.Cert = clientCert("dev1")
	r.Cert.Raw = []byte("der bytes")
	w.Authenticate(context.Background(), r)
	sum := sha256.Sum256([]byte("der bytes"))
	want := map[string]any{"clientid": "c-deny", "username": "deny", "password": "pw", "password_base64": "cHc=", "peerhost": "127.0.0.7", "peerport": 40001.0,
		"proto_ver": 5.0, "listener": "tls", "cert_common_name": "dev1", "cert_fingerprint": hex.EncodeToString(sum[:])}
	if svc.count() != 1 || !reflect.DeepEqual(svc.bodies[0], want) {
		t.Fatalf("bodies %v\nwant %v", svc.bodies, want)
	}
}

// Identical requests within the cache time are answered without asking;
// concurrency towards the service is bounded.
func TestWebhookCacheAndBound(t *testing.T) {
	svc := &authService{release: make(chan struct{})}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL, CacheTTL: time.Minute, MaxInflight: 2})
	defer w.Close()
	ctx := context.Background()
	for range 3 {
		if res := w.Authenticate(ctx, hookReq("allow")); res.Verdict != Allow {
			t.Fatal(res.Verdict)
		}
	}
	w.Authenticate(ctx, hookReq("deny"))
	w.Authenticate(ctx, hookReq("deny"))
	if n := svc.count(); n != 2 {
		t.Fatalf("service asked %d times, want 2 (answers cached)", n)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { w.Authenticate(ctx, hookReq("slow")) })
	}
	for deadline := time.Now().Add(5 * time.Second); svc.inflight.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // polling a counter: the server has no other signal
	}
	close(svc.release)
	wg.Wait()
	if p := svc.peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
}

// https with a private CA given in CAFile.
func TestWebhookTLSWithCA(t *testing.T) {
	svc := &authService{}
	srv := httptest.NewTLSServer(svc)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewWebhook(WebhookOptions{URL: srv.URL, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if res := w.Authenticate(context.Background(), hookReq("allow")); res.Verdict != Allow {
		t.Fatalf("%v %s", res.Verdict, res.Detail)
	}
	wNoCA, _ := NewWebhook(WebhookOptions{URL: srv.URL})
	defer wNoCA.Close()
	if res := wNoCA.Authenticate(context.Background(), hookReq("allow")); res.Verdict != Deny {
		t.Fatal("untrusted service certificate accepted")
	}
	srv.Client().CloseIdleConnections()
}

// Binary passwords reach the service exactly, and two that JSON would
// both render as U+FFFD do not share a cached answer: the first is
// admitted and cached, the second is asked about and refused.
func TestWebhookBinaryPasswordsAreExactAndNotConfused(t *testing.T) {
	var mu sync.Mutex
	var seen []WebhookRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body WebhookRequest
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		seen = append(seen, body)
		mu.Unlock()
		if body.PasswordBase64 == base64.StdEncoding.EncodeToString([]byte{0xff, 0x01}) {
			io.WriteString(w, `{"result":"allow"}`)
			return
		}
		io.WriteString(w, `{"result":"deny"}`)
	}))
	defer srv.Close()
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL, CacheTTL: time.Minute})
	defer w.Close()
	as := func(pw []byte) Result {
		r := hookReq("binary")
		r.Password = pw
		return w.Authenticate(context.Background(), r)
	}
	if res := as([]byte{0xff, 0x01}); res.Verdict != Allow {
		t.Fatalf("right binary password: %v", res.Verdict)
	}
	if res := as([]byte{0xfe, 0x01}); res.Verdict != Deny {
		t.Fatalf("wrong binary password: %v, want deny (not the cached allow)", res.Verdict)
	}
	if res := as([]byte{0xff, 0x01}); res.Verdict != Allow {
		t.Fatalf("right binary password again: %v", res.Verdict)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("service asked %d times, want 2 (the third answer cached)", len(seen))
	}
	if seen[0].Password != "" || seen[1].PasswordBase64 != "/gE=" {
		t.Fatalf("bodies %+v: want no password text for invalid UTF-8 and the exact bytes in base64", seen)
	}
}
