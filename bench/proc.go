package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procSample is a process's CPU time and resident memory at one moment.
type procSample struct {
	CPUSeconds float64 // user + system
	RSSKiB     int64
}

// clockTicks is USER_HZ, 100 on Linux everywhere that matters.
const clockTicks = 100

func sampleProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	s.CPUSeconds = (utime + stime) / clockTicks
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSSKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return s, nil
}

// procDelta is what a process spent between two samples.
func procDelta(a, b procSample) procSample {
	return procSample{CPUSeconds: b.CPUSeconds - a.CPUSeconds, RSSKiB: b.RSSKiB - a.RSSKiB}
}
