// Package limits keeps one client from degrading service for the others:
// packet and topic limits, message and byte rates applied as
// backpressure, connection caps, bans that persist in a file, and
// flapping detection.
package limits
