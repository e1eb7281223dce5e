package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A child is a process the harness started (the backends, a proxy). It
// runs in its own process group, so that stopping it stops its own
// children too (nginx's workers), and on Linux it is killed if the
// harness dies first.
type child struct {
	name string
	cmd  *exec.Cmd
	// done is closed when the process has exited; waitErr is then set.
	done    chan struct{}
	waitErr error
	logPath string
}

// startChild starts cmd, its stdout and stderr going to logPath. When
// readyPrefix is not empty, it waits (up to timeout) for a stdout line
// starting with it and returns the rest of that line; the child's
// further output still goes to the log.
func startChild(name string, cmd *exec.Cmd, logPath, readyPrefix string, timeout time.Duration) (*child, string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	cmd.Stderr = logFile
	var stdout io.ReadCloser
	if readyPrefix == "" {
		cmd.Stdout = logFile
	} else if stdout, err = cmd.StdoutPipe(); err != nil {
		logFile.Close()
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	ready := make(chan string, 1)
	if stdout != nil {
		// The copier ends when the child closes its stdout (it exits).
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if rest, ok := strings.CutPrefix(line, readyPrefix); ok {
					select {
					case ready <- strings.TrimSpace(rest):
					default:
					}
					continue
				}
				fmt.Fprintln(logFile, line)
			}
			close(ready)
		}()
	}
	go func() {
		c.waitErr = cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	if stdout == nil {
		return c, "", nil
	}
	select {
	case line, ok := <-ready:
		if ok {
			return c, line, nil
		}
		<-c.done
		return nil, "", fmt.Errorf("starting %s: exited before it was ready (%v); log: %s", name, c.waitErr, c.tail())
	case <-time.After(timeout):
		return nil, "", errors.Join(fmt.Errorf("starting %s: not ready within %s; log: %s", name, timeout, c.tail()), c.stop())
	}
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop asks the child's process group to end (SIGTERM), kills it after
// 5 s, and waits for it. An exit on that signal is not an error, nor is
// an earlier exit (measure and the start report those).
func (c *child) stop() error {
	if c.exited() {
		return nil
	}
	signalGroup(c.cmd.Process, false)
	select {
	case <-c.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	signalGroup(c.cmd.Process, true)
	<-c.done
	return fmt.Errorf("stopping %s: killed after 5 s", c.name)
}

// exitError describes an exit on the child's own.
func (c *child) exitError() error {
	return fmt.Errorf("%s exited on its own: %v; log: %s", c.name, c.waitErr, c.tail())
}

// tail returns the end of the child's log, or a crash report from its
// cause on, for error messages.
func (c *child) tail() string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return c.logPath
	}
	s := strings.TrimSpace(string(data))
	// A Go crash or race report prints its cause first and then stacks:
	// keep the cause and the first stacks rather than the last.
	for _, mark := range []string{"panic: ", "fatal error: ", "WARNING: DATA RACE"} {
		if i := strings.Index(s, mark); i >= 0 {
			if s = s[i:]; len(s) > 2000 {
				s = s[:2000] + "…"
			}
			return s
		}
	}
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	if s == "" {
		return "(empty) " + c.logPath
	}
	return s
}
