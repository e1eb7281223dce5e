package registry

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// member is one etcd member running in its own process.
type member struct {
	name, clientURL, peerURL, dir string
	cmd                           *exec.Cmd
}

func (m *member) start(t *testing.T, cluster string) {
	t.Helper()
	cmd, out := startRole(t, "member",
		envName+"="+m.name, envDir+"="+m.dir, envEtcd+"="+m.clientURL, envPeer+"="+m.peerURL, envCluster+"="+cluster)
	m.cmd = cmd
	go func() {
		// "ready" once the cluster has a leader; read it so the pipe
		// never fills.
		_, _ = out.ReadString('\n')
	}()
}

func (m *member) kill(t *testing.T) {
	t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = m.cmd.Wait()
}

// cluster is a 3-member etcd cluster of separate processes.
type cluster struct {
	members   []*member
	endpoints []string // the members' client URLs
	initial   string   // the initial cluster, name=peerURL,...
}

// startCluster starts a 3-member cluster on loopback; its processes are
// killed at the end of the test.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{}
	var initial []string
	for i := range 3 {
		m := &member{
			name: fmt.Sprintf("m%d", i+1),
			// Members restart on their ports.
			clientURL: "http://" + restartableAddr(t),
			peerURL:   "http://" + restartableAddr(t),
			dir:       filepath.Join(dir, fmt.Sprintf("m%d", i+1)),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
		c.endpoints = append(c.endpoints, m.clientURL)
	}
	c.initial = strings.Join(initial, ",")
	for _, m := range c.members {
		m.start(t, c.initial)
	}
	return c
}

// TestThreeMemberCluster runs quaestor's discovery and registration
// against a real 3-member etcd cluster of separate processes: losing one
// member changes nothing; losing all keeps routing on the last known
// endpoints; when the cluster comes back, discovery catches up.
func TestThreeMemberCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd processes")
	}
	cl := startCluster(t)
	members := cl.members
	client := newClient(t, cl.endpoints...)
	ctx := testContext(t)
	r := startRouted(t, client)
	reg := newRegistrar(t, client, MinLeaseTTL)

	a, b, c := startEcho(t, "a"), startEcho(t, "b"), startEcho(t, "c")
	if err := reg.Register(ctx, Instance{Service: echoService, ID: "a", Addr: a}); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "a in the table", func() bool { return slices.Equal(r.addrs(echoService), []string{a}) })

	// One member down: registration and discovery go on.
	members[0].kill(t)
	if err := reg.Register(ctx, Instance{Service: echoService, ID: "b", Addr: b}); err != nil {
		t.Fatalf("registering with one member down: %v", err)
	}
	want := []string{a, b}
	slices.Sort(want)
	testwait.For(ctx, t, "b in the table with one member down", func() bool { return slices.Equal(r.addrs(echoService), want) })
	// The lease outlives several TTLs on two members.
	time.Sleep(3 * MinLeaseTTL / 2)
	if got := r.addrs(echoService); !slices.Equal(got, want) {
		t.Fatalf("after a lease TTL with one member down: %v, want %v", got, want)
	}

	// All down: the table keeps the last known endpoints and calls go on.
	members[1].kill(t)
	members[2].kill(t)
	testwait.For(ctx, t, "discovery to see the outage", func() bool { return !r.disc.Status().Ready() })
	seen := map[string]bool{}
	testwait.For(ctx, t, "calls to reach a and b with etcd down", func() bool {
		seen[r.call(ctx, t)] = true
		return len(seen) == 2
	})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := reg.Register(short, Instance{Service: echoService, ID: "c", Addr: c}); err == nil {
		t.Fatal("Register succeeded with every member down")
	}
	if got := r.addrs(echoService); !slices.Equal(got, want) {
		t.Fatalf("with etcd down the table holds %v, want the last known %v", got, want)
	}

	// The cluster comes back: discovery catches up, c included.
	for _, m := range members {
		m.start(t, cl.initial)
	}
	want = append(want, c)
	slices.Sort(want)
	testwait.For(ctx, t, "discovery to catch up", func() bool {
		return r.disc.Status().Ready() && slices.Equal(r.addrs(echoService), want)
	})
	clear(seen)
	testwait.For(ctx, t, "calls to reach all three", func() bool {
		seen[r.call(ctx, t)] = true
		return len(seen) == 3
	})
}
