//go:build unix

package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestStopEndsEveryProcess stops a registered worker and a program whose
// child ignores SIGTERM: the worker is deregistered before it is stopped,
// and no process is left, the grandchild included (killed after
// stop_timeout).
func TestStopEndsEveryProcess(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	reg := startRegistry(t)
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	cfg := testConfig(t,
		workerAgent("worker", 1),
		roleAgent("spawner", "spawn-grandchild", map[string]string{pidFileEnv: pidFile}),
	)
	cfg.StopTimeout = 500 * time.Millisecond
	s, err := New(Options{Config: cfg, Registry: reg.registrar, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	// Stops everything should the test fail before its own Stop.
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "the worker registered", func() bool {
		return instanceStatus(t, s, "worker", 0).Registered && len(reg.keys(ctx, t)) == 1
	})
	var grandchild int
	testwait.For(ctx, t, "the grandchild's pid", func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		grandchild, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	})
	pids := map[string]int{
		"worker":     instanceStatus(t, s, "worker", 0).PID,
		"spawner":    instanceStatus(t, s, "spawner", 0).PID,
		"grandchild": grandchild,
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s (pid %d) is not running before the stop: %v", name, pid, err)
		}
	}

	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		testwait.For(ctx, t, name+" gone", func() bool { return gone(pid) })
	}
	if keys := reg.keys(ctx, t); len(keys) != 0 {
		t.Errorf("keys left in etcd after the stop: %q", keys)
	}
	var states []string
	for _, st := range s.Status() {
		states = append(states, st.Agent+" "+st.State+" pid="+strconv.Itoa(st.PID)+" registered="+strconv.FormatBool(st.Registered))
	}
	want := []string{"spawner stopped pid=0 registered=false", "worker stopped pid=0 registered=false"}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("status after the stop (-want +got):\n%s", diff)
	}
	worker := map[string]string{"agent": "worker"}
	if d, p := logs.index("deregistered", worker), logs.index("process stopped", worker); d < 0 || p < 0 || d > p {
		t.Errorf("the worker was deregistered at record #%d and stopped at #%d; want the deregistration first", d, p)
	}
	if err := s.Stop(stopCtx); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

// TestStopKillsWhenItsContextEnds stops a process that ignores SIGTERM
// with a stop_timeout longer than Stop's context: Stop kills it when the
// context ends, and says so.
func TestStopKillsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	pidFile := filepath.Join(t.TempDir(), "stubborn.pid")
	cfg := testConfig(t, roleAgent("stubborn", "stubborn-sleeper", map[string]string{pidFileEnv: pidFile}))
	cfg.StopTimeout = time.Minute
	s := startSupervisor(ctx, t, Options{Config: cfg})
	// Written after SIGTERM is ignored: a stop now meets a stubborn process.
	testwait.For(ctx, t, "the pid file", func() bool {
		_, err := os.Stat(pidFile)
		return err == nil
	})
	pid := instanceStatus(t, s, "stubborn", 0).PID

	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := s.Stop(stopCtx)
	want := "supervisor: stopping: context deadline exceeded; the processes left were killed"
	if err == nil || err.Error() != want {
		t.Errorf("Stop: %v, want %s", err, want)
	}
	if !gone(pid) {
		t.Errorf("process %d survived the stop", pid)
	}
	if st := instanceStatus(t, s, "stubborn", 0); st.LastExit != "signal: killed" {
		t.Errorf("last exit %q, want \"signal: killed\"", st.LastExit)
	}
}
