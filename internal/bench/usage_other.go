//go:build !unix

package bench

// processCPU is not measured on this system: CPU figures are 0.
func processCPU() (cpuNanos, maxRSSKiB int64) { return 0, 0 }
