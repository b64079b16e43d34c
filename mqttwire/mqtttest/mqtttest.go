// Package mqtttest starts the real programs that mqttgate's tests run
// against (Mosquitto, HAProxy) on loopback ports, and small helpers around
// them. It is imported only by tests.
package mqtttest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Need finds an external program. When it is missing the test is skipped,
// except under CI (CI set), where it fails: CI installs what tests need.
func Need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI: %v", prog, err)
		}
		t.Skipf("%s not installed", prog)
	}
	return p
}

// FreeAddr returns a loopback address nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitListening polls until addr accepts connections, for at most 10 s.
func WaitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never started listening", addr)
}

// Start runs a program until the test ends; its output is logged if the
// test fails.
func Start(t testing.TB, name string, cmd *exec.Cmd) *SyncBuffer {
	t.Helper()
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// Mosquitto runs the real broker on a loopback port with anonymous access
// and the extra configuration lines given, and returns its address.
func Mosquitto(t testing.TB, extra string) string {
	t.Helper()
	bin := Need(t, "mosquitto")
	addr := FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	body := fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\n%s", port, host, extra)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	Start(t, "mosquitto", exec.Command(bin, "-c", conf))
	WaitListening(t, addr)
	return addr
}

// SyncBuffer collects output written from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls until cond holds, for at most 10 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SeedCorpus writes seeds as testdata/fuzz/<target>/seed-NN files when
// the environment variable named by env is 1, and otherwise fails the test
// when a target's corpus is missing.
func SeedCorpus(t *testing.T, env string, seeds map[string][][]byte) {
	t.Helper()
	write := os.Getenv(env) == "1"
	for target, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if !write {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) < len(list) {
				t.Errorf("%s: seed corpus missing (run with %s=1)", dir, env)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// CertOf reads the first certificate of a PEM file.
func CertOf(t testing.TB, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// modulePath is this module's import path.
const modulePath = "github.com/mqttgate/mqttgate"

// OnlyDepends fails the test unless every package of this module that the
// package in dir depends on, transitively and its tests included, is dir
// itself or one of allowed (module-relative paths such as "mqttwire" or
// "authn/identity"): the import arrows of the design, checked the way
// `go list -deps -test` sees them.
func OnlyDepends(t testing.TB, dir string, allowed ...string) {
	t.Helper()
	onlyDepends(t, dir, true, allowed)
}

// OnlyDependsOutsideTests is OnlyDepends for the package alone, not its
// tests: for a package whose tests may borrow more than it may import.
func OnlyDependsOutsideTests(t testing.TB, dir string, allowed ...string) {
	t.Helper()
	onlyDepends(t, dir, false, allowed)
}

func onlyDepends(t testing.TB, dir string, tests bool, allowed []string) {
	t.Helper()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}", dir}
	if tests {
		args = append(args[:2], append([]string{"-test"}, args[2:]...)...)
	}
	out, err := exec.Command(Need(t, "go"), args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	self, err := exec.Command(Need(t, "go"), "list", "-f", "{{.ImportPath}}", dir).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	ok := map[string]bool{strings.TrimSpace(string(self)): true}
	for _, a := range allowed {
		ok[modulePath+"/"+a] = true
	}
	for _, line := range strings.Split(string(out), "\n") {
		p, _, _ := strings.Cut(line, " ") // "p [q.test]": p as q's tests see it
		p = strings.TrimSuffix(strings.TrimSuffix(p, ".test"), "_test")
		if strings.HasPrefix(p, modulePath+"/") && !ok[p] {
			t.Errorf("%s depends on %s (tests included: %v)", strings.TrimSpace(string(self)), p, tests)
		}
	}
}

// OnlyStandardLibrary fails the test unless the package in dir (not its
// tests) depends, transitively, on the standard library alone.
func OnlyStandardLibrary(t testing.TB, dir string) {
	t.Helper()
	out, err := exec.Command(Need(t, "go"), "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", dir).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	self, _ := exec.Command(Need(t, "go"), "list", "-f", "{{.ImportPath}}", dir).Output()
	for _, p := range strings.Fields(string(out)) {
		if p != strings.TrimSpace(string(self)) {
			t.Errorf("%s depends on %s", strings.TrimSpace(string(self)), p)
		}
	}
}
