// Package audit writes the audit trail: one JSON line per security-relevant fact, apart from the operational log and never rate limited away.
package audit
