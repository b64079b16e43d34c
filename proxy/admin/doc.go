// Package admin answers what operators, probes and scrapers may see: the admin HTTP listener's health, readiness and Prometheus metrics.
package admin
