package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// newKey runs `mqttgate apikey create` and returns the secret: the last
// line of its output.
func newKey(t *testing.T, file, name, role, expires string) string {
	t.Helper()
	out, err := exec.Command(binary, "apikey", "create", name, "-role", role, "-expires", expires, "-f", file).Output()
	if err != nil {
		t.Fatalf("apikey create %s: %v", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	secret := lines[len(lines)-1]
	if !strings.HasPrefix(secret, "mqttgate_") || strings.Contains(secret, " ") {
		t.Fatalf("apikey create printed %q", out)
	}
	return secret
}

// apiClient calls the admin API from one loopback source address.
type apiClient struct {
	base string
	http *http.Client
}

func newAPIClient(base, from string) *apiClient {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &apiClient{base: base, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}}
}

// call makes one request and decodes the JSON answer.
func (a *apiClient) call(t *testing.T, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, path, raw)
		}
	}
	return resp.StatusCode, m
}

// auditLines reads the audit log's lines (the proxy flushes it every
// second: callers wait for the line they need).
func auditLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// waitAudit waits for an audit line of event whose fields hold want.
func waitAudit(t *testing.T, file, event string, want map[string]any) map[string]any {
	t.Helper()
	var found map[string]any
	mqtttest.WaitFor(t, "audit line "+event+fmt.Sprint(want), func() bool {
		for _, m := range auditLines(t, file) {
			if m["event"] != event {
				continue
			}
			ok := true
			for k, v := range want {
				ok = ok && fmt.Sprint(m[k]) == fmt.Sprint(v)
			}
			if ok {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// Issue 14, the admin API: every endpoint with every role through a real
// HTTP client, expired, unknown and revoked keys, a keys file edited while
// running, kicks and bans that end live connections with the right
// packet, a reload, a drain; the audit log has a line for each, with no
// secret in it, and is reopened on SIGUSR1.
func TestAdminAPI(t *testing.T) {
	dir := t.TempDir()
	keysFile, bansFile, auditFile := filepath.Join(dir, "keys.json"), filepath.Join(dir, "bans.json"), filepath.Join(dir, "audit.log")
	viewer, operator, admin := newKey(t, keysFile, "dash", "viewer", "1h"), newKey(t, keysFile, "oncall", "operator", "1h"), newKey(t, keysFile, "root", "admin", "1h")
	shortLived := newKey(t, keysFile, "brief", "admin", "1s")
	created := time.Now()
	pw := passwordFile(t, "alice")
	aclFile := writeFile(t, "acl", "user alice\ntopic readwrite dev/#\n")
	adminAddr := mqtttest.FreeAddr(t)
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_ADMIN_KEYS_FILE="+keysFile,
		"MQTTGATE_ADMIN_METRICS_AUTH=true", "MQTTGATE_BANS_FILE="+bansFile, "MQTTGATE_AUDIT_LOG="+auditFile,
		"MQTTGATE_AUTHN=password", "MQTTGATE_PASSWORD_FILE="+pw, "MQTTGATE_ALLOW_ANONYMOUS=false", "MQTTGATE_ACL_FILE="+aclFile,
		"MQTTGATE_ACL_NO_MATCH=deny", "MQTTGATE_FILE_POLL_INTERVAL=100ms", "MQTTGATE_DRAIN_DELAY=0s", "MQTTGATE_DRAIN_TIMEOUT=1s")
	api := newAPIClient("http://"+adminAddr, "127.0.0.1")
	// Refused keys are rate limited per source (below): those of the role
	// checks come from another address than the rest of the test.
	stranger := newAPIClient("http://"+adminAddr, "127.0.0.3")
	alice := func(id string, v mqttwire.Version) *mqtttest.RawClient {
		t.Helper()
		c, ack, err := dialGate(t, g, "", v, &mqttwire.Connect{ClientID: []byte(id), CleanStart: true, UsernameFlag: true,
			Username: []byte("alice"), PasswordFlag: true, Password: []byte("alice-pw")})
		if err != nil || ack.Type != mqttwire.CONNACK || ack.Body[1] != 0 {
			t.Fatalf("%s: CONNACK %x %v", id, ack.Raw, err)
		}
		return c
	}
	dev1, dev3 := alice("dev1", mqttwire.V5), alice("dev3", mqttwire.V311)

	// Who may do what: every endpoint, every role, and no key.
	type call struct{ method, path, body string }
	reads := []call{{"GET", "/api/v1/status", ""}, {"GET", "/api/v1/connections", ""}, {"GET", "/api/v1/bans", ""}, {"GET", "/metrics", ""}}
	for _, c := range reads {
		for _, key := range []string{viewer, operator, admin} {
			if code, _ := api.call(t, key, c.method, c.path, ""); code != 200 {
				t.Errorf("%s %s: %d, want 200", c.method, c.path, code)
			}
		}
		if code, _ := stranger.call(t, "", c.method, c.path, ""); code != 401 {
			t.Errorf("%s %s without a key: %d, want 401", c.method, c.path, code)
		}
		if code, m := stranger.call(t, "mqttgate_"+strings.Repeat("A", 43), c.method, c.path, ""); code != 401 || m["error"] != "unknown API key" {
			t.Errorf("%s %s with an unknown key: %d %v", c.method, c.path, code, m)
		}
	}
	writes := []call{{"POST", "/api/v1/connections/kick", `{"clientid":"nobody"}`}, {"POST", "/api/v1/bans", `{"kind":"clientid","value":"x","for":"1h"}`},
		{"DELETE", "/api/v1/bans/clientid/x", ""}}
	for _, c := range writes {
		if code, m := api.call(t, viewer, c.method, c.path, c.body); code != 403 || m["error"] == nil {
			t.Errorf("%s %s as viewer: %d %v, want 403", c.method, c.path, code, m)
		}
		if code, _ := api.call(t, operator, c.method, c.path, c.body); code/100 != 2 {
			t.Errorf("%s %s as operator: %d", c.method, c.path, code)
		}
	}
	for _, key := range []string{viewer, operator} {
		if code, _ := api.call(t, key, "POST", "/api/v1/reload", ""); code != 403 {
			t.Errorf("reload as a non-admin: %d, want 403", code)
		}
		if key == viewer {
			if code, _ := api.call(t, key, "POST", "/api/v1/drain", ""); code != 403 {
				t.Errorf("drain as viewer: %d, want 403", code)
			}
		}
	}
	code, m := api.call(t, admin, "POST", "/api/v1/reload", "")
	if files, _ := m["files"].([]any); code != 200 || len(files) < 4 {
		t.Errorf("reload: %d %v", code, m)
	} else {
		for _, f := range files {
			if f.(map[string]any)["error"] != nil {
				t.Errorf("reload: %v", f)
			}
		}
	}
	if code, m := api.call(t, admin, "GET", "/api/v1/nothing", ""); code != 404 || m["error"] == nil {
		t.Errorf("unknown endpoint: %d %v", code, m)
	}
	if code, m := api.call(t, operator, "POST", "/api/v1/bans", `{"kind":"clientid","value":"x","for":"1h","extra":1}`); code != 400 || m["error"] == nil {
		t.Errorf("unknown field: %d %v", code, m)
	}
	if code, _ := api.call(t, operator, "POST", "/api/v1/connections/kick", `{"clientid":"a","username":"b"}`); code != 400 {
		t.Errorf("two selectors: %d, want 400", code)
	}

	// Status and connections.
	_, st := api.call(t, viewer, "GET", "/api/v1/status", "")
	if st["version"] == nil || st["files"] == nil || !strings.Contains(fmt.Sprint(st["settings"]), "MQTTGATE_ADMIN_KEYS_FILE="+keysFile) {
		t.Errorf("status: %v", st)
	}
	_, list := api.call(t, viewer, "GET", "/api/v1/connections?clientid=dev1", "")
	conns, _ := list["connections"].([]any)
	if len(conns) != 1 || list["total"] != 1.0 {
		t.Fatalf("connections?clientid=dev1: %v", list)
	}
	one := conns[0].(map[string]any)
	if one["username"] != "alice" || one["protocol"] != "5.0" || one["tls_version"] != "TLSv1.3" || one["listener"] != "tls" {
		t.Errorf("dev1: %v", one)
	}
	if _, all := api.call(t, viewer, "GET", "/api/v1/connections?username=alice&listener=tls&address=127.0.0.1", ""); all["total"] != 2.0 {
		t.Errorf("alice's connections: %v", all)
	}
	if code, c := api.call(t, viewer, "GET", fmt.Sprintf("/api/v1/connections/%.0f", one["id"]), ""); code != 200 || c["client_id"] != "dev1" {
		t.Errorf("connection %v: %d %v", one["id"], code, c)
	}
	if code, _ := api.call(t, viewer, "GET", "/api/v1/connections/999999", ""); code != 404 {
		t.Errorf("unknown connection: %d", code)
	}

	// Kicks: v5 told 0x98, v3 closed.
	if code, m := api.call(t, operator, "POST", "/api/v1/connections/kick", `{"clientid":"dev1"}`); code != 200 || m["kicked"] != 1.0 {
		t.Fatalf("kick dev1: %d %v", code, m)
	}
	if p, open := dev1.NextOrClosed(); !open || p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.AdministrativeAction) {
		t.Errorf("kicked v5 client got %x (open %v), want DISCONNECT 0x98", p.Raw, open)
	}
	_, list = api.call(t, viewer, "GET", "/api/v1/connections?clientid=dev3", "")
	id3 := list["connections"].([]any)[0].(map[string]any)["id"]
	if code, m := api.call(t, operator, "POST", "/api/v1/connections/kick", fmt.Sprintf(`{"id":%.0f}`, id3)); code != 200 || m["kicked"] != 1.0 {
		t.Fatalf("kick dev3: %d %v", code, m)
	}
	if p, open := dev3.NextOrClosed(); open {
		t.Errorf("kicked v3 client got %x, want the connection closed", p.Raw)
	}

	// A ban ends the live connection it matches, and the next CONNECT.
	dev2 := alice("dev2", mqttwire.V5)
	code, m = api.call(t, operator, "POST", "/api/v1/bans", `{"kind":"clientid","value":"dev2","for":"1h","reason":"stolen"}`)
	if code != 201 || m["kicked"] != 1.0 {
		t.Fatalf("ban dev2: %d %v", code, m)
	}
	if p, open := dev2.NextOrClosed(); !open || p.Type != mqttwire.DISCONNECT || p.Body[0] != byte(mqttwire.AdministrativeAction) {
		t.Errorf("banned v5 client got %x (open %v), want DISCONNECT 0x98", p.Raw, open)
	}
	if _, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("dev2"), UsernameFlag: true, Username: []byte("alice"),
		PasswordFlag: true, Password: []byte("alice-pw")}); err != nil || ack.Body[1] != byte(mqttwire.Banned) {
		t.Errorf("banned client id reconnecting: CONNACK %x %v", ack.Raw, err)
	}
	if _, b := api.call(t, viewer, "GET", "/api/v1/bans", ""); !strings.Contains(fmt.Sprint(b["bans"]), "dev2") {
		t.Errorf("bans: %v", b)
	}
	if code, _ := api.call(t, operator, "POST", "/api/v1/bans", `{"kind":"ip","value":"192.0.2.0/24","for":"1s"}`); code != 201 {
		t.Errorf("a short ban: %d", code)
	}
	if code, _ := api.call(t, operator, "DELETE", "/api/v1/bans/clientid/dev2", ""); code != 200 {
		t.Errorf("unban: %d", code)
	}
	if code, _ := api.call(t, operator, "DELETE", "/api/v1/bans/clientid/dev2", ""); code != 404 {
		t.Errorf("unban again: %d, want 404", code)
	}

	// A wrong password and a denied publish, for the audit log.
	if _, ack, _ := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte("w"), UsernameFlag: true, Username: []byte("alice"),
		PasswordFlag: true, Password: []byte("not-alices-pw")}); ack.Body[1] != byte(mqttwire.BadUserNameOrPassword) {
		t.Errorf("wrong password: CONNACK %x", ack.Raw)
	}
	pubber := alice("dev4", mqttwire.V5)
	pubber.Send(mqtttest.PublishPacket(mqttwire.V5, "other/secret", 1, 1, nil, "m"))
	if p := pubber.Next(); p.Type != mqttwire.PUBACK || p.Body[2] != byte(mqttwire.NotAuthorized) {
		t.Errorf("denied publish: %x", p.Raw)
	}

	// Keys: the short-lived one expires; a revoked one stops at the next
	// poll; one created while running starts.
	mqtttest.WaitFor(t, "the 1s key to expire", func() bool { return time.Since(created) > 1500*time.Millisecond })
	if code, m := api.call(t, shortLived, "GET", "/api/v1/status", ""); code != 401 || m["error"] != "expired API key" {
		t.Errorf("expired key: %d %v", code, m)
	}
	late := newKey(t, keysFile, "late", "viewer", "1h") // before the revoke: the reload that takes the revoke has it
	if out, err := exec.Command(binary, "apikey", "revoke", "dash", "-f", keysFile).CombinedOutput(); err != nil {
		t.Fatalf("revoke: %v %s", err, out)
	}
	mqtttest.WaitFor(t, "the revoked key refused", func() bool {
		code, _ := api.call(t, viewer, "GET", "/api/v1/status", "") // 200 until refused: one refusal at most
		return code == 401
	})
	if code, _ := api.call(t, late, "GET", "/api/v1/status", ""); code != 200 {
		t.Errorf("a key created while running: %d, want 200", code)
	}
	out, _ := exec.Command(binary, "apikey", "list", "-f", keysFile).Output()
	if !strings.Contains(string(out), "brief") || !strings.Contains(string(out), "(expired)") || strings.Contains(string(out), "dash") {
		t.Errorf("apikey list:\n%s", out)
	}

	// Refused keys are rate limited per source (loopback is one): past the
	// burst a wrong key is answered 429 unread, a good one is still
	// served, from any address of the source.
	other := newAPIClient("http://"+adminAddr, "127.0.0.2")
	for range failureBurstForTest {
		other.call(t, "mqttgate_bad", "GET", "/api/v1/status", "")
	}
	if code, _ := api.call(t, "mqttgate_bad", "GET", "/api/v1/status", ""); code != 429 {
		t.Errorf("a wrong key after a burst of refused keys: %d, want 429", code)
	}
	if code, _ := other.call(t, admin, "GET", "/api/v1/status", ""); code != 200 {
		t.Errorf("a good key from the throttled source: %d, want 200", code)
	}
	if code, m := api.call(t, late, "GET", "/api/v1/connections?page=9223372036854775807", ""); code != 400 {
		t.Errorf("a page past any count: %d %v, want 400", code, m)
	}

	// The audit log: a line for each kind, then SIGUSR1 after a rename.
	waitAudit(t, auditFile, "start", map[string]any{})
	waitAudit(t, auditFile, "admin_api", map[string]any{"key": "oncall", "role": "operator", "route": "POST /api/v1/connections/kick", "status": 200, "source": "127.0.0.1"})
	waitAudit(t, auditFile, "admin_api", map[string]any{"key": "dash", "route": "POST /api/v1/reload", "status": 403})
	waitAudit(t, auditFile, "admin_api_refused", map[string]any{"status": 401, "refused": "expired API key", "key": "brief"})
	waitAudit(t, auditFile, "admin_api_refused", map[string]any{"status": 429, "refused": "throttled"})
	waitAudit(t, auditFile, "kick", map[string]any{"client_id": "dev1", "kicked": 1})
	waitAudit(t, auditFile, "ban_added", map[string]any{"kind": "clientid", "value": "dev2", "reason": "stolen"})
	waitAudit(t, auditFile, "ban_removed", map[string]any{"kind": "clientid", "value": "dev2"})
	waitAudit(t, auditFile, "kick", map[string]any{"why": "banned", "kicked": 1})
	waitAudit(t, auditFile, "ban_expired", map[string]any{"kind": "ip", "value": "192.0.2.0/24"})
	waitAudit(t, auditFile, "reload", map[string]any{"file": "MQTTGATE_ADMIN_KEYS_FILE", "trigger": "changed", "changed": true})
	waitAudit(t, auditFile, "auth_refused", map[string]any{"client_id": "w", "username": "alice"})
	waitAudit(t, auditFile, "acl_deny", map[string]any{"client_id": "dev4", "action": "publish", "topic": "other/secret"})
	if err := os.Rename(auditFile, auditFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	g.waitLog(t, `"event":"audit_reopened"`)
	api.call(t, admin, "GET", "/api/v1/bans", "")
	waitAudit(t, auditFile, "admin_api", map[string]any{"key": "root", "route": "GET /api/v1/bans"})

	// The drain: 202 at once, then the process ends.
	if code, _ := api.call(t, operator, "POST", "/api/v1/drain", ""); code != 202 {
		t.Errorf("drain: %d, want 202", code)
	}
	g.waitLog(t, `"message":"stopped"`)
	waitAudit(t, auditFile, "drain", map[string]any{"trigger": "api"})
	all, _ := os.ReadFile(auditFile + ".1")
	cur, _ := os.ReadFile(auditFile)
	all = append(all, cur...)
	for _, secret := range []string{viewer, operator, admin, shortLived, late, "alice-pw", "not-alices-pw"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("the audit log holds a secret %q", secret)
		}
	}
}

