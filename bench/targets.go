package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/internal/loopbackport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
	"github.com/quaestor-go/quaestor/routing/registry"
)

// Target names, as the -targets flag and the report spell them.
const (
	targetDirect    = "direct"
	targetQuaestor  = "quaestor"
	targetGRPCProxy = "grpc-proxy"
	targetHAProxy   = "haproxy"
	targetNginx     = "nginx"
)

// allTargets lists the targets in report order; direct is the reference
// every proxy is compared with, HAProxy the proxy to match.
var allTargets = []string{targetDirect, targetQuaestor, targetGRPCProxy, targetHAProxy, targetNginx}

// echoService is the service every target reaches.
const echoService = "quaestor.example.v1.Echo"

// startTimeout bounds the start of each process until it serves.
const startTimeout = 60 * time.Second

// A target is what the load generator calls: the addresses its client
// connections dial and, for a proxy, the process (tree) whose CPU time and
// memory are measured.
type target struct {
	name  string
	addrs []string
	// proc is the proxy's process, nil for direct.
	proc *child
	// pids are proc and its descendants (nginx's workers), read once it
	// serves.
	pids []int
	// backendPids is the backend's process, which every target reaches.
	backendPids []int
	// idleCores is the CPUs the proxy kept busy while no calls ran, after
	// the start (health checks, load polls, etcd watch); NaN when unknown.
	idleCores float64
	// pauseBetween: the process works while no calls run (a registry
	// quaestor checks and polls its instances), so it is paused while
	// other targets are measured. paused is set while it is stopped
	// (SIGSTOP).
	pauseBetween, paused bool
}

// testbedOptions say what startTestbed starts.
type testbedOptions struct {
	targets []string
	// instanceCounts are the instance counts of the registry scenarios;
	// each gets a quaestor of its own over the embedded etcd, and an
	// HAProxy and an nginx of its own listing that many servers when
	// targets has them.
	instanceCounts []int
	// self is the harness's own binary, started again for the roles.
	self string
	// quaestorBin, haproxyBin and nginxBin are the proxies' binaries.
	quaestorBin, haproxyBin, nginxBin string
	// threads is HAProxy's nbthread and nginx's worker_processes.
	threads int
	// keepDir keeps the generated files and logs after the run.
	keepDir bool
	// quaestorAdmin turns on each quaestor's admin server with the Go
	// profiler, on a free port written to progress.
	quaestorAdmin bool
	progress      io.Writer
	// idleWindow, when not 0, is how long the proxies' CPU time is
	// measured with no calls running, once all have started.
	idleWindow time.Duration
}

// A testbed is the set of processes the targets reach: one backend
// process (the echo service and the registered instances), each proxy as
// a process of its own, and an embedded etcd (in this process) for the
// registry scenarios. Close stops them all.
type testbed struct {
	quaestorAdmin bool
	progress      io.Writer

	dir       string
	keepDir   bool
	backend   *child
	instances []string
	targets   map[string]*target
	// byInstances maps an instance count to the proxies, by target name,
	// that spread calls over that many instances: the quaestor
	// discovering them in etcd, the HAProxy and nginx listing them.
	byInstances map[int]map[string]*target
	etcd        *registry.Embedded
	etcdClient  *clientv3.Client
	children    []*child
}

