// Package certstore decides which certificates, client CAs and CRLs are in
// service for the TLS listeners, reloads them, and judges client
// certificates on every handshake, resumed ones included.
package certstore
