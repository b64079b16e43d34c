package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// loadOpts is one throughput/latency run.
type loadOpts struct {
	publishers, subscribers int
	qos                     byte
	size                    int
	duration                time.Duration
	rate                    float64 // messages per second in all; 0: as fast as possible
}

// loadResult is what a run measured.
type loadResult struct {
	Sent, Received, Errors int64
	PayloadBytes           int
	Seconds                float64
	MsgsPerSec             float64
	BytesPerSec            float64
	LatencyUS              map[string]int64 // p50, p99, p999, max
}

func runLoad(t *target, o loadOpts, progress func(string)) (*loadResult, error) {
	d := &dialer{}
	subs := make([]*mqttConn, o.subscribers)
	for i := range subs {
		c, err := connect(d, t, fmt.Sprintf("bench-sub-%d", i))
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		defer c.Close()
		fs := []mqttwire.Filter{{Topic: []byte(fmt.Sprintf("bench/%d", i)), Options: o.qos}}
		if _, err := c.Write(mqttwire.AppendSubscribe(nil, mqttwire.V311, 1, nil, fs)); err != nil {
			return nil, err
		}
		if p, err := c.r.Next(); err != nil || p.Type != mqttwire.SUBACK || p.Body[len(p.Body)-1] >= 0x80 {
			return nil, fmt.Errorf("subscriber %d: SUBACK %x %v", i, p.Raw, err)
		}
		subs[i] = c
	}
	pubs := make([]*mqttConn, o.publishers)
	for i := range pubs {
		c, err := connect(d, t, fmt.Sprintf("bench-pub-%d", i))
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		defer c.Close()
		pubs[i] = c
	}

	var sent, received, errs atomic.Int64
	hists := make([]*hdrhistogram.Histogram, len(subs))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, c := range subs {
		hists[i] = hdrhistogram.New(1, 60_000_000, 3) // µs
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acks []byte
			for {
				p, err := c.r.Next()
				if err != nil {
					return
				}
				if p.Type != mqttwire.PUBLISH {
					continue
				}
				m, err := mqttwire.ParsePublish(p, mqttwire.V311)
				if err != nil || len(m.Payload) < 8 {
					errs.Add(1)
					continue
				}
				sentAt := int64(binary.BigEndian.Uint64(m.Payload))
				_ = hists[i].RecordValue(max(1, (time.Now().UnixNano()-sentAt)/1000))
				received.Add(1)
				if m.QoS == 1 {
					acks = mqttwire.AppendPubAck(acks[:0], mqttwire.PUBACK, mqttwire.V311, m.PacketID, 0, nil)
					if _, err := c.Write(acks); err != nil {
						return
					}
				}
			}
		}()
	}

	start := time.Now()
	deadline := start.Add(o.duration)
	var pwg sync.WaitGroup
	for i, c := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			publish(c, i, len(subs), o, deadline, stop, &sent, &errs)
		}()
	}
	tick := time.NewTicker(time.Second)
	done := make(chan struct{})
	go func() { pwg.Wait(); close(done) }()
	var last int64
	for running := true; running; {
		select {
		case <-tick.C:
			r := received.Load()
			progress(fmt.Sprintf("%5.1fs  sent %d  received %d  (%d/s)  errors %d", time.Since(start).Seconds(), sent.Load(), r, r-last, errs.Load()))
			last = r
		case <-done:
			running = false
		}
	}
	tick.Stop()
	inWindow, window := received.Load(), time.Since(start).Seconds() // throughput counts what arrived while publishing
	// Let what is in flight arrive (for the latency histogram), then stop the subscribers.
	for wait := time.Now().Add(5 * time.Second); received.Load() < sent.Load() && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond) // polling a counter: no other signal exists
	}
	elapsed := time.Since(start).Seconds()
	close(stop)
	for _, c := range subs {
		c.Close()
	}
	wg.Wait()
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	res := &loadResult{Sent: sent.Load(), Received: received.Load(), Errors: errs.Load(), Seconds: elapsed, PayloadBytes: o.size,
		LatencyUS: map[string]int64{"p50": h.ValueAtQuantile(50), "p99": h.ValueAtQuantile(99), "p999": h.ValueAtQuantile(99.9), "max": h.Max()}}
	res.MsgsPerSec = float64(inWindow) / window
	res.BytesPerSec = res.MsgsPerSec * float64(o.size)
	return res, nil
}

// publish sends until the deadline: as fast as the connection takes them
// (batched through a buffer), or open loop at the rate, stamped with the
// time each message was due so that queueing delay counts as latency.
func publish(c *mqttConn, n, subs int, o loadOpts, deadline time.Time, stop <-chan struct{}, sent, errs *atomic.Int64) {
	topic := []byte(fmt.Sprintf("bench/%d", n%subs))
	w := bufio.NewWriterSize(c, 64<<10)
	payload := make([]byte, max(8, o.size))
	var pkt []byte
	var id uint16
	inflight := make(chan struct{}, 256)
	if o.qos == 1 {
		go func() {
			for {
				p, err := c.r.Next()
				if err != nil {
					return
				}
				if p.Type == mqttwire.PUBACK {
					<-inflight
				}
			}
		}()
	}
	interval := time.Duration(0)
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.publishers) / o.rate)
		defer precisePacing()()
	}
	due := time.Now()
	for {
		now := time.Now()
		if now.After(deadline) {
			break
		}
		if interval > 0 {
			if d := due.Sub(now); d > 0 {
				_ = w.Flush()
				sleepPrecisely(d) // the open-loop schedule
			}
			binary.BigEndian.PutUint64(payload, uint64(due.UnixNano()))
			due = due.Add(interval)
		} else {
			binary.BigEndian.PutUint64(payload, uint64(now.UnixNano()))
		}
		if o.qos == 1 {
			select {
			case inflight <- struct{}{}:
			case <-stop:
				return
			}
			if id++; id == 0 {
				id = 1
			}
		}
		pkt = mqttwire.AppendPublish(pkt[:0], mqttwire.V311, topic, o.qos, false, id, nil, payload)
		if _, err := w.Write(pkt); err != nil {
			errs.Add(1)
			return
		}
		if interval > 0 || w.Buffered() > 32<<10 {
			if err := w.Flush(); err != nil {
				errs.Add(1)
				return
			}
		}
		sent.Add(1)
	}
	_ = w.Flush()
}

func progressLine(s string) { fmt.Fprintf(os.Stderr, "\r%-90s", s) }
