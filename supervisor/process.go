package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

const (
	// groupPoll is how often a stopping process group is looked at for
	// processes left once its leader has exited.
	groupPoll = 25 * time.Millisecond
	// outputDrain bounds the wait for the output of a process whose group
	// is gone: a process that left the group (a daemon) may hold the pipe.
	outputDrain = time.Second
)

// processSpec is what an instance runs, placeholders substituted.
type processSpec struct {
	path string
	args []string
	env  []string
	dir  string
}

// process is one run of an instance: the OS process, its group, and the
// two goroutines it owns, one waiting for the exit and one copying the
// output. close waits for both.
type process struct {
	cmd   *exec.Cmd
	group *procGroup
	pid   int

	// exited is done once the process has exited; exitStatus is set then.
	exited     context.Context
	exitStatus string

	output *os.File // the read end of the stdout and stderr pipe
	copied chan struct{}
	wg     sync.WaitGroup
}

// startProcess starts spec with its stdout and stderr, merged, copied to
// out, which must not fail (a failing writer would stop the copy and
// block the process on its next write).
func startProcess(spec processSpec, out io.Writer) (*process, error) {
	// Our own pipe, rather than exec's: exec's copy would make Wait wait
	// for every process holding the pipe (the grandchildren too), and the
	// exit must be seen at once.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating the output pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   spec.path,
		Args:   append([]string{spec.path}, spec.args...),
		Env:    spec.env,
		Dir:    spec.dir,
		Stdout: pw,
		Stderr: pw,
	}
	prepareCommand(cmd)
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	group, err := attachGroup(cmd)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pr.Close()
		return nil, err
	}
	exited, markExited := context.WithCancel(context.Background())
	p := &process{
		cmd:    cmd,
		group:  group,
		pid:    cmd.Process.Pid,
		exited: exited,
		output: pr,
		copied: make(chan struct{}),
	}
	p.wg.Go(func() {
		err := cmd.Wait()
		if cmd.ProcessState != nil {
			p.exitStatus = cmd.ProcessState.String()
		} else {
			p.exitStatus = err.Error()
		}
		markExited()
	})
	p.wg.Go(func() {
		defer close(p.copied)
		_, _ = io.Copy(out, pr)
	})
	return p, nil
}

// stop ends the process and its group: a polite request to stop, up to
// timeout for every process of the group to exit, then the kill. A close
// of killNow cuts the wait short. It returns once the process has exited.
func (p *process) stop(timeout time.Duration, killNow <-chan struct{}) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	if err := p.group.terminate(); err != nil {
		p.killGroup()
		return
	}
	select {
	case <-p.exited.Done():
	case <-deadline.C:
		p.killGroup()
		return
	case <-killNow:
		p.killGroup()
		return
	}
	p.endRest(deadline.C, killNow)
}

// cleanUp ends what is left of the group of a process that exited on its
// own: its children get the same polite request and timeout.
func (p *process) cleanUp(timeout time.Duration, killNow <-chan struct{}) {
	if !p.group.alive() {
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	if err := p.group.terminate(); err != nil {
		p.killGroup()
		return
	}
	p.endRest(deadline.C, killNow)
}

// endRest waits for the group, whose leader has exited, to empty, and kills
// what is left at the deadline.
func (p *process) endRest(deadline <-chan time.Time, killNow <-chan struct{}) {
	tick := time.NewTicker(groupPoll)
	defer tick.Stop()
	for p.group.alive() {
		select {
		case <-tick.C:
		case <-deadline:
			p.killGroup()
			return
		case <-killNow:
			p.killGroup()
			return
		}
	}
}

func (p *process) killGroup() {
	_ = p.group.kill()
	<-p.exited.Done()
}

// close waits for the output to be copied, for a bounded time, and frees
// what the process holds. The process must have exited.
func (p *process) close() {
	t := time.NewTimer(outputDrain)
	select {
	case <-p.copied:
	case <-t.C:
	}
	t.Stop()
	// Ends the copy of a pipe still held by a process out of the group.
	p.output.Close()
	p.wg.Wait()
	p.group.release()
}
