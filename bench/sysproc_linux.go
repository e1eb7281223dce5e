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
	// A paused group (see pauseGroup) acts on SIGTERM only once resumed.
	_ = syscall.Kill(-p.Pid, syscall.SIGCONT)
}

// pauseGroup stops (SIGSTOP) or resumes (SIGCONT) p's process group, and
// reports whether it could.
func pauseGroup(p *os.Process, pause bool) bool {
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	return syscall.Kill(-p.Pid, sig) == nil
}
