// Package wstransport decides whether an HTTP upgrade may become an MQTT connection (path, subprotocol, Origin, forwarded address, bearer token) and carries MQTT bytes in WebSocket frames (RFC 6455 and the MQTT specification's WebSocket section).
package wstransport
