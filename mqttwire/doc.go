// Package mqttwire frames, validates and inspects MQTT 3.1, 3.1.1 and 5.0
// packets without copying, and encodes the few packets the proxy sends itself.
//
// Ownership: every decoded field is a view into the Reader's buffer and is
// valid only until the next call to Reader.Next on that Reader. Anything kept
// longer must be copied by the caller on purpose.
package mqttwire
