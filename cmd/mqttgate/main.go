// Command mqttgate is a TLS-terminating MQTT security proxy.
//
// Usage:
//
//	mqttgate [run]           run the proxy, configured by MQTTGATE_* variables
//	mqttgate demo            run an embedded broker behind the proxy with throwaway certificates
//	mqttgate certs init DIR  write a development PKI to DIR
//	mqttgate passwd ...      create and update password files (as mosquitto_passwd)
//	mqttgate bans ...        list, add and remove bans
//	mqttgate apikey ...      create, list and revoke admin API keys
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when MQTTGATE_PPROF_ADDR is set
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/limits"
	"github.com/mqttgate/mqttgate/limits/logbudget"
	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/admin"
	"github.com/mqttgate/mqttgate/proxy/audit"
	"github.com/mqttgate/mqttgate/proxy/brokerpool"
	"github.com/mqttgate/mqttgate/proxy/certstore"
)

const usage = `usage:
  mqttgate [run]           run the proxy (settings: MQTTGATE_* environment variables, see README)
  mqttgate demo            embedded broker + proxy with TLS and mTLS and throwaway certificates
  mqttgate certs init DIR  write a development CA, server and client certificates to DIR
  mqttgate passwd [-c] [-b] [-D] [-H hash] FILE USER [PASSWORD]
                           create and update a password file (mosquitto_passwd's format)
  mqttgate bans list|add|remove ...
                           edit the bans file (MQTTGATE_BANS_FILE)
  mqttgate apikey create|list|revoke ...
                           manage the admin API's keys (MQTTGATE_ADMIN_KEYS_FILE)
  mqttgate version         the version and how this binary was built
  mqttgate config          check the settings and print them as in force, secrets redacted
`

func main() {
	os.Exit(run(os.Args[1:], environ(), os.Stdout, os.Stderr))
}

// versionText is the module version and the build information Go
// records: the toolchain, and the commit when built from a checkout.
func versionText() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "mqttgate (no build information)\n"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "mqttgate %s\n%s\n", bi.Main.Version, bi.GoVersion)
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH", "CGO_ENABLED":
			fmt.Fprintf(&sb, "%s=%s\n", s.Key, s.Value)
		}
	}
	return sb.String()
}

// moduleVersion is the module's version, "(devel)" in a checkout.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}

func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// run returns the exit code: 0 after a clean stop, 1 on a runtime failure,
// 2 on bad usage or configuration.
func run(args []string, environ map[string]string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runProxy(environ, stderr)
	case "demo":
		err = runDemo(environ, stdout, stderr)
	case "certs":
		if len(args) != 2 || args[0] != "init" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = certsInit(args[1], stdout)
	case "passwd":
		err = passwdCmd(args, os.Stdin, stdout, stderr)
	case "bans":
		err = bansCmd(args, environ, stdout)
	case "apikey":
		err = apikeyCmd(args, environ, stdout)
	case "version", "--version":
		fmt.Fprint(stdout, versionText())
		return 0
	case "config":
		var c *config
		if c, err = loadConfig(environ); err == nil {
			fmt.Fprintln(stdout, strings.Join(c.effective(), "\n"))
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", cmd, usage)
		return 2
	}
	var ce *configError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprint(stderr, ue.usage)
		return 2
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "mqttgate: configuration: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "mqttgate: %v\n", err)
		return 1
	}
}

// gateway is a running proxy with its listeners and reload loop.
type gateway struct {
	srv        *proxy.Server
	store      *certstore.Store
	log        zerolog.Logger
	errc       chan error
	tlsLn      net.Listener
	tcpLn      net.Listener
	files      []reloadable // password files, keys, CRLs: polled for changes
	pprof      *http.Server
	admin      *admin.Server // nil: no admin listener
	adminStop  context.CancelFunc
	cancel     context.CancelFunc
	audit      *audit.Log         // nil: no audit trail
	secLog     *logbudget.Budget  // the security events' budget: the proxy's, the chain's and the admin API's
	backendTLS func() *tls.Config // TLS to the broker; nil: plaintext
	pool       *brokerpool.Pool   // several broker nodes; nil: one
	bans       *limits.Bans
	drainc     chan string // a drain asked for (by the API), with who asked
	started    time.Time

	reloadMu  sync.Mutex // one reload at a time: the loop's and the API's
	loads     map[string]*fileState
	lastBans  []limits.Ban
	bansSince time.Time
}

