//go:build unix

package bench

import "syscall"

// processCPU returns this process's CPU time (user + system, ns) and peak
// resident set (KiB on Linux) from getrusage.
func processCPU() (cpuNanos, maxRSSKiB int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), int64(ru.Maxrss)
}
