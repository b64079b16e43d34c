// Package proxy owns the listeners, TLS, and the per-connection pipeline
// that carries MQTT from a client to a broker: access rules, PROXY headers,
// the TLS handshake, CONNECT under a deadline, authentication, the broker
// dial, and the two pumps that inspect client packets and copy broker ones.
package proxy
