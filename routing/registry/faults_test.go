package registry

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/quaestor-go/quaestor/internal/echoload"
	"github.com/quaestor-go/quaestor/internal/loopbackport"
	"github.com/quaestor-go/quaestor/internal/testwait"
)

// The fault tests (TestFault...) run a short version in `make test`; with
// CHAOS=1 (`make chaos`) they hold each fault longer, repeat it, and put
// more load through the router.
func chaos() bool { return os.Getenv("CHAOS") == "1" }

// pick returns short, or long under CHAOS=1.
func pick[T any](short, long T) T {
	if chaos() {
		return long
	}
	return short
}

// faultContext bounds a fault test: short, or long under CHAOS=1.
func faultContext(t *testing.T, short, long time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), pick(short, long))
	t.Cleanup(cancel)
	return ctx
}

// restartableAddr returns a free 127.0.0.1 address for a server the test
// stops and starts again (see loopbackport).
func restartableAddr(t testing.TB) string {
	t.Helper()
	addr, err := loopbackport.Restartable()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// hold keeps a fault in place for d while the load runs on.
func hold(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		t.Fatalf("test context ended while holding a fault: %v", ctx.Err())
	case <-timer.C:
	}
}

// startLoad runs a steady Echo load through the router until the test
// ends.
func startLoad(ctx context.Context, t *testing.T, r *routed, workers int) *echoload.Load {
	t.Helper()
	cc, err := r.router.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	l := echoload.Start(ctx, cc, echoload.Options{Workers: workers})
	t.Cleanup(l.Stop)
	return l
}

// reportLoad stops the load, logs its summary, and fails the test if more
// than allowed calls failed: those a test expects counted them itself, in
// a window where they are explained.
func reportLoad(t *testing.T, l *echoload.Load, allowed int64) {
	t.Helper()
	l.Stop()
	t.Log(l.Summary())
	if n := l.Failed(); n > allowed {
		t.Errorf("%d calls failed (%d expected)", n, allowed)
	}
}

// awayRun is how many calls in a row must reach other servers before a
// test takes it that the router has let go of one.
const awayRun = 100

// timeUntil waits until each condition holds, polling them together, and
// returns how long after since each first held.
func timeUntil(ctx context.Context, t *testing.T, since time.Time, conds map[string]func() bool) map[string]time.Duration {
	t.Helper()
	took := map[string]time.Duration{}
	testwait.For(ctx, t, fmt.Sprint(slices.Sorted(maps.Keys(conds))), func() bool {
		for what, cond := range conds {
			if _, done := took[what]; !done && cond() {
				took[what] = time.Since(since).Round(time.Millisecond)
			}
		}
		return len(took) == len(conds)
	})
	return took
}

// registeredUnder reports whether every key is in etcd under lease.
func registeredUnder(ctx context.Context, client *clientv3.Client, lease clientv3.LeaseID, keys ...string) bool {
	if lease == 0 {
		return false
	}
	for _, key := range keys {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := client.Get(ctx, key)
		cancel()
		if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
			return false
		}
	}
	return true
}

func echoKey(id string) string { return InstanceKey(DefaultPrefix, DefaultScope, echoService, id) }

// registerEchoes serves Echo under each name and registers it with that
// id; it returns the keys.
func registerEchoes(ctx context.Context, t *testing.T, reg *Registrar, names ...string) []string {
	t.Helper()
	var keys []string
	for _, name := range names {
		if err := reg.Register(ctx, Instance{Service: echoService, ID: name, Addr: startEcho(t, name)}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, echoKey(name))
	}
	return keys
}

// waitTable waits until the table lists exactly n endpoints of Echo.
func waitTable(ctx context.Context, t *testing.T, r *routed, what string, n int) {
	t.Helper()
	testwait.For(ctx, t, what, func() bool { return len(r.addrs(echoService)) == n })
}

