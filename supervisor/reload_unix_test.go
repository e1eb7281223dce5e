//go:build unix

package supervisor

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestReloadTouchesOnlyWhatChanged reloads {a, b, c} into {b, c', d}
// with new heartbeat settings: a is stopped, c restarted, d started, and b
// keeps its process.
func TestReloadTouchesOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	logs := newLogRecorder()
	logs.dumpOnFailure(t)
	sleeper := func(name string) AgentConfig { return roleAgent(name, "sleep", nil) }
	cfg := testConfig(t, sleeper("a"), sleeper("b"), sleeper("c"))
	s := startSupervisor(ctx, t, Options{Config: cfg, Logger: logs.logger()})
	testwait.For(ctx, t, "every agent running", func() bool {
		for _, st := range s.Status() {
			if st.State != StateRunning || st.PID == 0 {
				return false
			}
		}
		return true
	})
	before := pidsByAgent(s)

	next := cfg
	changed := sleeper("c")
	changed.Args = []string{"--changed"}
	next.Agents = []AgentConfig{sleeper("b"), changed, sleeper("d")}
	// Empty and omitted are alike: b is unchanged.
	next.Agents[0].Args, next.Agents[0].Instances = []string{}, 1
	next.Heartbeat.Interval = 200 * time.Millisecond
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	after := pidsByAgent(s)
	if diff := cmp.Diff([]string{"b", "c", "d"}, slices.Sorted(maps.Keys(after))); diff != "" {
		t.Errorf("agents after the reload (-want +got):\n%s", diff)
	}
	if after["b"] != before["b"] {
		t.Errorf("b's pid went from %d to %d; want it untouched", before["b"], after["b"])
	}
	if after["c"] == before["c"] || after["c"] == 0 || after["d"] == 0 {
		t.Errorf("c's pid %d (was %d), d's %d; want c restarted and d started", after["c"], before["c"], after["d"])
	}
	for _, name := range []string{"a", "c"} {
		if !gone(before[name]) {
			t.Errorf("%s's old process %d is still there", name, before[name])
		}
	}
	if st := instanceStatus(t, s, "b", 0); st.Restarts != 0 || st.State != StateRunning {
		t.Errorf("b: restarts %d, state %s; want 0, running", st.Restarts, st.State)
	}
	if got := s.shared.config.Load().Heartbeat.Interval; got != 200*time.Millisecond {
		t.Errorf("heartbeat interval after the reload: %s, want 200ms", got)
	}
}

// TestReloadRefusesPortInUse reloads with a new agent on a port another
// process listens on: the reload is refused and nothing changes.
func TestReloadRefusesPortInUse(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	cfg := testConfig(t, roleAgent("a", "sleep", nil))
	s := startSupervisor(ctx, t, Options{Config: cfg})
	before := pidsByAgent(s)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	port := lis.Addr().(*net.TCPAddr).Port
	next := cfg
	added := roleAgent("b", "sleep", nil)
	added.Ports = []int{port}
	next.Agents = []AgentConfig{cfg.Agents[0], added}
	err = s.Reload(next)
	want := fmt.Sprintf("supervisor.agents[1].ports[0]: 127.0.0.1:%d is already in use (another process is listening; stop it or change the port)", port)
	if err == nil || err.Error() != want {
		t.Fatalf("Reload: %v, want %s", err, want)
	}
	if diff := cmp.Diff(before, pidsByAgent(s)); diff != "" {
		t.Errorf("processes after the refused reload (-before +after):\n%s", diff)
	}
}

// pidsByAgent returns the pid of each agent's instance 0.
func pidsByAgent(s *Supervisor) map[string]int {
	pids := map[string]int{}
	for _, st := range s.Status() {
		if st.Instance == 0 {
			pids[st.Agent] = st.PID
		}
	}
	return pids
}
