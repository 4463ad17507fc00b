//go:build linux

package bench

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// allowedCPUs returns the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// startPinned starts cmd with its CPU affinity set to cpus: the calling
// thread takes that affinity for the fork (a child inherits its parent
// thread's mask), then gets its own back.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return cmd.Start()
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
		return cmd.Start()
	}
	defer unix.SchedSetaffinity(0, &orig)
	return cmd.Start()
}

// pinProcess sets the affinity of every thread of this process to cpus
// (threads created later inherit it from their creator) and GOMAXPROCS to
// their number; the returned function undoes both.
func pinProcess(cpus []int) (restore func()) {
	if len(cpus) == 0 {
		return func() {}
	}
	all := allowedCPUs()
	setAll := func(set *unix.CPUSet) {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				_ = unix.SchedSetaffinity(tid, set)
			}
		}
	}
	prev := runtime.GOMAXPROCS(len(cpus))
	setAll(cpuSet(cpus))
	return func() {
		setAll(cpuSet(all))
		runtime.GOMAXPROCS(prev)
	}
}
