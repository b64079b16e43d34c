package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// Readiness: the broker check, the other conditions, and the drain.
func TestReadiness(t *testing.T) {
	var brokerDown, notReady atomic.Bool
	s, err := New(Config{
		BrokerCheck: func(context.Context) error {
			if brokerDown.Load() {
				return errors.New("connection refused")
			}
			return nil
		},
		Ready: func() (bool, string) {
			if notReady.Load() {
				return false, "no certificates loaded"
			}
			return true, ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "not checked yet") {
		t.Errorf("before the first check: %d %s", code, body)
	}
	s.checkOnce(context.Background())
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("broker up: %d", code)
	}
	brokerDown.Store(true)
	s.checkOnce(context.Background())
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "broker unreachable") || strings.Contains(body, "refused") {
		t.Errorf("broker down: %d %s (the reason, not the dial's error: that stays in the process)", code, body)
	}
	if why := s.LastBrokerError(); why != "connection refused" {
		t.Errorf("LastBrokerError %q", why)
	}
	brokerDown.Store(false)
	s.checkOnce(context.Background())
	notReady.Store(true)
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "no certificates") {
		t.Errorf("not ready: %d %s", code, body)
	}
	notReady.Store(false)
	s.Drain()
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("draining: %d %s", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz while draining: %d", code)
	}
	if code, _ := get(t, h, "/api/v1/status"); code != 401 {
		t.Errorf("the API without keys: %d, want 401", code)
	}
}

// Metrics are read at scrape time; Decisions counts by stage, verdict and
// dry run, and allocates nothing.
func TestMetrics(t *testing.T) {
	var n atomic.Int64
	d := new(Decisions)
	s, err := New(Config{Metrics: []prometheus.Collector{
		Func("mqttgate_test_total", "A test counter.", prometheus.CounterValue, []string{"kind"},
			func() []Sample { return []Sample{{Labels: []string{"a"}, Value: float64(n.Load())}} }),
		d.Collector(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.Store(3)
	d.Decided("topics", mqttwire.Decision{Verdict: mqttwire.Refuse})
	d.Decided("topics", mqttwire.Decision{Mark: mqttwire.DryRun})
	d.Decided("elsewhere", mqttwire.Decision{Verdict: mqttwire.Refuse}) // not a stage: not counted
	if a := testing.AllocsPerRun(100, func() { d.Decided("limits", mqttwire.Decision{Verdict: mqttwire.End}) }); a != 0 {
		t.Errorf("%v allocations per decision", a)
	}
	_, body := get(t, s.Handler(), "/metrics")
	for _, want := range []string{`mqttgate_test_total{kind="a"} 3`, `mqttgate_decisions_total{dry_run="false",stage="topics",verdict="refuse"} 1`,
		`mqttgate_decisions_total{dry_run="true",stage="topics",verdict="forward"} 1`, "mqttgate_decisions_total{dry_run=\"false\",stage=\"limits\",verdict=\"end\"} 101\n",
		"go_goroutines", "process_open_fds"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
}

// Serve answers until its context ends, and the broker check runs on
// its interval meanwhile; when the listener fails, Serve returns its
// error with its goroutines ended (goleak).
func TestServe(t *testing.T) {
	var checks atomic.Int64
	s, err := New(Config{CheckEvery: 10 * time.Millisecond, BrokerCheck: func(context.Context) error { checks.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	mqtttest.WaitFor(t, "three broker checks", func() bool { return checks.Load() >= 3 })
	resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}

	s2, err := New(Config{CheckEvery: 10 * time.Millisecond, BrokerCheck: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s2.Serve(context.Background(), ln2) }()
	mqtttest.WaitFor(t, "serving", func() bool {
		c, err := net.Dial("tcp", ln2.Addr().String())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	ln2.Close() // the listener fails under it
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned nil after its listener failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listener failed")
	}
}

// At most n connections at once and perSource from one source (loopback
// is one): past either, a connection is closed at once (read: EOF), and a
// slot freed is taken again.
func TestConnectionCap(t *testing.T) {
	for _, c := range []struct{ n, perSource int }{{2, 10}, {10, 2}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := limitListener(ln, c.n, c.perSource)
		accepted := make(chan net.Conn, 8)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		dial := func(from string) net.Conn {
			t.Helper()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return conn
		}
		closedAtOnce := func(conn net.Conn) bool {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := conn.Read(make([]byte, 1))
			ne, isNet := err.(net.Error)
			return err != nil && !(isNet && ne.Timeout())
		}
		dial("127.0.0.1")
		dial("127.0.0.2")
		first := <-accepted
		<-accepted
		if !closedAtOnce(dial("127.0.0.3")) {
			t.Fatalf("%+v: a third connection was kept", c)
		}
		first.Close()
		dial("127.0.0.5")
		select {
		case conn := <-accepted:
			conn.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("%+v: a freed slot was not taken again", c)
		}
		l.Close()
	}
}
