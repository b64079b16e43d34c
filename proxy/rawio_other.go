//go:build !linux

package proxy

import (
	"net"
	"time"
)

// direct returns c with its writes bounded: raw system calls are used on
// Linux only.
func direct(c net.Conn, writeBound time.Duration) net.Conn { return boundWrites(c, writeBound) }
