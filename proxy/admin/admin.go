package admin

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what the admin listener serves.
type Config struct {
	// Ready reports, at each /readyz, whether the proxy should be sent
	// clients, and why not (a JSON reason) when it should not. The
	// broker check and the drain are added by the Server itself.
	Ready func() (ok bool, reason string)
	// BrokerCheck dials the broker once (readiness); nil: no check.
	BrokerCheck func(ctx context.Context) error
	// CheckEvery is how often BrokerCheck runs.
	CheckEvery time.Duration
	// BrokerChanged, when set, is told each change of the broker check's
	// answer (nil: reachable again), for the operational log: /readyz
	// gives the reason without the dial's error.
	BrokerChanged func(err error)
	// Metrics are the collectors /metrics exposes, beside the Go runtime
	// and process collectors.
	Metrics []prometheus.Collector
	// API is what /api/v1 acts on; nil: every /api/ call is refused.
	API *API
}

// Server is the admin HTTP plane.
type Server struct {
	cfg       Config
	reg       *prometheus.Registry
	brokerOK  atomic.Bool
	brokerWhy atomic.Value // string: why the last check failed
	checked   atomic.Bool  // a check has run
	draining  atomic.Bool
	http      *http.Server
}

// New builds the admin plane; Serve starts it.
func New(cfg Config) (*Server, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	for _, c := range cfg.Metrics {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	s := &Server{cfg: cfg, reg: reg}
	s.brokerWhy.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	a := newAPI(cfg.API)
	a.routes(mux)
	var metrics http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if a.MetricsAuth {
		metrics = a.need(Viewer, metrics.ServeHTTP)
	}
	mux.Handle("GET /metrics", metrics)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	return s, nil
}

// Handler is the plane's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// MaxConns bounds the admin listener's connections at once: each is a
// descriptor the MQTT listener needs too.
const MaxConns = 64

// Serve answers on ln (at most MaxConns connections at once) and runs the
// broker check until ctx ends or the listener fails; it returns then,
// with the listener's error, its goroutines ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait() // after the cancel below (deferred calls run last first)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.cfg.BrokerCheck != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.checkLoop(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = s.http.Shutdown(sctx)
	}()
	if err := s.http.Serve(limitListener(ln, MaxConns, MaxConnsPerSource)); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// MaxConnsPerSource bounds one source's share (an IPv4 /24, an IPv6 /64,
// loopback as one): a client holding connections open cannot take the
// probes' and the operators' slots.
const MaxConnsPerSource = 16

// limitListener admits at most n connections at once, and perSource
// from one source; past either the connection is closed at once (rather
// than left waiting in the backlog, which a prober would take for a hung
// process).
func limitListener(ln net.Listener, n, perSource int) net.Listener {
	return &limited{Listener: ln, max: n, perSource: perSource, bySource: map[netip.Prefix]int{}}
}

type limited struct {
	net.Listener
	max, perSource int
	mu             sync.Mutex
	open           int
	bySource       map[netip.Prefix]int
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var src netip.Prefix
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			src = sourceOf(ap.Addr().Unmap())
		}
		l.mu.Lock()
		if l.open >= l.max || l.bySource[src] >= l.perSource {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		l.bySource[src]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: func() {
			l.mu.Lock()
			l.open--
			if l.bySource[src]--; l.bySource[src] == 0 {
				delete(l.bySource, src)
			}
			l.mu.Unlock()
		}}, nil
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// LastBrokerError is why the last readiness dial failed ("" after a good
// one), for the operational log.
func (s *Server) LastBrokerError() string {
	if s.brokerOK.Load() {
		return ""
	}
	return s.brokerWhy.Load().(string)
}

// Drain makes /readyz answer 503 from now on, so that balancers stop
// sending clients before the listeners close.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) checkLoop(ctx context.Context) {
	every := s.cfg.CheckEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.checkOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOnce dials the broker; the answer holds until the next check.
func (s *Server) checkOnce(ctx context.Context) {
	every := s.cfg.CheckEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	err := s.cfg.BrokerCheck(cctx)
	if err != nil {
		s.brokerWhy.Store(err.Error())
	}
	was, checked := s.brokerOK.Swap(err == nil), s.checked.Swap(true)
	if f := s.cfg.BrokerChanged; f != nil && (!checked || was != (err == nil)) {
		f(err)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	reason := ""
	switch {
	case s.draining.Load():
		reason = "draining"
	case s.cfg.BrokerCheck != nil && !s.checked.Load():
		reason = "broker not checked yet"
	case s.cfg.BrokerCheck != nil && !s.brokerOK.Load():
		reason = "broker unreachable" // the dial's error (addresses) stays in the process: LastBrokerError
	case s.cfg.Ready != nil:
		if ok, why := s.cfg.Ready(); !ok {
			reason = why
		}
	}
	if reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
