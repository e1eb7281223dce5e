//go:build unix

package supervisor

import (
	"errors"
	"os/exec"
	"syscall"
)

// prepareCommand makes the process the leader of a new process group, so
// that its children, and theirs, are stopped with it.
func prepareCommand(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// procGroup is a started process and its descendants: its process group.
type procGroup struct {
	pgid int
}

// attachGroup returns the group of cmd, started by prepareCommand's
// settings.
func attachGroup(cmd *exec.Cmd) (*procGroup, error) {
	return &procGroup{pgid: cmd.Process.Pid}, nil
}

// terminate asks every process of the group to stop: SIGTERM.
func (g *procGroup) terminate() error { return signalGroup(g.pgid, syscall.SIGTERM) }

// kill kills every process of the group: SIGKILL.
func (g *procGroup) kill() error { return signalGroup(g.pgid, syscall.SIGKILL) }

// alive reports whether any process of the group is left.
func (g *procGroup) alive() bool {
	err := syscall.Kill(-g.pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// release frees what the group holds; nothing on Unix.
func (g *procGroup) release() {}

func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
