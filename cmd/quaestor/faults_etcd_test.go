package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/internal/echoload"
	"github.com/quaestor-go/quaestor/internal/loopbackport"
	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing/registry"
)

// pickChaos returns short, or long when CHAOS=1 (`make chaos`), for the
// long versions of the fault tests.
func pickChaos[T any](short, long T) T {
	if os.Getenv("CHAOS") == "1" {
		return long
	}
	return short
}

// restartableAddr returns a free 127.0.0.1 address for a server the test
// stops and starts again (see loopbackport).
func restartableAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopbackport.Restartable()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startEchoLoad runs a steady Echo load through the proxy until the test
// ends.
func startEchoLoad(ctx context.Context, t *testing.T, proxyAddr string, workers int) *echoload.Load {
	t.Helper()
	cc, err := grpc.NewClient(proxyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l := echoload.Start(ctx, cc, echoload.Options{Workers: workers})
	t.Cleanup(func() {
		l.Stop()
		_ = cc.Close()
	})
	return l
}

func readyz(t *testing.T, admin string) (bool, string) {
	code, body := httpGet(t, "http://"+admin+"/readyz")
	return code == http.StatusOK, body
}

// registeredLeases returns the lease of each Echo instance in etcd, by
// instance id.
func registeredLeases(ctx context.Context, client *clientv3.Client) map[string]clientv3.LeaseID {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := client.Get(ctx, registry.ServicePrefix(registry.DefaultPrefix, registry.DefaultScope, "quaestor.example.v1.Echo"), clientv3.WithPrefix())
	if err != nil {
		return nil
	}
	out := map[string]clientv3.LeaseID{}
	for _, kv := range resp.Kvs {
		out[path.Base(string(kv.Key))] = clientv3.LeaseID(kv.Lease)
	}
	return out
}

// leaseAlive reports whether etcd still holds lease.
func leaseAlive(ctx context.Context, client *clientv3.Client, lease clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := client.TimeToLive(ctx, lease)
	return err == nil && resp.TTL > 0
}

// TestFaultRunEtcdRestart restarts `quaestor run`, and with it the
// embedded etcd, on the same data directory and ports, while a separate
// `quaestor proxy` routes steady calls to workers that `quaestor register`
// keeps registered there. While etcd is down, longer than the lease TTL,
// the proxy's /readyz reports the gap and calls go on to the last known
// workers without one failing; after the restart the proxy is ready again,
// the registrations are in etcd under live leases, and a worker registered
// or deregistered then reaches the proxy.
func TestFaultRunEtcdRestart(t *testing.T) {
	outage := pickChaos(3*time.Second, 15*time.Second) // > lease_ttl: keep-alives go unanswered
	cycles := pickChaos(1, 3)
	ctx, cancel := context.WithTimeout(t.Context(), pickChaos(90*time.Second, 5*time.Minute))
	defer cancel()
	// quaestor run restarts on the same ports.
	etcdAddr, runAdmin := restartableAddr(t), restartableAddr(t)
	runCfg := writeConfig(t, fmt.Sprintf(`
proxy: {listen: %s, drain_timeout: 1s}
admin: {listen: %s}
etcd: {mode: embedded, dir: %s, client_url: "http://%s", peer_url: "http://%s"}
registry: {lease_ttl: 2s}
`, restartableAddr(t), runAdmin, filepath.Join(t.TempDir(), "etcd"), etcdAddr, restartableAddr(t)))
	proxyListen, proxyAdmin := freeAddr(t), freeAddr(t)
	extCfg := writeConfig(t, fmt.Sprintf(`
proxy: {listen: %s, drain_timeout: 1s}
admin: {listen: %s}
etcd: {mode: external, endpoints: ["http://%s"]}
registry: {lease_ttl: 2s}
`, proxyListen, proxyAdmin, etcdAddr))

	startRun := func() *process {
		p, _ := start(t, "quaestor", "run", "-c", runCfg)
		testwait.For(ctx, t, "quaestor run to be ready", func() bool { ok, _ := readyz(t, runAdmin); return ok })
		return p
	}
	run := startRun()
	proxyProc, _ := start(t, "quaestor", "proxy", "-c", extCfg)
	testwait.For(ctx, t, "quaestor proxy to be ready", func() bool { ok, _ := readyz(t, proxyAdmin); return ok })
	etcdCfg := registry.DefaultEtcdConfig()
	etcdCfg.Mode, etcdCfg.Endpoints = registry.ModeExternal, []string{"http://" + etcdAddr}
	client, err := registry.NewClient(etcdCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	registers := map[string]*process{}
	register := func(worker string) {
		registers[worker], _ = start(t, "quaestor", "register", "-c", extCfg, "--service", "quaestor.example.v1.Echo", "--addr", worker)
	}
	w1, w2 := startWorker(t), startWorker(t)
	register(w1)
	register(w2)
	// The load starts once the proxy routes the service: calls before
	// that fail for want of a registration, not for a fault.
	testwait.For(ctx, t, "the registrations", func() bool { return len(registeredLeases(ctx, client)) == 2 })
	probe, err := grpc.NewClient(proxyListen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	testwait.For(ctx, t, "the proxy to route Echo", func() bool {
		_, err := examplev1.NewEchoClient(probe).Unary(ctx, &examplev1.EchoRequest{})
		return err == nil
	})
	load := startEchoLoad(ctx, t, proxyListen, pickChaos(2, 4))
	testwait.For(ctx, t, "calls to reach the first worker", load.ReachedAfresh(w1))
	testwait.For(ctx, t, "calls to reach the second worker", load.ReachedAfresh(w2))

	for cycle := range cycles {
		before := registeredLeases(ctx, client)
		if len(before) != 2 {
			t.Fatalf("registered before the restart: %v", before)
		}
		if err := run.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		stopping := time.Now()
		var gapBody string
		testwait.For(ctx, t, "the proxy's /readyz to report the gap", func() bool {
			ok, body := readyz(t, proxyAdmin)
			gapBody, _, _ = strings.Cut(body, "\n")
			return !ok
		})
		gapSeen := time.Since(stopping)
		select {
		case err := <-run.done:
			run.done <- err
		case <-ctx.Done():
			t.Fatal("quaestor run did not stop")
		}
		stopped := time.Since(stopping)
		hold := time.NewTimer(outage)
		select {
		case <-hold.C:
		case <-ctx.Done():
			t.Fatal("test context ended during the outage")
		}
		failedDown := load.Failed()

		run = startRun()
		restarted := time.Now()
		testwait.For(ctx, t, "the proxy's /readyz after the restart", func() bool { ok, _ := readyz(t, proxyAdmin); return ok })
		proxyReady := time.Since(restarted)
		// Each register command's keep-alives went unanswered for longer
		// than the lease TTL; its instance is in etcd again under a live
		// lease: the same one, which etcd extended on its restart, or a
		// new one had it expired.
		var after map[string]clientv3.LeaseID
		testwait.For(ctx, t, "the registrations under live leases", func() bool {
			after = registeredLeases(ctx, client)
			if len(after) != len(before) {
				return false
			}
			for _, lease := range after {
				if !leaseAlive(ctx, client, lease) {
					return false
				}
			}
			return true
		})
		granted := 0
		for id, lease := range after {
			if lease != before[id] {
				granted++
			}
		}
		reregistered := time.Since(restarted)
		t.Logf("cycle %d: quaestor run stopped in %s, then down for %s; proxy /readyz reported the gap after %s (%q); "+
			"%d calls failed while down; after the restart: proxy ready in %s, registrations back in %s (%d of %d under new leases)",
			cycle+1, stopped.Round(time.Millisecond), outage, gapSeen.Round(time.Millisecond),
			gapBody, failedDown, proxyReady.Round(time.Millisecond), reregistered.Round(time.Millisecond), granted, len(after))
	}

	// Changes after recovery reach the proxy.
	startAt := time.Now()
	w3 := startWorker(t)
	register(w3)
	testwait.For(ctx, t, "calls to reach a worker registered after the restart", load.ReachedAfresh(w3))
	added := time.Since(startAt)
	startAt = time.Now()
	if err := registers[w1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "calls to leave a worker deregistered after the restart", load.AwayFrom(w1, 100))
	t.Logf("after recovery: a new worker served in %s, a deregistered one left in %s",
		added.Round(time.Millisecond), time.Since(startAt).Round(time.Millisecond))
	load.Stop()
	t.Log(load.Summary())
	if n := load.Failed(); n != 0 {
		t.Errorf("%d calls failed", n)
	}
	if t.Failed() {
		t.Logf("quaestor proxy's log:\n%s", proxyProc.stderr)
		for worker, p := range registers {
			t.Logf("quaestor register %s's log:\n%s", worker, p.stderr)
		}
	}
}
