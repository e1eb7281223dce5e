//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// TestRunSupervises runs `quaestor run` with one supervised worker: it is
// reached through the proxy; killed, it comes back (quaestor status shows
// the restart); a config change adds an agent without touching the first;
// SIGTERM stops every worker.
func TestRunSupervises(t *testing.T) {
	listen, adminAddr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	worker := filepath.Join(binDir, "quaestor-worker")
	configFor := func(agents string) string {
		return fmt.Sprintf(`
proxy: {listen: %s}
admin: {listen: %s}
etcd: {mode: embedded, dir: %s, client_url: "http://%s", peer_url: "http://%s"}
registry: {lease_ttl: 2s}
supervisor:
  log_dir: %s
  heartbeat: {interval: 200ms, startup_grace: 5s}
  restart: {min_backoff: 100ms}
  agents:
%s`, listen, adminAddr, filepath.Join(dir, "etcd"), freeAddr(t), freeAddr(t), filepath.Join(dir, "logs"), agents)
	}
	agentA := fmt.Sprintf(`    - {name: a, executable: %s, args: ["--port", "{Port}", "--name", "a-{Instance}"], service_names: [quaestor.example.v1.Echo]}
`, worker)
	agentB := fmt.Sprintf(`    - {name: b, executable: %s, args: ["--port", "{Port}", "--name", "b-{Instance}"], service_names: [quaestor.example.v1.Echo]}
`, worker)
	cfgPath := filepath.Join(dir, "quaestor.yaml")
	if err := os.WriteFile(cfgPath, []byte(configFor(agentA)), 0o600); err != nil {
		t.Fatal(err)
	}
	run, _ := start(t, "quaestor", "run", "-c", cfgPath)
	ctx := testContext(t)
	status := func() admin.Snapshot {
		snap, _, err := fetchStatus(ctx, adminAddr)
		if err != nil {
			return admin.Snapshot{}
		}
		return snap
	}
	waitStatus := func(what string, cond func(admin.Snapshot) bool) admin.Snapshot {
		t.Helper()
		for {
			if snap := status(); cond(snap) {
				return snap
			}
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s: %+v", what, status().Processes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	running := func(agent string) func(admin.Snapshot) bool {
		return func(s admin.Snapshot) bool {
			for _, p := range s.Processes {
				if p.Agent == agent && p.State == "running" && p.Registered {
					return true
				}
			}
			return false
		}
	}
	snap := waitStatus("a running and registered", running("a"))
	pidA := snap.Processes[0].PID

	cc, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for {
		resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
		if err == nil && resp.GetServer() == "a-0" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the supervised worker was never reached: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// kill -9: restarted, registered again.
	if err := syscall.Kill(pidA, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	snap = waitStatus("a restarted", func(s admin.Snapshot) bool {
		return running("a")(s) && s.Processes[0].PID != pidA && s.Processes[0].Restarts == 1
	})
	pidA = snap.Processes[0].PID
	if !strings.Contains(snap.Processes[0].LastExit, "killed") {
		t.Errorf("last exit %q", snap.Processes[0].LastExit)
	}

	// A change of the file adds b; a keeps its process.
	if err := os.WriteFile(cfgPath, []byte(configFor(agentA+agentB)), 0o600); err != nil {
		t.Fatal(err)
	}
	snap = waitStatus("b added", running("b"))
	for _, p := range snap.Processes {
		if p.Agent == "a" && p.PID != pidA {
			t.Errorf("reload restarted a: pid %d, was %d", p.PID, pidA)
		}
	}
	var pids []int
	for _, p := range snap.Processes {
		pids = append(pids, p.PID)
	}

	if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-run.done:
		run.done <- err
		if err != nil {
			t.Fatalf("quaestor run exited with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("quaestor run did not exit")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker %d still there after quaestor stopped: %v", pid, err)
		}
	}
}
