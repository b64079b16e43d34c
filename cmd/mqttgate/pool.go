package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mqttgate/mqttgate/proxy"
	"github.com/mqttgate/mqttgate/proxy/brokerpool"
)

// backends are MQTTGATE_BACKEND's addresses.
func (c *config) backends() []string {
	var out []string
	for _, a := range strings.Split(c.Backend, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// checkPool checks the broker addresses and, with more than one, the
// balancing and health check settings.
func (c *config) checkPool() error {
	addrs := c.backends()
	if len(addrs) == 0 {
		return bad("BACKEND", "%q: want host:port, or a comma-separated list of them", c.Backend)
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return bad("BACKEND", "%q: want host:port, or a comma-separated list of them", a)
		}
	}
	if len(addrs) == 1 {
		return nil // one broker: as ever, no pool
	}
	b, err := brokerpool.ParseBalance(c.Balance)
	if err != nil {
		return bad("BALANCE", "%v", err)
	}
	if _, err := brokerpool.New(addrs, b); err != nil {
		return bad("BACKEND", "%v", err)
	}
	switch {
	case c.BackendCheck != "tcp" && c.BackendCheck != "mqtt":
		return bad("BACKEND_CHECK", "%q: want tcp or mqtt", c.BackendCheck)
	case c.BackendCheckInterval < 100*time.Millisecond:
		return bad("BACKEND_CHECK_INTERVAL", "%v: at least 100ms", c.BackendCheckInterval)
	case c.BackendRise < 1:
		return bad("BACKEND_RISE", "%d: at least 1", c.BackendRise)
	case c.BackendFall < 1:
		return bad("BACKEND_FALL", "%d: at least 1", c.BackendFall)
	case c.BackendDownSpread < 0:
		return bad("BACKEND_DOWN_SPREAD", "%v: must not be negative", c.BackendDownSpread)
	case c.BackendSlowStart < 0:
		return bad("BACKEND_SLOWSTART", "%v: must not be negative", c.BackendSlowStart)
	case c.BackendResolveInterval < time.Second:
		return bad("BACKEND_RESOLVE_INTERVAL", "%v: at least 1s", c.BackendResolveInterval)
	}
	return nil
}

// buildPool makes the pool of broker nodes when MQTTGATE_BACKEND lists
// more than one, and the proxy's picker; nil with one broker.
func (c *config) buildPool(pc *proxy.Config) *brokerpool.Pool {
	addrs := c.backends()
	if len(addrs) < 2 {
		pc.Backend = addrs[0]
		return nil
	}
	b, _ := brokerpool.ParseBalance(c.Balance) // checked
	var static []string
	for _, a := range addrs {
		if host, _, _ := net.SplitHostPort(a); isIP(host) {
			static = append(static, a)
		}
	}
	pool, _ := brokerpool.New(static, b)
	pool.SlowStart = c.BackendSlowStart
	pc.Brokers = pool
	return pool
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil || host == ""
}

// names are the pool's entries given by name, each resolved into members.
func (c *config) names() []string {
	var out []string
	for _, a := range c.backends() {
		if host, _, _ := net.SplitHostPort(a); !isIP(host) {
			out = append(out, a)
		}
	}
	return out
}

// resolve makes each named entry's members the addresses its name
// resolves to now; a name that does not resolve keeps its members.
func (g *gateway) resolve(ctx context.Context, names []string, start brokerpool.State) {
	for _, entry := range names {
		host, port, _ := net.SplitHostPort(entry)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupHost(rctx, host)
		cancel()
		if err != nil {
			g.log.Warn().Str("event", "broker_resolve_failed").Str("backend", entry).Err(err).Msg("broker name does not resolve: its members stay")
			continue
		}
		var addrs []string
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip, port))
		}
		slices.Sort(addrs)
		if _, err := g.pool.Sync(entry, addrs, start); err != nil {
			g.log.Warn().Str("event", "broker_resolve").Str("backend", entry).Err(err).Msg("broker members")
		}
	}
}

// resolveLoop resolves the named entries every interval until ctx ends.
func (g *gateway) resolveLoop(ctx context.Context, names []string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.resolve(ctx, names, brokerpool.Down)
		}
	}
}

// runPool runs the pool's health checks until ctx ends: a node that goes
// down has its clients moved off, spread over MQTTGATE_BACKEND_DOWN_SPREAD.
func (g *gateway) runPool(ctx context.Context, c *config, pool *brokerpool.Pool) {
	d := &net.Dialer{Timeout: c.DialTimeout}
	var wrap func(ctx context.Context, conn net.Conn, addr string) (net.Conn, error)
	if g.backendTLS != nil {
		perNode := c.BackendTLSServerName == ""
		wrap = func(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
			cfg := g.backendTLS()
			if host, _, err := net.SplitHostPort(addr); perNode && err == nil && host != cfg.ServerName {
				cfg = cfg.Clone()
				cfg.ServerName = host
			}
			tc := tls.Client(conn, cfg)
			return tc, tc.HandshakeContext(ctx)
		}
	}
	// Brokers that read a PROXY header first get one on the checks too: a
	// LOCAL header (the proxy's own connection), before TLS and the
	// CONNECT.
	var prelude []byte
	if c.BackendProxyProtocol {
		prelude, _ = (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	}
	check := brokerpool.TCPCheck(d.DialContext, prelude)
	if c.BackendCheck == "mqtt" {
		check = brokerpool.MQTTCheck(d.DialContext, prelude, wrap, c.BackendCheckUsername, c.BackendCheckPassword)
	} else if wrap != nil {
		check = func(ctx context.Context, addr string) error {
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			if len(prelude) > 0 {
				if _, err := conn.Write(prelude); err != nil {
					return err
				}
			}
			_, err = wrap(ctx, conn, addr)
			return err
		}
	}
	pool.Run(ctx, brokerpool.Health{Every: c.BackendCheckInterval, Rise: c.BackendRise, Fall: c.BackendFall, Check: check})
}

// nodeChanged logs and audits a node's change of state, and moves its
// clients off when it goes down.
func (g *gateway) nodeChanged(pool *brokerpool.Pool, spread time.Duration) func(n *brokerpool.Node, from, to brokerpool.State, err error) {
	return func(n *brokerpool.Node, from, to brokerpool.State, err error) {
		idx := -1
		for i, m := range pool.Nodes() {
			if m == n {
				idx = i
			}
		}
		moved := 0
		switch {
		case g.srv == nil:
		case to == brokerpool.Down && from == brokerpool.Up: // confirmed by the checks
			moved = g.srv.EndNode(idx, spread, func() bool { return n.State() != brokerpool.Up })
		case to == brokerpool.Gone: // its name no longer resolves to it
			moved = g.srv.EndNode(idx, spread, func() bool { return n.State() == brokerpool.Gone })
		}
		ev := g.log.Warn()
		if to == brokerpool.Up {
			ev = g.log.Info()
		}
		ev.Str("event", "broker_node_"+to.String()).Str("backend", n.Addr).Stringer("was", from).AnErr("cause", err).Int("moving", moved).
			Msg("broker node " + to.String())
		g.audit.Event("broker_node").Str("backend", n.Addr).Stringer("state", to).Stringer("was", from).Int("moving", moved).Send()
	}
}