// failureBurstForTest is admin's failureBurst plus one.
const failureBurstForTest = 11

// Bans from the API, the bans command and flapping detection, all at
// once: every one ends up in the file (the lock and the reread before
// each write), and the proxy enforces them all.
func TestBansFromAPICLIAndFlappingAllLand(t *testing.T) {
	dir := t.TempDir()
	keysFile, bansFile := filepath.Join(dir, "keys.json"), filepath.Join(dir, "bans.json")
	operator := newKey(t, keysFile, "oncall", "operator", "1h")
	adminAddr := mqtttest.FreeAddr(t)
	g := startGate(t, mqtttest.Mosquitto(t, ""), "MQTTGATE_ADMIN_LISTEN="+adminAddr, "MQTTGATE_ADMIN_KEYS_FILE="+keysFile,
		"MQTTGATE_BANS_FILE="+bansFile, "MQTTGATE_FLAPPING_MAX_DISCONNECTS=3", "MQTTGATE_FLAPPING_WINDOW=1m", "MQTTGATE_FLAPPING_BAN=5m",
		"MQTTGATE_FILE_POLL_INTERVAL=100ms")
	api := newAPIClient("http://"+adminAddr, "127.0.0.1")
	const n = 15
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := range n {
			if code, m := api.call(t, operator, "POST", "/api/v1/bans", fmt.Sprintf(`{"kind":"clientid","value":"api-%d","for":"1h"}`, i)); code != 201 {
				t.Errorf("api ban %d: %d %v", i, code, m)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			if out, err := exec.Command(binary, "bans", "-f", bansFile, "add", "clientid", fmt.Sprintf("cli-%d", i), "-for", "1h").CombinedOutput(); err != nil {
				t.Errorf("cli ban %d: %v %s", i, err, out)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 6 { // past the threshold of 3
			c, ack, err := dialGate(t, g, "", mqttwire.V311, &mqttwire.Connect{ClientID: []byte("flapper"), CleanStart: true})
			if err != nil {
				t.Errorf("flapper: %v", err)
				return
			}
			if ack.Body[1] != 0 {
				return // banned
			}
			c.Send(mqttwire.AppendDisconnect(nil, mqttwire.V311, 0, ""))
			c.NextOrClosed()
		}
	}()
	wg.Wait()
	raw, err := os.ReadFile(bansFile)
	if err != nil {
		t.Fatal(err)
	}
	list, err := limits.ParseBans(raw)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, b := range list {
		have[b.Kind+" "+b.Value] = true
	}
	for i := range n {
		for _, v := range []string{"api-%d", "cli-%d"} {
			if k := "clientid " + fmt.Sprintf(v, i); !have[k] {
				t.Errorf("%s missing from the bans file", k)
			}
		}
	}
	if !have["identity flapper"] {
		t.Errorf("the flapping ban is missing from the bans file: %s", raw)
	}
	// The proxy enforces the command's bans too (it rereads the file).
	mqtttest.WaitFor(t, "a ban from the command enforced", func() bool {
		_, ack, err := dialGate(t, g, "", mqttwire.V5, &mqttwire.Connect{ClientID: []byte(fmt.Sprintf("cli-%d", n-1))})
		return err == nil && ack.Body[1] == byte(mqttwire.Banned)
	})
}
