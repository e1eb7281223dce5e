//go:build !linux

package main

import (
	"os"
	"syscall"
)

func childProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup ends p: elsewhere than on Linux only p itself.
func signalGroup(p *os.Process, kill bool) {
	if kill {
		_ = p.Kill()
		return
	}
	if err := p.Signal(os.Interrupt); err != nil {
		_ = p.Kill()
	}
}

// pauseGroup is not supported here: the processes keep running.
func pauseGroup(p *os.Process, pause bool) bool { return false }
