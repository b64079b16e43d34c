package main

import (
	"runtime"
	"syscall"
	"time"
)

// precisePacing makes the calling goroutine's sleeps precise, and returns
// what undoes it. Go's timers wake an idle process through epoll's
// millisecond timeout, so a schedule of sub-millisecond gaps went out in
// bursts a millisecond apart and every target's latency was mostly that:
// the publisher sleeps with nanosleep on a thread of its own instead, with
// 1 ns of timer slack (50 µs by default).
func precisePacing() (undo func()) {
	runtime.LockOSThread()
	const prSetTimerSlack = 29
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	return runtime.UnlockOSThread
}

func sleepPrecisely(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
}