// fileState is what the status shows of one reloaded file.
type fileState struct {
	Generation int       `json:"generation"` // loads since start, the first included
	Loaded     time.Time `json:"loaded"`
	Failures   int       `json:"failures"` // reloads that failed (the version in service stayed)
	LastError  string    `json:"last_error,omitempty"`
}

// startGateway builds and starts everything the configuration asks for.
// Everything that can fail (files, authenticators, listeners) comes
// before anything starts serving, and one cleanup path undoes what was
// built when a step fails.
func startGateway(c *config, log zerolog.Logger) (_ *gateway, err error) {
	g := &gateway{log: log, errc: make(chan error, 5), // the TLS, TCP, WSS, WS and admin listeners
		drainc: make(chan string, 1), started: time.Now(), loads: map[string]*fileState{}}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if c.tlsListener() != "" {
		if g.store, err = certstore.New(c.tlsOptions()); err != nil {
			return nil, bad("TLS_CERT", "%v", err)
		}
	}
	if c.AuditLog != "" {
		if g.audit, err = audit.Open(c.AuditLog); err != nil {
			return nil, bad("AUDIT_LOG", "%v", err)
		}
		undo = append(undo, func() { g.audit.Close() })
	}
	g.secLog = logbudget.New()
	chain, files, closers, err := c.buildAuthn(log, g.secLog)
	undo = append(undo, closers...)
	if err != nil {
		return nil, err
	}
	g.files = files
	pc := c.proxyConfig(log)
	g.pool = c.buildPool(&pc)
	pc.Authenticator = chain
	pc.UsernameIsSecret = c.usernameIsSecret()
	pc.Audit = g.audit
	pc.SecurityLog = g.secLog
	engine, err := c.buildACL(&pc, log)
	if err != nil {
		return nil, err
	}
	if c.ACLFile != "" {
		g.files = append(g.files, reloadable{"ACL_FILE", engine.Reload, c.ACLFile})
	}
	bans, err := c.buildLimits(&pc, log)
	if err != nil {
		return nil, err
	}
	if c.BansFile != "" {
		g.files = append(g.files, reloadable{"BANS_FILE", bans.Reload, c.BansFile})
	}
	g.bans, g.lastBans, g.bansSince = bans, bans.List(), time.Now()
	var keys *admin.Keys
	if c.AdminKeysFile != "" {
		if keys, err = admin.OpenKeys(c.AdminKeysFile); err != nil {
			return nil, bad("ADMIN_KEYS_FILE", "%v", err)
		}
		g.files = append(g.files, reloadable{"ADMIN_KEYS_FILE", keys.Reload, c.AdminKeysFile})
	}
	if err := c.buildBackendTLS(&pc, g); err != nil {
		return nil, err
	}
	for _, f := range g.files {
		g.loads[f.name] = &fileState{Generation: 1, Loaded: g.started.UTC()}
	}
	var m *meters
	if c.AdminListen != "" { // counted only with the admin listener on
		m = &meters{decisions: new(admin.Decisions), traffic: new(proxy.Traffic), timings: admin.NewTimings()}
		pc.Meter, pc.Traffic, pc.Observer = m.decisions, m.traffic, m.timings
	}
	if g.srv, err = proxy.New(pc); err != nil {
		return nil, err
	}
	if g.pool != nil {
		g.pool.Changed = g.nodeChanged(g.pool, c.BackendDownSpread)
		g.resolve(context.Background(), c.names(), brokerpool.Up) // the named entries' first members, before serving
	}
	var adminLn net.Listener
	if c.AdminListen != "" {
		if g.admin, err = c.buildAdmin(g, chain, m, keys); err != nil {
			return nil, err
		}
		tlsCfg, certFiles, err := c.adminTLS()
		if err != nil {
			return nil, err
		}
		if certFiles != nil {
			g.files = append(g.files, *certFiles)
			g.loads[certFiles.name] = &fileState{Generation: 1, Loaded: g.started.UTC()}
		}
		if adminLn, err = net.Listen("tcp", c.AdminListen); err != nil {
			return nil, bad("ADMIN_LISTEN", "%v", err)
		}
		undo = append(undo, func() { adminLn.Close() })
		if tlsCfg != nil {
			adminLn = tls.NewListener(adminLn, tlsCfg)
		}
	}
	listen := func(addr, name string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, bad(name, "%v", err)
		}
		undo = append(undo, func() { ln.Close() })
		return ln, nil
	}
	if c.ListenTLS != "" {
		if g.tlsLn, err = listen(c.ListenTLS, "LISTEN_TLS"); err != nil {
			return nil, err
		}
	}
	if c.ListenTCP != "" {
		if g.tcpLn, err = listen(c.ListenTCP, "LISTEN_TCP"); err != nil {
			return nil, err
		}
	}
	ws, err := c.webSocketListeners(listen)
	if err != nil {
		return nil, err
	}
	var pprofLn net.Listener
	if c.PprofAddr != "" {
		if pprofLn, err = listen(c.PprofAddr, "PPROF_ADDR"); err != nil {
			return nil, err
		}
	}

	// Nothing below fails: serve.
	settings := c.effective()
	sum := sha256.Sum256([]byte(strings.Join(settings, "\n")))
	g.audit.Event("start").Str("version", moduleVersion()).Hex("settings_sha256", sum[:]).Strs("settings", settings).Send()
	srv := g.srv
	if g.tlsLn != nil {
		log.Info().Str("listen", g.tlsLn.Addr().String()).Str("backend", c.Backend).Msg("TLS listener ready")
		go func() { g.errc <- srv.Serve(g.tlsLn, g.store.ServerConfig()) }()
	}
	if g.tcpLn != nil {
		log.Warn().Str("listen", g.tcpLn.Addr().String()).Msg("plaintext MQTT listener enabled")
		go func() { g.errc <- srv.Serve(g.tcpLn, nil) }()
	}
	ws.serve(g, log)
	if pprofLn != nil {
		g.pprof = &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = g.pprof.Serve(pprofLn) }()
		log.Warn().Str("listen", pprofLn.Addr().String()).Msg("profiling endpoint enabled (net/http/pprof)")
	}
	var ctx context.Context
	ctx, g.cancel = context.WithCancel(context.Background())
	if g.admin != nil {
		log.Info().Str("listen", adminLn.Addr().String()).Bool("https", c.AdminTLSCert != "").Msg("admin listener ready (/healthz, /readyz, /metrics)")
		actx, stop := context.WithCancel(context.Background()) // it outlives the drain: probes see it
		g.adminStop = stop
		go func() {
			if err := g.admin.Serve(actx, adminLn); err != nil {
				g.errc <- fmt.Errorf("admin listener: %w", err) // the process stops: probes would otherwise see nothing
			}
		}()
	}
	go g.reloadLoop(ctx, c.TLSReloadInterval, c.FilePollInterval)
	if g.pool != nil {
		log.Info().Strs("nodes", c.backends()).Str("balance", c.Balance).Str("check", c.BackendCheck).Msg("broker pool")
		go g.runPool(ctx, c, g.pool)
		if names := c.names(); len(names) > 0 {
			go g.resolveLoop(ctx, names, c.BackendResolveInterval)
		}
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		releaseAfterBursts(ctx, t.C, srv.Stats.Accepted.Load, debug.FreeOSMemory)
	}()
	return g, nil
}

