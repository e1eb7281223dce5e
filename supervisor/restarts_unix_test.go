//go:build unix

package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// gone reports whether no process pid is left (reaping it if it is an
// orphan that came to us).
func gone(pid int) bool {
	reap(pid)
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestKilledInstanceIsRestartedAndRegisteredAgain kills -9 one of two
// instances: it is deregistered at once and restarted on the same (chosen)
// port with a new pid, then registered again; the other is left alone.
func TestKilledInstanceIsRestartedAndRegisteredAgain(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	reg := startRegistry(t)
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	s := startSupervisor(ctx, t, Options{
		Config:   testConfig(t, workerAgent("worker", 2)),
		Registry: reg.registrar,
		Logger:   logs.logger(),
	})
	key := reg.key(echoService, "worker-0")
	var revision int64
	testwait.For(ctx, t, "both instances registered", func() bool {
		revision = reg.revision(ctx, t, key)
		return revision != 0 && reg.revision(ctx, t, reg.key(echoService, "worker-1")) != 0 &&
			instanceStatus(t, s, "worker", 0).Registered && instanceStatus(t, s, "worker", 1).Registered
	})
	before := instanceStatus(t, s, "worker", 0)
	other := instanceStatus(t, s, "worker", 1)

	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reg.awaitEvents(ctx, t, key, revision, "DELETE", "PUT")
	testwait.For(ctx, t, "worker-0 running again", func() bool {
		st := instanceStatus(t, s, "worker", 0)
		return st.PID != 0 && st.PID != before.PID && st.State == StateRunning && st.Registered
	})
	after := instanceStatus(t, s, "worker", 0)
	type view struct {
		Port, Restarts   int
		LastExit, Health string
	}
	want := view{Port: before.Port, Restarts: 1, LastExit: "signal: killed", Health: "SERVING"}
	got := view{Port: after.Port, Restarts: after.Restarts, LastExit: after.LastExit, Health: after.Health}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("worker-0 after the kill (-want +got):\n%s", diff)
	}
	if st := instanceStatus(t, s, "worker", 1); st.PID != other.PID || st.Restarts != 0 {
		t.Errorf("worker-1: pid %d, restarts %d; want it untouched (pid %d)", st.PID, st.Restarts, other.PID)
	}
	if !gone(before.PID) {
		t.Errorf("the killed process %d is still there", before.PID)
	}
}

// TestUnhealthyInstanceIsRestarted runs a worker that turns NOT_SERVING
// after 500ms: after heartbeat.failures failed checks it is deregistered,
// then stopped, then started again.
func TestUnhealthyInstanceIsRestarted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	reg := startRegistry(t)
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	s := startSupervisor(ctx, t, Options{
		Config:   testConfig(t, workerAgent("sick", 1, "--unhealthy-after", "500ms")),
		Registry: reg.registrar,
		Logger:   logs.logger(),
	})
	testwait.For(ctx, t, "the instance registered", func() bool { return instanceStatus(t, s, "sick", 0).Registered })
	first := instanceStatus(t, s, "sick", 0)
	testwait.For(ctx, t, "the instance restarted", func() bool {
		st := instanceStatus(t, s, "sick", 0)
		return st.PID != 0 && st.PID != first.PID
	})
	pid := strconv.Itoa(first.PID)
	if n := len(logs.find("health check failed", map[string]string{"pid": pid})); n != 2 {
		t.Errorf("%d failed checks logged before the restart, want heartbeat.failures = 2", n)
	}
	deregistered := logs.index("deregistered", map[string]string{"agent": "sick"})
	restarting := logs.index("restarting the unhealthy instance", map[string]string{"pid": pid})
	stopped := logs.index("process stopped", map[string]string{"pid": pid})
	if deregistered < 0 || restarting < 0 || stopped < 0 || !(deregistered < stopped && restarting < stopped) {
		t.Errorf("log order: deregistered #%d, restarting #%d, stopped #%d; want the deregistration and the decision before the stop", deregistered, restarting, stopped)
	}
	if st := instanceStatus(t, s, "sick", 0); st.Restarts != 1 || st.LastExit != "exit status 0" {
		t.Errorf("after the restart: restarts %d, last exit %q; want 1, \"exit status 0\" (the worker stops cleanly on SIGTERM)", st.Restarts, st.LastExit)
	}
}

// TestCrashLoopBecomesFatal runs a program that exits at once: it is
// restarted with backoff, becomes fatal after crash_loop_starts starts,
// and is started again only after fatal_retry; no start is ever in a
// busy loop.
func TestCrashLoopBecomesFatal(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	startsFile := filepath.Join(t.TempDir(), "starts")
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	cfg := testConfig(t, roleAgent("crasher", "exit-at-once", map[string]string{startsFileEnv: startsFile}))
	cfg.Restart = RestartConfig{
		MinBackoff: 30 * time.Millisecond, MaxBackoff: 60 * time.Millisecond,
		CrashLoopStarts: 3, CrashLoopWindow: time.Minute, FatalRetry: 400 * time.Millisecond, StableAfter: 10 * time.Second,
	}
	// Draws of 0: every backoff is min_backoff.
	s := startSupervisor(ctx, t, Options{Config: cfg, Logger: logs.logger(), rand: func() float64 { return 0 }})

	testwait.For(ctx, t, "the instance fatal", func() bool { return instanceStatus(t, s, "crasher", 0).State == StateFatal })
	st := instanceStatus(t, s, "crasher", 0)
	if st.Restarts != 2 || st.PID != 0 || st.LastExit != "exit status 1" || !slices.Contains(st.LastLines, "crashing on purpose") {
		t.Errorf("fatal instance: restarts %d, pid %d, last exit %q, last lines %q; want 2, 0, \"exit status 1\", with \"crashing on purpose\"",
			st.Restarts, st.PID, st.LastExit, st.LastLines)
	}
	logged, err := os.ReadFile(st.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logged), "crashing on purpose\n"); n != 3 {
		t.Errorf("%s holds the output of %d runs, want 3:\n%s", st.LogFile, n, logged)
	}
	fatal := logs.find("crash-looping", map[string]string{"agent": "crasher"})
	if len(fatal) != 1 || !strings.Contains(fatal[0].attrs["last_lines"], "crashing on purpose") {
		t.Errorf("crash-loop records: %v; want one, with the last lines", fatal)
	}

	testwait.For(ctx, t, "the retry after fatal_retry", func() bool { return len(readStarts(t, startsFile)) >= 4 })
	starts := readStarts(t, startsFile)
	for i, min := range []time.Duration{cfg.Restart.MinBackoff, cfg.Restart.MinBackoff, cfg.Restart.FatalRetry} {
		if gap := starts[i+1].Sub(starts[i]); gap < min {
			t.Errorf("start %d came %s after start %d, want at least %s", i+2, gap, i+1, min)
		}
	}
}

// readStarts returns the start times the exit-at-once role recorded.
func readStarts(t *testing.T, path string) []time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var starts []time.Time
	for line := range strings.Lines(string(data)) {
		_, nanos, _ := strings.Cut(strings.TrimSpace(line), " ")
		n, err := strconv.ParseInt(nanos, 10, 64)
		if err != nil {
			t.Fatalf("bad line %q in %s", line, path)
		}
		starts = append(starts, time.Unix(0, n))
	}
	return starts
}
