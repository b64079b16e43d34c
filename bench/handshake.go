package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeResult: completed TLS handshakes per second.
type handshakeResult struct {
	Handshakes int64
	Failed     int64
	Resumed    int64
	Seconds    float64
	PerSec     float64
	Group      string // the key exchange the target chose
}

// runHandshakes completes n TLS handshakes, parallel at a time. With
// resume, each connection also completes an MQTT CONNECT so that the
// client reads the server's session ticket, and the next one resumes.
func runHandshakes(t *target, n, parallel int, resume bool) (*handshakeResult, error) {
	if t.tls == nil {
		return nil, fmt.Errorf("handshakes need a tls:// target")
	}
	cfg := t.tls.Clone()
	if !resume {
		cfg.ClientSessionCache = nil
	}
	tt := *t
	tt.tls = cfg
	if resume { // warm the cache
		d := &dialer{}
		c, err := connect(d, &tt, "bench-hs-warm")
		if err != nil {
			return nil, err
		}
		c.Close()
	}
	var done, failed, resumed atomic.Int64
	var group atomic.Value
	noteGroup := func(c net.Conn) {
		if tc, ok := c.(*tls.Conn); ok {
			group.CompareAndSwap(nil, tc.ConnectionState().CurveID.String())
		}
	}
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &dialer{n: w * 7919}
			for i := range next {
				if resume {
					c, err := connect(d, &tt, fmt.Sprintf("bench-hs-%d", i))
					if err != nil {
						failed.Add(1)
						continue
					}
					if tc, ok := c.Conn.(*tls.Conn); ok && tc.ConnectionState().DidResume {
						resumed.Add(1)
					}
					noteGroup(c.Conn)
					c.Close()
				} else {
					c, err := d.dial(&tt)
					if err != nil {
						failed.Add(1)
						continue
					}
					noteGroup(c)
					c.Close()
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	s := time.Since(start).Seconds()
	res := &handshakeResult{Handshakes: done.Load(), Failed: failed.Load(), Resumed: resumed.Load(), Seconds: s,
		PerSec: float64(done.Load()) / s}
	if g, ok := group.Load().(string); ok {
		res.Group = g
	}
	return res, nil
}
