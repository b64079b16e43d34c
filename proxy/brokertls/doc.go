// Package brokertls decides how the proxy proves the broker is the broker, and itself to the broker.
package brokertls
