package registry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// netnsLink is two network namespaces made by a test and joined by a veth
// pair: "near", where the test's etcd clients open their connections, and
// "far", where etcd runs. Nothing of the host's network changes.
type netnsLink struct {
	near, far         string // namespace names
	nearLink, farLink string // the veth ends
	nearAddr, farAddr string // their addresses, in a /24 of 10.0.0.0/8
}

// ipCommand is iproute2's ip.
func ipCommand() (string, error) {
	if path, err := exec.LookPath("ip"); err == nil {
		return path, nil
	}
	if _, err := os.Stat("/usr/sbin/ip"); err == nil {
		return "/usr/sbin/ip", nil
	}
	return "", fmt.Errorf("iproute2's ip is not installed")
}

// startNetnsLink makes the namespaces and the link, or skips the test
// saying why it cannot. Everything is removed at the end of the test,
// failed or not.
func startNetnsLink(t *testing.T) *netnsLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
	ip, err := ipCommand()
	if err != nil {
		t.Skip(err)
	}
	// Unique per run: tests of other packages or work trees may run at
	// the same time. Interface names have at most 15 bytes.
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	net24 := fmt.Sprintf("10.%d.%d", 1+rand.IntN(254), 1+rand.IntN(254))
	n := &netnsLink{
		near: "qfn-" + tag, far: "qff-" + tag,
		nearLink: "qfn" + tag, farLink: "qff" + tag,
		nearAddr: net24 + ".1", farAddr: net24 + ".2",
	}
	run := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, ns := range []string{n.near, n.far} {
		if err := run("netns", "add", ns); err != nil {
			t.Skipf("cannot make a network namespace: %v", err)
		}
		t.Cleanup(func() {
			// Deleting a namespace also deletes the veth end in it, and
			// with it the other end.
			if err := run("netns", "delete", ns); err != nil {
				t.Errorf("cleaning up: %v", err)
			}
		})
	}
	steps := [][]string{
		{"link", "add", n.nearLink, "netns", n.near, "type", "veth", "peer", "name", n.farLink, "netns", n.far},
		{"-n", n.near, "addr", "add", n.nearAddr + "/24", "dev", n.nearLink},
		{"-n", n.far, "addr", "add", n.farAddr + "/24", "dev", n.farLink},
		{"-n", n.near, "link", "set", "lo", "up"},
		{"-n", n.far, "link", "set", "lo", "up"},
		{"-n", n.near, "link", "set", n.nearLink, "up"},
		{"-n", n.far, "link", "set", n.farLink, "up"},
	}
	for _, step := range steps {
		if err := run(step...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// setLink brings the far end of the link down (cut: the near side's
// packets go nowhere, with no error, as when a remote host or the path to
// it is lost) or up again.
func (n *netnsLink) setLink(t *testing.T, up bool) {
	t.Helper()
	ip, _ := ipCommand()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command(ip, "-n", n.far, "link", "set", n.farLink, state).CombinedOutput(); err != nil {
		t.Fatalf("setting the link %s: %v: %s", state, err, out)
	}
}

// dialNear opens TCP connections from inside the near namespace. A socket
// stays in the namespace it was made in; the thread that makes it switches
// namespace and is never given back to the Go runtime (the goroutine ends
// locked), so no other goroutine runs in the namespace.
func (n *netnsLink) dialNear(ctx context.Context, addr string) (net.Conn, error) {
	type dialed struct {
		conn net.Conn
		err  error
	}
	result := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(filepath.Join("/run/netns", n.near))
		if err != nil {
			result <- dialed{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			result <- dialed{err: fmt.Errorf("entering %s: %w", n.near, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		result <- dialed{conn, err}
	}()
	r := <-result
	return r.conn, r.err
}

// client is an etcd client, configured as quaestor's, whose connections
// start in the near namespace.
func (n *netnsLink) client(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cfg := DefaultEtcdConfig()
	cfg.Mode = ModeExternal
	cfg.Endpoints = []string{url}
	ccfg, err := clientConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithContextDialer(n.dialNear))
	client, err := clientv3.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// startFarMember runs a single-member etcd in the far namespace, as a
// process of the test binary, and returns its client URL.
func (n *netnsLink) startFarMember(t *testing.T) string {
	t.Helper()
	ip, _ := ipCommand()
	clientURL := "http://" + n.farAddr + ":2379"
	peerURL := "http://" + n.farAddr + ":2380"
	// ip netns exec execs the program: the process killed is the member.
	cmd := exec.Command(ip, "netns", "exec", n.far, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=member",
		envName+"=far", envDir+"="+filepath.Join(t.TempDir(), "etcd"),
		envEtcd+"="+clientURL, envPeer+"="+peerURL, envCluster+"=far="+peerURL)
	cmd.Stdout = nil // "ready" is not needed: the clients wait
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return clientURL
}

// TestFaultEtcdPartitionNetns cuts the network path between the proxy's
// discovery and etcd, in namespaces the test makes, for longer than the
// registrations' lease TTL and the client's keepalive. Packets are dropped
// without an error, as when a host or a link is lost. Calls go on to the
// last known backends; discovery reports the gap once the keepalive gives
// up on the connection; the lease expires in etcd, deleting the
// registrations. When the link is back, discovery catches up, the
// registrar writes the registrations again, and changes made then reach
// the router. No call fails while cut off, nor after recovery; between
// the two, discovery may learn that etcd deleted the registrations before
// the registrar has written them again: calls fail with UNAVAILABLE for
// that moment, counted and logged.
func TestFaultEtcdPartitionNetns(t *testing.T) {
	n := startNetnsLink(t)
	cut := pick(20*time.Second, 45*time.Second) // > keepalive (10 s + 5 s) and > MinLeaseTTL
	cycles := pick(1, 2)
	ctx := faultContext(t, 2*time.Minute, 6*time.Minute)
	url := n.startFarMember(t)
	client := n.client(t, url)
	r := startRouted(t, client)
	reg := newRegistrar(t, n.client(t, url), MinLeaseTTL)
	keys := registerEchoes(ctx, t, reg, "a", "b")
	waitTable(ctx, t, r, "a and b in the table", 2)
	load := startLoad(ctx, t, r, pick(2, 4))
	testwait.For(ctx, t, "calls to reach a and b", load.ReachedAfresh("a", "b"))

	// recovering counts the calls failed between the link coming back and
	// the router serving both backends again (see the doc comment).
	var recovering int64
	for cycle := range cycles {
		lost := reg.LeasesLost()
		restarts := r.disc.Status().Restarts
		failedBefore := load.Failed()
		n.setLink(t, false)
		cutAt := time.Now()
		down := timeUntil(ctx, t, cutAt, map[string]func() bool{
			"gap reported":   func() bool { return !r.disc.Status().Ready() },
			"lease given up": func() bool { return reg.Lease() == 0 },
		})
		hold(ctx, t, cut-time.Since(cutAt))
		if got := r.addrs(echoService); len(got) != 2 {
			t.Fatalf("cut off from etcd, the table holds %v, want the last known two", got)
		}
		failedCut := load.Failed() - failedBefore
		if failedCut != 0 {
			t.Errorf("%d calls failed while cut off from etcd", failedCut)
		}

		n.setLink(t, true)
		mended := time.Now()
		back := timeUntil(ctx, t, mended, map[string]func() bool{
			"discovery ready": func() bool { return r.disc.Status().Ready() },
			"registrations back": func() bool {
				return registeredUnder(ctx, client, reg.Lease(), keys...)
			},
		})
		if reg.LeasesLost() == lost {
			t.Errorf("the lease outlived a cut of %s with a TTL of %s", cut, MinLeaseTTL)
		}
		waitTable(ctx, t, r, "a and b in the table again", 2)
		testwait.For(ctx, t, "calls to reach a and b again", load.ReachedAfresh("a", "b"))
		failedRecovering := load.Failed() - failedBefore - failedCut
		recovering += failedRecovering
		t.Logf("cycle %d: cut for %s, after %v; %d calls failed while cut; after the link is back %v (watch restarts %d → %d); "+
			"%d calls failed while the expired registrations were deleted and not yet written again",
			cycle+1, cut, down, failedCut, back, restarts, r.disc.Status().Restarts, failedRecovering)
	}

	start := time.Now()
	registerEchoes(ctx, t, reg, "c")
	testwait.For(ctx, t, "calls to reach c, registered after recovery", load.ReachedAfresh("c"))
	added := time.Since(start)
	start = time.Now()
	if err := reg.Deregister(ctx, echoService, "a"); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "calls to leave a, deregistered after recovery", load.AwayFrom("a", awayRun))
	t.Logf("after recovery: a new backend served in %s, a deregistered one left in %s",
		added.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	reportLoad(t, load, recovering)
}
