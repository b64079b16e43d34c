package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/cmd/mqttgate/devpki"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestBadConfigurationExitsTwoNamingTheVariable(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"certs", "init", dir}, nil, new(bytes.Buffer), new(bytes.Buffer)); code != 0 {
		t.Fatalf("certs init: exit %d", code)
	}
	good := map[string]string{"MQTTGATE_TLS_CERT": dir + "/server.pem", "MQTTGATE_TLS_KEY": dir + "/server-key.pem"}
	cases := []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{}, "MQTTGATE_TLS_CERT"},
		{map[string]string{"MQTTGATE_DIAL_TIMEOUT": "soon"}, "MQTTGATE_DIAL_TIMEOUT"},
		{map[string]string{"MQTTGATE_CLIENT_WRITE_TIMEOUT": "0s"}, "MQTTGATE_CLIENT_WRITE_TIMEOUT"},
		{map[string]string{"MQTTGATE_WS_TRUSTED_PROXIES": "127.0.0.1"}, "MQTTGATE_WS_TRUSTED_PROXIES"}, // no WebSocket listener
		{map[string]string{"MQTTGATE_LISTEN_WS": "127.0.0.1:0", "MQTTGATE_WS_TRUSTED_PROXIES": "10.0.0.0/33"}, "MQTTGATE_WS_TRUSTED_PROXIES"},
		{map[string]string{"MQTTGATE_LISTEN_WS": "127.0.0.1:0", "MQTTGATE_WS_TRUSTED_PROXIES": "all"}, "MQTTGATE_WS_TRUSTED_PROXIES"},
		{map[string]string{"MQTTGATE_TLS_CLIENT_AUTH": "maybe"}, "MQTTGATE_TLS_CLIENT_AUTH"},
		{map[string]string{"MQTTGATE_TLS_CLIENT_AUTH": "require"}, "MQTTGATE_TLS_CLIENT_CA"},
		{map[string]string{"MQTTGATE_ACCESS_RULES": "allow 10.0.0.0/33"}, "MQTTGATE_ACCESS_RULES"},
		{map[string]string{"MQTTGATE_PROXY_PROTOCOL": "true"}, "MQTTGATE_PROXY_PROTOCOL_TRUSTED"},
		{map[string]string{"MQTTGATE_PROXY_PROTOCOL": "true", "MQTTGATE_PROXY_PROTOCOL_TRUSTED": "all"}, "MQTTGATE_PROXY_PROTOCOL_TRUSTED"},
		{map[string]string{"MQTTGATE_PROXY_PROTOCOL_TRUSTED": "10.0.0.0/8"}, "MQTTGATE_PROXY_PROTOCOL_TRUSTED"},
		{map[string]string{"MQTTGATE_BACKEND_PROXY_PROTOCOL": "true", "MQTTGATE_BACKEND_PROXY_TLVS": "some"}, "MQTTGATE_BACKEND_PROXY_TLVS"},
		{map[string]string{"MQTTGATE_BACKEND_PROXY_TLVS": "none"}, "MQTTGATE_BACKEND_PROXY_TLVS"},
		{map[string]string{"MQTTGATE_ADMIN_LISTEN": "0.0.0.0:9090"}, "MQTTGATE_ADMIN_LISTEN"},
		{map[string]string{"MQTTGATE_ADMIN_LISTEN": "127.0.0.1:9090", "MQTTGATE_ADMIN_TLS_CERT": "c.pem"}, "MQTTGATE_ADMIN_TLS_KEY"},
		{map[string]string{"MQTTGATE_ADMIN_TLS_CERT": "c.pem", "MQTTGATE_ADMIN_TLS_KEY": "k.pem"}, "MQTTGATE_ADMIN_TLS_CERT"},
		{map[string]string{"MQTTGATE_ADMIN_LISTEN": "127.0.0.1:9090", "MQTTGATE_READY_CHECK_INTERVAL": "1ms"}, "MQTTGATE_READY_CHECK_INTERVAL"},
		{map[string]string{"MQTTGATE_MAX_PACKET_SIZE": "1"}, "MQTTGATE_MAX_PACKET_SIZE"},
		{map[string]string{"MQTTGATE_LOG_FORMAT": "xml"}, "MQTTGATE_LOG_FORMAT"},
		{map[string]string{"MQTTGATE_BACKEND": "nohost"}, "MQTTGATE_BACKEND"},
		{map[string]string{"MQTTGATE_TLS_KEY_PASSPHRASE_FILE": dir + "/missing"}, "MQTTGATE_TLS_KEY_PASSPHRASE_FILE"},
		{map[string]string{"MQTTGATE_TLS_CERT": dir + "/missing.pem"}, "MQTTGATE_TLS_KEY"},
		{map[string]string{"MQTTGATE_AUTHN": "cert,ldap"}, "MQTTGATE_AUTHN"},
		{map[string]string{"MQTTGATE_AUTHN": "cert"}, "MQTTGATE_AUTHN"}, // no client certificates
		{map[string]string{"MQTTGATE_CERT_IDENTITY": "cn", "MQTTGATE_TLS_CLIENT_AUTH": "optional", "MQTTGATE_TLS_CLIENT_CA": dir + "/ca.pem"}, "MQTTGATE_CERT_IDENTITY"},
		{map[string]string{"MQTTGATE_CERT_IDENTITY_CLIENTID": "serial", "MQTTGATE_TLS_CLIENT_AUTH": "require", "MQTTGATE_TLS_CLIENT_CA": dir + "/ca.pem"}, "MQTTGATE_CERT_IDENTITY_CLIENTID"},
		{map[string]string{"MQTTGATE_AUTHN": "rules", "MQTTGATE_AUTHN_RULES": "clientid ~ ("}, "MQTTGATE_AUTHN_RULES"},
		{map[string]string{"MQTTGATE_CLIENTID_PATTERN": "${user}-*"}, "MQTTGATE_CLIENTID_PATTERN"},
		{map[string]string{"MQTTGATE_CLIENTID_PATTERN": "${username"}, "MQTTGATE_CLIENTID_PATTERN"},
		{map[string]string{"MQTTGATE_CLIENTID_PATTERN": "${username}*"}, "MQTTGATE_CLIENTID_PATTERN"},
		{map[string]string{"MQTTGATE_AUTHN_RULES": `username != ""`}, "MQTTGATE_AUTHN_RULES"}, // set but not in the chain
		{map[string]string{"MQTTGATE_AUTHN": "password"}, "MQTTGATE_PASSWORD_FILE"},
		{map[string]string{"MQTTGATE_TLS_CRL": dir + "/ca.pem"}, "MQTTGATE_TLS_CRL"},
		{map[string]string{"MQTTGATE_TLS_GROUPS": "X25519,X448"}, "MQTTGATE_TLS_GROUPS"},
		{map[string]string{"MQTTGATE_TLS_GROUPS": "X25519,x25519"}, "MQTTGATE_TLS_GROUPS"},
		{map[string]string{"MQTTGATE_ACL_MODE": "maybe"}, "MQTTGATE_ACL_MODE"},
		{map[string]string{"MQTTGATE_ACL_NO_MATCH": "perhaps"}, "MQTTGATE_ACL_NO_MATCH"},
		{map[string]string{"MQTTGATE_ACL_FILE": dir + "/ca.pem"}, "MQTTGATE_ACL_FILE"},
		{map[string]string{"MQTTGATE_MAX_TOPIC_LEVELS": "-1"}, "MQTTGATE_MAX_TOPIC_LEVELS"},
		{map[string]string{"MQTTGATE_RATE_ACTION": "drop"}, "MQTTGATE_RATE_ACTION"},
		{map[string]string{"MQTTGATE_MAX_KEEPALIVE": "1500ms"}, "MQTTGATE_MAX_KEEPALIVE"},
		{map[string]string{"MQTTGATE_PUBLISH_RATE": "fast"}, "MQTTGATE_PUBLISH_RATE"},
		{map[string]string{"MQTTGATE_BANS_FILE": dir + "/ca.pem"}, "MQTTGATE_BANS_FILE"},
		{map[string]string{"MQTTGATE_AUTHN": "jwt", "MQTTGATE_JWT_KEYS": dir + "/server-key.pem"}, "MQTTGATE_JWT_KEYS"},
		{map[string]string{"MQTTGATE_AUTHN": "jwt", "MQTTGATE_JWT_SECRET": "short", "MQTTGATE_JWT_ALGORITHMS": "HS256"}, "MQTTGATE_JWT_SECRET"},
		{map[string]string{"MQTTGATE_AUTHN": "http", "MQTTGATE_HTTP_AUTH_URL": "ftp://x"}, "MQTTGATE_HTTP_AUTH_URL"},
		{map[string]string{"MQTTGATE_AUTHN": "http", "MQTTGATE_HTTP_AUTH_URL": "https://auth.example/mqtt", "MQTTGATE_HTTP_AUTH_ON_ERROR": "allow"}, "MQTTGATE_HTTP_AUTH_ON_ERROR"},
		{map[string]string{"MQTTGATE_AUTHN": "password", "MQTTGATE_PASSWORD_FILE": dir + "/missing"}, "MQTTGATE_PASSWORD_FILE"},
	}
	for _, c := range cases {
		env := map[string]string{}
		if c.wantVar != "MQTTGATE_TLS_CERT" && c.wantVar != "MQTTGATE_TLS_KEY" {
			for k, v := range good {
				env[k] = v
			}
		}
		for k, v := range c.env {
			env[k] = v
		}
		var stderr bytes.Buffer
		code := run(nil, env, new(bytes.Buffer), &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.wantVar+":") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.env, code, stderr.String(), c.wantVar)
		}
	}
	// A password file with a plaintext password stops start-up, naming the line.
	plain := dir + "/plain-passwd"
	if err := os.WriteFile(plain, []byte("# users\nalice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env0 := map[string]string{"MQTTGATE_AUTHN": "password", "MQTTGATE_PASSWORD_FILE": plain, "MQTTGATE_LISTEN_TLS": "127.0.0.1:0"}
	for k, v := range good {
		env0[k] = v
	}
	var stderr0 bytes.Buffer
	if code := run(nil, env0, new(bytes.Buffer), &stderr0); code != 2 || !strings.Contains(stderr0.String(), "MQTTGATE_PASSWORD_FILE: "+plain+": line 2") {
		t.Errorf("plaintext password file: exit %d, %q", code, stderr0.String())
	}

	// A certificate file that does not parse also stops start-up with exit 2.
	env := map[string]string{"MQTTGATE_TLS_CERT": dir + "/ca.pem", "MQTTGATE_TLS_KEY": dir + "/server-key.pem", "MQTTGATE_LISTEN_TLS": "127.0.0.1:0"}
	var stderr bytes.Buffer
	if code := run(nil, env, new(bytes.Buffer), &stderr); code != 2 || !strings.Contains(stderr.String(), "MQTTGATE_TLS_CERT") {
		t.Errorf("mismatched key: exit %d, %q", code, stderr.String())
	}
}

// A start-up step that fails undoes the ones before it: the TLS listener
// opened before the profiling address turned out to be taken is closed.
func TestStartupFailureClosesWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"certs", "init", dir}, nil, new(bytes.Buffer), new(bytes.Buffer)); code != 0 {
		t.Fatalf("certs init: exit %d", code)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tlsAddr := mqtttest.FreeAddr(t)
	c, err := loadConfig(map[string]string{"MQTTGATE_TLS_CERT": dir + "/server.pem", "MQTTGATE_TLS_KEY": dir + "/server-key.pem",
		"MQTTGATE_LISTEN_TLS": tlsAddr, "MQTTGATE_PPROF_ADDR": taken.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startGateway(c, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "MQTTGATE_PPROF_ADDR") {
		t.Fatalf("start-up with the profiling address taken: %v", err)
	}
	ln, err := net.Listen("tcp", tlsAddr)
	if err != nil {
		t.Fatalf("the TLS listener of the failed start-up still holds %s: %v", tlsAddr, err)
	}
	ln.Close()
}

// A file changed less than fileSettle ago is left to the next poll: a
// file written in place is first empty (an empty password file admits
// nobody), then filled.
func TestReloadWaitsForAFileToSettle(t *testing.T) {
	file := writeFile(t, "passwd", "")
	now := time.Now()
	f := reloadable{name: "PASSWORD_FILE", path: file}
	if err := os.Chtimes(file, now, now); err != nil {
		t.Fatal(err)
	}
	if !f.settling(now.Add(fileSettle / 2)) {
		t.Error("a file changed just now was taken by a poll")
	}
	if f.settling(now.Add(fileSettle)) {
		t.Error("a file still for fileSettle was not taken")
	}
	if (reloadable{name: "JWT_KEYS"}).settling(now) {
		t.Error("a reloadable without one file waited")
	}
}

// A misspelt setting stops start-up naming the closest known one; every
// MQTTGATE_ variable the README names is one mqttgate reads.
func TestUnknownSettingRefused(t *testing.T) {
	_, err := loadConfig(map[string]string{"MQTTGATE_LISTEN_TCP": "127.0.0.1:0", "MQTTGATE_ACL_FIEL": "acl"})
	var ce *configError
	if !errors.As(err, &ce) || err.Error() != "MQTTGATE_ACL_FIEL: unknown setting; did you mean MQTTGATE_ACL_FILE?" {
		t.Fatalf("got %v", err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	known := knownSettings()
	for _, name := range regexp.MustCompile(`MQTTGATE_[A-Z0-9_]+`).FindAllString(string(readme), -1) {
		if !known[name] && !strings.HasSuffix(name, "_") && name != "MQTTGATE_ACL_FIEL" && !kubernetesServiceLink.MatchString(name) { // MAX_TOPIC_*: a family; ACL_FIEL: the example of a typo; the service links the README lists
			t.Errorf("the README names %s, which mqttgate does not read", name)
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, nil, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "mqttgate ") || !strings.Contains(out.String(), "\ngo1.") {
		t.Fatalf("exit %d, %q %q", code, out.String(), errOut.String())
	}
}

// mqttgate config prints the settings in force, secrets redacted, and
// refuses what start-up refuses.
func TestConfigCommandRedactsSecrets(t *testing.T) {
	pki, err := devpki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MQTTGATE_TLS_CERT": pki.ServerCert, "MQTTGATE_TLS_KEY": pki.ServerKey,
		"MQTTGATE_AUTHN": "jwt,http", "MQTTGATE_JWT_SECRET": "topsecret-hs256-key-of-enough-length", "MQTTGATE_JWT_ALGORITHMS": "HS256",
		"MQTTGATE_HTTP_AUTH_URL": "https://svc:hunter2@auth.example/check?api_key=k3y", "MQTTGATE_DRAIN_DELAY": "2s",
		"MQTTGATE_JWT_JWKS_URL": "https://tok3n@idp.example/jwks"}
	var out, errOut bytes.Buffer
	if code := run([]string{"config"}, env, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"MQTTGATE_JWT_SECRET=<redacted>\n", "MQTTGATE_DRAIN_DELAY=2s\n", "MQTTGATE_HTTP_AUTH_URL=https://redacted@auth.example/check?api_key=redacted\n", "MQTTGATE_JWT_JWKS_URL=https://redacted@idp.example/jwks\n",
		"MQTTGATE_BACKEND=127.0.0.1:1883\n", "MQTTGATE_TLS_KEY_PASSPHRASE=\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	for _, secret := range []string{"topsecret", "hunter2", "k3y", "tok3n"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("%q printed", secret)
		}
	}
	if code := run([]string{"config"}, map[string]string{"MQTTGATE_ACL_FIEL": "x"}, &out, &errOut); code != 2 {
		t.Errorf("a typo: exit %d, want 2", code)
	}
}

// The variables the kubelet injects for a Service named mqttgate (or
// mqttgate-admin) are not settings, and do not stop start-up; a misspelt
// setting that merely ends in _PORT still does.
func TestKubernetesServiceLinksAreNotSettings(t *testing.T) {
	links := map[string]string{"MQTTGATE_PORT": "tcp://10.0.0.1:8883", "MQTTGATE_SERVICE_HOST": "10.0.0.1", "MQTTGATE_SERVICE_PORT": "8883",
		"MQTTGATE_SERVICE_PORT_MQTTS": "8883", "MQTTGATE_PORT_8883_TCP": "tcp://10.0.0.1:8883", "MQTTGATE_PORT_8883_TCP_PROTO": "tcp",
		"MQTTGATE_PORT_8883_TCP_PORT": "8883", "MQTTGATE_PORT_8883_TCP_ADDR": "10.0.0.1", "MQTTGATE_ADMIN_PORT": "tcp://10.0.0.2:9090",
		"MQTTGATE_ADMIN_SERVICE_HOST": "10.0.0.2"}
	if err := unknownSettings(links); err != nil {
		t.Fatalf("service links refused: %v", err)
	}
	if err := unknownSettings(map[string]string{"MQTTGATE_LISTEN_PORT": "8883"}); err == nil {
		t.Fatal("MQTTGATE_LISTEN_PORT=8883 (a typo, not a service link) accepted")
	}
}