// startTestbed starts the backends and the proxies of opts. On error,
// what was started is stopped.
func startTestbed(ctx context.Context, opts testbedOptions) (_ *testbed, err error) {
	dir, err := os.MkdirTemp("", "quaestor-bench-")
	if err != nil {
		return nil, fmt.Errorf("starting testbed: %w", err)
	}
	tb := &testbed{dir: dir, keepDir: opts.keepDir, quaestorAdmin: opts.quaestorAdmin, progress: opts.progress, targets: make(map[string]*target), byInstances: make(map[int]map[string]*target)}
	defer func() {
		if err != nil {
			err = errors.Join(err, tb.Close())
		}
	}()
	if opts.threads < 1 {
		opts.threads = runtime.NumCPU()
	}
	maxInstances := 0
	for _, n := range opts.instanceCounts {
		maxInstances = max(maxInstances, n)
	}
	var ready backendReady
	tb.backend, err = tb.startRole(roleBackend, &ready, "-instances", fmt.Sprint(maxInstances))
	if err != nil {
		return nil, err
	}
	tb.instances = ready.Instances
	backends := []string{ready.Addr}
	for _, name := range opts.targets {
		t := &target{name: name}
		switch name {
		case targetDirect:
			t.addrs = backends
		case targetQuaestor:
			t.proc, t.addrs, err = tb.startQuaestor(opts.quaestorBin, "quaestor", backends, "", "")
		case targetGRPCProxy:
			var r backendReady
			t.proc, err = tb.startRole(roleGRPCProxy, &r, "-backends", strings.Join(backends, ","))
			t.addrs = []string{r.Addr}
		case targetHAProxy:
			t.proc, t.addrs, err = tb.startHAProxy(opts.haproxyBin, name, backends, opts.threads)
		case targetNginx:
			t.proc, t.addrs, err = tb.startNginx(opts.nginxBin, name, backends, opts.threads)
		default:
			err = fmt.Errorf("starting testbed: unknown target %q", name)
		}
		if err != nil {
			return nil, err
		}
		if err := waitServing(ctx, t); err != nil {
			return nil, err
		}
		if t.proc != nil {
			t.pids = processTree(t.proc.pid())
		}
		t.backendPids = []int{tb.backend.pid()}
		tb.targets[name] = t
	}
	if len(opts.instanceCounts) > 0 {
		if err := tb.startRegistry(ctx, opts); err != nil {
			return nil, err
		}
	}
	if opts.idleWindow > 0 {
		if err := tb.measureIdle(ctx, opts.idleWindow); err != nil {
			return nil, err
		}
	}
	// The registry quaestors keep checking and polling their instances
	// (the 1,000-instance one takes a good part of a core doing it): they
	// are paused while the other targets are measured.
	for _, byName := range tb.byInstances {
		for _, t := range byName {
			t.pause()
		}
	}
	return tb, nil
}

// pause stops t's process until resume, if it works while no calls run;
// it does nothing where processes cannot be paused.
func (t *target) pause() {
	if t.proc != nil && t.pauseBetween {
		t.paused = pauseGroup(t.proc.cmd.Process, true)
	}
}

// resume continues t's paused process, waits until it lists its
// instances as healthy again, then lets it settle for settle: the timers
// that came due while it was paused (health, load polls, keepalives) fire
// at once on resuming, and that burst is not what a call costs.
func (t *target) resume(ctx context.Context, instances int, settle time.Duration) error {
	if !t.paused {
		return nil
	}
	pauseGroup(t.proc.cmd.Process, false)
	t.paused = false
	if err := waitInstances(ctx, t, t.proc.name, instances); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
		return nil
	}
}