// burstSize is how many new connections make a burst worth giving memory
// back after.
const burstSize = 100

// releaseAfterBursts calls release (debug.FreeOSMemory) once a burst of at
// least burstSize new connections has ended, that is at the first tick
// with no new connection since the one before. Each TLS handshake leaves
// some 10 KiB of garbage, and Go's heap grows to twice the live data
// before it collects, so after a reconnect storm the proxy would
// otherwise keep about as much again as its connections need until the
// heap doubles; an edge appliance wants it back. Nothing is released
// while connections keep arriving every second; a slow trickle pays one
// collection per burstSize connections.
func releaseAfterBursts(ctx context.Context, tick <-chan time.Time, accepted func() int64, release func()) {
	b := burstWatch{last: accepted()}
	b.released = b.last
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if b.ended(accepted()) {
				release()
			}
		}
	}
}

// burstWatch follows the count of accepted connections tick by tick.
type burstWatch struct{ last, released int64 }

// ended reports, given the count at this tick, whether a burst has just
// ended.
func (b *burstWatch) ended(n int64) bool {
	quiet := n == b.last
	b.last = n
	if quiet && n-b.released >= burstSize {
		b.released = n
		return true
	}
	return false
}

// reloadLoop reloads certificates on an interval, the other files when
// they change, and everything on SIGHUP; it reopens the audit trail on
// SIGUSR1. A file that fails to load keeps the old version in service.
func (g *gateway) reloadLoop(ctx context.Context, certEvery, pollEvery time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	certs := time.NewTicker(certEvery)
	defer certs.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-certs.C:
			g.reloadCerts("interval")
		case <-poll.C:
			g.reload("changed")
		case <-hup:
			g.reload("SIGHUP")
		case <-usr1:
			if err := g.audit.Reopen(); err != nil {
				g.log.Error().Str("event", "audit_reopen_failed").Err(err).Msg("reopening the audit log failed; writing to the old file")
			} else {
				g.log.Info().Str("event", "audit_reopened").Msg("audit log reopened")
			}
		}
	}
}

