package registry

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/internal/testwait"
	"github.com/quaestor-go/quaestor/routing"
)

// TestOnlyOwnPrefixAndScopeTrusted writes entries of the same service
// under another scope, another prefix and a prefix that only starts like
// the configured one: discovery routes none of them, only the entry under
// its own prefix and scope.
func TestOnlyOwnPrefixAndScopeTrusted(t *testing.T) {
	etcd := startEtcd(t)
	const prefix, scope = "/quaestor", "prod"
	table := routing.NewTable()
	disc, err := StartDiscovery(DiscoveryOptions{Client: etcd.client, Table: table, Prefix: prefix, Scope: scope, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	ctx := testContext(t)
	for key, addr := range map[string]string{
		ServicePrefix(prefix, scope, echoService) + "own":         "127.0.0.1:1",
		ServicePrefix(prefix, "staging", echoService) + "other":   "127.0.0.1:2",
		ServicePrefix(prefix, "prod2", echoService) + "lookalike": "127.0.0.1:3",
		ServicePrefix("/elsewhere", scope, echoService) + "x":     "127.0.0.1:4",
		ServicePrefix("/quaestor2", scope, echoService) + "y":     "127.0.0.1:5",
	} {
		if _, err := etcd.client.Put(ctx, key, fmt.Sprintf(`{"Op":0,"Addr":%q}`, addr)); err != nil {
			t.Fatal(err)
		}
	}
	// A later entry under the own scope proves the others were seen, or
	// would have been, before it.
	if _, err := etcd.client.Put(ctx, ServicePrefix(prefix, scope, echoService)+"last", `{"Op":0,"Addr":"127.0.0.1:6"}`); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:1", "127.0.0.1:6"}
	testwait.For(ctx, t, "the own entries", func() bool {
		eps, _ := table.Endpoints(echoService)
		return len(eps) == len(want)
	})
	eps, _ := table.Endpoints(echoService)
	var got []string
	for _, ep := range eps {
		got = append(got, ep.Addr)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routed endpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{echoService}, table.Services()); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}
