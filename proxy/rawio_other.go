//go:build !linux

package proxy

import "net"

// direct returns c: raw system calls are used on Linux only.
func direct(c net.Conn) net.Conn { return c }
