package main

import (
	"fmt"
	"time"
)

// idleResult: memory the target holds per idle connection after CONNACK.
type idleResult struct {
	Connections int
	RSSKiB      int64 // growth of the target's RSS
	KiBPerConn  float64
}

// runIdle opens n MQTT connections, waits for the target to settle, and
// measures the target's RSS growth; the connections stay open until done.
func runIdle(t *target, n int, pid int, progress func(string)) (*idleResult, error) {
	before, err := sampleProc(pid)
	if err != nil {
		return nil, err
	}
	d := &dialer{}
	conns := make([]*mqttConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := connect(d, t, fmt.Sprintf("bench-idle-%d", i))
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		if i%1000 == 999 {
			progress(fmt.Sprintf("%d idle connections", i+1))
		}
	}
	time.Sleep(2 * time.Second) // let the target's allocator and GC settle: nothing to wait on
	after, err := sampleProc(pid)
	if err != nil {
		return nil, err
	}
	grow := after.RSSKiB - before.RSSKiB
	return &idleResult{Connections: n, RSSKiB: grow, KiBPerConn: float64(grow) / float64(n)}, nil
}
