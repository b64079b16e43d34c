package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqttgate/mqttgate/authn"
	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/mqttwire"
	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/admin"
	"github.com/mqttgate/mqttgate/proxy/brokerpool"
)

// checkAdmin refuses an admin listener that would serve the management
// plane in the clear beyond this host.
func (c *config) checkAdmin() error {
	if c.AdminListen == "" {
		if c.AdminTLSCert != "" || c.AdminTLSKey != "" {
			return bad("ADMIN_TLS_CERT", "set, but the admin listener is off (MQTTGATE_ADMIN_LISTEN)")
		}
		if c.AdminKeysFile != "" || c.AdminMetricsAuth || c.AdminTLSClientCA != "" {
			return bad("ADMIN_KEYS_FILE", "admin settings set, but the admin listener is off (MQTTGATE_ADMIN_LISTEN)")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(c.AdminListen)
	if err != nil {
		return bad("ADMIN_LISTEN", "%q: want host:port", c.AdminListen)
	}
	if (c.AdminTLSCert == "") != (c.AdminTLSKey == "") {
		return bad("ADMIN_TLS_KEY", "MQTTGATE_ADMIN_TLS_CERT and MQTTGATE_ADMIN_TLS_KEY go together")
	}
	if c.AdminTLSClientCA != "" && c.AdminTLSCert == "" {
		return bad("ADMIN_TLS_CLIENT_CA", "client certificates need HTTPS (MQTTGATE_ADMIN_TLS_CERT, MQTTGATE_ADMIN_TLS_KEY)")
	}
	if ip := net.ParseIP(host); c.AdminTLSCert == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return bad("ADMIN_LISTEN", "%q is not a loopback address: the admin plane beyond this host needs HTTPS (MQTTGATE_ADMIN_TLS_CERT, MQTTGATE_ADMIN_TLS_KEY)", c.AdminListen)
	}
	if c.ReadyCheckInterval < 100*time.Millisecond {
		return bad("READY_CHECK_INTERVAL", "%v: at least 100ms", c.ReadyCheckInterval)
	}
	return nil
}

// buildAdmin builds the admin plane over the gateway's parts: metrics
// read from the counters they keep, readiness from the listeners, the
// certificates and a broker dial.
func (c *config) buildAdmin(g *gateway, chain *authn.Chain, m *meters, keys *admin.Keys) (*admin.Server, error) {
	decisions, traffic, timings := m.decisions, m.traffic, m.timings
	srv := g.srv
	st := &srv.Stats
	counter := func(name, help string, read func() int64) prometheus.Collector {
		return admin.Func(name, help, prometheus.CounterValue, nil, func() []admin.Sample { return []admin.Sample{{Value: float64(read())}} })
	}
	metrics := []prometheus.Collector{
		admin.Func("mqttgate_connections_open", "Connections open now, by listener and MQTT version (none: not past CONNECT yet).",
			prometheus.GaugeValue, []string{"listener", "protocol"}, func() []admin.Sample {
				var out []admin.Sample
				past := 0
				for _, o := range srv.OpenCounts() {
					out = append(out, admin.Sample{Labels: []string{o.Listener, o.Protocol.String()}, Value: float64(o.N)})
					past += o.N
				}
				return append(out, admin.Sample{Labels: []string{"", "none"}, Value: float64(max(0, int(st.Active.Load())-past))})
			}),
		admin.Func("mqttgate_packets_total", "MQTT packets by direction and type.", prometheus.CounterValue, []string{"direction", "type"},
			func() []admin.Sample { return trafficSamples(traffic, false) }),
		admin.Func("mqttgate_packet_bytes_total", "Bytes of MQTT packets by direction and type.", prometheus.CounterValue,
			[]string{"direction", "type"}, func() []admin.Sample { return trafficSamples(traffic, true) }),
		admin.Func("mqttgate_reloads_total", "File reloads by file and result.", prometheus.CounterValue, []string{"file", "result"},
			func() []admin.Sample {
				g.reloadMu.Lock()
				defer g.reloadMu.Unlock()
				var out []admin.Sample
				for name, f := range g.loads {
					out = append(out, admin.Sample{Labels: []string{envPrefix + name, "ok"}, Value: float64(f.Generation - 1)},
						admin.Sample{Labels: []string{envPrefix + name, "failed"}, Value: float64(f.Failures)})
				}
				return out
			}),
		admin.Func("mqttgate_bans", "Bans in force, by kind.", prometheus.GaugeValue, []string{"kind"}, func() []admin.Sample {
			n := map[string]int{limits.BanClientID: 0, limits.BanUsername: 0, limits.BanIP: 0, limits.BanIdentity: 0}
			now := time.Now()
			for _, b := range g.bans.List() {
				if now.Before(b.Until) {
					n[b.Kind]++
				}
			}
			var out []admin.Sample
			for kind, c := range n {
				out = append(out, admin.Sample{Labels: []string{kind}, Value: float64(c)})
			}
			return out
		}),
		counter("mqttgate_connections_accepted_total", "TCP connections accepted.", st.Accepted.Load),
		admin.Func("mqttgate_connections_refused_total", "Connections refused or ended before the broker saw them, by stage.", prometheus.CounterValue,
			[]string{"stage"}, func() []admin.Sample {
				stage := func(name string, n int64) admin.Sample {
					return admin.Sample{Labels: []string{name}, Value: float64(n)}
				}
				return []admin.Sample{stage("access_rule", st.AccessDenied.Load()), stage("proxy_header", st.ProxyHeaderRefused.Load()),
					stage("cap", st.ConnRefused.Load()), stage("handshake", st.HandshakeFailed.Load()), stage("no_connect", st.NoConnect.Load()),
					stage("auth", st.AuthRefused.Load()), stage("broker_unavailable", st.BackendDown.Load())}
			}),
		counter("mqttgate_protocol_errors_total", "Client packets that broke the protocol.", st.BadPacket.Load),
		counter("mqttgate_packets_refused_total", "Client packets refused and answered by the proxy.", st.Refused.Load),
		counter("mqttgate_acl_denials_total", "ACL denials (publish, subscribe, will, delivery; dry run included).", st.TopicDenied.Load),
		counter("mqttgate_throttled_total", "Times a client was held back for its rate.", st.Throttled.Load),
		counter("mqttgate_credentials_expired_total", "Sessions ended when their credentials expired.", st.Expired.Load),
		admin.Func("mqttgate_limit_hits_total", "Limits reached, by limit.", prometheus.CounterValue, []string{"limit"}, func() []admin.Sample {
			var out []admin.Sample
			for _, l := range srv.LimitCounts() {
				out = append(out, admin.Sample{Labels: []string{l.Kind}, Value: float64(l.N)})
			}
			return out
		}),
		decisions.Collector(),
	}
	metrics = append(metrics, timings.Collectors()...)
	if pool := g.pool; pool != nil {
		metrics = append(metrics, admin.Func("mqttgate_backend_up", "Broker nodes: 1 up, 0 down or draining.", prometheus.GaugeValue,
			[]string{"backend", "state"}, func() []admin.Sample {
				var out []admin.Sample
				for _, n := range pool.Nodes() {
					v := 0.0
					if n.State() == brokerpool.Up {
						v = 1
					}
					out = append(out, admin.Sample{Labels: []string{n.Addr, n.State().String()}, Value: v})
				}
				return out
			}), admin.Func("mqttgate_backend_connections", "Clients each broker node serves now.", prometheus.GaugeValue,
			[]string{"backend"}, func() []admin.Sample {
				var out []admin.Sample
				for _, n := range pool.Nodes() {
					out = append(out, admin.Sample{Labels: []string{n.Addr}, Value: float64(n.Conns())})
				}
				return out
			}))
	}
	if chain != nil {
		metrics = append(metrics, admin.Func("mqttgate_auth_outcomes_total", "Authentication outcomes by authenticator, verdict and cause.",
			prometheus.CounterValue, []string{"authenticator", "verdict", "cause"}, func() []admin.Sample {
				var out []admin.Sample
				for _, n := range chain.Counts() {
					out = append(out, admin.Sample{Labels: []string{n.Authenticator, n.Verdict, n.Cause}, Value: float64(n.N)})
				}
				return out
			}))
	}
	if store := g.store; store != nil {
		metrics = append(metrics, admin.Func("mqttgate_certificate_expiry_seconds",
			"Seconds until each certificate in service expires (server, intermediate, client_ca) and each CRL's next update (crl).",
			prometheus.GaugeValue, []string{"certificate", "subject"}, func() []admin.Sample {
				var out []admin.Sample
				seen := map[[2]string]bool{}
				for _, e := range store.Expiries() {
					k := [2]string{e.Kind, e.Name}
					if !seen[k] { // one series per kind and subject: a CA in two chains is one
						seen[k] = true
						out = append(out, admin.Sample{Labels: []string{e.Kind, e.Name}, Value: time.Until(e.Until).Seconds()})
					}
				}
				return out
			}))
	}
	backend, dialTimeout := c.Backend, c.DialTimeout
	if keys == nil {
		g.log.Warn().Msg("no MQTTGATE_ADMIN_KEYS_FILE: every admin API call is refused")
	}
	settings := c.effective()
	api := &admin.API{Keys: keys, Conns: srv, Bans: g.bans, MetricsAuth: c.AdminMetricsAuth, Audit: g.audit, Log: g.log,
		SecurityLog: g.secLog, UsernamesAreSecret: c.usernameIsSecret(),
		BansChanged: func() int {
			g.reloadMu.Lock()
			defer g.reloadMu.Unlock()
			return g.watchBans(time.Now())
		},
		Reload: func() []admin.FileResult { return g.reload("api") },
		Drain: func() {
			select {
			case g.drainc <- "api":
			default: // already asked
			}
		},
		Status: func() any {
			g.reloadMu.Lock()
			defer g.reloadMu.Unlock()
			files := map[string]fileState{}
			for name, st := range g.loads {
				files[envPrefix+name] = *st
			}
			return map[string]any{"version": moduleVersion(), "started": g.started.UTC(), "uptime_seconds": int64(time.Since(g.started).Seconds()),
				"connections": st.Active.Load(), "settings": settings, "files": files}
		},
	}
	if pool := g.pool; pool != nil {
		api.Backends = func() any {
			type node struct {
				Backend   string                  `json:"backend"`
				State     string                  `json:"state"`
				Clients   int64                   `json:"clients"`
				LastCheck *brokerpool.CheckResult `json:"last_check,omitempty"`
			}
			var out []node
			for _, n := range pool.Nodes() {
				out = append(out, node{n.Addr, n.State().String(), n.Conns(), n.LastCheck()})
			}
			return out
		}
		api.DrainBackend = func(addr string, drain bool) (int, error) {
			for i, n := range pool.Nodes() {
				if n.Addr != addr {
					continue
				}
				if !drain {
					pool.Undrain(i) // down until the checks find it up: a dead node is not put back by hand
					return 0, nil
				}
				pool.Drain(i)
				return srv.EndNode(i, c.BackendDownSpread, func() bool { return n.State() == brokerpool.Draining }), nil
			}
			return 0, fmt.Errorf("no broker node %s", addr)
		}
	}
	return admin.New(admin.Config{
		API:        api,
		Metrics:    metrics,
		CheckEvery: c.ReadyCheckInterval,
		BrokerChanged: func(err error) {
			if err != nil {
				g.log.Warn().Str("event", "not_ready").Str("backend", backend).Err(err).Msg("readiness: the broker does not answer")
			} else {
				g.log.Info().Str("event", "ready").Str("backend", backend).Msg("readiness: the broker answers")
			}
		},
		BrokerCheck: func(ctx context.Context) error {
			if g.pool != nil { // ready while a node is up: the pool's own checks watch them
				for _, n := range g.pool.Nodes() {
					if n.State() == brokerpool.Up {
						return nil
					}
				}
				return errors.New("no broker node is up")
			}
			d := net.Dialer{Timeout: dialTimeout}
			conn, err := d.DialContext(ctx, "tcp", backend)
			if err != nil {
				return err
			}
			defer conn.Close()
			if g.backendTLS != nil { // ready means clients can get through: the broker's certificate verifies
				return tls.Client(conn, g.backendTLS()).HandshakeContext(ctx)
			}
			return nil
		},
		Ready: func() (bool, string) {
			if g.store != nil && time.Now().After(g.store.Leaf().NotAfter) {
				return false, "the server certificate has expired"
			}
			return true, ""
		},
	})
}

// keyPair is a certificate and key reloaded when either file changes; a
// pair that does not load keeps the one in service.
type keyPair struct {
	cert, key string
	cur       atomic.Pointer[tls.Certificate]
	sum       [32]byte
}

func (p *keyPair) reload(bool) (bool, error) {
	c, err := os.ReadFile(p.cert)
	if err != nil {
		return false, err
	}
	k, err := os.ReadFile(p.key)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(append(c, k...))
	if sum == p.sum {
		return false, nil
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		return false, err
	}
	p.cur.Store(&pair)
	p.sum = sum
	return true, nil
}

// meters are the proxy's counters the admin plane shows: set only when
// the admin listener is on (they cost nothing otherwise).
type meters struct {
	decisions *admin.Decisions
	traffic   *proxy.Traffic
	timings   *admin.Timings
}

// trafficSamples reads the packet counters (bytes: their sizes).
func trafficSamples(t *proxy.Traffic, bytes bool) []admin.Sample {
	var out []admin.Sample
	for dir, name := range []string{proxy.FromClient: "from_client", proxy.FromBroker: "from_broker"} {
		for typ := mqttwire.CONNECT; typ <= mqttwire.AUTH; typ++ {
			packets, size := t.Read(dir, typ)
			v := packets
			if bytes {
				v = size
			}
			if packets > 0 {
				out = append(out, admin.Sample{Labels: []string{name, typ.String()}, Value: float64(v)})
			}
		}
	}
	return out
}

// adminTLS serves the admin plane over HTTPS with its own certificate,
// reloaded (the returned reloadable) like the other files.
func (c *config) adminTLS() (*tls.Config, *reloadable, error) {
	if c.AdminTLSCert == "" {
		return nil, nil, nil
	}
	p := &keyPair{cert: c.AdminTLSCert, key: c.AdminTLSKey}
	if _, err := p.reload(true); err != nil {
		return nil, nil, bad("ADMIN_TLS_CERT", "%v", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, // 1.3: AEAD suites only
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.cur.Load(), nil }}
	if c.AdminTLSClientCA != "" {
		pem, err := os.ReadFile(c.AdminTLSClientCA)
		if err != nil {
			return nil, nil, bad("ADMIN_TLS_CLIENT_CA", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, bad("ADMIN_TLS_CLIENT_CA", "%s: no PEM certificate", c.AdminTLSClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, &reloadable{name: "ADMIN_TLS_CERT", reload: p.reload}, nil
}
