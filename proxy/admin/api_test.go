package admin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
	"github.com/mqttgate/mqttgate/proxy/audit"
)

// With user names that are tokens, a user name ban's value is neither
// listed nor written to the audit trail or the log, whatever the path
// holds: both name the route.
func TestUsernameBansStaySecret(t *testing.T) {
	dir := t.TempDir()
	keys, err := OpenKeys(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := keys.Create("v", Viewer, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	operator, err := keys.Create("o", Operator, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bans, err := limits.OpenBans("")
	if err != nil {
		t.Fatal(err)
	}
	const token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"
	if err := bans.Add(limits.Ban{Kind: limits.BanUsername, Value: token, Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(dir, "audit.log")
	trail, err := audit.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := &mqtttest.SyncBuffer{}
	s, err := New(Config{API: &API{Keys: keys, Bans: bans, Audit: trail, Log: zerolog.New(logs), UsernamesAreSecret: true}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	do := func(key, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := do(viewer, "GET", "/api/v1/bans"); code != 200 || strings.Contains(body, token) || !strings.Contains(body, "(secret)") {
		t.Errorf("bans list: %d %s", code, body)
	}
	if code, _ := do("mqttgate_wrong", "DELETE", "/api/v1/bans/username/"+token); code != 401 {
		t.Errorf("a wrong key: %d", code)
	}
	if code, body := do(operator, "DELETE", "/api/v1/bans/username/"+token); code != 200 {
		t.Errorf("unban: %d %s", code, body)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(auditFile)
	if !bytes.Contains(raw, []byte(`"route":"DELETE /api/v1/bans/{kind}/{value}"`)) {
		t.Errorf("no audit line for the unban:\n%s", raw)
	}
	if bytes.Contains(raw, []byte(token)) || strings.Contains(logs.String(), token) {
		t.Errorf("the token reached the audit trail or the log:\n%s\n%s", raw, logs.String())
	}
}
