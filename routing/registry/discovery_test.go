package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

const echoService = "quaestor.example.v1.Echo"

// routed is a Discovery feeding a Table and a Router, as in the proxy.
type routed struct {
	table  *routing.Table
	disc   *Discovery
	router *routing.Router
}

func startRouted(t *testing.T, client *clientv3.Client) *routed {
	t.Helper()
	table := routing.NewTable()
	disc, err := StartDiscovery(DiscoveryOptions{Client: client, Table: table, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(disc.Close)
	router, err := routing.NewRouter(routing.Options{Table: table, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	if err := disc.WaitSynced(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return &routed{table: table, disc: disc, router: router}
}

func (r *routed) addrs(service string) []string {
	eps, _ := r.table.Endpoints(service)
	var out []string
	for _, ep := range eps {
		out = append(out, ep.Addr)
	}
	return out
}

// call makes one Echo call through the router and returns who answered.
func (r *routed) call(ctx context.Context, t *testing.T) string {
	t.Helper()
	cc, err := r.router.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetServer()
}

func newRegistrar(t *testing.T, client *clientv3.Client, ttl time.Duration) *Registrar {
	t.Helper()
	reg, err := NewRegistrar(RegistrarOptions{Client: client, TTL: ttl, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func TestRegistrationIsRoutedWithinASecond(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	addr := startEcho(t, "registered")
	reg := newRegistrar(t, etcd.client, DefaultLeaseTTL)
	ctx := testContext(t)

	if err := reg.Register(ctx, Instance{Service: echoService, Addr: addr, Metadata: map[string]string{MetaAgent: "test"}}); err != nil {
		t.Fatal(err)
	}
	within, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	testwait.For(within, t, "the registration to reach the routing table", func() bool {
		return slices.Equal(r.addrs(echoService), []string{addr})
	})
	eps, _ := r.table.Endpoints(echoService)
	want := routing.Endpoint{Addr: addr, Source: SourceEtcd, ID: addr, Metadata: map[string]string{MetaAgent: "test"}}
	if diff := cmp.Diff([]routing.Endpoint{want}, eps, cmpopts.IgnoreFields(routing.Endpoint{}, "State")); diff != "" {
		t.Errorf("endpoint (-want +got):\n%s", diff)
	}
	if got := r.call(ctx, t); got != "registered" {
		t.Errorf("call answered by %q", got)
	}
}

func TestExactServiceMatch(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	reg := newRegistrar(t, etcd.client, DefaultLeaseTTL)
	ctx := testContext(t)
	for _, inst := range []Instance{
		{Service: "Worker", Addr: "127.0.0.1:1001"},
		{Service: "WorkerX", Addr: "127.0.0.1:1002"},
	} {
		if err := reg.Register(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(ctx, t, "both services", func() bool { return len(r.table.Services()) == 2 })
	if diff := cmp.Diff([]string{"127.0.0.1:1001"}, r.addrs("Worker")); diff != "" {
		t.Errorf("Worker (-want +got):\n%s", diff)
	}
}

// TestKilledRegistrantExpires kills a registering process with SIGKILL:
// its instance leaves the table when its lease runs out, and calls go to
// the instance that is left.
func TestKilledRegistrantExpires(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	ctx := testContext(t)
	survivor := startEcho(t, "survivor")
	if err := newRegistrar(t, etcd.client, DefaultLeaseTTL).Register(ctx, Instance{Service: echoService, Addr: survivor}); err != nil {
		t.Fatal(err)
	}
	proc, out := startRole(t, "registrant", envEtcd+"="+etcd.url, envService+"="+echoService)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("registrant: %v", err)
	}
	victim := strings.TrimSpace(line)
	testwait.For(ctx, t, "both instances", func() bool { return len(r.addrs(echoService)) == 2 })
	seen := map[string]bool{}
	testwait.For(ctx, t, "calls to reach both", func() bool { seen[r.call(ctx, t)] = true; return len(seen) == 2 })

	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testwait.For(ctx, t, "the killed instance to expire", func() bool {
		return slices.Equal(r.addrs(echoService), []string{survivor})
	})
	// It went when its 2 s lease ran out, not before.
	if gone := time.Since(killed); gone < time.Second {
		t.Errorf("the killed instance left after %s, before its lease could expire", gone)
	}
	for range 50 {
		if got := r.call(ctx, t); got != "survivor" {
			t.Fatalf("call answered by %q after %s expired", got, victim)
		}
	}
}

func TestCloseDeregistersAtOnce(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	ctx := testContext(t)
	reg, err := NewRegistrar(RegistrarOptions{Client: etcd.client, TTL: time.Minute, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1:1001", "127.0.0.1:1002"} {
		if err := reg.Register(ctx, Instance{Service: echoService, Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(ctx, t, "the registrations", func() bool { return len(r.addrs(echoService)) == 2 })
	if err := reg.Deregister(ctx, echoService, "127.0.0.1:1001"); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "the deregistration", func() bool { return len(r.addrs(echoService)) == 1 })
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	// The lease is a minute long: only the revoke can remove it this soon.
	within, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	testwait.For(within, t, "Close to remove the instance", func() bool { return !r.table.Has(echoService) })
}

func TestBadValueSkipped(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	ctx := testContext(t)
	prefix := ServicePrefix(DefaultPrefix, DefaultScope, echoService)
	puts := []struct{ key, value string }{
		{prefix + "good", `{"Op":0,"Addr":"127.0.0.1:1001"}`},
		{prefix + "garbage", `not json`},
		{prefix + "noaddr", `{"Op":0}`},
		{ScopePrefix(DefaultPrefix, DefaultScope) + "no-instance-id", `{"Op":0,"Addr":"127.0.0.1:1003"}`},
	}
	for _, p := range puts {
		if _, err := etcd.client.Put(ctx, p.key, p.value); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(ctx, t, "the bad entries to be skipped", func() bool { return r.disc.Status().Skipped == 3 })
	if diff := cmp.Diff([]string{"127.0.0.1:1001"}, r.addrs(echoService)); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	// Mending the entry brings it in; breaking a good one takes it out.
	if _, err := etcd.client.Put(ctx, prefix+"garbage", `{"Op":0,"Addr":"127.0.0.1:1002"}`); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "the mended entry", func() bool { return len(r.addrs(echoService)) == 2 })
	if _, err := etcd.client.Put(ctx, prefix+"good", `{"Op":0,"Addr":""}`); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "the broken entry to leave", func() bool {
		return slices.Equal(r.addrs(echoService), []string{"127.0.0.1:1002"})
	})
	if !r.disc.Status().Watching {
		t.Error("bad entries stopped the watch")
	}
}

// TestWatchRecoversAfterCompaction cuts discovery off from etcd, changes
// and compacts the history meanwhile, and lets it back: the watch cannot
// resume from its revision, so discovery lists again and misses nothing.
func TestWatchRecoversAfterCompaction(t *testing.T) {
	etcd := startEtcd(t)
	cut := startCutter(t, strings.TrimPrefix(etcd.url, "http://"))
	r := startRouted(t, newClient(t, cut.url()))
	ctx := testContext(t)
	prefix := ServicePrefix(DefaultPrefix, DefaultScope, echoService)
	put := func(id, addr string) {
		t.Helper()
		if _, err := etcd.client.Put(ctx, prefix+id, fmt.Sprintf(`{"Op":0,"Addr":%q}`, addr)); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "127.0.0.1:1001")
	put("b", "127.0.0.1:1002")
	testwait.For(ctx, t, "the first entries", func() bool { return len(r.addrs(echoService)) == 2 })

	cut.setCut(true)
	testwait.For(ctx, t, "the outage to show", func() bool { return !r.disc.Status().Connected })
	// While cut off: the table keeps the last known endpoints.
	if got := r.addrs(echoService); len(got) != 2 {
		t.Fatalf("endpoints while cut off: %v", got)
	}
	put("c", "127.0.0.1:1003")
	if _, err := etcd.client.Delete(ctx, prefix+"a"); err != nil {
		t.Fatal(err)
	}
	put("b", "127.0.0.1:1022")
	resp, err := etcd.client.Get(ctx, "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.client.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	restarts := r.disc.Status().Restarts
	cut.setCut(false)

	testwait.For(ctx, t, "discovery to catch up", func() bool {
		return slices.Equal(r.addrs(echoService), []string{"127.0.0.1:1003", "127.0.0.1:1022"})
	})
	testwait.For(ctx, t, "the watch to run again", func() bool { return r.disc.Status().Ready() })
	if r.disc.Status().Restarts <= restarts {
		t.Errorf("restarts did not grow: %d", r.disc.Status().Restarts)
	}
	put("d", "127.0.0.1:1004")
	testwait.For(ctx, t, "a change after recovery", func() bool { return len(r.addrs(echoService)) == 3 })
}

// TestLeaseLostReRegisters revokes the registrar's lease behind its back,
// as an etcd that lost it would: the registrar grants a new one and puts
// its instances back.
func TestLeaseLostReRegisters(t *testing.T) {
	etcd := startEtcd(t)
	r := startRouted(t, etcd.client)
	ctx := testContext(t)
	reg := newRegistrar(t, etcd.client, DefaultLeaseTTL)
	if err := reg.Register(ctx, Instance{Service: echoService, ID: "i1", Addr: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "the registration", func() bool { return r.table.Has(echoService) })
	lease := reg.Lease()
	if _, err := etcd.client.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "a new lease", func() bool { return reg.Lease() != 0 && reg.Lease() != lease })
	testwait.For(ctx, t, "the instance back", func() bool { return r.table.Has(echoService) })
	if reg.LeasesLost() != 1 {
		t.Errorf("leases lost = %d, want 1", reg.LeasesLost())
	}
}

// TestRegisterWhileEtcdAway registers while etcd is unreachable: Register
// gives up with ctx, and the instance is written once etcd is back.
func TestRegisterWhileEtcdAway(t *testing.T) {
	etcd := startEtcd(t)
	cut := startCutter(t, strings.TrimPrefix(etcd.url, "http://"))
	cut.setCut(true)
	r := startRouted(t, etcd.client)
	reg := newRegistrar(t, newClient(t, cut.url()), MinLeaseTTL)
	ctx := testContext(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := reg.Register(short, Instance{Service: echoService, Addr: "127.0.0.1:1001"})
	if err == nil || !strings.Contains(err.Error(), "kept; written when etcd is reachable") {
		t.Fatalf("Register with etcd away: %v", err)
	}
	cut.setCut(false)
	testwait.For(ctx, t, "the instance once etcd is back", func() bool { return r.table.Has(echoService) })
}

func TestRegisterRejectsBadInstances(t *testing.T) {
	etcd := startEtcd(t)
	reg := newRegistrar(t, etcd.client, DefaultLeaseTTL)
	ctx := testContext(t)
	tests := []struct {
		inst    Instance
		wantErr string
	}{
		{Instance{Addr: "127.0.0.1:1"}, "instance service: service name is empty"},
		{Instance{Service: "a.B", Addr: "nowhere"}, `address "nowhere" is not host:port`},
		{Instance{Service: "a.B", Addr: "127.0.0.1:1", ID: "x/y"}, `id "x/y" must be`},
	}
	for _, tt := range tests {
		if err := reg.Register(ctx, tt.inst); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Register(%+v) = %v, want %q", tt.inst, err, tt.wantErr)
		}
	}
	if _, err := NewRegistrar(RegistrarOptions{Client: etcd.client, TTL: time.Second}); err == nil {
		t.Error("a 1 s TTL was accepted")
	}
}

// TestStockEtcdResolver: a plain grpc-go client with etcd's own resolver
// finds the instances quaestor registered.
func TestStockEtcdResolver(t *testing.T) {
	etcd := startEtcd(t)
	ctx := testContext(t)
	reg := newRegistrar(t, etcd.client, DefaultLeaseTTL)
	addrs := []string{startEcho(t, "e1"), startEcho(t, "e2")}
	for _, addr := range addrs {
		if err := reg.Register(ctx, Instance{Service: echoService, Addr: addr, Metadata: map[string]string{MetaWeight: "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	builder, err := etcdresolver.NewBuilder(etcd.client)
	if err != nil {
		t.Fatal(err)
	}
	target := "etcd:///" + DefaultPrefix + "/services/" + DefaultScope + "/" + echoService
	cc, err := grpc.NewClient(target,
		grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	seen := map[string]bool{}
	testwait.For(ctx, t, "calls to reach both instances", func() bool {
		resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.GetServer()] = true
		return len(seen) == 2
	})
	if diff := cmp.Diff(map[string]bool{"e1": true, "e2": true}, seen, cmpopts.EquateEmpty()); diff != "" {
		t.Error(diff)
	}
}

// TestAllowedNetworks: with registry.allowed_networks set, entries pointing
// outside them are skipped, so a write to etcd cannot send traffic
// anywhere.
func TestAllowedNetworks(t *testing.T) {
	etcd := startEtcd(t)
	allowed, err := ParseNetworks([]string{"127.0.0.0/8", "::1/128"})
	if err != nil {
		t.Fatal(err)
	}
	table := routing.NewTable()
	disc, err := StartDiscovery(DiscoveryOptions{Client: etcd.client, Table: table, AllowedNetworks: allowed, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	ctx := testContext(t)
	prefix := ServicePrefix(DefaultPrefix, DefaultScope, echoService)
	for id, addr := range map[string]string{"in": "127.0.0.1:1", "in6": "[::1]:2", "out": "10.0.0.1:1", "name": "evil.example:443"} {
		if _, err := etcd.client.Put(ctx, prefix+id, fmt.Sprintf(`{"Op":0,"Addr":%q}`, addr)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(ctx, t, "two entries skipped", func() bool { return disc.Status().Skipped == 2 })
	testwait.For(ctx, t, "the allowed entries", func() bool {
		eps, _ := table.Endpoints(echoService)
		return len(eps) == 2
	})
	eps, _ := table.Endpoints(echoService)
	if eps[0].Addr != "127.0.0.1:1" || eps[1].Addr != "[::1]:2" {
		t.Errorf("endpoints %v", eps)
	}
	if _, err := ParseNetworks([]string{"10.0.0.0/8", "lan"}); err == nil || err.Error() != `registry.allowed_networks[1]: "lan" is not a network in CIDR form (e.g. 10.0.0.0/8)` {
		t.Errorf("bad network: %v", err)
	}
}
