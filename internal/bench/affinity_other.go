//go:build !linux

package bench

import "os/exec"

func allowedCPUs() []int { return nil }

func startPinned(cmd *exec.Cmd, cpus []int) error { return cmd.Start() }

func pinProcess(cpus []int) (restore func()) { return func() {} }
