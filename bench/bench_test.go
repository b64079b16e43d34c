package main

import (
	"math"
	"strings"
	"testing"
)

// Ratios come from medians over repeats, per target and test.
func TestRatios(t *testing.T) {
	load := func(name, test string, rate float64, cpu float64) result {
		return result{Name: name, Test: test, CPUSeconds: cpu, Load: &loadResult{MsgsPerSec: rate, Received: 1000, PayloadBytes: 64,
			LatencyUS: map[string]int64{"p50": int64(rate), "p99": int64(2 * rate)}}}
	}
	rs := []result{
		load("mqttgate", "qos0-64", 90, 1), load("mqttgate", "qos0-64", 110, 1), load("mqttgate", "qos0-64", 100, 1),
		load("haproxy", "qos0-64", 100, 2),
		load("direct", "latency", 10, 0), load("mqttgate", "latency", 30, 0), load("haproxy", "latency", 50, 0),
	}
	got := map[string]ratio{}
	for _, r := range ratios(rs) {
		got[r.Name] = r
	}
	if r := got["messages/s qos0-64: mqttgate / HAProxy"]; r.Value != 1 || !r.Met {
		t.Errorf("throughput ratio %+v", r)
	}
	if r := got["proxy CPU-µs per PUBLISH (qos0-64): mqttgate / HAProxy"]; r.Value != 0.5 || !r.Met {
		t.Errorf("CPU ratio %+v", r)
	}
	if r := got["added latency p50 vs direct: mqttgate / HAProxy"]; r.Value != 0.5 || !r.Met {
		t.Errorf("latency ratio %+v", r)
	}
	noise := []result{load("direct", "latency", 10, 0), load("mqttgate", "latency", 9, 0), load("haproxy", "latency", 6, 0)}
	for _, r := range ratios(noise) {
		if r.Name == "added latency p50 vs direct: mqttgate / HAProxy" && (r.Value != 1 || !r.Met) {
			t.Errorf("latency below direct (noise) %+v", r)
		}
	}
	if r := got["messages/s qos0-16k: mqttgate / HAProxy"]; !math.IsNaN(r.Value) || r.Met {
		t.Errorf("a ratio without data is met: %+v", r)
	}
	if svg := svgChart(ratios(rs)); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "<rect") || !strings.HasSuffix(svg, "</svg>") {
		t.Errorf("chart: %.80s", svg)
	}
}
