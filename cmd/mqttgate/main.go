// Command mqttgate is a TLS-terminating MQTT security proxy.
//
// Usage:
//
//	mqttgate [run]           run the proxy, configured by MQTTGATE_* variables
//	mqttgate demo            run an embedded broker behind the proxy with throwaway certificates
//	mqttgate certs init DIR  write a development PKI to DIR
//	mqttgate passwd ...      create and update password files (as mosquitto_passwd)
//	mqttgate bans ...        list, add and remove bans
package main

import (
	"context"
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
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/admin"
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
	srv       *proxy.Server
	store     *certstore.Store
	log       zerolog.Logger
	errc      chan error
	tlsLn     net.Listener
	tcpLn     net.Listener
	files     []reloadable // password files, keys, CRLs: polled for changes
	pprof     *http.Server
	admin     *admin.Server // nil: no admin listener
	adminStop context.CancelFunc
	cancel    context.CancelFunc
}

// startGateway builds and starts everything the configuration asks for.
// Everything that can fail (files, authenticators, listeners) comes
// before anything starts serving, and one cleanup path undoes what was
// built when a step fails.
func startGateway(c *config, log zerolog.Logger) (_ *gateway, err error) {
	g := &gateway{log: log, errc: make(chan error, 3)} // the TLS, TCP and admin listeners
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if c.ListenTLS != "" {
		if g.store, err = certstore.New(c.tlsOptions()); err != nil {
			return nil, bad("TLS_CERT", "%v", err)
		}
	}
	chain, files, closers, err := c.buildAuthn(log)
	undo = append(undo, closers...)
	if err != nil {
		return nil, err
	}
	g.files = files
	pc := c.proxyConfig(log)
	pc.Authenticator = chain
	pc.UsernameIsSecret = c.usernameIsSecret()
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
	var decisions *admin.Decisions
	if c.AdminListen != "" {
		decisions = new(admin.Decisions)
		pc.Meter = decisions // counted only with the admin listener on
	}
	if g.srv, err = proxy.New(pc); err != nil {
		return nil, err
	}
	var adminLn net.Listener
	if c.AdminListen != "" {
		if g.admin, err = c.buildAdmin(g, chain, decisions); err != nil {
			return nil, err
		}
		tlsCfg, err := c.adminTLS()
		if err != nil {
			return nil, err
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
	var pprofLn net.Listener
	if c.PprofAddr != "" {
		if pprofLn, err = listen(c.PprofAddr, "PPROF_ADDR"); err != nil {
			return nil, err
		}
	}

	// Nothing below fails: serve.
	srv := g.srv
	if g.tlsLn != nil {
		log.Info().Str("listen", g.tlsLn.Addr().String()).Str("backend", c.Backend).Msg("TLS listener ready")
		go func() { g.errc <- srv.Serve(g.tlsLn, g.store.ServerConfig()) }()
	}
	if g.tcpLn != nil {
		log.Warn().Str("listen", g.tcpLn.Addr().String()).Msg("plaintext MQTT listener enabled")
		go func() { g.errc <- srv.Serve(g.tcpLn, nil) }()
	}
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
// they change, and everything on SIGHUP. A file that fails to load keeps
// the old version in service.
func (g *gateway) reloadLoop(ctx context.Context, certEvery, pollEvery time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	certs := time.NewTicker(certEvery)
	defer certs.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		var why string
		select {
		case <-ctx.Done():
			return
		case <-certs.C:
			g.reloadCerts("interval")
			continue
		case <-poll.C:
			why = "changed"
		case <-hup:
			why = "SIGHUP"
			g.reloadCerts(why)
		}
		now := time.Now()
		for _, f := range g.files {
			if why == "changed" && f.settling(now) {
				continue // the next poll takes it
			}
			changed, err := f.reload(why == "SIGHUP")
			switch {
			case err != nil:
				g.log.Error().Str("event", "reload_failed").Str("file", envPrefix+f.name).Str("trigger", why).Err(err).Msg("reload failed; keeping the old version in service")
			case changed:
				g.log.Info().Str("event", "reloaded").Str("file", envPrefix+f.name).Str("trigger", why).Msg("file reloaded")
			}
		}
	}
}

func (g *gateway) reloadCerts(why string) {
	if g.store == nil {
		return
	}
	changed, err := g.store.Reload()
	switch {
	case err != nil:
		g.log.Error().Str("event", "reload_failed").Str("trigger", why).Err(err).Msg("certificate reload failed; keeping the certificates in service")
	case changed:
		g.log.Info().Str("event", "reloaded").Str("trigger", why).Str("subject", g.store.Leaf().Subject.String()).Msg("certificates reloaded")
	}
}

// wait blocks until SIGTERM or SIGINT (or a listener failure), then shuts
// down within the drain timeout.
func (g *gateway) wait(delay, drain time.Duration) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	var err error
	select {
	case s := <-stop:
		g.log.Info().Str("signal", s.String()).Msg("shutting down")
	case err = <-g.errc:
		g.log.Error().Err(err).Msg("listener failed")
	}
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