// TestFaultEmbeddedEtcdRestart stops the embedded etcd and starts it
// again on the same data directory and ports, as a restart of `quaestor
// run` does, while calls go through a router fed by discovery. While etcd
// is down, longer than the registrations' lease TTL, discovery reports the
// gap, the registrar's keep-alives go unanswered, and calls go on to the
// last known backends without one failing. After the restart the
// registrations are there under the registrar's lease (etcd extends
// leases on a restart, so the registrar keeps it; had it expired, it would
// grant a new one and write its instances again), and a backend registered
// or deregistered then reaches the router.
func TestFaultEmbeddedEtcdRestart(t *testing.T) {
	outage := pick(3*time.Second, 15*time.Second) // > MinLeaseTTL: keep-alives go unanswered
	cycles := pick(1, 3)
	ctx := faultContext(t, 90*time.Second, 5*time.Minute)
	opts := EmbeddedOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://" + restartableAddr(t),
		PeerURL:   "http://" + restartableAddr(t),
		Logger:    quietLogger,
	}
	etcd, err := StartEmbedded(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if etcd != nil {
			etcd.Close()
		}
	})
	client := newClient(t, opts.ClientURL)
	r := startRouted(t, client)
	// The registrar has its own client, as a separate process would.
	reg := newRegistrar(t, newClient(t, opts.ClientURL), MinLeaseTTL)
	keys := registerEchoes(ctx, t, reg, "a", "b")
	waitTable(ctx, t, r, "a and b in the table", 2)
	load := startLoad(ctx, t, r, pick(2, 4))
	testwait.For(ctx, t, "calls to reach a and b", load.ReachedAfresh("a", "b"))

	for cycle := range cycles {
		lost := reg.LeasesLost()
		etcd.Close()
		etcd = nil
		stopped := time.Now()
		down := timeUntil(ctx, t, stopped, map[string]func() bool{
			"gap reported":   func() bool { return !r.disc.Status().Ready() },
			"lease given up": func() bool { return reg.Lease() == 0 },
		})
		hold(ctx, t, outage-time.Since(stopped))
		if got := r.addrs(echoService); len(got) != 2 {
			t.Fatalf("with etcd down the table holds %v, want the last known two", got)
		}
		failedDown := load.Failed()

		etcd, err = StartEmbedded(opts)
		if err != nil {
			t.Fatalf("restarting etcd: %v", err)
		}
		restarted := time.Now()
		back := timeUntil(ctx, t, restarted, map[string]func() bool{
			"discovery ready": func() bool { return r.disc.Status().Ready() },
			"registrations back": func() bool {
				return registeredUnder(ctx, client, reg.Lease(), keys...)
			},
		})
		t.Logf("cycle %d: etcd down for %s, after %v; %d calls failed while down; after the restart %v, leases granted again: %d",
			cycle+1, outage, down, failedDown, back, reg.LeasesLost()-lost)
	}

	// Changes made after recovery reach the router.
	start := time.Now()
	registerEchoes(ctx, t, reg, "c")
	testwait.For(ctx, t, "calls to reach c, registered after the restart", load.ReachedAfresh("c"))
	added := time.Since(start)
	start = time.Now()
	if err := reg.Deregister(ctx, echoService, "a"); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "calls to leave a, deregistered after the restart", load.AwayFrom("a", awayRun))
	t.Logf("after recovery: a new backend served in %s, a deregistered one left in %s",
		added.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	reportLoad(t, load, 0)
}

// TestFaultClusterQuorumLoss runs discovery, a registrar and steady calls
// against a real 3-member etcd cluster of separate processes, and takes it
// down step by step: one member (the cluster keeps quorum: a registration
// made then reaches the router), then a second (no quorum: discovery
// reports the gap, keep-alives go unanswered, calls go on to the last
// known backends), then brings both back: the registrations are there
// under the registrar's lease, and changes made after recovery reach the
// router. No call fails.
func TestFaultClusterQuorumLoss(t *testing.T) {
	noQuorum := pick(3*time.Second, 15*time.Second) // > MinLeaseTTL: keep-alives go unanswered
	oneDown := pick(time.Second, 5*time.Second)
	cycles := pick(1, 3)
	ctx := faultContext(t, 2*time.Minute, 8*time.Minute)
	c := startCluster(t)
	client := newClient(t, c.endpoints...)
	r := startRouted(t, client)
	reg := newRegistrar(t, newClient(t, c.endpoints...), MinLeaseTTL)
	keys := registerEchoes(ctx, t, reg, "a", "b")
	waitTable(ctx, t, r, "a and b in the table", 2)
	load := startLoad(ctx, t, r, pick(2, 4))
	testwait.For(ctx, t, "calls to reach a and b", load.ReachedAfresh("a", "b"))

	for cycle := range cycles {
		first, second := c.members[cycle%3], c.members[(cycle+1)%3]

		// One member lost: the cluster keeps quorum; changes go on.
		first.kill(t)
		extra := fmt.Sprintf("x%d", cycle+1)
		start := time.Now()
		extraKeys := registerEchoes(ctx, t, reg, extra)
		testwait.For(ctx, t, "calls to reach a backend registered with one member down", load.ReachedAfresh(extra))
		t.Logf("cycle %d: %s down: a new backend served in %s", cycle+1, first.name, time.Since(start).Round(time.Millisecond))
		hold(ctx, t, oneDown)

		// Quorum lost.
		lost := reg.LeasesLost()
		second.kill(t)
		stopped := time.Now()
		down := timeUntil(ctx, t, stopped, map[string]func() bool{
			"gap reported":   func() bool { return !r.disc.Status().Ready() },
			"lease given up": func() bool { return reg.Lease() == 0 },
		})
		hold(ctx, t, noQuorum-time.Since(stopped))
		if got := r.addrs(echoService); len(got) != 3 {
			t.Fatalf("without quorum the table holds %v, want the last known three", got)
		}
		failedDown := load.Failed()

		// Both back.
		first.start(t, c.initial)
		second.start(t, c.initial)
		restarted := time.Now()
		all := append(slices.Clone(keys), extraKeys...)
		back := timeUntil(ctx, t, restarted, map[string]func() bool{
			"discovery ready": func() bool { return r.disc.Status().Ready() },
			"registrations back": func() bool {
				return registeredUnder(ctx, client, reg.Lease(), all...)
			},
		})
		start = time.Now()
		if err := reg.Deregister(ctx, echoService, extra); err != nil {
			t.Fatal(err)
		}
		testwait.For(ctx, t, "calls to leave a backend deregistered after recovery", load.AwayFrom(extra, awayRun))
		t.Logf("cycle %d: no quorum for %s, after %v; %d calls failed so far; after recovery %v, leases granted again: %d; a backend deregistered then left in %s",
			cycle+1, noQuorum, down, failedDown, back, reg.LeasesLost()-lost, time.Since(start).Round(time.Millisecond))
	}
	reportLoad(t, load, 0)
}
