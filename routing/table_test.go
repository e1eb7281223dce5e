package routing_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/quaestor-go/quaestor/routing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestTableMergesSources(t *testing.T) {
	table := routing.NewTable()
	table.Update("svc", routing.SourceStatic, []routing.Endpoint{{Addr: "127.0.0.1:2"}, {Addr: "127.0.0.1:1"}})
	table.Update("svc", "etcd", []routing.Endpoint{
		{Addr: "127.0.0.1:3", ID: "/quaestor/services/default/svc/a"},
		{Addr: "127.0.0.1:1", ID: "/quaestor/services/default/svc/b"},
	})
	got, ok := table.Endpoints("svc")
	if !ok {
		t.Fatal("svc unknown")
	}
	want := []routing.Endpoint{
		{Addr: "127.0.0.1:1", Source: routing.SourceStatic, ID: "127.0.0.1:1"},
		{Addr: "127.0.0.1:2", Source: routing.SourceStatic, ID: "127.0.0.1:2"},
		{Addr: "127.0.0.1:3", Source: "etcd", ID: "/quaestor/services/default/svc/a"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(routing.Endpoint{}, "State")); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	if got[0].State == nil || got[0].State != got[0].State || !got[0].State.Healthy() {
		t.Errorf("endpoint state: %+v", got[0].State)
	}
	// The table keeps the merged list until a source changes it; callers
	// get copies.
	got[0].Addr = "changed by the caller"
	again, _ := table.Endpoints("svc")
	if diff := cmp.Diff(want, again, cmpopts.IgnoreFields(routing.Endpoint{}, "State")); diff != "" {
		t.Errorf("endpoints read again (-want +got):\n%s", diff)
	}
	table.Update("svc", "etcd", []routing.Endpoint{{Addr: "127.0.0.1:4", ID: "/quaestor/services/default/svc/c"}})
	got, _ = table.Endpoints("svc")
	if len(got) != 3 || got[2].Addr != "127.0.0.1:4" {
		t.Errorf("after the etcd source changed: %v", got)
	}

	table.Remove("svc", routing.SourceStatic)
	got, _ = table.Endpoints("svc")
	if len(got) != 1 || got[0].Source != "etcd" {
		t.Errorf("after removing the static source: %v", got)
	}
	table.Remove("svc", "etcd")
	if table.Has("svc") {
		t.Errorf("svc still known after every source removed it")
	}
	if got := table.Services(); len(got) != 0 {
		t.Errorf("services = %v, want none", got)
	}
}

func TestTableKnownWithoutEndpoints(t *testing.T) {
	table := routing.NewTable()
	table.Update("svc", routing.SourceStatic, nil)
	eps, ok := table.Endpoints("svc")
	if !ok || len(eps) != 0 {
		t.Fatalf("Endpoints = %v, %v; want known and empty", eps, ok)
	}
	if _, ok := table.Endpoints("other"); ok {
		t.Fatal("an unlisted service is known")
	}
}

func TestTableSubscribe(t *testing.T) {
	table := routing.NewTable()
	changed, cancel := table.Subscribe("svc")
	defer cancel()
	receive := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification %s", what)
		}
	}
	receive("at subscription")
	// Two changes while the subscriber is busy coalesce into one.
	table.Update("svc", routing.SourceStatic, []routing.Endpoint{{Addr: "127.0.0.1:1"}})
	table.Update("svc", routing.SourceStatic, []routing.Endpoint{{Addr: "127.0.0.1:2"}})
	receive("after the updates")
	select {
	case <-changed:
		t.Fatal("two updates gave two notifications")
	default:
	}
	// Another service's changes are not seen.
	table.Update("other", routing.SourceStatic, nil)
	select {
	case <-changed:
		t.Fatal("notified of another service")
	default:
	}
	table.Remove("svc", routing.SourceStatic)
	receive("after the removal")
}

// TestTableSubscribeMembers: the members' subscription sees endpoints and
// services come and go in any service, not their health or load.
func TestTableSubscribeMembers(t *testing.T) {
	table := routing.NewTable()
	changed, cancel := table.SubscribeMembers()
	defer cancel()
	pending := func() bool {
		select {
		case <-changed:
			return true
		default:
			return false
		}
	}
	if !pending() {
		t.Fatal("no notification at subscription")
	}
	table.Update("a", routing.SourceStatic, []routing.Endpoint{{Addr: "127.0.0.1:1"}})
	if !pending() {
		t.Fatal("no notification after an endpoint was added")
	}
	eps, _ := table.Endpoints("a")
	eps[0].State.SetHealthy(false)
	eps[0].State.SetLoad(&routing.LoadReport{KnownLoadRate: 0.5, Utilization: 0.9})
	table.Changed("a")
	if pending() {
		t.Fatal("notified of a change of health or load")
	}
	table.Remove("a", routing.SourceStatic)
	if !pending() {
		t.Fatal("no notification after the service was removed")
	}
}
