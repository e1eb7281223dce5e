//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// child is a process the soak started. Its own process group keeps a
// Ctrl-C in the terminal from reaching it, so the soak stops everything in
// order; the parent-death signal ends it if the soak itself dies.
type child struct {
	name string
	cmd  *exec.Cmd
	// exited is closed once the process has been waited for; err is then
	// its exit error.
	exited chan struct{}
	err    error
	// terminated is set by the first SIGTERM: a second one could arrive
	// after the process restored the default action on its way out.
	terminated atomic.Bool
}

// startChild starts the command with its stdout and stderr appended to
// logPath, and, when readyPrefix is not empty, waits up to timeout for a
// stdout line starting with it and returns the rest of that line.
func startChild(name string, cmd *exec.Cmd, logPath, readyPrefix string, timeout time.Duration) (*child, string, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = logFile
	var stdout io.ReadCloser
	if readyPrefix != "" {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logFile.Close()
			return nil, "", err
		}
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, exited: make(chan struct{})}
	ready := make(chan string, 1)
	copied := make(chan struct{})
	if stdout != nil {
		go func() {
			defer close(copied)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if rest, ok := strings.CutPrefix(line, readyPrefix); ok {
					select {
					case ready <- rest:
					default:
					}
				}
				fmt.Fprintln(logFile, line)
			}
		}()
	} else {
		close(copied)
	}
	go func() {
		// Wait closes the stdout pipe only after the copy has read it all.
		<-copied
		c.err = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	if readyPrefix == "" {
		return c, "", nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line := <-ready:
		return c, line, nil
	case <-c.exited:
		return nil, "", fmt.Errorf("%s exited before it was ready: %v (see %s)", name, c.err, logPath)
	case <-t.C:
		c.kill()
		return nil, "", fmt.Errorf("%s not ready within %s (see %s)", name, timeout, logPath)
	}
}

// signal sends sig to the process, unless it has exited.
func (c *child) signal(sig os.Signal) {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the exit.
func (c *child) kill() {
	c.signal(syscall.SIGKILL)
	<-c.exited
}

// terminate sends SIGTERM, once.
func (c *child) terminate() {
	if c.terminated.CompareAndSwap(false, true) {
		c.signal(syscall.SIGTERM)
	}
}

// stop sends SIGTERM (unless sent already) and waits for the exit; after
// grace it kills the process and says so.
func (c *child) stop(grace time.Duration) error {
	c.terminate()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
		return c.exitError()
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", c.name, grace)
	}
}

// exitError is the process's exit error, once it has exited.
func (c *child) exitError() error {
	if c.err == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(c.err, &exit) {
		return fmt.Errorf("%s: %s", c.name, exit.ProcessState)
	}
	return fmt.Errorf("%s: %w", c.name, c.err)
}
