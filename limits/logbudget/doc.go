// Package logbudget decides whether a security event may be logged now:
// a global budget, and inside it a small share for each source, so one
// client's junk cannot crowd out everybody else's events.
package logbudget
