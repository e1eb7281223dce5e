//go:build linux

package main

import (
	"os"
	"syscall"
)

// childProcAttr puts a child in its own process group and has the kernel
// kill it if the harness dies without stopping it (Ctrl-C twice, a crash),
// so no proxy outlives a run.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends SIGTERM (or SIGKILL when kill) to p's process group.
func signalGroup(p *os.Process, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(-p.Pid, sig); err != nil {
		_ = p.Signal(sig)
	}
}
