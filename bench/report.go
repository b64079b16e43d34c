package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ratio is one line of the table.
type ratio struct {
	Name   string
	Value  float64
	Target string
	Met    bool
	Detail string
}

// report reads result files and prints the ratio table; the chart is
// written beside the first file.
func report(files []string, w io.Writer) error {
	if len(files) == 0 {
		return fmt.Errorf("report: no result files")
	}
	var rs []result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		rs = append(rs, r)
	}
	ratios := ratios(rs)
	fmt.Fprintf(w, "| # | ratio | measured | target | met |\n|---|---|---|---|---|\n")
	for i, r := range ratios {
		met := "yes"
		if !r.Met {
			met = "**no**"
		}
		fmt.Fprintf(w, "| %d | %s | %.2f (%s) | %s | %s |\n", i+1, r.Name, r.Value, r.Detail, r.Target, met)
	}
	if pq, classic := median(rs, "mqttgate", "hs-ecdsa-pq", handshakesPerCPUSecond), median(rs, "mqttgate", "hs-ecdsa", handshakesPerCPUSecond); !math.IsNaN(pq) {
		fmt.Fprintf(w, "\nThe handshakes above use X25519, which every target can negotiate. With X25519MLKEM768 (post-quantum hybrid,\n"+
			"Go's default, not in OpenSSL 3.0) mqttgate completes %.0f full ECDSA handshakes per CPU-second: %.2f of its X25519 rate.\n", pq, pq/classic)
	}
	chart := filepath.Join(filepath.Dir(files[0]), "chart.svg")
	if err := os.WriteFile(chart, []byte(svgChart(ratios)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nchart: %s\n", chart)
	return nil
}

// median of a metric over the repeats of one target and test; NaN when
// there is none.
func median(rs []result, name, test string, metric func(*result) float64) float64 {
	var v []float64
	for i := range rs {
		if rs[i].Name == name && rs[i].Test == test {
			if x := metric(&rs[i]); !math.IsNaN(x) {
				v = append(v, x)
			}
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func msgsPerSec(r *result) float64 {
	if r.Load == nil {
		return math.NaN()
	}
	return r.Load.MsgsPerSec
}

// cpuPerMsgUS: the target's CPU time over the run (drain included) per
// message delivered (drain included).
func cpuPerMsgUS(r *result) float64 {
	if r.Load == nil || r.Load.Received == 0 {
		return math.NaN()
	}
	return r.CPUSeconds * 1e6 / float64(r.Load.Received)
}

func bytesPerCPUSecond(r *result) float64 {
	if r.Load == nil || r.CPUSeconds == 0 {
		return math.NaN()
	}
	return float64(r.Load.Received) * float64(r.Load.PayloadBytes) / r.CPUSeconds
}

func latency(q string) func(*result) float64 {
	return func(r *result) float64 {
		if r.Load == nil {
			return math.NaN()
		}
		return float64(r.Load.LatencyUS[q])
	}
}

func handshakesPerCPUSecond(r *result) float64 {
	if r.Handshake == nil || r.CPUSeconds == 0 {
		return math.NaN()
	}
	return float64(r.Handshake.Handshakes) / r.CPUSeconds
}

func kibPerConn(r *result) float64 {
	if r.Idle == nil {
		return math.NaN()
	}
	return r.Idle.KiBPerConn
}

func ratios(rs []result) []ratio {
	var out []ratio
	add := func(name string, v float64, target string, met bool, detail string) {
		out = append(out, ratio{name, v, target, met && !math.IsNaN(v), detail})
	}
	for _, test := range []string{"qos0-64", "qos0-16k"} {
		m, h := median(rs, "mqttgate", test, msgsPerSec), median(rs, "haproxy", test, msgsPerSec)
		add("messages/s "+test+": mqttgate / HAProxy", m/h, "≥ 1.0", m/h >= 1, fmt.Sprintf("%.0f vs %.0f", m, h))
	}
	m, h := median(rs, "mqttgate", "qos0-64", cpuPerMsgUS), median(rs, "haproxy", "qos0-64", cpuPerMsgUS)
	add("proxy CPU-µs per PUBLISH (qos0-64): mqttgate / HAProxy", m/h, "≤ 1.0", m/h <= 1, fmt.Sprintf("%.2f vs %.2f µs", m, h))
	b, a := median(rs, "mqttgate", "qos0-16k", bytesPerCPUSecond), median(rs, "", "aesgcm", func(r *result) float64 { return r.Extra["open_bytes_per_sec"] })
	add("bulk bytes per proxy CPU-second / AES-GCM open rate", b/a, "≥ 0.35", b/a >= 0.35, fmt.Sprintf("%.0f vs %.0f MB/s", b/1e6, a/1e6))
	for _, q := range []string{"p50", "p99"} {
		d := median(rs, "direct", "latency", latency(q))
		m, h := median(rs, "mqttgate", "latency", latency(q)), median(rs, "haproxy", "latency", latency(q))
		// Added latency below 1 µs (or below direct: noise) counts as 1 µs,
		// so that a ratio of two noise figures means nothing dramatic.
		r := max(m-d, 1) / max(h-d, 1)
		add("added latency "+q+" vs direct: mqttgate / HAProxy", r, "≤ 1.0", r <= 1, fmt.Sprintf("%+.0f vs %+.0f µs", m-d, h-d))
	}
	for _, c := range []struct {
		test   string
		target float64
	}{{"hs-ecdsa", 1}, {"hs-resume", 1}, {"hs-rsa", 0.35}} {
		m, h := median(rs, "mqttgate", c.test, handshakesPerCPUSecond), median(rs, "haproxy", c.test, handshakesPerCPUSecond)
		add("TLS handshakes per proxy CPU-second "+c.test+": mqttgate / HAProxy", m/h, fmt.Sprintf("≥ %.2f", c.target), m/h >= c.target, fmt.Sprintf("%.0f vs %.0f", m, h))
	}
	m, h = median(rs, "mqttgate", "idle", kibPerConn), median(rs, "haproxy", "idle", kibPerConn)
	add("KiB per idle TLS connection: mqttgate", m, fmt.Sprintf("≤ HAProxy (%.1f) and ≤ 20", h), m <= h && m <= 20, fmt.Sprintf("%.1f vs %.1f KiB", m, h))
	if w := median(rs, "mqttgate-wss", "idle", kibPerConn); !math.IsNaN(w) {
		add("KiB per idle wss connection: mqttgate, above its TLS", w-m, "≤ 2", w-m <= 2, fmt.Sprintf("%.1f vs %.1f KiB", w, m))
	}
	if w := median(rs, "mqttgate-wss", "qos0-64", cpuPerMsgUS); !math.IsNaN(w) {
		add("proxy CPU-µs per PUBLISH (qos0-64) over wss: mqttgate / HAProxy (TLS)", w/h0(rs), "≤ 1.5", w/h0(rs) <= 1.5, fmt.Sprintf("%.2f vs %.2f µs", w, h0(rs)))
	}
	return out
}

// h0 is HAProxy's CPU per message at qos0-64.
func h0(rs []result) float64 { return median(rs, "haproxy", "qos0-64", cpuPerMsgUS) }

// svgChart draws each ratio as a bar against its target.
func svgChart(rs []ratio) string {
	const w, rowH, left = 900, 34, 430
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`, w, rowH*len(rs)+40)
	fmt.Fprintf(&b, `<text x="10" y="20" font-weight="bold">mqttgate vs HAProxy and the TLS floor (green: target met)</text>`)
	for i, r := range rs {
		y := 34 + i*rowH
		v := r.Value
		if math.IsNaN(v) || math.IsInf(v, 0) {
			v = 0
		}
		scale := 100.0 // px per 1.0 of ratio, KiB/20 for the memory line
		if strings.HasPrefix(r.Name, "KiB") {
			scale = 100.0 / 20
		}
		bar := math.Min(v*scale, float64(w-left-20))
		color := "#c0392b"
		if r.Met {
			color = "#27ae60"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`, y+16, escape(r.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="20" fill="%s"/>`, left, y+2, bar, color)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black" stroke-dasharray="3,2"/>`, left+100, left+100, y, y+26)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d">%.2f (target %s)</text>`, float64(left)+bar+6, y+16, r.Value, escape(r.Target))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
