package brokerpool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// CheckFunc checks one node once (within ctx): nil when it serves.
type CheckFunc func(ctx context.Context, addr string) error

// Health runs the active checks, HAProxy's way: a node goes down after
// Fall failed checks in a row and comes up after Rise good ones.
type Health struct {
	Every      time.Duration
	Rise, Fall int
	Check      CheckFunc
}

// Run checks every node every h.Every until ctx ends. Nodes start up
// (as configured) until their first checks say otherwise.
func (p *Pool) Run(ctx context.Context, h Health) {
	if h.Every <= 0 {
		h.Every = 2 * time.Second
	}
	h.Rise, h.Fall = max(h.Rise, 1), max(h.Fall, 1)
	type streak struct{ good, bad int }
	var streaks []streak
	t := time.NewTicker(h.Every)
	defer t.Stop()
	for {
		nodes := p.Nodes() // Sync may have added some
		for len(streaks) < len(nodes) {
			streaks = append(streaks, streak{})
		}
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for i, n := range nodes {
			if n.Gone() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, h.Every)
				defer cancel()
				began := time.Now()
				errs[i] = h.Check(cctx, n.Addr)
				r := &CheckResult{At: began.UTC(), Duration: time.Since(began)}
				if errs[i] != nil {
					r.Error = errs[i].Error()
				}
				n.lastCheck.Store(r)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		for i, n := range nodes {
			if n.Gone() {
				continue
			}
			st := &streaks[i]
			if errs[i] == nil {
				st.good, st.bad = st.good+1, 0
				p.clearSuspect(n)
			} else {
				st.good, st.bad = 0, st.bad+1
			}
			p.apply(n, errs[i], st.good >= h.Rise, st.bad >= h.Fall)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apply applies a check's verdict: up once risen, down once fallen; a
// draining node stays draining.
func (p *Pool) apply(n *Node, err error, risen, fallen bool) {
	from := n.State()
	to := from
	switch {
	case from == Draining, from == Gone:
	case from == Down && risen:
		to = Up
	case from == Up && fallen:
		to = Down
	}
	if to == from || !n.state.CompareAndSwap(int32(from), int32(to)) {
		return
	}
	if to == Up && p.SlowStart > 0 && n.slowUntil.Swap(time.Now().Add(p.SlowStart).UnixNano()) == 0 {
		p.slowing.Add(1)
	}
	if p.Changed != nil {
		p.Changed(n, from, to, err)
	}
}

// TCPCheck connects, writes prelude (a PROXY header, for brokers that
// read one first; none when empty) and closes.
func TCPCheck(dial func(ctx context.Context, network, addr string) (net.Conn, error), prelude []byte) CheckFunc {
	return func(ctx context.Context, addr string) error {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		if len(prelude) > 0 {
			if d, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(d)
			}
			if _, err := c.Write(prelude); err != nil {
				c.Close()
				return err
			}
		}
		return c.Close()
	}
}

// MQTTCheck connects, writes prelude (see TCPCheck), sends a CONNECT of its own (a random client id,
// clean start, with the credentials when given), wants a CONNACK that
// accepts it within ctx, and says DISCONNECT: a broker that accepts TCP
// but does not serve MQTT (stuck) fails it. wrap, when set, wraps the
// connection first (TLS to the broker).
func MQTTCheck(dial func(ctx context.Context, network, addr string) (net.Conn, error), prelude []byte, wrap func(ctx context.Context, c net.Conn, addr string) (net.Conn, error), username, password string) CheckFunc {
	return func(ctx context.Context, addr string) error {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if d, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(d)
		}
		if len(prelude) > 0 {
			if _, err := c.Write(prelude); err != nil {
				return err
			}
		}
		if wrap != nil {
			if c, err = wrap(ctx, c, addr); err != nil {
				return err
			}
		}
		var id [6]byte
		_, _ = rand.Read(id[:])
		cn := &mqttwire.Connect{Version: mqttwire.V311, ClientID: []byte("mqttgate-check-" + hex.EncodeToString(id[:])), CleanStart: true, KeepAlive: 10}
		if username != "" {
			cn.UsernameFlag, cn.Username = true, []byte(username)
		}
		if password != "" {
			cn.PasswordFlag, cn.Password = true, []byte(password)
		}
		if _, err := c.Write(mqttwire.AppendConnect(nil, cn)); err != nil {
			return err
		}
		p, err := mqttwire.NewReader(c, 64, 1024).Next()
		switch {
		case err != nil:
			return fmt.Errorf("no CONNACK: %w", err)
		case p.Type != mqttwire.CONNACK || len(p.Body) < 2:
			return errors.New("answered CONNECT with " + p.Type.String())
		case p.Body[1] != 0:
			return fmt.Errorf("CONNACK %#x", p.Body[1])
		}
		_, _ = c.Write(mqttwire.AppendDisconnect(nil, mqttwire.V311, 0, ""))
		return nil
	}
}