// reload loads the files that changed (trigger "changed": those a poll
// finds changed and settled; any other trigger, SIGHUP or the API, loads
// every file and the certificates), then looks at the bans; it returns
// what each file did.
func (g *gateway) reload(trigger string) []admin.FileResult {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	force := trigger != "changed"
	var out []admin.FileResult
	if force && g.store != nil {
		changed, err := g.reloadCerts(trigger)
		out = append(out, fileResult("TLS_CERT", changed, err))
	}
	now := time.Now()
	for _, f := range g.files {
		if !force && f.settling(now) {
			continue // the next poll takes it
		}
		changed, err := f.reload(force)
		st := g.loads[f.name]
		switch {
		case err != nil:
			st.LastError = err.Error()
			st.Failures++
			g.log.Error().Str("event", "reload_failed").Str("file", envPrefix+f.name).Str("trigger", trigger).Err(err).Msg("reload failed; keeping the old version in service")
		case changed:
			st.Generation++
			st.Loaded, st.LastError = now.UTC(), ""
			g.log.Info().Str("event", "reloaded").Str("file", envPrefix+f.name).Str("trigger", trigger).Msg("file reloaded")
		}
		if err != nil || changed || force {
			g.audit.Event("reload").Str("file", envPrefix+f.name).Str("trigger", trigger).Bool("changed", changed).AnErr("error", err).Send()
		}
		out = append(out, fileResult(f.name, changed, err))
	}
	g.watchBans(now)
	return out
}