// proxies returns every target with a process: the targets, then the
// registry scenarios' proxies by instance count.
func (tb *testbed) proxies() []*target {
	var out []*target
	for _, name := range allTargets {
		if t := tb.targets[name]; t != nil && t.proc != nil {
			out = append(out, t)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(tb.byInstances)) {
		for _, name := range registryTargets {
			if t := tb.byInstances[n][name]; t != nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// measureIdle measures, over one window with no calls, the CPU each proxy
// spends on its own: what it costs before serving any call, and with many
// instances the cost of watching them.
func (tb *testbed) measureIdle(ctx context.Context, window time.Duration) error {
	proxies := tb.proxies()
	starts := make([]cpuTimes, len(proxies))
	known := make([]bool, len(proxies))
	for i, t := range proxies {
		starts[i], known[i] = treeCPUTime(t.pids)
	}
	begin := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	elapsed := time.Since(begin)
	for i, t := range proxies {
		t.idleCores = math.NaN()
		if end, ok := treeCPUTime(t.pids); ok && known[i] {
			t.idleCores = (end.total() - starts[i].total()).Seconds() / elapsed.Seconds()
		}
	}
	return nil
}

// procExit returns why a target's process ended, if it did.
func (t *target) procExit() error {
	if t.proc != nil && t.proc.exited() {
		return t.proc.exitError()
	}
	return nil
}

// Close stops every process, last started first, the etcd, and removes
// the generated files unless asked to keep them.
func (tb *testbed) Close() error {
	var errs []error
	for i := len(tb.children) - 1; i >= 0; i-- {
		errs = append(errs, tb.children[i].stop())
	}
	tb.children = nil
	if tb.etcdClient != nil {
		errs = append(errs, tb.etcdClient.Close())
		tb.etcdClient = nil
	}
	if tb.etcd != nil {
		tb.etcd.Close()
		tb.etcd = nil
	}
	if !tb.keepDir && tb.dir != "" {
		errs = append(errs, os.RemoveAll(tb.dir))
	}
	return errors.Join(errs...)
}

// startRole starts the harness's own binary in role, decoding its ready
// line into ready.
func (tb *testbed) startRole(role string, ready any, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", role, err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	c, line, err := startChild(role, cmd, filepath.Join(tb.dir, role+".log"), readyPrefix, startTimeout)
	if err != nil {
		return nil, err
	}
	tb.children = append(tb.children, c)
	if err := json.Unmarshal([]byte(line), ready); err != nil {
		return nil, fmt.Errorf("starting %s: ready line %q: %w", role, line, err)
	}
	return c, nil
}

// startQuaestor runs `quaestor proxy` with a generated configuration:
// static backends, or the registrations under etcdPrefix.
func (tb *testbed) startQuaestor(bin, name string, backends []string, etcdEndpoint, etcdPrefix string) (*child, []string, error) {
	if bin == "" {
		return nil, nil, fmt.Errorf("starting %s: no quaestor binary (-quaestor)", name)
	}
	addr, err := loopbackport.FreeAddr()
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	var admin string
	if tb.quaestorAdmin {
		if admin, err = loopbackport.FreeAddr(); err != nil {
			return nil, nil, fmt.Errorf("starting %s: %w", name, err)
		}
		if tb.progress != nil {
			fmt.Fprintf(tb.progress, "%s: admin and profiler at http://%s/debug/pprof/\n", name, admin)
		}
	}
	cfgPath := filepath.Join(tb.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(quaestorConfig(addr, admin, backends, etcdEndpoint, etcdPrefix)), 0o644); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c, _, err := startChild(name, exec.Command(bin, "proxy", "-c", cfgPath), filepath.Join(tb.dir, name+".log"), "", 0)
	if err != nil {
		return nil, nil, err
	}
	tb.children = append(tb.children, c)
	return c, []string{addr}, nil
}

// startHAProxy runs haproxy in the foreground (-db) with a generated
// configuration; name names its files and process.
func (tb *testbed) startHAProxy(bin, name string, backends []string, threads int) (*child, []string, error) {
	if bin == "" {
		return nil, nil, fmt.Errorf("starting %s: no haproxy binary (install it: bench/install-proxies.sh, or -haproxy)", name)
	}
	addr, err := loopbackport.FreeAddr()
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cfgPath := filepath.Join(tb.dir, name+".cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(addr, backends, threads)), 0o644); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c, _, err := startChild(name, exec.Command(bin, "-db", "-f", cfgPath), filepath.Join(tb.dir, name+".log"), "", 0)
	if err != nil {
		return nil, nil, err
	}
	tb.children = append(tb.children, c)
	return c, []string{addr}, nil
}

// startNginx runs nginx in the foreground (daemon off) with a generated
// configuration and a prefix directory of its own, both named name.
func (tb *testbed) startNginx(bin, name string, backends []string, workers int) (*child, []string, error) {
	if bin == "" {
		return nil, nil, fmt.Errorf("starting %s: no nginx binary (install it: bench/install-proxies.sh, or -nginx)", name)
	}
	addr, err := loopbackport.FreeAddr()
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	prefix := filepath.Join(tb.dir, name)
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cfgPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cfgPath, []byte(nginxConfig(addr, backends, workers, prefix)), 0o644); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	// -e: the error log before the configuration is read (else nginx
	// opens /var/log/nginx/error.log).
	cmd := exec.Command(bin, "-p", prefix, "-c", cfgPath, "-e", filepath.Join(prefix, "startup.log"))
	c, _, err := startChild(name, cmd, filepath.Join(tb.dir, name+".log"), "", 0)
	if err != nil {
		return nil, nil, err
	}
	tb.children = append(tb.children, c)
	return c, []string{addr}, nil
}

// startRegistry starts an embedded etcd and, for each instance count n
// of opts, registers n of the backend's instance addresses under a prefix
// of their own, with a quaestor reading that prefix, and waits until it
// lists all n as healthy; when opts has HAProxy and nginx among its
// targets, it starts one of each with the same n addresses as servers.
func (tb *testbed) startRegistry(ctx context.Context, opts testbedOptions) error {
	clientURL, err := loopbackport.FreeAddr()
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	peerURL, err := loopbackport.FreeAddr()
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	tb.etcd, err = registry.StartEmbedded(registry.EmbeddedOptions{
		Dir:       filepath.Join(tb.dir, "etcd"),
		ClientURL: "http://" + clientURL,
		PeerURL:   "http://" + peerURL,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	tb.etcdClient, err = clientv3.New(clientv3.Config{Endpoints: []string{tb.etcd.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("starting etcd client: %w", err)
	}
	for _, n := range opts.instanceCounts {
		if n > len(tb.instances) {
			return fmt.Errorf("registering %d instances: the backend listens on %d", n, len(tb.instances))
		}
		instances := tb.instances[:n]
		prefix := fmt.Sprintf("/bench-%d", n)
		if err := registerInstances(ctx, tb.etcdClient, prefix, instances); err != nil {
			return err
		}
		byName := make(map[string]*target)
		tb.byInstances[n] = byName
		for _, name := range registryTargets {
			if name != targetQuaestor && !slices.Contains(opts.targets, name) {
				continue
			}
			t := &target{name: name}
			procName := fmt.Sprintf("%s-%d", name, n)
			var err error
			switch name {
			case targetQuaestor:
				t.proc, t.addrs, err = tb.startQuaestor(opts.quaestorBin, procName, nil, tb.etcd.ClientURL(), prefix)
				if err == nil {
					t.pauseBetween = true
					err = waitInstances(ctx, t, procName, n)
				}
			case targetHAProxy:
				if t.proc, t.addrs, err = tb.startHAProxy(opts.haproxyBin, procName, instances, opts.threads); err == nil {
					err = waitServing(ctx, t)
				}
			case targetNginx:
				if t.proc, t.addrs, err = tb.startNginx(opts.nginxBin, procName, instances, opts.threads); err == nil {
					err = waitServing(ctx, t)
				}
			}
			if err != nil {
				return err
			}
			t.pids = processTree(t.proc.pid())
			t.backendPids = []int{tb.backend.pid()}
			byName[name] = t
		}
	}
	return nil
}

// registryTargets are the targets of the registry scenarios, in report
// order: quaestor, which discovers the instances in etcd, and the
// proxies that can list them as servers, for comparison.
var registryTargets = []string{targetQuaestor, targetHAProxy, targetNginx}

// registerInstances puts one key per address in quaestor's registry
// layout (routing/registry/layout.go), without a lease: the etcd lives
// only as long as the run.
func registerInstances(ctx context.Context, client *clientv3.Client, prefix string, addrs []string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 32)
	)
	for i, addr := range addrs {
		key := registry.InstanceKey(prefix, registry.DefaultScope, echoService, fmt.Sprintf("bench-%04d", i+1))
		value, err := json.Marshal(map[string]any{"Op": 0, "Addr": addr, "Metadata": map[string]any{registry.MetaAgent: "bench"}})
		if err != nil {
			return err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			putCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := client.Put(putCtx, key, string(value)); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("registering %s: %w", addr, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitServing waits until an echo call through t succeeds.
func waitServing(ctx context.Context, t *target) error {
	cc, err := grpc.NewClient(t.addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("starting %s: %w", t.name, err)
	}
	defer cc.Close()
	client := examplev1.NewEchoClient(cc)
	name := t.name
	if t.proc != nil {
		name = t.proc.name
	}
	return pollUntil(ctx, t, name, func(ctx context.Context) error {
		_, err := client.Unary(ctx, &examplev1.EchoRequest{Payload: []byte("ready?")})
		return err
	})
}

// waitInstances waits until the quaestor at addr lists want healthy
// instances of the echo service (its look-aside DiscoverServices) and
// forwards a call.
func waitInstances(ctx context.Context, t *target, name string, want int) error {
	cc, err := grpc.NewClient(t.addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	defer cc.Close()
	disc := sdpb.NewServiceDiscoveryGrpcClient(cc)
	echoClient := examplev1.NewEchoClient(cc)
	return pollUntil(ctx, t, name, func(ctx context.Context) error {
		resp, err := disc.DiscoverServices(ctx, &sdpb.DiscoverServicesRequest{ServiceName: echoService, MaxCount: int32(want + 1)})
		if err != nil {
			return err
		}
		if got := len(resp.GetServiceLocations()); got != want {
			return fmt.Errorf("%d of %d instances healthy", got, want)
		}
		_, err = echoClient.Unary(ctx, &examplev1.EchoRequest{Payload: []byte("ready?")})
		return err
	})
}

// pollUntil calls try every 100 ms until it succeeds, for up to
// startTimeout, or until t's process has exited.
func pollUntil(ctx context.Context, t *target, name string, try func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
		err := try(callCtx)
		callCancel()
		if err == nil {
			return nil
		}
		if exit := t.procExit(); exit != nil {
			return fmt.Errorf("starting %s: %w", name, exit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("starting %s: not serving within %s: %w", name, startTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lookBinary finds name in PATH or in /usr/sbin (where Debian puts
// haproxy and nginx, outside a non-root PATH); "" when absent.
func lookBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// binaryVersion returns the first line a binary prints for its version
// flag (on stdout or stderr: nginx -v writes to stderr).
func binaryVersion(bin string, args ...string) string {
	if bin == "" {
		return "not found"
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil && line == "" {
		return "unknown (" + err.Error() + ")"
	}
	return line
}

// moduleVersion returns the version of a module this binary was built
// with.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			return dep.Version
		}
	}
	return "unknown"
}
