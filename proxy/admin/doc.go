// Package admin answers what operators, probes and scrapers may see: the admin HTTP listener's health, readiness, Prometheus metrics and the API (connections, kicks, bans, reload, drain) with its scoped, expiring keys.
package admin
