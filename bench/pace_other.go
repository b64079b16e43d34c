//go:build !linux

package main

import "time"

// precisePacing: Go's timers only, away from Linux.
func precisePacing() (undo func()) { return func() {} }

func sleepPrecisely(d time.Duration) { time.Sleep(d) }
