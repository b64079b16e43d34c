package admin

import (
	"crypto/tls"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// Sample is one series of a metric read at scrape time: its label values,
// in the order the metric names them, and its value.
type Sample struct {
	Labels []string
	Value  float64
}

// Func is a metric read at scrape time from counters the proxy keeps
// anyway: nothing is counted twice, and nothing is read while the admin
// listener is off. read returns every series.
func Func(name, help string, kind prometheus.ValueType, labels []string, read func() []Sample) prometheus.Collector {
	return &funcCollector{desc: prometheus.NewDesc(name, help, labels, nil), kind: kind, read: read}
}

type funcCollector struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func() []Sample
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.read() {
		if m, err := prometheus.NewConstMetric(c.desc, c.kind, s.Value, s.Labels...); err == nil {
			ch <- m
		}
	}
}

// Decisions counts the refusing decisions of the pipeline's stages (the
// proxy's Meter): by stage, verdict and dry run. It takes no lock and
// allocates nothing; Why (a rule, a limit) is left out of the labels.
type Decisions struct {
	n [len(stages)][3][2]atomic.Int64
}

var stages = [...]string{"limits", "topics", "inspector"}

var verdicts = [...]string{mqttwire.Forward: "forward", mqttwire.Refuse: "refuse", mqttwire.End: "end"}

// Decided counts d, decided by stage.
func (m *Decisions) Decided(stage string, d mqttwire.Decision) {
	i := 0
	for i < len(stages) && stages[i] != stage {
		i++
	}
	if i == len(stages) || int(d.Verdict) >= len(verdicts) {
		return
	}
	dry := 0
	if d.Is(mqttwire.DryRun) {
		dry = 1
	}
	m.n[i][d.Verdict][dry].Add(1)
}

// Collector exposes the counts as mqttgate_decisions_total.
func (m *Decisions) Collector() prometheus.Collector {
	return Func("mqttgate_decisions_total", "Refusing decisions of the pipeline's stages (dry run: reported, not enforced).",
		prometheus.CounterValue, []string{"stage", "verdict", "dry_run"}, func() []Sample {
			var out []Sample
			for i, stage := range stages {
				for v, verdict := range verdicts {
					for dry, name := range []string{"false", "true"} {
						if n := m.n[i][v][dry].Load(); n > 0 {
							out = append(out, Sample{[]string{stage, verdict, name}, float64(n)})
						}
					}
				}
			}
			return out
		})
}

// Timings is the proxy's Observer: TLS handshakes by version, cipher and
// result, and histograms of the handshake and broker dial durations.
type Timings struct {
	handshakes *prometheus.CounterVec
	handshake  prometheus.Histogram
	dial       *prometheus.HistogramVec
}

// NewTimings builds the collectors; register them with Collectors.
func NewTimings() *Timings {
	return &Timings{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mqttgate_tls_handshakes_total",
			Help: "TLS handshakes on the MQTT listeners, by version, cipher suite and result."}, []string{"version", "cipher", "result"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mqttgate_tls_handshake_duration_seconds",
			Help: "How long TLS handshakes took, failed ones included.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mqttgate_broker_dial_duration_seconds",
			Help: "How long dials to the broker took, by broker node and result.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"backend", "result"}),
	}
}

// Collectors are the metrics to register.
func (t *Timings) Collectors() []prometheus.Collector {
	return []prometheus.Collector{t.handshakes, t.handshake, t.dial}
}

// Handshake implements proxy.Observer.
func (t *Timings) Handshake(st *tls.ConnectionState, err error, d time.Duration) {
	t.handshake.Observe(d.Seconds())
	if err != nil || st == nil {
		t.handshakes.WithLabelValues("", "", "failed").Inc()
		return
	}
	t.handshakes.WithLabelValues(tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), "ok").Inc()
}

// Dialed implements proxy.Observer.
func (t *Timings) Dialed(backend string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	t.dial.WithLabelValues(backend, result).Observe(d.Seconds())
}