func fileResult(name string, changed bool, err error) admin.FileResult {
	r := admin.FileResult{File: envPrefix + name, Changed: changed}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// watchBans writes to the audit trail the bans added, removed and run
// out since the last look, whoever made them (the API, the bans command,
// flapping detection), and ends the live connections new bans match.
func (g *gateway) watchBans(now time.Time) int {
	list := g.bans.List()
	ch := limits.DiffBans(g.lastBans, list, g.bansSince, now)
	g.lastBans, g.bansSince = list, now
	for _, set := range []struct {
		event string
		bans  []limits.Ban
	}{{"ban_added", ch.Added}, {"ban_removed", ch.Removed}, {"ban_expired", ch.Expired}} {
		for _, b := range set.bans {
			ev := g.audit.Event(set.event).Str("kind", b.Kind).Time("until", b.Until).Str("reason", b.Reason)
			if b.Kind != limits.BanUsername { // user names may be tokens
				ev = ev.Str("value", b.Value)
			}
			ev.Send()
		}
	}
	if len(ch.Added) == 0 {
		return 0
	}
	return g.kickBanned(now)
}

// kickBanned ends the live connections a ban in force matches.
func (g *gateway) kickBanned(now time.Time) int {
	n := g.srv.Kick(func(s *proxy.Session) bool {
		_, banned := g.bans.Matching(s.ClientID, s.Username, s.Identity, s.ClientAddr.Addr(), now)
		return banned
	}, "banned")
	if n > 0 {
		g.audit.Event("kick").Int("kicked", n).Str("why", "banned").Send()
		g.log.Info().Str("event", "banned_kicked").Int("connections", n).Msg("live connections matching a new ban ended")
	}
	return n
}

func (g *gateway) reloadCerts(why string) (bool, error) {
	if g.store == nil {
		return false, nil
	}
	changed, err := g.store.Reload()
	switch {
	case err != nil:
		g.log.Error().Str("event", "reload_failed").Str("trigger", why).Err(err).Msg("certificate reload failed; keeping the certificates in service")
	case changed:
		g.log.Info().Str("event", "reloaded").Str("trigger", why).Str("subject", g.store.Leaf().Subject.String()).Msg("certificates reloaded")
	}
	return changed, err
}

// wait blocks until SIGTERM or SIGINT (or a listener failure), then shuts
// down within the drain timeout.
func (g *gateway) wait(delay, drain time.Duration) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	var err error
	trigger := ""
	select {
	case s := <-stop:
		trigger = s.String()
		g.log.Info().Str("signal", trigger).Msg("shutting down")
	case trigger = <-g.drainc:
		g.log.Info().Str("by", trigger).Msg("draining (admin API)")
	case err = <-g.errc:
		trigger = "listener failed"
		g.log.Error().Err(err).Msg("listener failed")
	}
	g.audit.Event("drain").Str("trigger", trigger).Int64("connections", g.srv.Stats.Active.Load()).Send()
	if err == nil && g.admin != nil && delay > 0 {
		// Balancers see /readyz 503 and stop sending clients before the
		// listeners close; a second signal cuts the wait short.
		g.admin.Drain()
		g.log.Info().Dur("delay", delay).Msg("draining: not ready; listeners close after the drain delay")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stop:
		}
		t.Stop()
	}
	return errors.Join(err, g.shutdown(drain))
}

func (g *gateway) shutdown(drain time.Duration) error {
	if g.admin != nil {
		g.admin.Drain() // balancers see 503 before the listeners close
	}
	g.cancel()
	if g.pprof != nil {
		_ = g.pprof.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain+5*time.Second)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	if g.adminStop != nil {
		g.adminStop()
	}
	g.audit.Event("stop").Send()
	if cerr := g.audit.Close(); cerr != nil {
		g.log.Error().Err(cerr).Msg("audit log")
	}
	g.log.Info().Msg("stopped")
	return err
}

func runProxy(environ map[string]string, stderr io.Writer) error {
	c, err := loadConfig(environ)
	if err != nil {
		return err
	}
	log := newLogger(c)
	g, err := startGateway(c, log)
	if err != nil {
		return err
	}
	return g.wait(c.DrainDelay, c.DrainTimeout)
}
